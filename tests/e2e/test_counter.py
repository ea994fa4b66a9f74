"""The counter's paths over real HTTP, each to its end: a certificate the institution misprinted or damaged
replaced (and sent or collected again), and on-site pickup by appointment with the mother's letter and the
collector's face check at the counter, through the fake WeChat platform."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from backend.admin import operator
from backend.dev import DEMO_PASSWORD
from backend.routes.staff import hash_password
from domain.delivery import DeliveryFacts, Institution
from domain.pickup import PickupWindow
from domain.values import Actor, BirthData, Birthplace, IdNumber, PersonName
from miniprogram_stub.client import ApiProblem, MiniProgram, StaffClient
from miniprogram_stub.people import Family, Person, demo_family
from tests.builders import OTHER_MAN_ID, SHANGHAI
from tests.e2e.conftest import Stack
from tests.e2e.test_staff import delivery_body, staff, submitted, wait_for_messages, wait_for_state

pytestmark = pytest.mark.e2e

REVIEW = "/api/v1/review/applications"
COLLECTOR = Person("李强", OTHER_MAN_ID)


async def phone(stack: Stack, openid: str) -> MiniProgram:
    """Someone's own phone with the mini-program, logged in (a collector who is not the applicant)."""
    mp = stack.mini_program(demo_family(99))
    await mp.login(openid)
    return mp


async def replace(issuer: StaffClient, app_id: str, number: str, **body: str) -> dict[str, Any]:
    return await issuer.call(
        "POST",
        f"{REVIEW}/{app_id}/replacement",
        json={
            "certificate_number": number,
            "sealer": "赵盖章",
            "cause": "misprinted",
            "old_certificate": "recovered",
            **body,
        },
    )


async def reissue_after_loss(issuer: StaffClient, app_id: str, number: str) -> dict[str, Any]:
    """The certificate lost in the post is recorded lost, then reissued with a new ``number``."""
    await issuer.call("POST", f"{REVIEW}/{app_id}/loss", json={"reason": "邮件遗失"})
    return await issuer.call(
        "POST", f"{REVIEW}/{app_id}/reissue", json={"certificate_number": number, "sealer": "赵盖章"}
    )


async def test_a_misprinted_certificate_delivered_by_ems_is_replaced_sent_again_and_its_number_never_reused(
    stack: Stack, family: Family
) -> None:
    mp = await submitted(stack, family)
    issuer = await staff(stack, "issuer1")
    await issuer.call(
        "POST", f"{REVIEW}/{mp.app_id}/issue", json={"certificate_number": "X440100061", "sealer": "赵盖章"}
    )
    first = await wait_for_state(mp, "dispatched")
    await mp.fake("/_fake/ems/deliver", {"waybill_no": first["tracking_number"]})
    await wait_for_state(mp, "delivered")
    form_before = (await issuer.call("GET", f"{REVIEW}/{mp.app_id}"))["form_sha256"]

    # The family finds the birth time printed wrong: the institution recovers it and prints a new one.
    with pytest.raises(ApiProblem) as same:
        await replace(issuer, str(mp.app_id), "X440100061")
    assert (same.value.status, same.value.code) == (409, "certificate_number_used")
    with pytest.raises(ApiProblem) as no_cause:
        await replace(issuer, str(mp.app_id), "X440100062", cause="lost_in_post")
    assert (no_cause.value.status, no_cause.value.code) == (422, "invalid_cause")
    await replace(issuer, str(mp.app_id), "X440100062", note="出生时间打印错位")

    # Sent again by EMS (粤卫办 五(一)): a new pickup, a new waybill, delivered.
    again = await wait_for_state(mp, "dispatched")
    assert again["tracking_number"] != first["tracking_number"]
    assert again["certificate_number"] == "X440100062"
    assert again["replacement"]["message"] == (
        "因签发机构打印错误，原出生医学证明（编号 X440100061）已收回作废，已重新签发新证（编号 X440100062），登记信息不变"
    )
    assert "certificate_replaced" in [s["code"] for s in again["done_steps"]]
    assert again["voided_certificate_numbers"] == ["X440100061"]
    await mp.fake("/_fake/ems/deliver", {"waybill_no": again["tracking_number"]})
    await wait_for_state(mp, "delivered")

    # The parent was told, without any loss being pretended.
    phrases = [
        m["data"].get("phrase2", m["data"].get("phrase1", {})).get("value")
        for m in await wait_for_messages(stack, family.openid, 6)
    ]
    assert phrases == ["已签发", "已预约揽收", "已签收", "已换发新证", "已预约揽收", "已签收"]

    # The registered data is what it was; the issuer's view and the auditor's log say what happened.
    review = await issuer.call("GET", f"{REVIEW}/{mp.app_id}")
    assert review["form_sha256"] == form_before
    assert review["application"]["voided_numbers"] == ["X440100061"]
    [replaced] = review["application"]["replacements"]
    assert (replaced["cause"], replaced["old_certificate"]) == ("misprinted", "recovered")
    auditor = await staff(stack, "auditor1")
    events = (await auditor.call("GET", f"/api/v1/audit/applications/{mp.app_id}/events"))["events"]
    names = [e["event"] for e in events]
    assert "CertificateReplaced" in names and "LossReported" not in names and "Reissued" not in names
    bundle = await auditor.call("GET", f"/api/v1/audit/applications/{mp.app_id}/proof")
    assert "birthcert:CertificateReplaced" in [e["leaf"]["topic"] for e in bundle["leaves"]]

    # A number is used once, ever: neither the voided one nor the new one can print another certificate.
    other = await submitted(stack, demo_family(2))
    for number in ("X440100061", "X440100062"):
        with pytest.raises(ApiProblem) as used:
            await issuer.call(
                "POST", f"{REVIEW}/{other.app_id}/issue", json={"certificate_number": number, "sealer": "赵"}
            )
        assert (used.value.status, used.value.code) == (409, "certificate_number_used")


