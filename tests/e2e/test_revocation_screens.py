"""Declaring a certificate void (宣布作废, decision 0040) on the screens, in headless Chromium: the issuer's console (the
button on the application's page, the ground from the domain's list, the note; then the page shows it void with the
note) and the H5 simulator (the mother reads that it is void and why, where to go and what to bring; never the
note). Screenshots go to ``test-artifacts/``. Needs ``/usr/bin/chromium`` and a CJK font; without them, skipped."""

from __future__ import annotations

from typing import Any

import pytest

from miniprogram_stub.client import MiniProgram
from miniprogram_stub.people import Family
from tests.e2e.conftest import Stack
from tests.e2e.test_console import ARTIFACTS, _why_not, browser, log_in, new_page, submitted
from tests.e2e.test_counter import REVIEW
from tests.e2e.test_h5 import open_as, phone, screenshot
from tests.e2e.test_staff import staff, wait_for_state

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""),
]
__all__ = ["browser", "phone"]  # the fixtures, shared with test_console and test_h5

NOTE = "经公安机关核查，申办时冒用他人身份证件"


async def dispatched(stack: Stack, family: Family, number: str) -> MiniProgram:
    """The family's certificate issued on ``number`` and handed to EMS (its process books the pickup on its own)."""
    mother = await submitted(stack, family)
    issuer = await staff(stack, "issuer1")
    await issuer.call(
        "POST", f"{REVIEW}/{mother.app_id}/issue", json={"certificate_number": number, "sealer": "赵盖章"}
    )
    await wait_for_state(mother, "dispatched")
    return mother


async def test_an_issuer_declares_a_certificate_void_from_its_page(
    stack: Stack, family: Family, browser: Any
) -> None:
    from playwright.async_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    mother = await dispatched(stack, family, "X440100095")
    page = await new_page(browser)
    await log_in(page, stack, "issuer1")
    await page.goto(f"{stack.api}/console/#/applications/{mother.app_id}")
    await page.get_by_role("button", name="宣布作废").click()
    submit = page.get_by_role("button", name="确认作废")
    await submit.click()  # nothing chosen: the form says what is missing, nothing is sent
    await expect(page.locator(".action-form .alert-error")).to_contain_text("请选择作废原因")
    await page.get_by_label("作废原因").select_option("obtained_by_deception")
    await page.get_by_label("审核说明").fill(NOTE)
    await page.screenshot(path=str(ARTIFACTS / "console-revoke-dialog.png"))
    await submit.click()
    await expect(page.locator(".toast, #toast")).to_contain_text("已宣布作废")
    await expect(page.locator("#revocation-panel")).to_contain_text("X440100095")
    await expect(page.locator("#revocation-reason")).to_have_text("以欺骗等不正当手段取得")
    await expect(page.locator("#revocation-note")).to_have_text(NOTE)
    await expect(page.locator(".action-hint")).to_contain_text("已宣布该出生医学证明作废")
    await expect(page.get_by_role("button", name="宣布作废")).to_have_count(0)
    await page.screenshot(path=str(ARTIFACTS / "console-revoked.png"), full_page=True)
    assert page.errors == []

    status = await mother.status()
    assert (status["state"], status["revocation"]["reason"]) == ("revoked", "obtained_by_deception")
    assert NOTE not in str(status)


async def test_the_mother_reads_that_her_certificate_is_void_and_where_to_go(
    phone: Any, stack: Stack, family: Family
) -> None:
    from playwright.async_api import expect

    page = phone
    mother = await dispatched(stack, family, "X440100097")
    issuer = await staff(stack, "issuer1")
    await issuer.call(
        "POST", f"{REVIEW}/{mother.app_id}/revoke", json={"reason": "issued_in_error", "note": NOTE}
    )

    await open_as(page, family.openid, "出生医学证明已作废")
    notice = page.locator("#revocation")
    for text in ("X440100097", "签发机构工作差错，依规不应签发", "行政复议"):
        await expect(notice).to_contain_text(text)
    await expect(page.locator("#revoked-counter")).to_contain_text("广州市妇女儿童医疗中心")
    await expect(page.locator("#revoked-bring")).to_contain_text("已作废的《出生医学证明》原件")
    await expect(page.locator("#page")).not_to_contain_text(NOTE)
    await screenshot(page, "h5-outcome-revoked.png")
