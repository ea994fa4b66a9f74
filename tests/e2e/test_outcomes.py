"""Issue 10, what each family is told at the end of a path, over real HTTP against the service and the fakes.

- The hospital answers a dispute that the record stands: the mother gets a WeChat subscribe message (待确认, the
  hospital's reason) and her status view says the answer in Chinese.
- A record she reported missing: while she waits her status view names the institution asked; when the hospital
  enters it she gets a message (已录入) and the step tells her to look at it, until she does.
- The father of an application sent to the counter is told which counter (institution, address, telephone,
  hours) and what to bring, as the mother is, but not why.
- On-site pickup: the slot page names the counter; the status view says who may collect and what to bring, before
  and after the mother signs a 授权委托书 (Beijing, where the letter is required).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from backend.dev import DEMO_INSTITUTION
from miniprogram_stub.client import ApiProblem
from miniprogram_stub.people import Family, demo_family
from tests.builders import OTHER_MAN_ID
from tests.e2e.conftest import Stack
from tests.e2e.test_counter import COLLECTOR, REVIEW, beijing
from tests.e2e.test_father_invitation import on_his_phone
from tests.e2e.test_hospital_worklist import SHANGHAI, delivery, disputed
from tests.e2e.test_referrals import DEMO_COUNTER
from tests.e2e.test_staff import staff, wait_for_messages

pytestmark = pytest.mark.e2e


def values(message: dict[str, Any]) -> dict[str, str]:
    """A subscribe message's data as key → value."""
    return {key: entry["value"] for key, entry in message["data"].items()}


async def test_an_upheld_record_is_told_to_the_mother_by_message_and_in_her_status(
    stack: Stack, family: Family
) -> None:
    his, mother, record_id = await disputed(stack, family, "出生体重应为3350克，不是3250克")
    answer = "经核对产房称重记录，出生体重为3250克，原记录无误"
    await his.call("POST", f"/api/v1/deliveries/{record_id}/uphold", json={"reason": answer})

    [message] = await wait_for_messages(stack, family.openid, 1)
    told = values(message)
    assert (told["thing1"], told["phrase2"], told["thing4"]) == (
        "出生医学证明申领",
        "待确认",
        "医院已答复异议，请核对后确认",
    )
    assert told["thing3"] == answer[:19] + "…"  # a thing holds 20 characters
    assert message["template_id"] == "tmpl-corrected"
    assert message["page"].endswith(f"?id={mother.app_id}")

    status = await mother.status()
    dispute = status["delivery_dispute"]
    assert (dispute["status"], dispute["label"], dispute["answer"]) == (
        "upheld",
        "医院答复原记录无误",
        answer,
    )
    assert dispute["answered_at"] is not None
    step = next(s for s in status["next_steps"] if s["code"] == "hospital_upheld_record")
    assert step["label"] == (
        f"医院核实后答复分娩信息无误：{answer}。请核对后确认；如仍有异议，可再次提出或到助产机构咨询"
    )
    assert step["by"] == "parent"


async def test_a_correction_that_answers_her_dispute_is_told_too(stack: Stack) -> None:
    family = demo_family(2)
    his, mother, record_id = await disputed(stack, family, "出生体重应为3350克")
    corrected = delivery(family, reason="按产妇异议更正出生体重")
    corrected["newborn"]["weight_g"] = 3350
    await his.call("PUT", f"/api/v1/deliveries/{record_id}", json=corrected)
    [message] = await wait_for_messages(stack, family.openid, 1)
    assert values(message)["phrase2"] == "待确认"
    assert values(message)["thing3"] == "按产妇异议更正出生体重"
    assert (await mother.status())["delivery_dispute"]["status"] == "corrected"


async def test_a_missing_record_is_awaited_then_entered_and_she_is_told(stack: Stack) -> None:
    family = demo_family(5)
    his = await staff(stack, "his1")
    mother = stack.mini_program(family)
    await mother.login()
    await mother.start()
    await mother.verify_face("mother")
    born_on = (datetime.now(SHANGHAI) - timedelta(days=1)).date()
    await mother.call(
        "POST",
        f"{mother.base}/delivery-record/missing",
        json={"institution": "GZFY01", "born_on": str(born_on)},
    )
    waiting = await mother.status()
    assert waiting["delivery_record_requested"]["institution_name"] == "广州市妇女儿童医疗中心"
    assert waiting["delivery_record_entered"] is None
    assert [s["label"] for s in waiting["next_steps"] if s["by"] == "hospital"] == [
        "已提醒广州市妇女儿童医疗中心录入分娩信息，录入后请查看并确认"
    ]

    await his.call("POST", "/api/v1/deliveries", json=delivery(family, hours_ago=24))
    [message] = await wait_for_messages(stack, family.openid, 1)
    told = values(message)
    assert (told["phrase2"], told["thing3"], told["thing4"]) == (
        "已录入",
        "广州市妇女儿童医疗中心已录入分娩信息",
        "请查看并确认分娩信息",
    )
    assert message["template_id"] == "tmpl-corrected"

    arrived = await mother.status()
    assert arrived["delivery_record_requested"] is None
    assert arrived["delivery_record_entered"]["institution_name"] == "广州市妇女儿童医疗中心"
    assert datetime.fromisoformat(arrived["delivery_record_entered"]["entered_at"]) <= datetime.now(SHANGHAI)
    look = next(s for s in arrived["next_steps"] if s["code"] == "delivery_record_linked")
    assert (look["label"], look["by"]) == ("广州市妇女儿童医疗中心已录入您的分娩信息，请查看并确认", "parent")

    # She looks at it (which links it): nothing more to say about its arrival.
    assert (await mother.delivery_record())["delivery_record"]["institution_name"] == "广州市妇女儿童医疗中心"
    linked = await mother.status()
    assert linked["delivery_record_entered"] is None
    assert "delivery_record_linked" not in [s["code"] for s in linked["next_steps"]]
    await mother.confirm_delivery()
    assert len(await wait_for_messages(stack, family.openid, 1)) == 1  # confirming sends nothing more


