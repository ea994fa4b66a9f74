"""Every family reaches an outcome (issue 10 items 3 and 4), over real HTTP against the service and the fakes.

Referrals to the counter name the institution's counter — address, telephone, opening hours, set by the
operator with ``birthcert institutions counter`` — and what to bring, in the problem answer and in the status
view: a case kept at the counter at the start, the modification limit, the day's third face mismatch, a
parent whose only document is a travel permit. One Hong Kong or Macao parent with a residence permit goes
through to an issued certificate (Guangdong): the father, and the mother whose delivery record the hospital
entered with her permit's number.
"""

from __future__ import annotations

from typing import Any

import pytest

from backend.components import CONFIG
from backend.dev import DEMO_INSTITUTION
from miniprogram_stub.client import ApiProblem, MiniProgram
from miniprogram_stub.people import Family, Person, demo_family, make_id_number
from tests.e2e.conftest import Stack
from tests.e2e.test_staff import delivery_body, staff
from tests.integration.test_audit_log import run_cli

pytestmark = pytest.mark.e2e

DEMO_COUNTER = {
    "institution_code": DEMO_INSTITUTION.code,
    "institution_name": DEMO_INSTITUTION.name,
    **(DEMO_INSTITUTION.counter.to_dict() if DEMO_INSTITUTION.counter else {}),
}
HK_FATHER_PERMIT = make_id_number("810000", "19890714", "013")
MACAO_MOTHER_PERMIT = make_id_number("820000", "19920302", "026")
TAIWAN_FATHER_PERMIT = make_id_number("830000", "19880808", "015")


def assert_names_the_counter(referral: dict[str, Any], counter: dict[str, Any], text: str) -> None:
    """The referral names this counter, in its fields and in the Chinese ``text`` the parent reads."""
    assert referral["counter"] == counter
    for key in ("institution_name", "address", "phone", "hours"):
        assert counter[key] in text and counter[key] in referral["where"]
    assert referral["bring"][0] == "父母双方有效身份证件原件及复印件"
    assert all(item in text for item in referral["bring"])


