"""出生一件事's hand-off to the departments and their results, over real HTTP on the fake departments (issue 12,
items 2–3; docs/decisions/0046): after the issue, 疾控, the police, the medical insurance and 人社 each get one
signed message with only their fields; their answers come back signed and show in the parents' view (in Chinese), in
the issuer's (a refusal with its reason) and as one message to the mother per finished service; a crash between
a send and its acknowledgement has the department take nothing twice; a forged answer records nothing."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from backend.admin import operator
from backend.dev import DEMO_PASSWORD
from backend.routes.staff import hash_password
from miniprogram_stub.client import MiniProgram, StaffClient
from miniprogram_stub.people import Family, hebei_family, make_id_number
from miniprogram_stub.platform import start_fake_platform
from tests.builders import HEBEI_BUNDLE_FIELDS
from tests.e2e.conftest import HOSPITALS, Stack, running_stack
from tests.e2e.serving import BIRTHCERT
from tests.e2e.test_birth_bundle_http import ALL, hebei_details_given
from tests.e2e.test_staff import wait_for_messages
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


def police_result(message: dict[str, Any], **more: str) -> dict[str, str]:
    """What the police hand back for the newborn of ``message`` (their hand-off): her registered name and a
    citizen ID number of her birth date and sex (a girl: an even 17th digit), the 户口 page to collect."""
    born = str(message["fields"]["newborn_born_on"]).replace("-", "")
    return {
        "registered_name": "赵小雪",
        "citizen_id_number": make_id_number("130102", born, "028"),
        "hukou_page": "请到青园街派出所领取户口页",
        **more,
    }


VOUCHER = {"voucher": "医保电子凭证已激活"}
VACCINATION = {"vaccination_certificate_number": "13010220261121003"}
CARD = {"pickup_place": "石家庄市社保卡服务中心（中山路网点）"}
DEPARTMENTS = ("disease_control", "police", "medical_insurance", "social_security")
OTHERS = ("vaccination_certificate", "resident_medical_insurance", "social_security_card")  # besides 户口
# What each department gets of 表2 (PIPL minimum; domain/data/bundle_departments.json), and nothing else.
NEWBORN = {"newborn_name", "newborn_sex", "newborn_born_on"}
FIELDS_OF = {
    "disease_control": {"certificate_number", *NEWBORN, "newborn_birthplace", "mother_name", "contact_phone"},
    "police": {
        "certificate_number",
        "applicant_id_type",
        "applicant_id_number",
        "applicant_name",
        "contact_phone",
        "applicant_relation",
        "applicant_hukou_place",
        *NEWBORN,
        "newborn_birthplace",
        "newborn_ethnicity",
        "registration_category",
        "settle_with",
        "household_type",
        "relation_to_head",
        "hukou_address",
        "native_place",
        "father_id_number",
        "father_name",
        "mother_id_number",
        "mother_name",
    },
    "medical_insurance": {
        "certificate_number",
        "applicant_name",
        "applicant_id_number",
        "contact_phone",
        *NEWBORN,
        "insurance_area",
        "insured_identity",
        "insurance_district_name",
        "insurance_district_code",
    },
    "social_security": {
        "certificate_number",
        "applicant_name",
        "applicant_id_number",
        "contact_phone",
        *NEWBORN,
        "card_bank",
        "card_by_agent",
        "card_pickup_city",
        "card_pickup_place",
    },
}


async def hebei_issuer(stack: Stack) -> StaffClient:
    """An issuer of the Hebei hospital (the demo accounts have none)."""
    inst = HOSPITALS["HE"]

    def arrange() -> None:
        service = stack.service
        if inst.code not in {i.code for i in service.list_institutions()}:
            service.register_institution(operator(), code=inst.code, name=inst.name, province="HE")
        if service.get_staff_account("issuer_he") is None:
            service.create_staff_account(
                operator(),
                username="issuer_he",
                role="issuer",
                institution=inst.code,
                display_name="王签发",
                password_hash=hash_password(DEMO_PASSWORD),
            )

    await stack.in_store(arrange)
    client = StaffClient(stack.session, stack.api, check=stack.check)
    await client.login("issuer_he", DEMO_PASSWORD)
    return client


async def issued_with_bundle(stack: Stack, family: Family, number: str) -> tuple[MiniProgram, StaffClient]:
    """A Hebei mother opts in to all five services, submits, and the Hebei issuer issues."""
    mp = await hebei_details_given(stack, family)
    await mp.verify_face("father")
    await mp.opt_in_bundle(ALL, HEBEI_BUNDLE_FIELDS)
    await mp.upload_all()
    await mp.upload_materials()
    await mp.sign()
    await mp.choose_pickup()
    await mp.submit()
    issuer = await hebei_issuer(stack)
    await issuer.call(
        "POST",
        f"/api/v1/review/applications/{mp.app_id}/issue",
        json={"certificate_number": number, "sealer": "赵盖章"},
    )
    return mp, issuer


async def fake(stack: Stack, method: str, path: str, body: Any = None) -> Any:
    async with stack.session.request(method, f"{stack.platform}/_fake/departments/{path}", json=body) as r:
        return await r.json()


async def handoffs(stack: Stack, department: str) -> list[dict[str, Any]]:
    return list((await fake(stack, "GET", f"{department}/handoffs"))["handoffs"])


async def taken(stack: Stack, department: str, count: int = 1) -> list[dict[str, Any]]:
    """The department's messages once it has ``count`` (polling an external fake with a deadline)."""

    async def ready() -> list[dict[str, Any]] | None:
        items = await handoffs(stack, department)
        return items if len(items) >= count else None

    found: list[dict[str, Any]] = await eventually(ready, f"{department} took {count} hand-off(s)")
    return found


