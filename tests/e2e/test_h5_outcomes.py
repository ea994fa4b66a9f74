"""Issue 10 on the H5 simulator in headless Chromium: what a mother sees at the end of each path.

- A case kept at the counter (a single mother in Shandong) is referred at the start, to the counter of the
  hospital she picked: its name, address, telephone, opening hours and what to bring.
- The hospital answers her dispute that the record stands: she reads the answer on her status page and on the
  record, and confirms.
- Her record is not there: she names the hospital and the day, sees that she waits for it, and, once the
  hospital enters it, that it arrived; she looks at it and confirms.
- On-site pickup: the 领取须知 page, for her or whoever collects: the slot, the counter, who may collect, what to
  bring, before and after she signs a 授权委托书.

Screenshots go to ``test-artifacts/`` (``h5-outcome-*.png``) for a person to look at. Needs ``/usr/bin/chromium``
and a CJK font, like ``test_h5.py``; without them the tests skip.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from miniprogram_stub.people import Family, demo_family
from tests.e2e.conftest import Stack
from tests.e2e.test_console import _why_not
from tests.e2e.test_counter import COLLECTOR, REVIEW
from tests.e2e.test_h5 import open_as, phone, screenshot, start_and_pass_her_face_check
from tests.e2e.test_hospital_worklist import SHANGHAI, delivery, disputed
from tests.e2e.test_staff import staff

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""),
]
__all__ = ["phone"]  # the fixture, used by name


async def test_a_case_kept_at_the_counter_is_referred_at_the_start_to_the_hospital_it_names(
    phone: Any,
) -> None:
    from playwright.async_api import expect

    page = phone
    await page.get_by_role("button", name="模拟微信登录").click()
    await page.get_by_role("button", name="新建申请").click()
    await page.get_by_text("山东省", exact=True).click()
    hospital = page.locator("#institution")
    await expect(hospital.locator("option")).to_have_count(2)
    await hospital.select_option(label="平阴县人民医院")
    await page.get_by_text("单母亲", exact=True).click()
    await page.get_by_role("button", name="开始申办").click()

    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("单母亲")
    counter = page.locator("#problem-referral-counter")
    for text in (
        "平阴县人民医院",
        "济南市平阴县演示路2号 平阴县人民医院出生医学证明办公室",
        "0531-87888565",
        "周一至周五（节假日除外）8:30-12:00，14:30-17:30",
    ):
        await expect(counter).to_contain_text(text)
    await expect(page.locator("#problem-referral-bring")).to_contain_text("父母双方有效身份证件原件及复印件")
    await expect(page.locator("#nav-title")).to_have_text("新建申请")  # nothing was started
    await screenshot(page, "h5-outcome-referral-at-start.png")


async def test_the_hospitals_answer_that_the_record_stands_is_read_and_confirmed(
    phone: Any, stack: Stack, family: Family
) -> None:
    from playwright.async_api import expect

    page = phone
    his, mother, record_id = await disputed(stack, family, "出生体重应为3350克，不是3250克")
    await open_as(page, family.openid, "填写中")
    await expect(page.locator("#dispute-answer")).to_contain_text("已提出异议，等待医院答复")
    await expect(page.locator("#page")).to_contain_text("有异议，待医院更正")

    answer = "经核对产房称重记录，出生体重为3250克，原记录无误"
    await his.call("POST", f"/api/v1/deliveries/{record_id}/uphold", json={"reason": answer})
    await page.get_by_role("button", name="刷新").click()
    note = page.locator("#dispute-answer")
    await expect(note).to_contain_text("医院已答复：原分娩信息无误")
    await expect(note).to_contain_text(f"医院答复：{answer}")
    await expect(page.locator("#page")).to_contain_text("医院答复无误，待您确认")
    await screenshot(page, "h5-outcome-upheld-status.png")

    await note.get_by_role("button", name="去核对").click()
    await expect(page.locator("#nav-title")).to_have_text("核对分娩信息")
    await expect(page.locator("#dispute-answer")).to_contain_text(answer)
    await expect(page.locator("#page")).to_contain_text("3250 克")
    await screenshot(page, "h5-outcome-upheld-record.png")
    await page.get_by_role("button", name="确认无误").click()
    await expect(page.locator("#nav-title")).to_have_text("填写信息")
    assert (await mother.status())["delivery_dispute"] is None


async def test_a_missing_record_is_asked_for_awaited_and_then_looked_at(phone: Any, stack: Stack) -> None:
    from playwright.async_api import expect

    page = phone
    family = demo_family(6)
    his = await staff(stack, "his1")
    await start_and_pass_her_face_check(page, family)

    await expect(page.locator("#nav-title")).to_have_text("分娩信息未录入")
    await expect(page.locator("#record-missing")).to_contain_text("暂未查到您的分娩信息")
    await page.get_by_role("button", name="提醒医院录入").click()
    await expect(page.get_by_role("alert")).to_contain_text("请选择分娩的医疗机构")
    await page.locator("#missing-institution").select_option(label="广州市妇女儿童医疗中心")
    born_on = (datetime.now(SHANGHAI) - timedelta(days=1)).date()
    await page.locator("#born-on").fill(born_on.isoformat())
    await screenshot(page, "h5-outcome-missing-ask.png")
    await page.get_by_role("button", name="提醒医院录入").click()

    await expect(page.locator("#nav-title")).to_have_text("申请进度")
    awaited = page.locator("#record-awaited")
    await expect(awaited).to_contain_text("已提醒广州市妇女儿童医疗中心录入您的分娩信息")
    await expect(awaited).to_contain_text("医院录入后，我们会通过微信服务通知告诉您")
    await expect(page.locator("#steps li", has_text="录入后请查看并确认")).to_contain_text("医院")
    await screenshot(page, "h5-outcome-missing-waiting.png")

    await his.call("POST", "/api/v1/deliveries", json=delivery(family, hours_ago=24))
    await page.get_by_role("button", name="刷新").click()
    entered = page.locator("#record-entered")
    await expect(entered).to_contain_text("广州市妇女儿童医疗中心已录入您的分娩信息")
    await expect(page.locator("#record-awaited")).to_have_count(0)
    await expect(page.locator("#steps")).to_contain_text(
        "广州市妇女儿童医疗中心已录入您的分娩信息，请查看并确认"
    )
    await screenshot(page, "h5-outcome-missing-arrived.png")
    await entered.get_by_role("button", name="查看并确认").click()
    await expect(page.locator("#nav-title")).to_have_text("核对分娩信息")
    await expect(page.locator("#page")).to_contain_text("广州市妇女儿童医疗中心")
    await page.get_by_role("button", name="确认无误").click()
    await expect(page.locator("#nav-title")).to_have_text("填写信息")


async def test_the_pickup_guide_says_when_where_who_and_what_to_bring(
    phone: Any, stack: Stack, family: Family
) -> None:
    from playwright.async_api import expect

    page = phone
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.whole_journey(ems=False)
    issuer = await staff(stack, "issuer1")
    await issuer.call(
        "POST", f"{REVIEW}/{mp.app_id}/issue", json={"certificate_number": "X440100401", "sealer": "李盖章"}
    )
    await open_as(page, family.openid, "已签发")
    await expect(page.locator("#pickup")).to_contain_text("广州市妇女儿童医疗中心")
    await page.get_by_role("button", name="领取须知").click()
    await expect(page.locator("#nav-title")).to_have_text("领取须知")
    await expect(page.locator("#guide-appointment")).to_contain_text("尚未预约")
    counter = page.locator("#guide-counter")
    for text in (
        "广州市妇女儿童医疗中心",
        "广州市越秀区演示路1号",
        "020-12345678",
        "8:00-12:00，14:30-17:30",
    ):
        await expect(counter).to_contain_text(text)
    await expect(page.locator("#guide-who li")).to_have_text(
        ["新生儿母亲本人", "登记表上的新生儿父亲", "母亲委托的其他人"]
    )
    await expect(page.locator("#guide-bring li")).to_have_count(1)
    await screenshot(page, "h5-outcome-pickup-guide-unbooked.png")

    await mp.book_first_pickup_slot()
    await mp.sign_collector_letter(COLLECTOR)
    await page.locator("#nav-back").click()
    await page.get_by_role("button", name="领取须知").click()
    await expect(page.locator("#guide-appointment")).to_contain_text("（周")
    await expect(page.locator("#guide-who")).to_contain_text("受托人李*（母亲已签署授权委托书）")
    await expect(page.locator("#guide-bring li")).to_have_count(2)
    await expect(page.locator("#guide-bring")).to_contain_text("无需纸质件")
    await expect(page.locator("#page")).not_to_contain_text(COLLECTOR.id_number)
    await screenshot(page, "h5-outcome-pickup-guide.png")
