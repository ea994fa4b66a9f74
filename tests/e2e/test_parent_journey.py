"""The parents' journey over real HTTP, against the fake WeChat platform, as the mini-program drives it."""

from __future__ import annotations

from uuid import UUID

import aiohttp
import pytest

from backend.components import CONFIG
from domain.values import Actor
from miniprogram_stub.client import ApiProblem, MiniProgram, id_photo
from miniprogram_stub.people import Family, Person, demo_family, make_id_number
from tests.e2e.conftest import Stack
from tests.e2e.test_audit_http import serve

pytestmark = pytest.mark.e2e


async def test_happy_path_with_both_parents_ends_submitted(stack: Stack, family: Family) -> None:
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    status = await mp.whole_journey()
    assert status["state"] == "submitted"
    assert [s["code"] for s in status["next_steps"] if s.get("by") == "parent"] == []
    listing = await mp.call("GET", "/api/v1/applications")
    assert [item["id"] for item in listing["items"]] == [mp.app_id]
    form = await mp.form()
    assert form["signature_valid"] is True
    assert form["form"]["mother"]["id_number"] == family.mother.id_number


async def test_guangdong_takes_ethnicity_and_address_from_the_police_registry(
    stack: Stack, family: Family
) -> None:
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.register_with_police(
        Person(family.mother.name, family.mother.id_number, "03", "广东省广州市天河区天河路100号")
    )
    await mp.login()
    await mp.start()
    assert (await mp.prefill())["mother"] is None  # nothing before her face check
    await mp.verify_face("mother")
    await mp.confirm_delivery()
    prefill = await mp.prefill()
    assert prefill["mother"] == {
        "ethnicity": "03",
        "address": "广东省广州市天河区天河路100号",
        "source": "registry",
    }
    await mp.provide_details()
    form = (await mp.form())["form"]
    assert (form["mother"]["ethnicity"], form["mother"]["address"]) == ("03", "广东省广州市天河区天河路100号")
    assert await details_source(stack, mp) == "registry"  # the service found them in the registry itself

    # A typed address claimed to come from the registry is recorded as typed.
    body = mp.details_body(None, prefill)
    body["mother"] |= {"address": "广东省深圳市南山区伪造路100号", "source": "registry"}
    await mp.call("PUT", f"{mp.base}/details", json=body)
    assert await details_source(stack, mp) == "typed"


async def details_source(stack: Stack, mp: MiniProgram) -> str:
    """Where the recorded mother's details came from, as the stored event says."""
    app = await stack.in_store(stack.service.get_application, Actor(id=mp.openid, role="parent"), mp.app_id)
    return str(app.details["mother"]["source"])


async def test_shandong_father_elsewhere_sends_a_handheld_id_photo_and_pays_postage(stack: Stack) -> None:
    family = Family(
        openid="oShandongMother1",
        mother=Person(
            "刘红", make_id_number("370124", "19940101", "028"), address="山东省济南市平阴县榆山街道1号"
        ),
        father=Person(
            "张强", make_id_number("370124", "19920303", "013"), address="山东省济南市平阴县榆山街道1号"
        ),
        newborn_name="张明",
        inpatient_no="PY2026001",
    )
    await stack.record_delivery(family, province="SD")
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start(province="SD")
    await mp.verify_face("mother")
    await mp.confirm_delivery()
    await mp.provide_details()
    await mp.upload("father_handheld_id")
    await mp.upload_all()
    await mp.sign()
    await mp.choose_ems()
    with pytest.raises(ApiProblem) as unpaid:
        await mp.submit()
    assert unpaid.value.code == "not_ready"
    assert unpaid.value.problem["missing"] == ["postage_paid"]
    order = await mp.pay_postage()
    assert order["amount_fen"] == 2000
    assert order["pay_params"]["package"].startswith("prepay_id=")
    await mp.submit()
    assert (await mp.status())["state"] == "submitted"


@pytest.mark.parametrize(("verify_ret", "code"), [(10003, "id_mismatch"), (10004, "face_mismatch")])
async def test_face_verification_failures_are_explained(
    stack: Stack, family: Family, verify_ret: int, code: str
) -> None:
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start()
    await mp.fake("/_fake/faces", {"cert_no": family.mother.id_number, "verify_ret": verify_ret})
    with pytest.raises(ApiProblem) as failed:
        await mp.verify_face("mother")
    assert failed.value.code == code
    assert failed.value.status == 409
    assert any(word in failed.value.problem["detail"] for word in ("身份证", "一致"))
    status = await mp.status()
    assert "mother_verified" in [s["code"] for s in status["next_steps"]]


