"""出生一件事's materials of 表1 on the H5 simulator in headless Chromium (issue 12; docs/decisions/0047).

A Hebei mother who opted in to the 户口 registration sees on the 出生一件事 screen which materials are still missing,
takes them as she takes her ID photos (camera or file), and goes on to sign; a mother who did not opt in is only told
which service would need which. Screenshots (390 px wide) go to ``test-artifacts/h5-materials-*.png``.
"""

from __future__ import annotations

from typing import Any

import pytest

from miniprogram_stub.client import MiniProgram, id_photo
from miniprogram_stub.people import hebei_family
from tests.builders import HEBEI_BUNDLE_FIELDS
from tests.e2e.conftest import Stack
from tests.e2e.test_birth_bundle_http import ALL, hebei_details_given
from tests.e2e.test_console import _why_not
from tests.e2e.test_h5 import open_as, phone, screenshot

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""),
]
__all__ = ["phone"]  # the fixture, used by name


async def _before_signing(stack: Stack, number: int) -> MiniProgram:
    mp = await hebei_details_given(stack, hebei_family(number))
    await mp.verify_face("father")
    await mp.upload_all()
    return mp


async def test_she_takes_the_missing_materials_and_goes_on_to_sign(phone: Any, stack: Stack) -> None:
    from playwright.async_api import expect

    page = phone
    mp = await _before_signing(stack, 51)
    await mp.opt_in_bundle(ALL, HEBEI_BUNDLE_FIELDS)
    await mp.upload("marriage_certificate")  # one already there: only the two pages are missing
    await open_as(page, mp.family.openid, "填写中")
    await expect(page.locator("#steps")).to_contain_text(
        "上传一件事一次办材料：落户方户口簿首页、落户方户口簿户主页"
    )

    await page.locator("#bundle-entry").get_by_role("button", name="查看或修改").click()
    materials = page.locator("#bundle-materials")
    await expect(materials.locator("[data-material]")).to_have_count(3)
    await expect(materials.locator('[data-material="hukou_first_page"]')).to_contain_text("待上传")
    await expect(materials.locator('[data-material="marriage_certificate"]')).to_contain_text("已上传")
    await screenshot(page, "h5-materials-bundle.png")

    await materials.get_by_role("button", name="上传材料（还差2项）").click()
    await expect(page.locator("#nav-title")).to_have_text("上传一件事材料")
    await expect(page.locator("#materials-title")).to_have_text(
        "还需上传：落户方户口簿首页、落户方户口簿户主页"
    )
    await expect(page.locator("#materials-grid .photo-slot")).to_have_count(3)
    # Nothing chosen yet: she is told what is missing, nothing is sent.
    await page.get_by_role("button", name="上传并继续").click()
    await expect(page.locator(".error")).to_contain_text("请先选择：落户方户口簿首页、落户方户口簿户主页")
    # One from a file (the phone's camera or album), one drawn as an example.
    await page.locator("#file-hukou_first_page").set_input_files(
        {"name": "hukou.jpg", "mimeType": "image/jpeg", "buffer": id_photo("户口簿首页")}
    )
    await page.get_by_role("button", name="使用示例照片").click()
    await expect(page.locator("#materials-grid img")).to_have_count(2)
    await screenshot(page, "h5-materials-chosen.png")
    await page.get_by_role("button", name="上传并继续").click()
    await expect(page.locator("#nav-title")).to_have_text("签名确认")  # the next step: her signature

    bundle = await mp.bundle()
    assert {m["code"]: m["uploaded"] for m in bundle["materials"]} == {
        "hukou_first_page": True,
        "hukou_head_page": True,
        "marriage_certificate": True,
    }


async def test_a_mother_who_did_not_opt_in_is_only_told_which_service_needs_what(
    phone: Any, stack: Stack
) -> None:
    from playwright.async_api import expect

    page = phone
    mp = await _before_signing(stack, 52)
    await open_as(page, mp.family.openid, "填写中")
    await expect(page.locator("#steps")).not_to_contain_text("一件事一次办材料")
    await page.locator("#bundle-entry").get_by_role("button", name="了解并申请").click()
    await expect(page.locator("#bundle-materials-hint")).to_have_text(
        "申请户口登记须拍照上传：落户方户口簿首页、落户方户口簿户主页、结婚证"
    )
    assert await page.locator("#bundle-materials").count() == 0