async def services(mp: MiniProgram) -> dict[str, dict[str, Any]]:
    return {s["code"]: s for s in (await mp.status())["bundle"]["services"]}


async def service_state(mp: MiniProgram, code: str, state: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        part = (await services(mp))[code]
        return part if part["state"] == state else None

    found: dict[str, Any] = await eventually(reached, f"{code} {state} in her status view")
    return found


async def answer(stack: Stack, department: str, message_id: str, **body: Any) -> dict[str, Any]:
    reply: dict[str, Any] = await fake(
        stack, "POST", f"{department}/answer", {"message_id": message_id, **body}
    )
    return reply


async def test_a_hebei_journey_reaches_all_five_done(stack: Stack) -> None:
    family = hebei_family(21)
    mp, _ = await issued_with_bundle(stack, family, "R130100021")

    taken_by = {d: (await taken(stack, d))[0] for d in DEPARTMENTS}
    assert {d: h["receipts"] for d, h in taken_by.items()} == dict.fromkeys(DEPARTMENTS, 1)
    message = {d: h["message"] for d, h in taken_by.items()}
    # Only what each department needs (PIPL minimum), key for key.
    assert {d: set(m["fields"]) for d, m in message.items()} == FIELDS_OF
    pm = message["police"]
    assert pm["message_id"] == f"{mp.app_id}-v{pm['message_id'].split('-v')[1].split('-')[0]}-police"
    assert {m["service"] for m in message.values()} == set(ALL) - {"birth_certificate"}
    assert all(m["fields"]["certificate_number"] == "R130100021" for m in message.values())
    assert pm["fields"]["settle_with"] == "father" and pm["fields"]["relation_to_head"] == "30"
    assert pm["fields"]["mother_id_number"] == family.mother.id_number
    vm, cm = message["disease_control"]["fields"], message["social_security"]["fields"]
    assert (vm["mother_name"], vm["contact_phone"]) == (family.mother.name, "13912345678")
    assert (cm["card_bank"], cm["card_by_agent"], cm["card_pickup_city"]) == ("102", "yes", "130100")

    part = await service_state(mp, "household_registration", "sent")
    assert part["state_label"] == "已推送至办理部门"
    assert (await services(mp))["birth_certificate"]["state_label"] == "已办结"
    for code in ("vaccination_certificate", "social_security_card"):
        assert (await service_state(mp, code, "sent"))["department"] in {"疾控部门", "人力资源社会保障部门"}

    for department, body in (
        ("police", {"state": "accepted"}),
        ("police", {"state": "done", "result": police_result(pm)}),
        ("medical_insurance", {"state": "done", "result": VOUCHER}),
        ("disease_control", {"state": "accepted"}),
        ("disease_control", {"state": "done", "result": VACCINATION}),
        ("social_security", {"state": "done", "result": CARD}),
    ):
        reply = await answer(stack, department, message[department]["message_id"], **body)
        assert reply["status"] == 200 and reply["body"]["recorded"] is True, reply
    done = await service_state(mp, "household_registration", "done")
    assert done["state_label"] == "已办结"
    # The registered name and citizen ID number: masked in her view, never in full.
    assert done["result"]["registered_name"] == "赵**"
    assert done["result"]["citizen_id_number"].startswith("1301****")
    # …while the event keeps them in full (the store encrypts it at rest) for the e-licence's record.
    kept = await stack.in_store(lambda: stack.service.repository.get(UUID(mp.app_id)).bundle_services)
    assert kept["household_registration"]["result"] == police_result(pm)
    assert (await service_state(mp, "resident_medical_insurance", "done"))["result"] == VOUCHER
    vaccination = await service_state(mp, "vaccination_certificate", "done")
    assert vaccination["state_label"] == "已办结"
    # The number names the child (as the certificate's does): masked in her view.
    assert vaccination["result"]["vaccination_certificate_number"] == "1301" + "*" * 9 + "1003"
    assert (await service_state(mp, "social_security_card", "done"))["result"] == CARD
    status = await mp.status()
    assert {s["code"]: s["state_label"] for s in status["bundle"]["services"]} == dict.fromkeys(ALL, "已办结")
    for secret in (
        police_result(pm)["citizen_id_number"],
        "赵小雪",
        VACCINATION["vaccination_certificate_number"],
    ):
        assert secret not in str(status)

    # One subscribe message per finished service (plus the issue's), exactly once.
    messages = await wait_for_messages(stack, family.openid, 5)
    texts = [str(m) for m in messages]
    for name in ("预防接种证办理", "户口登记", "城乡居民参保登记", "社会保障卡申领"):
        assert sum(f"{name}已办结" in t for t in texts) == 1, name

    # The same answer posted again (a department's retry) records nothing.
    again = await answer(
        stack, "police", pm["message_id"], state="done", result=police_result(pm), result_id="police-r2-x"
    )
    assert again["status"] == 409 or again["body"].get("recorded") is False


async def test_a_card_result_names_its_pickup_place_or_its_parcel_not_both(stack: Stack) -> None:
    mp, _ = await issued_with_bundle(stack, hebei_family(25), "R130100025")
    card = (await taken(stack, "social_security"))[0]["message"]["message_id"]
    vaccination = (await taken(stack, "disease_control"))[0]["message"]["message_id"]
    for department, message_id, result in (
        ("social_security", card, {**CARD, "parcel_number": "1100000000001"}),
        ("social_security", card, None),
        ("disease_control", vaccination, None),
        ("disease_control", vaccination, {"pickup_place": "某地"}),  # another department's result field
    ):
        refused = await answer(stack, department, message_id, state="done", result=result)
        assert refused["status"] == 422 and refused["body"]["code"] == "invalid", refused
    by_parcel = {"parcel_number": "1100000000001"}
    assert (await answer(stack, "social_security", card, state="done", result=by_parcel))["status"] == 200
    assert (await service_state(mp, "social_security_card", "done"))["result"] == by_parcel
    assert (await services(mp))["vaccination_certificate"]["state"] == "sent"


async def test_a_refusal_is_shown_to_the_issuer_with_its_reason_and_a_failing_department_is_retried(
    stack: Stack,
) -> None:
    await fake(stack, "POST", "police/script", {"fail": 2})  # the police's system is busy twice
    mp, issuer = await issued_with_bundle(stack, hebei_family(22), "R130100022")
    police = (await taken(stack, "police"))[0]
    assert police["receipts"] == 1  # the two 503s were retried with backoff; taken once
    insurance = (await taken(stack, "medical_insurance"))[0]
    refused = await answer(
        stack,
        "medical_insurance",
        insurance["message"]["message_id"],
        state="refused",
        reason="参保地区与户籍地不符",
    )
    assert refused["body"]["recorded"] is True
    part = await service_state(mp, "resident_medical_insurance", "refused")
    assert (part["state_label"], part["reason"]) == ("部门未予办理", "参保地区与户籍地不符")
    review = await issuer.call("GET", f"/api/v1/review/applications/{mp.app_id}")
    shown = {s["code"]: s for s in review["application"]["bundle"]["services"]}
    assert shown["resident_medical_insurance"]["reason"] == "参保地区与户籍地不符"
    assert shown["household_registration"]["state"] == "sent"
    # She is told once, and sent to the department with its reason in her view.
    told = await wait_for_messages(stack, mp.family.openid, 2)  # the and the refusal's
    refusals = [m for m in told if "未予办理" in str(m)]
    assert len(refusals) == 1 and "城乡居民参保登记未予办理" in str(refusals[0])
    assert "请在小程序查看原因并联系办理部门" in str(refusals[0])
    assert "参保地区" not in str(told)  # the reason stays in her view, not in a message
    # The department reconsiders (the family corrected the area at its counter): done after all.
    await answer(stack, "medical_insurance", insurance["message"]["message_id"], state="done", result=VOUCHER)
    await service_state(mp, "resident_medical_insurance", "done")


async def readyz(stack: Stack) -> dict[str, Any]:
    async with stack.session.get(f"{stack.api}/readyz") as r:
        body: dict[str, Any] = await r.json()
        return body


async def test_a_department_that_is_down_holds_back_no_other_and_readyz_counts_its_waiting_message(
    stack: Stack,
) -> None:
    await fake(stack, "POST", "police/script", {"fail": 1000})  # the police's system is down
    mp, issuer = await issued_with_bundle(stack, hebei_family(26), "R130100026")
    for code in OTHERS:  # the other three departments are not held back
        await service_state(mp, code, "sent")

    async def retrying() -> dict[str, Any] | None:
        body = await readyz(stack)
        return body if body["bundle_handoffs"]["retrying"] == 1 else None

    body = await eventually(retrying, "/readyz counting the police's hand-off as retrying")
    assert body["status"] == "ready"  # a department being down is the department's trouble, retried
    assert body["bundle_handoffs"]["pending"] == 1 and body["bundle_handoffs"]["failing"] == 0
    async with stack.session.get(f"{stack.api}/metrics") as r:
        assert 'birthcert_bundle_handoffs{state="retrying"} 1.0' in await r.text()
    assert (await services(mp))["household_registration"]["state"] == "requested"
    review = await issuer.call("GET", f"/api/v1/review/applications/{mp.app_id}")
    shown = {s["code"]: s for s in review["application"]["bundle"]["services"]}
    delivery = shown["household_registration"]["delivery"]  # the issuer sees the retry
    assert delivery["state"] == "pending" and delivery["error"] == "department_unavailable", delivery
    assert delivery["attempts"] >= 1 and delivery["next_attempt_at"] and "将自动重试" in delivery["label"]
    assert shown["vaccination_certificate"]["delivery"]["label"] == "已送达部门"
    turned_away = (await fake(stack, "GET", "police/handoffs"))["turned_away"]
    assert 1 <= turned_away <= 5  # retried with a growing wait (1 s, 2 s, 4 s …), not hammered
    await fake(stack, "POST", "police/script", {"up": True})
    await service_state(mp, "household_registration", "sent")
    assert [h["receipts"] for h in await handoffs(stack, "police")] == [1]
    assert (await readyz(stack))["bundle_handoffs"] == {
        "pending": 0,
        "retrying": 0,
        "failing": 0,
        "rejected": 0,
    }


async def test_a_hand_off_refused_outright_is_shown_to_the_issuer_and_sent_again_by_the_operator(
    stack: Stack, tmp_path: Path
) -> None:
    await fake(stack, "POST", "police/script", {"refuse": 1})  # the police's interface refuses the message
    mp, issuer = await issued_with_bundle(stack, hebei_family(27), "R130100027")

    async def rejected() -> dict[str, Any] | None:
        review = await issuer.call("GET", f"/api/v1/review/applications/{mp.app_id}")
        shown = {s["code"]: s for s in review["application"]["bundle"]["services"]}
        delivery: dict[str, Any] | None = shown["household_registration"]["delivery"]
        return delivery if delivery and delivery["state"] == "rejected" else None

    delivery = await eventually(rejected, "the issuer seeing the police's system refuse the hand-off")
    assert (
        delivery["label"]
        == "部门系统拒收推送：办理部门拒收了推送（HTTP 422，schema_mismatch）（已记录，待运维处理）"
    )
    assert (await readyz(stack))["bundle_handoffs"]["rejected"] == 1
    assert await handoffs(stack, "police") == []  # never taken, and never tried again by itself
    environ = {**os.environ, "BIRTHCERT_DATA_DIR": str(tmp_path / "var")}
    listed = subprocess.run(
        [*BIRTHCERT, "bundle", "handoffs", "--state", "rejected"], env=environ, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["department"], r["application_id"]) for r in rows] == [("police", mp.app_id)]
    # The operator mends the cause, then sends it again: the department takes it once.
    resent = subprocess.run(
        [*BIRTHCERT, "bundle", "resend", "--rejected", "--department", "police"],
        env=environ,
        capture_output=True,
        text=True,
    )
    assert resent.returncode == 0 and resent.stdout.startswith("1 hand-off(s) to be sent again"), resent
    await service_state(mp, "household_registration", "sent")
    assert [h["receipts"] for h in await handoffs(stack, "police")] == [1]
    assert (await readyz(stack))["bundle_handoffs"]["rejected"] == 0