async def test_a_verdict_fetched_again_is_answered_again_and_recorded_once(
    stack: Stack, family: Family
) -> None:
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start()
    started = await mp.begin_face("mother", family.mother)
    await mp.fake("/_fake/face/verify", {"verify_id": started["verify_id"], "openid": mp.openid})
    first = await mp.face_result(started["out_seq_no"])
    events = await stack.in_store(lambda: len(list(stack.service.events.get(UUID(mp.app_id)))))
    # Her phone lost the answer and asks again (another Idempotency-Key): the same pass, nothing recorded twice.
    assert await mp.face_result(started["out_seq_no"]) == first
    assert await stack.in_store(lambda: len(list(stack.service.events.get(UUID(mp.app_id))))) == events
    with pytest.raises(ApiProblem) as never_begun:
        await mp.face_result("bc" + "0" * 24)
    assert (never_begun.value.status, never_begun.value.code) == (409, "verification_used")


async def test_another_users_verify_id_does_not_verify(stack: Stack, family: Family) -> None:
    await stack.record_delivery(family)
    mother = stack.mini_program(family)
    await mother.login()
    await mother.start()
    started = await mother.begin_face("mother", family.mother)
    # Someone else's phone plays the face check for her verify_id: WeChat refuses it.
    played = await mother.fake(
        "/_fake/face/verify", {"verify_id": started["verify_id"], "openid": "oSomeoneElse"}
    )
    assert played.get("errCode", played.get("errcode")) not in (0, None)
    with pytest.raises(ApiProblem) as result:
        await mother.face_result(started["out_seq_no"])
    assert result.value.code in ("face_not_finished", "face_bad_request", "face_failed")


async def test_an_identity_that_is_not_the_delivery_records_mother_is_refused(
    stack: Stack, family: Family
) -> None:
    await stack.record_delivery(family)
    impostor = Family(
        openid="oImpostor",
        mother=Person("刘丽", make_id_number("440103", "19950808", "046")),
        father=None,
        newborn_name="张小花",
        inpatient_no="X",
    )
    mp = stack.mini_program(impostor)
    await mp.login()
    await mp.start(parents="single_mother")
    # Before her face check, an ID number with no delivery record looks like any other: nobody can
    # learn whether a woman gave birth by typing ID numbers.
    other = stack.mini_program(demo_family(7))
    await other.login()
    await other.start()
    for mini, who in ((mp, impostor.mother), (other, family.mother)):
        begun = await mini.begin_face("mother", who)
        assert set(begun) >= {"verify_id", "out_seq_no"}
    # Once her face proved who she is, she alone is told: no record of hers can be linked.
    verdict = await mp.verify_face("mother")
    assert verdict["delivery_record_linked"] is False
    with pytest.raises(ApiProblem) as refused:
        await mp.delivery_record()
    assert (refused.value.status, refused.value.code) == (409, "not_delivery_mother")
    assert "mother_verified" not in [step["code"] for step in (await mp.status())["next_steps"]]


async def test_an_ineligible_parent_is_sent_to_the_counter(stack: Stack, family: Family) -> None:
    mp = stack.mini_program(family)
    await mp.login()
    with pytest.raises(ApiProblem) as refused:
        await mp.start(father_residency="foreign")
    assert (refused.value.status, refused.value.code) == (422, "foreign_national")
    assert "现场" in refused.value.problem["detail"]
    listing = await mp.call("GET", "/api/v1/applications")
    assert listing["items"] == []


async def test_a_signature_over_a_stale_form_is_a_conflict(stack: Stack, family: Family) -> None:
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start()
    await mp.verify_face("mother")
    await mp.confirm_delivery()
    await mp.provide_details()
    await mp.verify_face("father")
    stale = (await mp.form())["sha256"]
    await mp.provide_details(newborn_name="张小草")
    stored = blobs(stack)
    with pytest.raises(ApiProblem) as conflict:
        await mp.sign(stale)
    assert (conflict.value.status, conflict.value.code) == (409, "stale_form")
    assert blobs(stack) == stored  # the refused signature image was not kept


def blobs(stack: Stack) -> set[str]:
    """The files in the service's encrypted blob store."""
    return {p.name for p in stack.app[CONFIG].blob_dir.rglob("*") if p.is_file()}


