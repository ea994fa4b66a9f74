"""出生一件事 on the H5 simulator in headless Chromium (issue 12, item 1; docs/decisions/0044).

A Hebei mother, her details given, finds 出生一件事 on her status screen, opens it from there, sees the five
services, the notice's conditions as they stand for her, what the form takes from her application (masked, not
asked again) and the extra fields of 表2 as choices; she applies, and her steps list the services as 已申请.
A Guangdong mother is not offered it. Screenshots (390 px wide) go to ``test-artifacts/h5-bundle-*.png``.
"""

from __future__ import annotations

from typing import Any

import pytest

from miniprogram_stub.people import hebei_family
from tests.builders import HEBEI_BUNDLE_FIELDS
from tests.e2e.conftest import Stack
from tests.e2e.test_birth_bundle_http import hebei_details_given
from tests.e2e.test_console import _why_not
from tests.e2e.test_h5 import open_as, phone, screenshot

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""),
]
__all__ = ["phone"]  # the fixture, used by name


async def fill_in(page: Any, fields: dict[str, str]) -> None:
    """Table 2's extras as she would: a choice picked, a text typed; her statement ticked."""
    for code, value in fields.items():
        control = page.locator(f"#bundle-{code}")
        if await control.evaluate("el => el.tagName") == "SELECT":
            await control.select_option(value)
        else:
            await control.fill(value)
    await page.locator("#bundle-married").check()


async def test_a_hebei_mother_applies_for_the_bundle_from_her_steps(phone: Any, stack: Stack) -> None:
    from playwright.async_api import expect

    page = phone
    family = hebei_family(11)
    mp = await hebei_details_given(stack, family)
    await open_as(page, family.openid, "填写中")
    entry = page.locator("#bundle-entry")
    await expect(entry).to_contain_text("未申请")
    await entry.get_by_role("button", name="了解并申请").click()
    await expect(page.locator("#nav-title")).to_have_text("出生一件事")
    await expect(page.locator("#bundle-services input")).to_have_count(5)
    conditions = page.locator("#bundle-conditions li")
    await expect(conditions).to_have_count(6)
    await expect(page.locator('#bundle-conditions li[data-state="met"]')).to_have_count(4)
    await expect(page.locator("#bundle-derived")).to_contain_text("赵**")  # taken, masked, not asked
    assert await page.locator("#bundle-newborn_name").count() == 0
    # Only the newborn's own sex is offered as her relation to the head of household.
    options = await page.locator("#bundle-relation_to_head option").all_text_contents()
    assert "子" not in options and "女" in options
    await screenshot(page, "h5-bundle-form.png")

    await fill_in(page, HEBEI_BUNDLE_FIELDS)
    await page.get_by_role("button", name="申请一并办理").click()
    await expect(page.locator("#nav-title")).to_have_text("申请进度")
    entry = page.locator("#bundle-entry")
    await expect(entry).to_contain_text("户口登记")
    await expect(entry).to_contain_text("已申请")
    await screenshot(page, "h5-bundle-status.png")
    assert [s["state"] for s in (await mp.status())["bundle"]["services"]] == ["requested"] * 5


async def test_a_failing_condition_is_shown_in_chinese(phone: Any, stack: Stack) -> None:
    from playwright.async_api import expect

    page = phone
    family = hebei_family(12)
    await hebei_details_given(stack, family)
    await open_as(page, family.openid, "填写中")
    await page.locator("#bundle-entry").get_by_role("button", name="了解并申请").click()
    await fill_in(page, {**HEBEI_BUNDLE_FIELDS, "household_type": "collective"})
    await page.get_by_role("button", name="申请一并办理").click()
    await expect(page.locator(".error")).to_contain_text("随父或随母落家庭户")
    await screenshot(page, "h5-bundle-refused.png")