async def test_a_forged_answer_is_refused_and_records_nothing(stack: Stack) -> None:
    mp, _ = await issued_with_bundle(stack, hebei_family(23), "R130100023")
    police = (await taken(stack, "police"))[0]
    await service_state(mp, "household_registration", "sent")
    events = await stack.in_store(lambda: len(list(stack.service.events.get(UUID(mp.app_id)))))
    forged = await answer(
        stack,
        "police",
        police["message"]["message_id"],
        state="done",
        result=police_result(police["message"]),
        forge=True,
    )
    assert forged["status"] == 401
    assert forged["body"]["code"] == "invalid_signature" and forged["body"]["status"] == 401
    async with stack.session.post(
        f"{stack.api}/api/v1/departments/police/results", data=b'{"message_id":"x"}'
    ) as r:
        assert r.status == 401 and r.content_type == "application/problem+json"
    assert await stack.in_store(lambda: len(list(stack.service.events.get(UUID(mp.app_id))))) == events
    assert (await services(mp))["household_registration"]["state"] == "sent"


async def test_a_crash_between_send_and_acknowledgement_has_the_department_take_nothing_twice(
    tmp_path: Path, redis_url: str
) -> None:
    family = hebei_family(24)
    fake_runner, platform = await start_fake_platform("127.0.0.1", 0)
    try:
        async with running_stack(tmp_path / "var", redis_url, platform=platform) as first:
            # The police take the message, then their answer hangs: the service goes down (a crash, as far as
            # the hand-off is concerned) before it hears back. The medical insurance's went through.
            await fake(first, "POST", "police/script", {"stall": 1})
            mp, _ = await issued_with_bundle(first, family, "R130100024")
            await taken(first, "police")
            for code in OTHERS:
                await service_state(mp, code, "sent")
            assert (await services(mp))["household_registration"]["state"] == "requested"
        async with running_stack(tmp_path / "var", redis_url, platform=platform) as second:
            await fake(second, "POST", "police/script", {"release": True})
            mp = second.mini_program(family)
            await mp.login()
            mp.app_id = (await mp.call("GET", "/api/v1/applications"))["items"][0]["id"]
            await service_state(mp, "household_registration", "sent")
            # Asked before sending again: each department took its one message once.
            for department in DEPARTMENTS:
                assert [h["receipts"] for h in await handoffs(second, department)] == [1], department
            assert (await fake(second, "GET", "police/handoffs"))["lookups"] >= 1
            sent = await second.in_store(
                lambda: [
                    e.service
                    for e in second.service.events.get(UUID(mp.app_id))
                    if type(e).__name__ == "BundleServiceUpdated"
                ]
            )
            assert sorted(sent) == sorted(["household_registration", *OTHERS])
    finally:
        await fake_runner.cleanup()