async def test_the_operator_sets_the_counter_and_a_case_kept_at_the_counter_is_told_where(
    stack: Stack, family: Family
) -> None:
    data_dir = stack.app[CONFIG].data_dir
    added = run_cli(
        data_dir,
        "institutions",
        "add",
        "--code",
        "GZFY01",
        "--name",
        "广州市妇女儿童医疗中心",
        "--province",
        "GD",
    )
    assert added.returncode == 0, added.stderr
    counter = {
        "address": "广州市越秀区演示路1号 门诊楼二楼 出生医学证明办理窗口",
        "phone": "020-12345678",
        "hours": "周一至周五（法定节假日除外）8:00-12:00，14:30-17:30",
    }
    refused_cli = run_cli(data_dir, "institutions", "counter", "--code", "GZFY01", "--address", "短",
                          "--phone", "x", "--hours", "周一")  # fmt: skip
    assert refused_cli.returncode == 1 and "invalid_address" in refused_cli.stderr
    set_counter = run_cli(
        data_dir, "institutions", "counter", "--code", "GZFY01",
        *("--address", counter["address"], "--phone", counter["phone"], "--hours", counter["hours"]),
    )  # fmt: skip
    assert set_counter.returncode == 0, set_counter.stderr
    listed = run_cli(data_dir, "institutions", "list")
    assert counter["address"] in listed.stdout and counter["phone"] in listed.stdout

    mp = stack.mini_program(family)
    await mp.login()
    with pytest.raises(ApiProblem) as refused:
        await mp.start(father_residency="foreign", institution="GZFY01")
    problem = refused.value.problem
    assert (refused.value.status, problem["code"], problem["reasons"]) == (
        422,
        "foreign_national",
        ["foreign_national"],
    )
    expected = {"institution_code": "GZFY01", "institution_name": "广州市妇女儿童医疗中心", **counter}
    assert_names_the_counter(problem["referral"], expected, problem["detail"])
    assert "外国籍一方的护照原件及复印件" in problem["referral"]["bring"]
    assert (await mp.call("GET", "/api/v1/applications"))["items"] == []  # nothing was recorded

    # The counter moves: the operator says so, and the next referral names the new telephone.
    moved = run_cli(
        data_dir, "institutions", "counter", "--code", "GZFY01",
        *("--address", counter["address"], "--phone", "020-87654321", "--hours", counter["hours"]),
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    with pytest.raises(ApiProblem) as again:
        await mp.start(parents="single_father", institution="GZFY01")
    assert again.value.code == "single_father"
    assert again.value.problem["referral"]["counter"]["phone"] == "020-87654321"

    # Anyone can look a counter up (the mini-program's hospital picker).
    listing = await mp.call("GET", "/api/v1/institutions?province=GD")
    assert listing["items"] == [
        {
            "code": "GZFY01",
            "name": "广州市妇女儿童医疗中心",
            "province": "GD",
            "counter": {**counter, "phone": "020-87654321"},
        }
    ]
    assert (await mp.call("GET", "/api/v1/institutions?province=SD"))["items"] == []


async def test_the_modification_limit_sends_the_family_to_the_counter_named_in_the_status_view(
    stack: Stack, family: Family
) -> None:
    his = await staff(stack, "his1")  # the demo institutions, with their counters
    await his.call("POST", "/api/v1/deliveries", json=delivery_body(family))
    mp = stack.mini_program(family)
    await mp.whole_journey()
    issuer = await staff(stack, "issuer1")
    reject = f"/api/v1/review/applications/{mp.app_id}/reject"
    for submission in range(1, 7):
        await issuer.call(
            "POST", reject, json={"reasons": ["请重新确认领取方式"], "fields": ["delivery_method"]}
        )
        if submission < 6:
            assert (await mp.status())["state"] == "returned"
            await mp.submit()  # the signature stands: the delivery method is not on the form
    status = await mp.status()
    assert (status["state"], status["state_label"]) == ("counter_only", "需到签发机构现场办理")
    reason = status["counter_reason"]
    assert (reason["code"], reason["label"]) == ("modification_limit", "退回修改次数已达上限")
    text = reason["message"] + reason["where"] + "".join(reason["bring"])
    assert_names_the_counter(reason, DEMO_COUNTER, text)
    assert status["next_steps"] == [
        {"code": "visit_counter", "label": "请携带所列材料到广州市妇女儿童医疗中心现场办理", "by": "parent"}
    ]
    # The hospital's record is free for the application the family makes at the counter.
    with pytest.raises(ApiProblem) as closed:
        await mp.submit()
    assert closed.value.code == "application_closed"


async def test_the_days_third_face_mismatch_refers_the_mother_to_the_counter_she_named(
    stack: Stack, family: Family
) -> None:
    await staff(stack, "his1")
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start(institution=DEMO_INSTITUTION.code)  # from the hospital's QR code
    await mp.fake("/_fake/faces", {"cert_no": family.mother.id_number, "verify_ret": 10004})
    for _ in range(2):
        with pytest.raises(ApiProblem) as failed:
            await mp.verify_face("mother")
        assert (failed.value.status, failed.value.code) == (409, "face_mismatch")
        assert "referral" not in failed.value.problem
    await mp.fake("/_fake/faces", {"cert_no": family.mother.id_number, "verify_ret": 10003})
    with pytest.raises(ApiProblem) as typo:  # a name and number that do not match: not her face failing
        await mp.verify_face("mother")
    assert typo.value.code == "id_mismatch"
    await mp.fake("/_fake/faces", {"cert_no": family.mother.id_number, "verify_ret": 10004})
    with pytest.raises(ApiProblem) as third:
        await mp.verify_face("mother")
    problem = third.value.problem
    assert (third.value.status, problem["code"]) == (409, "face_verification_failed")
    assert problem["detail"].startswith("人脸与身份证信息不一致，须本人完成刷脸认证。当日刷脸认证多次未通过")
    assert_names_the_counter(problem["referral"], DEMO_COUNTER, problem["detail"])
    assert "父母双方本人到场，现场核验人证一致" in problem["referral"]["bring"]

    status = await mp.status()
    assert (status["state"], status["counter_reason"]["code"]) == ("counter_only", "face_verification_failed")
    assert status["counter_reason"]["counter"] == DEMO_COUNTER
    with pytest.raises(ApiProblem) as closed:
        await mp.begin_face("mother", family.mother)
    assert closed.value.code == "application_closed"
    # Her delivery record was never linked (she never passed): a new application at the counter can use it.


def hk_family(n: int, *, father: Person | None = None, mother: Person | None = None) -> Family:
    base = demo_family(n)
    return Family(
        openid=base.openid,
        mother=mother or base.mother,
        father=father or Person("陈大文", HK_FATHER_PERMIT, address="香港特别行政区九龙弥敦道1号"),
        newborn_name="陈小花",
        inpatient_no=base.inpatient_no,
        father_openid=base.father_openid,
    )


async def issue(stack: Stack, mp: MiniProgram, number: str) -> dict[str, Any]:
    issuer = await staff(stack, "issuer1")
    return await issuer.call(
        "POST",
        f"/api/v1/review/applications/{mp.app_id}/issue",
        json={"certificate_number": number, "sealer": "赵盖章"},
    )


async def test_a_hong_kong_father_with_a_residence_permit_is_issued(stack: Stack) -> None:
    family = hk_family(31)
    his = await staff(stack, "his1")
    await his.call("POST", "/api/v1/deliveries", json=delivery_body(family))
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start(father_residency="hk_macao", institution="GZFY01")
    await mp.verify_face("mother")
    await mp.confirm_delivery()
    await mp.provide_details()  # his permit's number says he is a Hong Kong resident
    verdict = await mp.verify_face("father")  # WeChat's face check against the permit's 公民身份号码
    assert verdict["verified"] is True
    await mp.upload_all()
    await mp.sign()
    await mp.choose_ems()
    await mp.submit()
    form = (await mp.form())["form"]
    assert (form["father"]["id_type"], form["father"]["id_number"], form["father"]["age"]) == (
        "hk_macao_residence_permit",
        HK_FATHER_PERMIT,
        37,
    )
    assert (await issue(stack, mp, "X440100031"))["state"] == "issued"
    assert (await mp.status())["certificate_number"] == "X440100031"


async def test_a_father_with_only_a_travel_permit_is_referred_and_a_taiwan_father_too(stack: Stack) -> None:
    family = hk_family(32)
    await staff(stack, "his1")
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start(father_residency="hk_macao")
    await mp.verify_face("mother")
    await mp.confirm_delivery()
    # His details are taken with his travel permit (and his birth date, which its number lacks).
    body = mp.details_body()
    body["father"] |= {"id_type": "hk_macao_permit", "id_number": "H12345678"}
    with pytest.raises(ApiProblem) as no_birth_date:
        await mp.call("PUT", f"{mp.base}/details", json=body)
    assert (
        no_birth_date.value.code == "validation_failed" or no_birth_date.value.code == "birth_date_required"
    )
    body["father"]["birth_date"] = "1989-07-14"
    await mp.call("PUT", f"{mp.base}/details", json=body)
    assert (await mp.form())["form"]["father"]["id_type"] == "hk_macao_permit"
    # …but no face check online with it in Guangdong: the counter of the linked hospital, and what to bring.
    with pytest.raises(ApiProblem) as refused:
        await mp.call(
            "POST",
            f"{mp.base}/face-verifications",
            json={"role": "father", "name": "陈大文", "id_number": "H12345678"},
        )
    problem = refused.value.problem
    assert (refused.value.status, problem["code"]) == (422, "face_check_unavailable")
    assert problem["detail"].startswith("持港澳居民来往内地通行证的，暂不能网上刷脸认证")
    assert_names_the_counter(problem["referral"], DEMO_COUNTER, problem["detail"])
    # A Taiwan compatriot stays at the counter in Guangdong (seed 001), whichever document he holds.
    with pytest.raises(ApiProblem) as taiwan:
        await mp.call(
            "POST",
            f"{mp.base}/face-verifications",
            json={"role": "father", "name": "林志明", "id_number": TAIWAN_FATHER_PERMIT},
        )
    assert (taiwan.value.status, taiwan.value.code) == (422, "taiwan_compatriot")
    assert taiwan.value.problem["referral"]["counter"] == DEMO_COUNTER
    assert (await mp.status())[
        "state"
    ] == "draft"  # a refusal records nothing: he may hold a permit after all


async def test_a_macao_mother_entered_with_her_residence_permit_is_issued(stack: Stack) -> None:
    mother = Person("何美玲", MACAO_MOTHER_PERMIT, address="澳门特别行政区新马路1号")
    family = hk_family(33, mother=mother, father=demo_family(33).father)
    his = await staff(stack, "his1")
    await his.call(
        "POST",
        "/api/v1/deliveries",
        json=delivery_body(
            family,
            mother={
                "name": mother.name,
                "id_number": mother.id_number,
                "id_type": "hk_macao_residence_permit",
            },
        ),
    )
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start(mother_residency="hk_macao")
    verdict = await mp.verify_face("mother")
    assert verdict["delivery_record_linked"] is True
    record = (await mp.delivery_record())["delivery_record"]
    assert record["mother_id_number"] == MACAO_MOTHER_PERMIT[:4] + "*" * 10 + MACAO_MOTHER_PERMIT[-4:]
    await mp.confirm_delivery()
    await mp.provide_details()
    await mp.verify_face("father")
    await mp.upload_all()
    await mp.sign()
    await mp.choose_pickup()
    await mp.submit()
    form = (await mp.form())["form"]
    assert (form["mother"]["id_type"], form["mother"]["age"]) == ("hk_macao_residence_permit", 34)
    assert (await issue(stack, mp, "X440100033"))["state"] == "issued"