async def test_oversize_and_disguised_uploads_are_refused(stack: Stack, family: Family) -> None:
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start()
    with pytest.raises(ApiProblem) as big:
        await mp.upload("mother_id_front", b"\xff\xd8\xff" + b"0" * (6 * 1024 * 1024))
    assert (big.value.status, big.value.code) == (413, "file_too_large")
    with pytest.raises(ApiProblem) as disguised:
        await mp.upload("mother_id_front", b"MZ\x90\x00" + b"\x00" * 2000, filename="photo.jpg")
    assert (disguised.value.status, disguised.value.code) == (415, "unsupported_file_type")
    before = blobs(stack)
    # Refused by the application's rules (Guangdong takes no handheld photo; a bad kind): not kept.
    for kind, code in (("father_handheld_id", "handheld_not_allowed"), ("selfie", "validation_failed")):
        with pytest.raises(ApiProblem) as refused:
            await mp.upload(kind, id_photo("front"))
        assert refused.value.code == code
    assert blobs(stack) == before
    stored = await mp.upload("mother_id_front", id_photo("front"))
    assert len(stored["sha256"]) == 64
    assert len(blobs(stack) - before) == 1


async def test_a_forged_payment_notification_records_nothing(stack: Stack) -> None:
    family = Family(
        openid="oShandongMother2",
        mother=Person("刘红", make_id_number("370124", "19940101", "028")),
        father=Person("张强", make_id_number("370124", "19920303", "013")),
        newborn_name="张明",
        inpatient_no="PY2026002",
    )
    await stack.record_delivery(family, province="SD")
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start(province="SD")
    await mp.verify_face("mother")
    await mp.confirm_delivery()
    await mp.provide_details()
    await mp.verify_face("father")
    await mp.choose_ems()
    order = await mp.call("POST", f"{mp.base}/payments")
    forged = await mp.fake("/_fake/pay/notify", {"out_trade_no": order["out_trade_no"], "forge": True})
    assert forged["status"] == 400
    cheap = await mp.fake("/_fake/pay/notify", {"out_trade_no": order["out_trade_no"], "total_fee": 1})
    assert cheap["status"] == 409
    status = await mp.status()
    assert status["postage"]["paid"] is False
    await mp.fake("/_fake/pay/notify", {"out_trade_no": order["out_trade_no"]})
    again = await mp.fake("/_fake/pay/notify", {"out_trade_no": order["out_trade_no"]})
    assert again["status"] == 200
    assert (await mp.status())["postage"]["paid"] is True


async def test_another_parents_application_is_not_found(stack: Stack, family: Family) -> None:
    await stack.record_delivery(family)
    mother = stack.mini_program(family)
    await mother.login()
    await mother.start()
    stranger = stack.mini_program(demo_family(2))
    await stranger.login()
    stranger.app_id = mother.app_id
    bad_details = stranger.call("PUT", f"{stranger.base}/details", json={"newborn_name": 5})
    calls = (stranger.status(), stranger.form(), stranger.submit(), stranger.delivery_record(), bad_details)
    for call in calls:
        with pytest.raises(ApiProblem) as hidden:
            await call
        assert (hidden.value.status, hidden.value.code) == (404, "not_found")


async def test_a_command_retried_with_the_same_idempotency_key_is_recorded_once(
    stack: Stack, family: Family
) -> None:
    mp = stack.mini_program(family)
    await mp.login()
    first = await mp.call("POST", "/api/v1/applications", json={}, idempotency_key="k-start-1")
    again = await mp.call("POST", "/api/v1/applications", json={}, idempotency_key="k-start-1")
    assert first == again
    listing = await mp.call("GET", "/api/v1/applications")
    assert len(listing["items"]) == 1
    with pytest.raises(ApiProblem) as reused:
        await mp.call(
            "POST", "/api/v1/applications", json={"parents": "single_mother"}, idempotency_key="k-start-1"
        )
    assert (reused.value.status, reused.value.code) == (422, "idempotency_key_reused")


async def test_a_stale_if_match_is_a_409_with_the_current_version(stack: Stack, family: Family) -> None:
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.login()
    started = await mp.start()
    await mp.verify_face("mother")
    with pytest.raises(ApiProblem) as stale:
        await mp.call("POST", f"{mp.base}/delivery-record/confirm", if_match=started["version"])
    assert stale.value.status == 409
    assert stale.value.problem["current_version"] > started["version"]