async def test_the_father_is_told_which_counter_and_what_to_bring_but_not_why(
    stack: Stack, family: Family
) -> None:
    await staff(stack, "his1")
    await stack.record_delivery(family)
    mother = stack.mini_program(family)
    await mother.login()
    await mother.start(institution=DEMO_INSTITUTION.code)
    await mother.verify_face("mother")
    await mother.confirm_delivery()
    await mother.provide_details()
    invitation = await mother.invite_father()
    father = await on_his_phone(stack, family)
    await father.accept_invitation(invitation["invitation"])
    # His face does not match three times in a day: the application goes to the counter.
    assert family.father is not None
    await father.fake("/_fake/faces", {"cert_no": family.father.id_number, "verify_ret": 10004})
    for _ in range(3):
        with pytest.raises(ApiProblem):
            await father.verify_face("father")

    hers = await mother.status()
    assert (hers["state"], hers["counter_reason"]["code"]) == ("counter_only", "face_verification_failed")
    his = await father.status()
    assert (his["role"], his["state"]) == ("father", "counter_only")
    counter = his["counter"]
    assert counter["counter"] == DEMO_COUNTER == hers["counter_reason"]["counter"]
    assert counter["where"] == hers["counter_reason"]["where"]
    for key in ("institution_name", "address", "phone", "hours"):
        assert DEMO_COUNTER[key] in counter["where"]
    assert counter["bring"] == hers["counter_reason"]["bring"]
    assert "父母双方本人到场，现场核验人证一致" in counter["bring"]
    assert his["next_steps"] == [
        {
            "code": "visit_counter",
            "label": "该申请需到广州市妇女儿童医疗中心现场办理，请与孩子母亲联系并携带所列材料",
            "by": "parent",
        }
    ]
    # Not why, nor anything of hers.
    assert set(counter) == {"counter", "where", "bring"}
    assert "counter_reason" not in his and "mother_name_masked" not in his
    assert "当日刷脸认证多次未通过" not in str(his)


async def test_whoever_collects_is_told_where_when_and_what_to_bring(stack: Stack, family: Family) -> None:
    mp, issuer = await beijing(stack, family)
    await issuer.call(
        "POST", f"{REVIEW}/{mp.app_id}/issue", json={"certificate_number": "X110100091", "sealer": "钱盖章"}
    )
    slots = await mp.call("GET", f"{mp.base}/pickup-slots")
    # Beijing's demo institution has no counter details set: named, the rest for her to ask.
    assert slots["counter"] == {
        "institution_code": "BJFY01",
        "institution_name": "北京妇产医院",
        "address": None,
        "phone": None,
        "hours": None,
    }
    await mp.book_first_pickup_slot()
    before = (await mp.status())["pickup"]
    assert before["institution_name"] == "北京妇产医院"
    assert before["appointment"]["label"]
    assert before["who_may_collect"] == [
        "新生儿母亲本人",
        "他人代领（含父亲）须先由母亲在小程序中签署授权委托书",
    ]
    assert before["bring"] == ["领取人本人有效身份证件原件（现场用微信扫码刷脸，与所出示的证件核对）"]

    await mp.sign_collector_letter(COLLECTOR)
    after = (await mp.status())["pickup"]
    assert after["who_may_collect"] == ["新生儿母亲本人", "受托人李*（母亲已签署授权委托书）"]
    assert after["bring"][1].startswith("受托人领取：母亲已在小程序中电子签署的授权委托书")
    assert OTHER_MAN_ID not in str(after) and "李强" not in str(after)


async def test_in_guangdong_the_slot_page_names_the_counter_with_its_address_and_hours(
    stack: Stack, family: Family
) -> None:
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.whole_journey(ems=False)
    issuer = await staff(stack, "issuer1")
    await issuer.call(
        "POST", f"{REVIEW}/{mp.app_id}/issue", json={"certificate_number": "X440100301", "sealer": "李盖章"}
    )
    slots = await mp.call("GET", f"{mp.base}/pickup-slots")
    assert slots["counter"] == DEMO_COUNTER
    pickup = (await mp.status())["pickup"]
    assert pickup["who_may_collect"] == ["新生儿母亲本人", "登记表上的新生儿父亲", "母亲委托的其他人"]
