"""Over real HTTP: a mother who names no province follows her delivery record's (decision 0013).

``POST /api/v1/applications`` without ``province`` starts under the deployment's default profile
(Guangdong here); her face check links her Shandong record and the application adopts Shandong's rules
in the same save. Every answer is checked against the served OpenAPI document by the client.
"""

from __future__ import annotations

import pytest

from domain.values import Actor
from miniprogram_stub.client import ApiProblem
from miniprogram_stub.people import Family, Person, make_id_number
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def shandong_family(openid: str) -> Family:
    """A Shandong couple whose baby was born in the Pingyin county hospital."""
    return Family(
        openid=openid,
        mother=Person(
            "刘红", make_id_number("370124", "19940101", "028"), address="山东省济南市平阴县榆山街道1号"
        ),
        father=Person(
            "张强", make_id_number("370124", "19920303", "013"), address="山东省济南市平阴县榆山街道1号"
        ),
        newborn_name="张明",
        inpatient_no="PY2026011",
    )


async def test_a_shandong_mother_who_names_no_province_completes_under_shandong_rules(stack: Stack) -> None:
    family = shandong_family("oShandongNoProvince1")
    await stack.record_delivery(family, province="SD")
    mp = stack.mini_program(family)
    await mp.login()
    started = await mp.start()  # no province in the body: "default from the institution"
    assert started["state"] == "draft"
    assert (await mp.status())["province"] == "GD"  # the deployment's default, until her record says

    verified = await mp.verify_face("mother")
    assert verified["verified"] is True
    status = await mp.status()
    assert status["province"] == "SD"
    assert status["delivery_record"]["institution_name"] == "平阴县人民医院"

    await mp.confirm_delivery()
    await mp.provide_details()
    await mp.upload("father_handheld_id")  # Shandong: his handheld-ID photo stands in for his face check
    await mp.upload_all()
    await mp.sign()
    await mp.choose_ems()
    with pytest.raises(ApiProblem) as unpaid:
        await mp.submit()
    assert unpaid.value.code == "not_ready"
    assert unpaid.value.problem["missing"] == ["postage_paid"]  # Shandong charges the postage up front
    order = await mp.pay_postage()
    assert order["amount_fen"] == 2000
    await mp.submit()
    status = await mp.status()
    assert (status["state"], status["province"]) == ("submitted", "SD")
    assert status["postage"] == {"required": True, "paid": True}

    # The log says what happened, in order, in the face check's save.
    events = await stack.in_store(stack.service.get_history, Actor(id="auditor", role="auditor"), mp.app_id)
    names = [type(e).__name__ for e in events]
    linked = names.index("DeliveryRecordLinked")
    assert names[linked - 2 : linked + 1] == ["FaceVerified", "ProvinceAdopted", "DeliveryRecordLinked"]
    started_event = events[0]
    assert (started_event.province, started_event.province_chosen) == ("GD", False)


async def test_a_mother_who_named_another_province_is_still_refused(stack: Stack) -> None:
    family = shandong_family("oShandongNamedGD1")
    await stack.record_delivery(family, province="SD")
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start(province="GD")
    # Her face check passes and is kept; the record is not linked, and asking for it says why.
    assert (await mp.verify_face("mother"))["delivery_record_linked"] is False
    with pytest.raises(ApiProblem) as refused:
        await mp.delivery_record()
    assert (refused.value.status, refused.value.code) == (409, "wrong_province")
    assert (await mp.status())["province"] == "GD"


async def test_a_single_mother_not_online_in_shandong_is_told_so_after_her_face_check(stack: Stack) -> None:
    family = shandong_family("oShandongSingle1")
    family = Family(
        openid=family.openid,
        mother=family.mother,
        father=None,
        newborn_name="刘明",
        inpatient_no="PY2026012",
    )
    await stack.record_delivery(family, province="SD")
    mp = stack.mini_program(family)
    await mp.login()
    await mp.start()  # a single mother is online in Guangdong, the default
    assert (await mp.verify_face("mother"))["delivery_record_linked"] is False
    with pytest.raises(ApiProblem) as refused:
        await mp.delivery_record()
    assert (refused.value.status, refused.value.code) == (422, "single_mother")
    status = await mp.status()
    assert (status["province"], status["delivery_record"]) == ("GD", None)
