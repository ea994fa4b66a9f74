"""Hospitals and issuers over real HTTP: login, delivery records, review actions, races, isolation."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from backend.dev import DEMO_PASSWORD, seed_demo_staff
from domain.service import Index
from miniprogram_stub.client import ApiProblem, MiniProgram, StaffClient
from miniprogram_stub.people import Family, demo_family
from tests.builders import Walk
from tests.e2e.conftest import HOSPITALS, Stack

pytestmark = pytest.mark.e2e


async def staff(stack: Stack, username: str) -> StaffClient:
    await stack.in_store(seed_demo_staff, stack.service)
    client = StaffClient(stack.session, stack.api, check=stack.check)
    await client.login(username, DEMO_PASSWORD)
    return client


def delivery_body(family: Family, **changes: Any) -> dict[str, Any]:
    body = {
        "inpatient_no": family.inpatient_no,
        "mother": {"name": family.mother.name, "id_number": family.mother.id_number},
        "newborn": {
            "sex": "F",
            "born_at": "2026-11-21T08:30:00+08:00",
            "gestational_weeks": 39,
            "weight_g": 3250,
            "length_cm": 50,
        },
        "birthplace": {"province": "广东省", "city": "广州市", "county": "越秀区"},
        "attendant": "陈助产",
    }
    body.update(changes)
    return body


async def submitted(stack: Stack, family: Family) -> MiniProgram:
    """A family's application, submitted over HTTP, after the hospital entered the delivery over HTTP."""
    his = await staff(stack, "his1")
    await his.call("POST", "/api/v1/deliveries", json=delivery_body(family))
    mp = stack.mini_program(family)
    await mp.whole_journey()
    return mp