async def test_a_certificate_declared_void_hands_nothing_more_on_and_takes_no_result(stack: Stack) -> None:
    """Revoked after issue: the hand-off still waiting (the police's system was down) is cancelled, not sent
    once the police are back; the materials are no longer served; a department's later answer is refused."""
    await fake(stack, "POST", "police/script", {"fail": 1000})
    mp, issuer = await issued_with_bundle(stack, hebei_family(27), "R130100027")
    await service_state(mp, "vaccination_certificate", "sent")
    vaccination = (await taken(stack, "disease_control"))[0]["message"]["message_id"]
    await issuer.call(
        "POST",
        f"/api/v1/review/applications/{mp.app_id}/revoke",
        json={"reason": "issued_in_error", "note": "经复核，该证件不应签发"},
    )
    await fake(stack, "POST", "police/script", {"up": True})

    async def cancelled() -> dict[str, Any] | None:
        review = await issuer.call("GET", f"/api/v1/review/applications/{mp.app_id}")
        shown = {s["code"]: s for s in review["application"]["bundle"]["services"]}
        delivery = shown["household_registration"]["delivery"]
        return delivery if delivery["state"] == "cancelled" else None

    delivery = await eventually(cancelled, "the police's hand-off cancelled after the revocation")
    assert delivery["label"] == "出生医学证明已作废，未推送" and delivery["error"] == "certificate_revoked"
    assert await handoffs(stack, "police") == []  # the family's data did not leave for a void certificate
    late = await answer(stack, "disease_control", vaccination, state="done", result=VACCINATION)
    assert late["status"] == 409 and late["body"]["code"] == "certificate_revoked", late
    assert (await services(mp))["vaccination_certificate"]["state"] == "sent"