async def test_a_pickup_booked_then_collected_by_the_mother_after_her_face_check_at_the_counter(
    stack: Stack, family: Family
) -> None:
    his = await staff(stack, "his1")  # also sets the demo institutions' pickup hours
    await his.call("POST", "/api/v1/deliveries", json=delivery_body(family))
    mp = stack.mini_program(family)
    await mp.whole_journey(ems=False)
    issuer = await staff(stack, "issuer1")
    await issuer.call(
        "POST", f"{REVIEW}/{mp.app_id}/issue", json={"certificate_number": "X440100071", "sealer": "赵盖章"}
    )
    ready = await mp.status()
    assert ready["next_steps"][0]["code"] == "book_pickup"
    booked = (await mp.book_first_pickup_slot())["appointment"]
    status = await mp.status()
    assert status["pickup"]["appointment"]["label"] == booked["label"]
    assert (
        status["next_steps"][0]["code"] == "collect_on_site"
        and booked["label"] in status["next_steps"][0]["label"]
    )

    # The issuer's day: the appointment is on the list.
    day = await issuer.call("GET", f"/api/v1/review/pickup-appointments?date={booked['date']}")
    assert [(a["application_id"], a["start"]) for a in day["appointments"]] == [
        (str(mp.app_id), booked["start"])
    ]
    assert day["hours"] and day["hours"][0]["label"]

    # Not without a face check at the counter.
    handover = {
        "recipient_name": family.mother.name,
        "relation": "mother",
        "id_number": family.mother.id_number,
    }
    with pytest.raises(ApiProblem) as unchecked:
        await issuer.call("POST", f"{REVIEW}/{mp.app_id}/handover", json=handover)
    assert (unchecked.value.status, unchecked.value.code) == (409, "collector_not_verified")
    check = await issuer.call(
        "POST",
        f"{REVIEW}/{mp.app_id}/collector-check",
        json={"name": family.mother.name, "id_number": family.mother.id_number},
    )
    assert check["path"].startswith("/pages/collector/face?code=") and check["qr_svg"].startswith("<svg")
    verdict = await mp.verify_at_counter(check["code"])  # on her own phone
    assert verdict["verified"] is True
    pickup = (await issuer.call("GET", f"{REVIEW}/{mp.app_id}"))["application"]["pickup"]
    assert pickup["collector_check"]["status"] == "verified"
    await issuer.call("POST", f"{REVIEW}/{mp.app_id}/handover", json=handover)
    done = await wait_for_state(mp, "collected")
    assert "collected" in [s["code"] for s in done["done_steps"]]
    history = (await issuer.call("GET", f"{REVIEW}/{mp.app_id}"))["history"]
    assert [h["event"] for h in history if h["event"] != "ELicenseIssued"][-4:] == [
        "CollectorCheckOpened",
        "CollectorFaceCheckRequested",
        "CollectorFaceVerified",
        "CollectedOnSite",
    ]


async def beijing(stack: Stack, family: Family) -> tuple[MiniProgram, StaffClient]:
    """A Beijing institution with pickup hours and its issuer; the family's delivery ten days ago, entered."""
    inst = Institution("BJFY01", "北京妇产医院", "BJ")
    service = stack.service

    def arrange() -> None:
        service.register_institution(operator(), code=inst.code, name=inst.name, province=inst.province)
        service.set_pickup_hours(operator(), inst.code, [PickupWindow.parse("1-7 00:00-23:59 50")])
        service.create_staff_account(
            operator(),
            username="issuerbj",
            role="issuer",
            institution=inst.code,
            display_name="孙签发",
            password_hash=hash_password(DEMO_PASSWORD),
        )
        service.record_delivery(
            Actor(id="his-BJFY01", role="hospital", institution=inst.code),
            institution=inst,
            facts=DeliveryFacts(
                inpatient_no=family.inpatient_no,
                mother_name=PersonName(family.mother.name),
                mother_id_number=IdNumber(family.mother.id_number),
                birth=BirthData(
                    sex="M",
                    born_at=datetime.now(SHANGHAI) - timedelta(days=10),
                    gestational_weeks=39,
                    weight_g=3300,
                    length_cm=50,
                ),
                birthplace=Birthplace("北京市", "北京市", "朝阳区"),
                attendant=PersonName("陈助产"),
            ),
        )

    await stack.in_store(arrange)
    mp = stack.mini_program(family)
    await mp.whole_journey(ems=False)
    issuer = StaffClient(stack.session, stack.api, check=stack.check)
    await issuer.login("issuerbj", DEMO_PASSWORD)
    return mp, issuer