async def wait_for_messages(
    stack: Stack, openid: str, count: int, deadline: float = 10.0
) -> list[dict[str, Any]]:
    """The subscribe messages the fake WeChat received for ``openid``, once there are ``count`` (or fail)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        async with stack.session.get(f"{stack.platform}/_fake/messages", params={"touser": openid}) as r:
            messages: list[dict[str, Any]] = (await r.json())["messages"]
        if len(messages) >= count or loop.time() > end:
            assert len(messages) == count, messages
            return messages
        await asyncio.sleep(
            0.05
        )  # polling an external fake with a deadline, not waiting for our own projection


async def test_parallel_guesses_cannot_slip_in_under_the_limit(stack: Stack) -> None:
    await staff(stack, "issuer1")  # seeds the demo accounts

    async def guess(n: int) -> int:
        async with stack.session.post(
            f"{stack.api}/api/v1/auth/staff", json={"username": "issuer2", "password": f"guess-{n}"}
        ) as r:
            return r.status

    answers = await asyncio.gather(*(guess(n) for n in range(30)))
    # Only five passwords were ever checked; then this address waits (tests/e2e/test_limits.py).
    assert answers.count(401) == 5, answers
    assert answers.count(429) == 25, answers


async def test_hospital_records_and_corrects_a_delivery_and_the_parent_sees_it(
    stack: Stack, family: Family
) -> None:
    his = await staff(stack, "his1")
    with pytest.raises(ApiProblem) as invalid:
        await his.call(
            "POST",
            "/api/v1/deliveries",
            json=delivery_body(family, newborn={"sex": "X", "born_at": "yesterday"}),
        )
    assert invalid.value.status == 422
    assert {e["field"] for e in invalid.value.problem["errors"]} == {"newborn.born_at"}
    wrong = delivery_body(family)
    wrong["newborn"]["sex"] = "X"
    with pytest.raises(ApiProblem) as invalid_sex:
        await his.call("POST", "/api/v1/deliveries", json=wrong)
    assert [e["field"] for e in invalid_sex.value.problem["errors"]] == ["newborn.sex"]
    created = await his.call("POST", "/api/v1/deliveries", json=delivery_body(family))
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start()
    await mp.verify_face("mother")
    await mp.call("POST", f"{mp.base}/delivery-record/dispute", json={"reason": "出生体重应为3350克"})
    record = await his.call("GET", f"/api/v1/deliveries/{created['id']}")
    assert record["open_dispute"] == "出生体重应为3350克"
    body = delivery_body(family, reason="产妇提出异议，核对后更正体重")
    body["newborn"]["weight_g"] = 3350
    await his.call("PUT", f"/api/v1/deliveries/{created['id']}", json=body)
    shown = (await mp.delivery_record())["delivery_record"]
    assert (shown["newborn"]["weight_g"], shown["confirmed"], shown["disputed"]) == (3350, False, False)


async def test_issuer_reviews_rejects_sees_the_fix_and_issues(stack: Stack, family: Family) -> None:
    mp = await submitted(stack, family)
    issuer = await staff(stack, "issuer1")
    queue = await issuer.call("GET", f"/api/v1/review/applications/{mp.app_id}")
    assert queue["application"]["state"] == "submitted"
    assert [c for c in queue["comparison"] if c["differs"]] == []
    kinds = {d["kind"] for d in queue["documents"]}
    assert kinds == {"mother_id_front", "mother_id_back", "father_id_front", "father_id_back", "signature"}
    async with stack.session.get(
        stack.api + queue["documents"][0]["url"], headers={"Authorization": f"Bearer {issuer.token}"}
    ) as r:
        assert r.status == 200
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Content-Disposition"].startswith("attachment")
        assert (await r.read())[:3] == b"\xff\xd8\xff"
    await issuer.call(
        "POST",
        f"/api/v1/review/applications/{mp.app_id}/reject",
        json={"reasons": ["新生儿姓名与户口登记不一致"], "fields": ["newborn_name"]},
    )
    status = await mp.status()
    assert status["state"] == "returned"
    assert status["rejection"]["reasons"] == ["新生儿姓名与户口登记不一致"]
    await mp.provide_details(newborn_name="张小草")
    await mp.sign()
    await mp.submit()
    again = await issuer.call("GET", f"/api/v1/review/applications/{mp.app_id}")
    changed = {c["field"]: (c["before"], c["after"]) for c in again["changes_since_rejection"]}
    assert changed["newborn.name"] == ("张小花", "张小草")
    assert "signature" in changed
    issued = await issuer.call(
        "POST",
        f"/api/v1/review/applications/{mp.app_id}/issue",
        json={"certificate_number": "X440100021", "sealer": "赵盖章"},
    )
    assert issued["state"] == "issued"
    status = await mp.status()
    assert (status["state"], status["certificate_number"]) == ("issued", "X440100021")
    # The parent heard of each step in WeChat: the rejection's reason (its code's label: a body without codes
    # is 其他问题, and the issuer's words stay in the status view), then the certificate number.
    messages = await wait_for_messages(stack, family.openid, 2)
    assert [m["data"]["phrase2"]["value"] for m in messages] == ["已退回", "已签发"]
    assert messages[0]["data"]["thing3"]["value"] == "其他问题"
    assert messages[1]["data"]["character_string1"]["value"] == "X440100021"


async def test_issue_refusals(stack: Stack, family: Family) -> None:
    mp = await submitted(stack, family)
    issuer = await staff(stack, "issuer1")
    path = f"/api/v1/review/applications/{mp.app_id}/issue"
    with pytest.raises(ApiProblem) as bad_number:
        await issuer.call("POST", path, json={"certificate_number": "12345", "sealer": "赵盖章"})
    assert bad_number.value.status == 422
    with pytest.raises(ApiProblem) as no_reasons:
        await issuer.call(
            "POST", f"/api/v1/review/applications/{mp.app_id}/reject", json={"reasons": [], "fields": []}
        )
    assert no_reasons.value.status == 422
    await issuer.call("POST", path, json={"certificate_number": "X440100031", "sealer": "赵盖章"})
    for number in ("X440100032", "X440100031"):  # a new number, or its own again: already issued
        with pytest.raises(ApiProblem) as twice:
            await issuer.call("POST", path, json={"certificate_number": number, "sealer": "赵盖章"})
        assert (twice.value.status, twice.value.code) == (409, "invalid_state"), number
    other = await submitted(stack, demo_family(2))
    with pytest.raises(ApiProblem) as reused:
        await issuer.call(
            "POST",
            f"/api/v1/review/applications/{other.app_id}/issue",
            json={"certificate_number": "X440100031", "sealer": "赵盖章"},
        )
    assert (reused.value.status, reused.value.code) == (409, "certificate_number_used")


async def test_another_institutions_staff_see_nothing_and_change_nothing(
    stack: Stack, family: Family
) -> None:
    mp = await submitted(stack, family)
    record_id = (await stack.in_store(stack.service.get_application, _system(), mp.app_id)).delivery_record_id
    other = await staff(stack, "issuer2")  # Shandong's issuer
    position = await stack.in_store(stack.service.recorder.max_notification_id)
    calls = [
        ("GET", f"/api/v1/review/applications/{mp.app_id}", None),
        (
            "POST",
            f"/api/v1/review/applications/{mp.app_id}/reject",
            {"reasons": ["不清晰照片"], "fields": ["newborn_name"]},
        ),
        (
            "POST",
            f"/api/v1/review/applications/{mp.app_id}/issue",
            {"certificate_number": "X440100041", "sealer": "赵"},
        ),
        ("POST", f"/api/v1/review/applications/{mp.app_id}/dispatch", {"tracking_number": "EA123456789CN"}),
        (
            "POST",
            f"/api/v1/review/applications/{mp.app_id}/handover",
            {"recipient_name": "王芳", "relation": "mother", "id_number": family.mother.id_number},
        ),
        ("POST", f"/api/v1/review/applications/{mp.app_id}/loss", {"reason": "邮件丢失"}),
        (
            "POST",
            f"/api/v1/review/applications/{mp.app_id}/reissue",
            {"certificate_number": "X440100042", "sealer": "赵"},
        ),
    ]
    for method, path, body in calls:
        with pytest.raises(ApiProblem) as hidden:
            await other.call(method, path, json=body)
        assert hidden.value.status in (403, 404), path
        if body is not None:  # an invalid body is no hint either: still not found, not a 422
            with pytest.raises(ApiProblem) as still_hidden:
                await other.call(method, path, json={"junk": True})
            assert still_hidden.value.status in (403, 404), path
    assert await stack.in_store(stack.service.recorder.max_notification_id) == position
    await stack.in_store(seed_demo_staff, stack.service)
    sd_hospital = StaffClient(stack.session, stack.api, check=stack.check)
    await stack.in_store(
        stack.service.create_staff_account,
        _system(),
        username="his2",
        role="hospital",
        institution="JNPY01",
        display_name="钱录入",
        password_hash=(await stack.in_store(_hash, DEMO_PASSWORD)),
    )
    await sd_hospital.login("his2", DEMO_PASSWORD)
    position = await stack.in_store(stack.service.recorder.max_notification_id)
    for method, path, body in (
        ("GET", f"/api/v1/deliveries/{record_id}", None),
        ("PUT", f"/api/v1/deliveries/{record_id}", delivery_body(family, reason="试图更正他院记录")),
    ):
        with pytest.raises(ApiProblem) as hidden:
            await sd_hospital.call(method, path, json=body)
        assert hidden.value.status == 404
    parent_token = mp.token
    for path in ("/api/v1/review/applications/" + str(mp.app_id), "/api/v1/deliveries/" + str(record_id)):
        async with stack.session.get(
            stack.api + path, headers={"Authorization": f"Bearer {parent_token}"}
        ) as r:
            assert r.status == 403
    assert await stack.in_store(stack.service.recorder.max_notification_id) == position


async def test_parallel_issue_requests_never_issue_twice_or_reuse_a_number(stack: Stack) -> None:
    """100 rounds: two issuers race on one application, and a third races on the same number for another."""
    issuers = [await staff(stack, "issuer1"), await staff(stack, "issuer1")]
    service = stack.service
    inst = HOSPITALS["GD"]

    def prepare(n: int) -> tuple[str, str]:
        pair = []
        for k in (2 * n, 2 * n + 1):
            family = demo_family(100 + k)
            w = Walk(service, inst=inst, mother_id=family.mother.id_number, father_id=family.father.id_number)  # type: ignore[union-attr]
            w.record_delivery(inpatient_no=family.inpatient_no)
            w.submitted()
            pair.append(str(w.id))
        return pair[0], pair[1]

    rounds = [await stack.in_store(prepare, n) for n in range(100)]
    statuses: Counter[int] = Counter()
    for n, (first, second) in enumerate(rounds):
        a, b = f"X5{n:08d}", f"X6{n:08d}"
        requests = [
            issuers[0].call(
                "POST",
                f"/api/v1/review/applications/{first}/issue",
                json={"certificate_number": a, "sealer": "甲"},
            ),
            issuers[1].call(
                "POST",
                f"/api/v1/review/applications/{first}/issue",
                json={"certificate_number": b, "sealer": "乙"},
            ),
            issuers[1].call(
                "POST",
                f"/api/v1/review/applications/{second}/issue",
                json={"certificate_number": a, "sealer": "丙"},
            ),
        ]
        results = await asyncio.gather(*requests, return_exceptions=True)
        for r in results:
            statuses[
                409 if isinstance(r, ApiProblem) and r.status == 409 else (200 if isinstance(r, dict) else 0)
            ] += 1
            assert not (isinstance(r, ApiProblem) and r.status != 409), r
            assert not isinstance(r, Exception) or isinstance(r, ApiProblem), r
    assert statuses[0] == 0
    used: Counter[str] = Counter()
    for first, second in rounds:
        for app_id in (first, second):
            app = await stack.in_store(service.get_application, _system(), app_id)
            if app.certificate_number:
                used[app.certificate_number] += 1
        app = await stack.in_store(service.get_application, _system(), first)
        assert app.state in ("issued", "dispatched")  # one of the two racing issuers always wins
    assert all(count == 1 for count in used.values()), "a number was used twice"
    for number, _ in used.items():
        index = await stack.in_store(service._find_index, "certificate-number", number)
        assert isinstance(index, Index) and len(index.refs) == 1


def _system() -> Any:
    from domain.values import Actor

    return Actor(id="test", role="system")


def _hash(password: str) -> str:
    from backend.routes.staff import hash_password

    return hash_password(password)


async def test_ems_books_the_pickup_on_issue_and_the_parent_follows_the_parcel(
    stack: Stack, family: Family
) -> None:
    mp = await submitted(stack, family)
    issuer = await staff(stack, "issuer1")
    await issuer.call(
        "POST",
        f"/api/v1/review/applications/{mp.app_id}/issue",
        json={"certificate_number": "X440100051", "sealer": "赵盖章"},
    )
    status = await wait_for_state(mp, "dispatched")
    waybill = status["tracking_number"]
    assert waybill
    async with stack.session.get(f"{stack.platform}/_fake/ems/pickups") as r:
        pickups = (await r.json())["pickups"]
    assert [p["waybill_no"] for p in pickups] == [waybill]
    today = (await issuer.call("GET", f"/api/v1/review/applications/{mp.app_id}"))["history"][-1]["at"][:10]
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while True:  # the EMS process indexes the day's dispatches when it reads its own Dispatched event
        listing = await issuer.call("GET", f"/api/v1/review/pickup-list?date={today}&format=json")
        if listing["rows"] or loop.time() > end:
            break
        await asyncio.sleep(0.05)
    assert [row["certificate_number"] for row in listing["rows"]] == ["X440100051"]
    async with stack.session.get(
        f"{stack.api}/api/v1/review/pickup-list?date={today}&format=pdf",
        headers={"Authorization": f"Bearer {issuer.token}"},
    ) as r:
        assert (r.status, r.content_type) == (200, "application/pdf")
        assert (await r.read()).startswith(b"%PDF")
    delivered = await mp.fake("/_fake/ems/deliver", {"waybill_no": waybill})
    assert delivered["status"] == 200
    assert (await wait_for_state(mp, "delivered"))["state"] == "delivered"
    phrases = [
        m["data"].get("phrase2", m["data"].get("phrase1", {})).get("value")
        for m in await wait_for_messages(stack, family.openid, 3)
    ]
    assert phrases == ["已签发", "已预约揽收", "已签收"]


async def wait_for_state(mp: MiniProgram, state: str, deadline: float = 10.0) -> dict[str, Any]:
    """The status view once it shows ``state`` (processes act asynchronously), or fail after ``deadline``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        status = await mp.status()
        if status["state"] == state or loop.time() > end:
            assert status["state"] == state, status
            return status
        await asyncio.sleep(
            0.05
        )  # the EMS process and the fake act on their own: poll the view with a deadline
