"""The issuer's console at the counter, in headless Chromium: the day's appointments, the collector's face check
(its QR code, the collector's phone played over HTTP), the handover, then a replacement of the certificate."""

from __future__ import annotations

from typing import Any

import pytest

from backend.dev import seed_demo_staff
from miniprogram_stub.people import Family
from tests.e2e.conftest import Stack
from tests.e2e.test_console import ARTIFACTS, _why_not, browser, log_in, new_page
from tests.e2e.test_staff import staff

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""),
]
__all__ = ["browser"]  # the fixture, shared with test_console


async def test_an_issuer_sees_the_days_appointment_checks_the_collector_hands_over_and_replaces(
    stack: Stack, family: Family, browser: Any
) -> None:
    from playwright.async_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    await stack.in_store(seed_demo_staff, stack.service)  # with the demo institutions' pickup hours
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.whole_journey(ems=False)
    issuer = await staff(stack, "issuer1")
    await issuer.call(
        "POST",
        f"/api/v1/review/applications/{mp.app_id}/issue",
        json={"certificate_number": "X440100091", "sealer": "赵盖章"},
    )
    booked = (await mp.book_first_pickup_slot())["appointment"]

    page = await new_page(browser)
    await log_in(page, stack, "issuer1")
    await page.locator("#nav-appointments").click()
    await page.locator("#appointments-date").fill(booked["date"])
    await page.get_by_role("button", name="查询").click()
    row = page.locator("#appointments-table tbody tr", has_text=family.mother.name)
    await expect(row).to_contain_text(booked["start"])
    await expect(row).to_contain_text("X440100091")
    await page.screenshot(path=str(ARTIFACTS / "console-appointments.png"), full_page=True)

    await row.get_by_role("link").click()
    await expect(page.locator("#pickup-appointment")).to_have_text(booked["label"])
    await expect(page.get_by_role("button", name="现场领取")).to_be_disabled()
    await page.get_by_role("button", name="领取人刷脸").click()
    await page.get_by_label("证件上的姓名").fill(family.mother.name)
    await page.get_by_label("证件号码").fill(family.mother.id_number)
    async with page.expect_response(lambda r: r.url.endswith("/collector-check")) as opened:
        await page.get_by_role("button", name="生成刷脸二维码").click()
    code = (await (await opened.value).json())["code"]
    await expect(page.locator("#collector-qr img")).to_be_visible()
    await page.screenshot(path=str(ARTIFACTS / "console-collector-qr.png"))
    await mp.verify_at_counter(code)  # the collector's phone (here the mother's own)
    await page.get_by_role("button", name="完成，返回申请").click()
    await expect(page.locator("#pickup-check")).to_contain_text("刷脸认证通过")

    await page.get_by_role("button", name="现场领取").click()
    await page.get_by_label("领取人姓名").fill(family.mother.name)
    await page.get_by_label("与新生儿关系").select_option("mother")
    await page.get_by_label("领取人身份证号码").fill(family.mother.id_number)
    await page.get_by_role("button", name="确认领取").click()
    await expect(page.locator(".toast, #toast")).to_contain_text("已登记现场领取")

    await page.get_by_role("button", name="换发").click()
    await page.get_by_label("换发原因").select_option("misprinted")
    await page.get_by_label("原证件").select_option("recovered")
    await page.get_by_label("新空白证件编号").fill("X440100092")
    await page.get_by_label("盖章人").fill("赵盖章")
    await page.get_by_role("button", name="确认换发").click()
    await expect(page.locator("#replacements-panel")).to_contain_text("X440100091")
    await expect(page.locator("#replacements-panel")).to_contain_text("已收回作废")
    await page.screenshot(path=str(ARTIFACTS / "console-replaced.png"), full_page=True)
    assert page.errors == []
    status = await mp.status()
    assert (status["state"], status["certificate_number"]) == ("issued", "X440100092")
    assert status["replacement"]["voided_certificate_number"] == "X440100091"
