"""出生一件事 over real HTTP (issue 12, item 1; docs/decisions/0044): a Hebei mother sees what her province
offers and what her application already tells, opts in, changes and withdraws; a Guangdong mother is told it is
not offered; each failing condition is a problem with its code and Chinese words. Every answer is checked
against the OpenAPI document."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from miniprogram_stub.client import ApiProblem, MiniProgram
from miniprogram_stub.people import Family, demo_family, hebei_family
from tests.builders import HEBEI_BUNDLE_FIELDS
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

ALL = [
    "birth_certificate",
    "vaccination_certificate",
    "household_registration",
    "resident_medical_insurance",
    "social_security_card",
]
FIELDS = HEBEI_BUNDLE_FIELDS
# What a Hebei application already holds: the bundle must never ask for any of it again.
HELD_WORDS = ("姓名", "身份号码", "号码", "民族", "出生日期", "性别")


async def hebei_details_given(stack: Stack, family: Family) -> MiniProgram:
    """A Hebei mother whose application holds her face check, the delivery record and the details."""
    await stack.record_delivery(family, province="HE")
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start(province="HE")
    await mp.verify_face("mother")
    await mp.confirm_delivery()
    await mp.provide_details()
    return mp


async def _problem(call: Any) -> dict[str, Any]:
    with pytest.raises(ApiProblem) as caught:
        await call
    return {"status": caught.value.status, **caught.value.problem}


async def test_a_hebei_mother_opts_in_changes_and_withdraws_and_is_never_asked_twice(stack: Stack) -> None:
    mp = await hebei_details_given(stack, hebei_family(1))
    offer = await mp.bundle()
    assert offer["offered"] and [s["code"] for s in offer["services"]] == ALL
    states = {c["code"]: c["state"] for c in offer["conditions"]}
    # What her application tells is decided; her statement and her 户口 choice are not made yet.
    assert states == {
        "born_in_province": "met",
        "within_working_days": "met",
        "parents_married": "unknown",
        "parents_local_hukou": "met",
        "same_ethnicity": "met",
        "family_household": "unknown",
    }
    # Nothing asked twice: the fields to fill are only 表2's extras; her details are shown masked as taken.
    asked = {f["code"] for f in offer["fields"]}
    derived = {d["code"]: d["value"] for d in offer["derived"]}
    assert not asked & set(derived)
    assert not [f["label"] for f in offer["fields"] if any(w in f["label"] for w in HELD_WORDS)]
    assert derived["newborn_name"] == "赵**" and derived["mother_id_number"].startswith("1301****")
    assert derived["newborn_ethnicity"] == "汉族"
    relation = next(f for f in offer["fields"] if f["code"] == "relation_to_head")
    assert {c["label"] for c in relation["choices"]} == {"女", "孙女", "外孙女", "曾孙女或外曾孙女", "其他"}

    await mp.opt_in_bundle(ALL, FIELDS)
    status = await mp.status()
    assert [(s["code"], s["state"], s["state_label"]) for s in status["bundle"]["services"]] == [
        (code, "requested", "已申请") for code in ALL
    ]
    assert "13912345678" not in str(status) and "工商银行" not in str(status)  # no personal data in the view
    again = await mp.bundle()
    assert {f["code"]: f["value"] for f in again["fields"] if f["value"]} == FIELDS  # her own values, in full
    assert all(c["state"] == "met" for c in again["conditions"])

    # Changed: only the vaccination certificate and 户口 now; the card's and insurance's fields go.
    household = {
        k: v for k, v in FIELDS.items() if k not in {f for f in FIELDS if f.startswith(("card_", "insur"))}
    }
    await mp.opt_in_bundle(["vaccination_certificate", "household_registration"], household)
    status = await mp.status()
    assert [s["code"] for s in status["bundle"]["services"]] == ALL[:3]

    # The form she signs carries 表2: signing covers it, a change after signing voids it.
    await mp.verify_face("father")
    await mp.upload_all()
    await mp.upload_materials()  # 户口登记's materials of 表1 (decision 0047)
    form = await mp.form()
    assert form["form"]["bundle"]["services"][0]["code"] == "birth_certificate"
    await mp.sign()
    await mp.opt_in_bundle(
        ["vaccination_certificate", "household_registration"], {**household, "settle_with": "mother"}
    )
    assert not (await mp.status())["signature_valid"]

    await mp.withdraw_bundle()
    assert (await mp.status())["bundle"] is None
    problem = await _problem(mp.withdraw_bundle())
    assert problem["code"] == "bundle_not_requested"


async def test_a_field_she_already_gave_is_refused_when_given_again(stack: Stack) -> None:
    mp = await hebei_details_given(stack, hebei_family(2))
    await mp.verify_face("father")
    await mp.call(
        "PUT",
        f"{mp.base}/delivery-method",
        json={
            "method": "ems",
            "recipient": {
                "name": "李娜",
                "phone": "13700001111",
                "address": "河北省石家庄市长安区中山东路88号",
            },
        },
    )
    offer = await mp.bundle()
    assert "contact_phone" not in {f["code"] for f in offer["fields"]}  # the parcel's recipient is her
    assert {d["code"]: d["value"] for d in offer["derived"]}["contact_phone"] == "137****1111"
    problem = await _problem(mp.opt_in_bundle(ALL, FIELDS))
    assert problem["status"] == 422
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [("fields.contact_phone", "already_given")]
    await mp.opt_in_bundle(ALL, {k: v for k, v in FIELDS.items() if k != "contact_phone"})


async def test_a_guangdong_mother_is_told_it_is_not_offered(stack: Stack, family: Family) -> None:
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start()
    await mp.verify_face("mother")
    offer = await mp.bundle()
    assert offer["offered"] is False and "暂未开通" in offer["message"]
    problem = await _problem(mp.opt_in_bundle(ALL, FIELDS))
    assert (problem["status"], problem["code"]) == (409, "bundle_not_offered")
    assert (await mp.status())["bundle"] is None


@pytest.mark.parametrize(
    ("family", "body", "code", "words"),
    [
        (
            replace(
                hebei_family(3),
                father=replace(hebei_family(3).father, address="广东省广州市越秀区中山一路1号"),
            ),  # type: ignore[arg-type]
            {},
            "parents_local_hukou",
            "父母双方须为本省户籍",
        ),
        (
            replace(hebei_family(4), father=replace(hebei_family(4).father, ethnicity="03")),  # type: ignore[arg-type]
            {},
            "same_ethnicity",
            "民族须一致",
        ),
        (hebei_family(5), {"parents_married": False}, "parents_married", "婚姻内生育"),
        (hebei_family(6), {"fields": {"household_type": "collective"}}, "family_household", "家庭户"),
    ],
)
async def test_each_failing_condition_is_a_problem_with_its_code(
    stack: Stack, family: Family, body: dict[str, Any], code: str, words: str
) -> None:
    mp = await hebei_details_given(stack, family)
    married = body.get("parents_married", True)
    problem = await _problem(
        mp.opt_in_bundle(ALL, {**FIELDS, **body.get("fields", {})}, parents_married=married)
    )
    assert (problem["status"], problem["code"]) == (422, code)
    assert words in problem["detail"] and code in problem["reasons"]
    assert (await mp.status())["bundle"] is None


async def test_a_stranger_gets_404_and_a_bad_body_422(stack: Stack) -> None:
    mp = await hebei_details_given(stack, hebei_family(8))
    other = stack.mini_program(demo_family(9))
    await other.login()
    other.app_id = mp.app_id
    assert (await _problem(other.bundle()))["status"] == 404
    problem = await _problem(mp.call("PUT", f"{mp.base}/bundle", json={"services": "all"}))
    assert problem["status"] == 422 and {e["field"] for e in problem["errors"]} == {
        "services",
        "parents_married",
    }
