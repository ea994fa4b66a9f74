"""出生一件事's materials of 表1 in the issuer's console, in headless Chromium (docs/decisions/0047): a submitted Hebei
application with the 户口 registration shows the 户口簿 pages and the 结婚证 among the ID photos; the issuer sends one
back with the catalogue's reason and the mother reads which. Screenshot: ``test-artifacts/console-materials-*.png``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_bundle_handoff_http import hebei_issuer
from tests.e2e.test_bundle_materials_http import _signable
from tests.e2e.test_console import ARTIFACTS, _why_not, browser, log_in, new_page

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""),
]
__all__ = ["browser"]  # the fixture, shared with test_console


async def test_the_issuer_sees_the_materials_and_sends_one_back(stack: Stack, browser: Any) -> None:
    from playwright.async_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    mp = await _signable(stack, 61)
    await mp.upload_materials()
    await mp.sign()
    await mp.choose_pickup()
    await mp.submit()
    await hebei_issuer(stack)  # the Hebei issuer's account

    page = await new_page(browser)
    await log_in(page, stack, "issuer_he")
    await (
        page.locator(f'#queue-table tr[data-application-id="{mp.app_id}"]').get_by_role("link").first.click()
    )
    for kind, label in (
        ("hukou_first_page", "落户方户口簿首页"),
        ("hukou_head_page", "落户方户口簿户主页"),
        ("marriage_certificate", "结婚证"),
    ):
        thumb = page.locator(f'.thumbs li[data-kind="{kind}"]')
        await expect(thumb).to_contain_text(label)
        await expect(thumb.locator("img")).to_have_count(1)  # fetched and shown like an ID photo

    await page.get_by_role("button", name="驳回").first.click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_label("一件事材料不清晰或不符").check()
    await expect(dialog.locator(".check-group-title", has_text="证件照片及一件事材料")).to_have_count(1)
    await dialog.get_by_label("落户方户口簿户主页照片").check()
    await page.screenshot(path=str(ARTIFACTS / "console-materials-reject.png"))
    await dialog.get_by_role("button", name="确认驳回").click()
    await expect(dialog).to_be_hidden()

    status = await mp.status()
    assert status["state"] == "returned"
    assert status["rejection"]["field_labels"] == ["落户方户口簿户主页照片"]
    assert page.errors == []