async def test_the_issuer_watches_each_department_against_the_bundles_time_limit(stack: Stack) -> None:
    """Decision 0049 over HTTP: the queue item carries the bundle's deadline and the services still open; the
    application's page gives each department's clock; answered, the clock reads 按时办结 and the deadline goes."""
    mp, issuer = await issued_with_bundle(stack, hebei_family(27), "R130100027")

    async def queued(state: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        queue = await issuer.call("GET", "/api/v1/review/queue")
        found = [i for i in queue["items"] if i["application_id"] == mp.app_id and i["queue_state"] == state]
        return (found[0], queue) if found else None

    item, queue = await eventually(lambda: queued("awaiting_handover"), "the queue shows it issued")
    assert item["bundle_overdue"] is False
    assert item["bundle_open"] == ["预防接种证办理", "户口登记", "城乡居民参保登记", "社会保障卡申领"]
    assert queue["counts"]["bundle_overdue"] == 0
    review = await issuer.call("GET", f"/api/v1/review/applications/{mp.app_id}")
    clocks = {s["code"]: s["clock"] for s in review["application"]["bundle"]["services"]}
    assert clocks.pop("birth_certificate") is None  # the certificate's limit is the review's own
    assert {c["state"] for c in clocks.values()} == {"open"} and {c["label"] for c in clocks.values()} == {
        "办理中"
    }
    due = {datetime.fromisoformat(c["due_at"]) for c in clocks.values()}
    assert due == {datetime.fromisoformat(item["bundle_due_at"])}
    assert {c["working_days"] for c in clocks.values()} == {6}

    messages = {d: (await taken(stack, d))[0]["message"] for d in DEPARTMENTS}
    results = {"disease_control": VACCINATION, "medical_insurance": VOUCHER, "social_security": CARD}
    for department, message in messages.items():
        result = police_result(message) if department == "police" else results[department]
        reply = await answer(stack, department, message["message_id"], state="done", result=result)
        assert reply["status"] == 200, reply
    await service_state(mp, "household_registration", "done")

    async def all_answered() -> dict[str, Any] | None:
        found = await queued("awaiting_handover")
        return found[0] if found and found[0]["bundle_due_at"] is None else None

    item = await eventually(all_answered, "the queue's bundle deadline goes once every department answered")
    assert item["bundle_open"] == []
    review = await issuer.call("GET", f"/api/v1/review/applications/{mp.app_id}")
    labels = {s["code"]: (s["clock"] or {}).get("label") for s in review["application"]["bundle"]["services"]}
    assert labels == {
        "birth_certificate": None,
        **dict.fromkeys((*OTHERS, "household_registration"), "按时办结"),
    }


async def test_a_look_up_signature_asks_about_its_own_message_only(stack: Stack) -> None:
    """The look-up before sending again is signed over ``"GET " + path``: replayed within its five minutes, the
    same signature cannot ask the department about another message."""
    from yarl import URL

    from backend.departments import SIGNATURE_HEADER, signature, signed_request
    from backend.routes.departments import DEPARTMENT_KEYS

    mp, _ = await issued_with_bundle(stack, hebei_family(28), "R130100028")
    taken_id = (await taken(stack, "police"))[0]["message"]["message_id"]
    key = stack.app[DEPARTMENT_KEYS]["police"]
    url = f"{key.base_url}/v1/handoffs/{taken_id}"
    header = signature(signed_request("GET", URL(url).raw_path), key.secret, key.key_id)
    async with stack.session.get(url, headers={SIGNATURE_HEADER: header}) as r:
        assert r.status == 200  # it has that message
    other = url.replace(taken_id, f"{mp.app_id}-v99-police")
    async with stack.session.get(other, headers={SIGNATURE_HEADER: header}) as r:
        assert r.status == 401  # the same signature, another message: refused