async def test_a_malformed_if_match_or_withdrawal_reason_changes_nothing(
    stack: Stack, family: Family
) -> None:
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.login()
    started = await mp.start()
    # Unicode digits pass str.isdigit(): "²" made int() fail (a 500), "١٢" was read as version 12.
    for value in ("²", '"²"', "①", "١٢", "12a", "-1", "9" * 40):
        async with stack.session.post(
            f"{stack.api}{mp.base}/withdraw",
            headers={"Authorization": f"Bearer {mp.token}", "If-Match": value},
            json={},
        ) as r:
            body = await r.json()
            assert (r.status, body["code"]) == (400, "invalid_if_match"), value
            assert r.content_type == "application/problem+json"
    assert (await mp.status())["state"] == started["state"]
    for limit in ("0", "-1", "101", "1e23", "１", "abc"):
        with pytest.raises(ApiProblem) as bad_limit:
            await mp.call("GET", f"/api/v1/applications?limit={limit}")
        assert (bad_limit.value.status, bad_limit.value.code) == (400, "invalid_limit"), limit
    assert len((await mp.call("GET", "/api/v1/applications?limit=100"))["items"]) == 1
    # A withdrawal cannot be undone: a reason of the wrong type refuses it rather than being ignored.
    for reason in (5, ["不办了"], {"text": "不办了"}, "  "):
        with pytest.raises(ApiProblem) as refused:
            await mp.call("POST", f"{mp.base}/withdraw", json={"reason": reason})
        assert (refused.value.status, refused.value.code) == (422, "validation_failed"), reason
    assert (await mp.status())["state"] == started["state"]


async def test_wechat_access_token_is_refreshed_after_40001(stack: Stack, family: Family) -> None:
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start()
    await mp.fake(
        "/_fake/errors", {"path": "/cityservice/face/identify/getverifyid", "errcode": 40001, "times": 1}
    )
    await mp.verify_face("mother")
    async with stack.session.get(f"{stack.platform}/_fake/calls?path=/cgi-bin/stable_token") as r:
        assert (await r.json())["count"] == 2  # the first token, then one forced refresh after the 40001


async def test_unauthenticated_and_bad_json_get_problems_not_500s(stack: Stack) -> None:
    async with stack.session.post(f"{stack.api}/api/v1/applications") as r:
        assert r.status == 401
        assert (await r.json())["code"] == "token_missing"
    async with stack.session.post(f"{stack.api}/api/v1/auth/wechat", data=b"{not json") as r:
        body = await r.json()
        assert (r.status, body["code"]) == (400, "invalid_json")
    async with stack.session.get(f"{stack.api}/no/such/path") as r:
        assert r.status == 404
        assert r.content_type == "application/problem+json"


async def test_answers_about_a_family_are_never_cached(stack: Stack, family: Family) -> None:
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start()
    await mp.verify_face("mother")
    for path in (mp.base, f"{mp.base}/delivery-record", "/api/v1/applications", f"{mp.base}/form"):
        async with stack.session.get(stack.api + path, headers={"Authorization": f"Bearer {mp.token}"}) as r:
            assert r.headers.get("Cache-Control") == "no-store", (path, r.status)
            assert r.headers.get("Server") == "birthcert"  # no software versions


async def test_health_ready_metrics_jwks_and_openapi_answer(stack: Stack) -> None:
    for path in ("/healthz", "/readyz", "/.well-known/jwks.json", "/api/v1/openapi.json"):
        async with stack.session.get(stack.api + path) as r:
            assert r.status == 200, path
    async with stack.session.get(stack.api + "/metrics") as r:
        assert "birthcert_http_requests" in await r.text()
    async with stack.session.get(stack.api + "/.well-known/jwks.json") as r:
        keys = (await r.json())["keys"]
        assert keys and all(k["alg"] == "EdDSA" and "d" not in k for k in keys)


def test_the_session_type_is_what_the_client_uses() -> None:
    assert MiniProgram.__dataclass_fields__["session"].type in (
        "aiohttp.ClientSession",
        aiohttp.ClientSession,
    )


async def test_yueshengshi_login_through_the_providers_ticket(stack: Stack, family: Family) -> None:
    mp = stack.mini_program(family)
    ticket = (await mp.fake("/_fake/yueshengshi/tickets", {"openid": "yss-user-1"}))["ticket"]
    answer = await mp.call("POST", "/api/v1/auth/yueshengshi", json={"ticket": ticket})
    mp.token = answer["token"]
    started = await mp.start()
    assert started["state"] == "draft"
    with pytest.raises(ApiProblem) as replayed:
        await mp.call("POST", "/api/v1/auth/yueshengshi", json={"ticket": ticket})
    assert (replayed.value.status, replayed.value.code) == (401, "ticket_invalid")
    # Nor at another process of the service (the same Redis): a ticket is good for one login in all.
    runner, other_api = await serve(stack.app[CONFIG])
    try:
        async with stack.session.post(f"{other_api}/api/v1/auth/yueshengshi", json={"ticket": ticket}) as r:
            assert (r.status, (await r.json())["code"]) == (401, "ticket_invalid")
    finally:
        await runner.cleanup()
    forged = (await mp.fake("/_fake/yueshengshi/tickets", {"openid": "yss-user-1", "forge": True}))["ticket"]
    with pytest.raises(ApiProblem) as refused:
        await mp.call("POST", "/api/v1/auth/yueshengshi", json={"ticket": forged})
    assert refused.value.status == 401
