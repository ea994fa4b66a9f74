"""The H5 simulator of the parents' mini-program (``/h5/``) in headless Chromium at a phone's size.

A person clicks through the whole parent journey against the real service and the fake WeChat platform:
the development shortcut enters the hospital's delivery record (as the demo HIS account ``his1``), then
WeChat login, a new application, both parents' face checks (played through ``/_fake/``), the delivery
record confirmed, details, example ID photos, a signature drawn with the mouse, EMS, submission. The API
then confirms the application is submitted with a valid signature. Also: a failed face check (10004)
shows the Chinese explanation. Screenshots go to ``test-artifacts/`` for a person to look at.

Needs ``/usr/bin/chromium`` and a CJK font, like ``test_console.py``; without them the tests skip.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from backend.dev import DEMO_PASSWORD, seed_demo_staff
from miniprogram_stub.client import StaffClient
from miniprogram_stub.people import Family, Person, make_id_number
from tests.e2e.conftest import Stack
from tests.e2e.test_console import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, DEADLINE_MS, _why_not

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""),
]

PHONE = {"width": 390, "height": 844}
SHA256 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
async def phone(stack: Stack) -> AsyncIterator[Any]:
    """A phone-sized page on the simulator, the service and the fake platform behind it, his1 seeded."""
    from playwright.async_api import async_playwright, expect

    await stack.in_store(seed_demo_staff, stack.service)
    expect.set_options(timeout=DEADLINE_MS)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = await browser.new_context(
            viewport=PHONE,
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
        )
        context.set_default_timeout(DEADLINE_MS)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # A Content-Security-Policy violation (an inline script or style, another origin) is an error too.
        page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
        page.errors = errors
        await page.goto(f"{stack.api}/h5/?platform={stack.platform}")
        yield page
        assert errors == []
        await browser.close()


async def enter_delivery_and_log_in(page: Any) -> None:
    """The development shortcut (his1 enters the delivery record), then the simulated wx.login."""
    from playwright.async_api import expect

    await page.get_by_role("button", name="演示：让医院录入我的分娩记录").click()
    await expect(page.locator(".ok")).to_contain_text("已录入")
    await page.get_by_role("button", name="模拟微信登录").click()
    await expect(page.locator("#nav-title")).to_have_text("我的申请")
    await page.get_by_role("button", name="新建申请").click()
    await page.get_by_role("button", name="开始申办").click()
    await expect(page.locator("#nav-title")).to_have_text("母亲刷脸认证")


async def face_check(page: Any, verdict: str) -> None:
    await page.get_by_role("button", name="开始刷脸认证").click()
    await page.get_by_role("dialog", name="微信刷脸认证（模拟）").get_by_role("button", name=verdict).click()


async def test_a_parent_clicks_through_the_whole_journey_to_review(phone: Any, stack: Stack) -> None:
    from playwright.async_api import expect

    page = phone
    await enter_delivery_and_log_in(page)
    await face_check(page, "通过")

    await expect(page.locator("#nav-title")).to_have_text("核对分娩信息")
    await expect(page.locator("#page")).to_contain_text("广州市妇女儿童医疗中心")
    await page.get_by_role("button", name="确认无误").click()

    await expect(page.locator("#nav-title")).to_have_text("填写信息")
    await page.get_by_label("新生儿姓名").fill("张小花")
    await page.locator("#mother-ethnicity").select_option(label="汉族")
    await page.locator("#mother-address").fill("广东省广州市越秀区中山二路58号")
    await page.get_by_label("姓名", exact=True).fill("张伟")
    await page.locator("#father-id").fill(make_id_number("440104", "19910105", "117"))
    await page.get_by_role("button", name="同母亲住址").click()
    await page.get_by_role("button", name="保存并继续").click()

    await expect(page.locator("#nav-title")).to_have_text("父亲刷脸认证")
    await expect(page.locator("#father-name")).to_have_value("张伟")
    await face_check(page, "通过")

    await expect(page.locator("#nav-title")).to_have_text("上传证件照片")
    await page.get_by_role("button", name="使用示例照片").click()
    await expect(page.locator(".photo-slot img")).to_have_count(4)
    await page.get_by_role("button", name="上传并继续").click()

    await expect(page.locator("#nav-title")).to_have_text("签名确认")
    await expect(page.locator("#form-sha")).to_have_text(SHA256)
    pad = page.locator("#sigpad")
    await pad.scroll_into_view_if_needed()
    box = await pad.bounding_box()
    assert box is not None
    await draw_signature(page, box["x"], box["y"])
    await expect(page.locator("#toast")).to_be_hidden()
    await page.screenshot(path=str(ARTIFACTS / "h5-sign.png"))
    await page.get_by_role("button", name="确认签名").click()

    await expect(page.locator("#nav-title")).to_have_text("领取方式")
    await page.get_by_label("手机号").fill("13800138000")
    await page.get_by_label("收件地址").fill("广东省广州市越秀区中山二路58号")
    await page.get_by_role("button", name="确定").click()

    await expect(page.locator("#nav-title")).to_have_text("提交申请")
    await page.get_by_label("本人承诺所填信息真实有效").check()
    await page.get_by_role("button", name="提交申请").click()
    await expect(page.locator("#state-label")).to_have_text("审核中")
    await expect(page.locator("#steps")).to_contain_text("等待签发机构审核")
    await expect(page.locator("#toast")).to_be_hidden()
    await page.screenshot(path=str(ARTIFACTS / "h5-status.png"))

    # What the page did, as the API tells it (with the parent's own token).
    token = await page.evaluate("sessionStorage.getItem('h5.token')")
    app_id = await page.evaluate("sessionStorage.getItem('h5.appId')")
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{stack.api}/api/v1/applications/{app_id}") as r:
            status = await r.json()
        async with session.get(f"{stack.api}/api/v1/applications/{app_id}/form") as r:
            form = await r.json()
    assert status["state"] == "submitted"
    assert status["signature_valid"] is True
    assert form["signature_valid"] is True
    assert form["form"]["newborn"]["name"] == "张小花"
    assert form["form"]["father"]["name"] == "张伟"


async def draw_signature(page: Any, x: float, y: float) -> None:
    """Two handwritten-looking strokes with the mouse (pointer events on the canvas)."""
    strokes = [
        [(30 + 6 * i, 95 - 45 * math.sin(i / 3.2) * math.exp(-i / 30) + i) for i in range(0, 26)],
        [(175 + 7 * i + 12 * math.cos(i / 1.3), 100 + 28 * math.sin(i / 1.3)) for i in range(0, 24)],
    ]
    for points in strokes:
        await page.mouse.move(x + points[0][0], y + points[0][1])
        await page.mouse.down()
        for px, py in points[1:]:
            await page.mouse.move(x + px, y + py, steps=2)
        await page.mouse.up()


async def test_a_face_that_does_not_match_is_explained_in_chinese(phone: Any) -> None:
    from playwright.async_api import expect

    page = phone
    await enter_delivery_and_log_in(page)
    await face_check(page, "人脸不符（10004）")
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("人脸与身份证信息不一致")
    await expect(alert).to_contain_text("face_mismatch")
    await expect(page.locator("#nav-title")).to_have_text("母亲刷脸认证")
    # A second attempt that passes goes on to the delivery record.
    await face_check(page, "通过")
    await expect(page.locator("#nav-title")).to_have_text("核对分娩信息")


async def test_shandong_handheld_photo_postage_and_a_rejection_shown(phone: Any, stack: Stack) -> None:
    from playwright.async_api import expect

    family = Family(
        openid="unused",
        mother=Person("刘红", make_id_number("370124", "19940101", "028")),
        father=Person("张强", make_id_number("370124", "19920303", "013")),
        newborn_name="张明",
        inpatient_no="PY2026001",
    )
    await stack.record_delivery(family, province="SD")
    page = phone
    await page.get_by_role("button", name="模拟微信登录").click()
    await page.get_by_role("button", name="新建申请").click()
    await page.get_by_label("山东省").check()
    await page.get_by_role("button", name="开始申办").click()
    await page.locator("#mother-name").fill(family.mother.name)
    await page.locator("#mother-id").fill(family.mother.id_number)
    await face_check(page, "通过")
    await page.get_by_role("button", name="确认无误").click()

    await page.get_by_label("新生儿姓名").fill("张明")
    await page.locator("#mother-address").fill("山东省济南市平阴县榆山街道1号")
    await page.get_by_label("姓名", exact=True).fill("张强")
    await page.locator("#father-id").fill(make_id_number("370124", "19920303", "013"))
    await page.get_by_role("button", name="同母亲住址").click()
    await page.get_by_role("button", name="保存并继续").click()

    await expect(page.locator("#nav-title")).to_have_text("父亲身份核验")
    await page.get_by_role("button", name="上传手持身份证照片").click()
    await expect(page.locator("#nav-title")).to_have_text("上传证件照片")
    await page.get_by_role("button", name="使用示例照片").click()
    await expect(page.locator(".photo-slot img")).to_have_count(4)
    await page.get_by_role("button", name="上传并继续").click()
    await expect(page.locator("#nav-title")).to_have_text("签名确认")
    pad = page.locator("#sigpad")
    await pad.scroll_into_view_if_needed()
    box = await pad.bounding_box()
    assert box is not None
    await draw_signature(page, box["x"], box["y"])
    await page.get_by_role("button", name="确认签名").click()
    await page.get_by_label("手机号").fill("13800138000")
    await page.get_by_label("收件地址").fill("山东省济南市平阴县榆山街道1号")
    await page.get_by_role("button", name="确定").click()

    await expect(page.locator("#nav-title")).to_have_text("支付邮寄费")
    await page.get_by_role("button", name="支付邮寄费").click()
    sheet = page.get_by_role("dialog", name="微信支付（模拟）")
    await expect(sheet).to_contain_text("¥20.00")
    await sheet.get_by_role("button", name="确认支付").click()
    await page.get_by_label("本人承诺所填信息真实有效").check()
    await page.get_by_role("button", name="提交申请").click()
    await expect(page.locator("#state-label")).to_have_text("审核中")

    issuer = StaffClient(stack.session, stack.api)
    await issuer.login("issuer2", DEMO_PASSWORD)
    app_id = await page.evaluate("sessionStorage.getItem('h5.appId')")
    await issuer.call(
        "POST",
        f"/api/v1/review/applications/{app_id}/reject",
        json={"reasons": ["新生儿姓名与户口登记不一致"], "fields": ["newborn_name"]},
    )
    await page.get_by_role("button", name="刷新").click()
    await expect(page.locator("#state-label")).to_have_text("已退回，待修改")
    await expect(page.locator("#rejection")).to_contain_text("新生儿姓名与户口登记不一致")
    await page.locator("#rejection").get_by_role("button", name="去修改").click()
    await expect(page.locator("#nav-title")).to_have_text("填写信息")