async def test_in_beijing_someone_else_collects_with_the_mothers_signed_letter_and_his_own_face_check(
    stack: Stack, family: Family
) -> None:
    mp, issuer = await beijing(stack, family)
    status = await mp.status()
    assert (status["province"], status["pickup"]["letter_required"]) == ("BJ", True)
    await issuer.call(
        "POST", f"{REVIEW}/{mp.app_id}/issue", json={"certificate_number": "X110100081", "sealer": "钱盖章"}
    )
    await mp.book_first_pickup_slot()
    assert "授权委托书" in (await mp.status())["next_steps"][0]["label"]
    await mp.sign_collector_letter(COLLECTOR)
    status = await mp.status()
    assert status["pickup"]["collector"]["name_masked"] == "李*"
    assert "collector_authorized" in [s["code"] for s in status["done_steps"]]

    # The father comes instead: his face passes, but her letter names someone else (Beijing's rule).
    father = family.father
    assert father is not None
    check = await issuer.call(
        "POST",
        f"{REVIEW}/{mp.app_id}/collector-check",
        json={"name": father.name, "id_number": father.id_number},
    )
    fathers_phone = await phone(stack, "oCollectorFather")
    await fathers_phone.verify_at_counter(check["code"])
    with pytest.raises(ApiProblem) as no_letter:
        await issuer.call(
            "POST",
            f"{REVIEW}/{mp.app_id}/handover",
            json={"recipient_name": father.name, "relation": "father", "id_number": father.id_number},
        )
    assert (no_letter.value.status, no_letter.value.code) == (409, "authorization_required")

    # The one she named: a face that does not match fails (recorded), a second try passes.
    await mp.fake("/_fake/faces", {"cert_no": COLLECTOR.id_number, "verify_ret": 10004})
    check = await issuer.call(
        "POST",
        f"{REVIEW}/{mp.app_id}/collector-check",
        json={"name": COLLECTOR.name, "id_number": COLLECTOR.id_number},
    )
    his_phone = await phone(stack, "oCollectorLiQiang")
    with pytest.raises(ApiProblem) as mismatch:
        await his_phone.verify_at_counter(check["code"])
    assert (mismatch.value.status, mismatch.value.code) == (409, "face_mismatch")
    pickup = (await issuer.call("GET", f"{REVIEW}/{mp.app_id}"))["application"]["pickup"]
    assert (pickup["collector_check"]["status"], pickup["collector_check"]["failures"]) == ("failed", 1)
    assert pickup["collector_letter"]["name"] == COLLECTOR.name
    await mp.fake("/_fake/faces", {"cert_no": COLLECTOR.id_number, "verify_ret": 10000})
    started = await his_phone.call(
        "POST", "/api/v1/collector-checks/face-verifications", json={"code": check["code"]}
    )
    other = await phone(stack, "oSomeoneElse")
    with pytest.raises(ApiProblem) as strangers_phone:  # someone else's phone cannot fetch his verdict
        await other.call(
            "POST",
            f"/api/v1/collector-checks/face-verifications/{started['out_seq_no']}/result",
            json={"code": check["code"]},
        )
    assert (strangers_phone.value.status, strangers_phone.value.code) == (403, "not_your_verification")
    await his_phone.fake(
        "/_fake/face/verify", {"verify_id": started["verify_id"], "openid": his_phone.openid}
    )
    verdict = await his_phone.call(
        "POST",
        f"/api/v1/collector-checks/face-verifications/{started['out_seq_no']}/result",
        json={"code": check["code"]},
    )
    assert verdict["verified"] is True
    await issuer.call(
        "POST",
        f"{REVIEW}/{mp.app_id}/handover",
        json={"recipient_name": COLLECTOR.name, "relation": "authorized", "id_number": COLLECTOR.id_number},
    )
    assert (await wait_for_state(mp, "collected"))["state"] == "collected"
    auditor = await staff(stack, "auditor1")
    events = (await auditor.call("GET", f"/api/v1/audit/applications/{mp.app_id}/events"))["events"]
    collected = [e for e in events if e["event"] == "CollectedOnSite"][-1]
    assert "authorization_sha256" in str(collected) and "face_check_seq_no" in str(collected)
