"""The H5 simulator of the parents' mini-program (``/h5/``) in headless Chromium at a phone's size.

A person clicks through the whole parent journey against the real service and the fake WeChat platform:
the development shortcut enters the hospital's delivery record (as the demo HIS account ``his1``), then
WeChat login, a new application, both parents' face checks (played through ``/_fake/``), the delivery
record confirmed, details, example ID photos, a signature drawn with the mouse, EMS, submission. The API
then confirms the application is submitted with a valid signature. Also: a failed face check (10004)
shows the Chinese explanation; a withdrawal, confirmed first; a dispute of the delivery record, corrected
by the hospital; on-site pickup, issued then handed over; the issued certificate's number, then the EMS
waybill, then delivery; the parent's own ID photos chosen through the file chooser. The issuer's side is
played over HTTP by ``StaffClient``, EMS by the fake's control API. Screenshots go to ``test-artifacts/``
for a person to look at.

Needs ``/usr/bin/chromium`` and a CJK font, like ``test_console.py``; without them the tests skip.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest

from backend.dev import DEMO_PASSWORD, seed_demo_staff
from domain.rejection import REJECTION_REASONS
from miniprogram_stub.client import MiniProgram, StaffClient
from miniprogram_stub.people import Family, Person, demo_family, make_id_number
from tests.builders import OTHER_MAN_ID
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


async def start_and_pass_her_face_check(page: Any, family: Family) -> None:
    """The family's mother logs in on the simulator, starts an application and passes her face check."""
    await page.locator("#openid").fill(family.openid)
    await page.get_by_role("button", name="模拟微信登录").click()
    await page.get_by_role("button", name="新建申请").click()
    await page.get_by_role("button", name="开始申办").click()
    await page.locator("#mother-name").fill(family.mother.name)
    await page.locator("#mother-id").fill(family.mother.id_number)
    await face_check(page, "通过")


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
    # The ethnic groups in their GB 3304 code order: 汉族, 蒙古族, 回族… (not 朝鲜族 first).
    # Filled once the prefill answers.
    await expect(page.locator("#mother-ethnicity option")).to_have_count(58)
    options = await page.locator("#mother-ethnicity option").all_text_contents()
    # 56 groups, then 其他 (97) and 外国血统中国籍人士 (98).
    assert (len(options), options[:3], options[9], options[55:]) == (
        58,
        ["汉族", "蒙古族", "回族"],
        "朝鲜族",
        ["基诺族", "其他", "外国血统中国籍人士"],
    )
    await expect(page.locator("#mother-ethnicity")).to_have_value("01")
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


async def test_the_days_third_face_mismatch_sends_her_to_the_counter_it_names(phone: Any) -> None:
    """Issue 10 item 3: the referral names the hospital's counter (address, telephone, opening hours, from
    the institution's data) and what to bring, in the problem and in the status view."""
    from playwright.async_api import expect

    page = phone
    await page.get_by_role("button", name="演示：让医院录入我的分娩记录").click()
    await expect(page.locator(".ok")).to_contain_text("已录入")
    await page.get_by_role("button", name="模拟微信登录").click()
    await page.get_by_role("button", name="新建申请").click()
    hospital = page.locator("#institution")
    await expect(hospital.locator("option")).to_have_count(2)  # 未选择, and Guangdong's one demo hospital
    await hospital.select_option(label="广州市妇女儿童医疗中心")  # as the hospital's QR code would
    await screenshot(page, "h5-new-with-hospital.png")
    await page.get_by_role("button", name="开始申办").click()
    await expect(page.locator("#nav-title")).to_have_text("母亲刷脸认证")
    for _ in range(2):
        await face_check(page, "人脸不符（10004）")
        await expect(page.get_by_role("alert")).to_contain_text("face_mismatch")
        await expect(page.locator("#problem-referral")).to_have_count(0)
    await face_check(page, "人脸不符（10004）")
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("当日刷脸认证多次未通过")
    counter = page.locator("#problem-referral-counter")
    for text in (
        "广州市妇女儿童医疗中心",
        "广州市越秀区演示路1号",
        "020-12345678",
        "周一至周五（法定节假日除外）",
    ):
        await expect(counter).to_contain_text(text)
    await expect(page.locator("#problem-referral-bring li")).to_have_count(4)
    await expect(page.locator("#problem-referral-bring")).to_contain_text(
        "父母双方本人到场，现场核验人证一致"
    )
    await expect(page.get_by_role("button", name="开始刷脸认证")).to_have_count(0)  # no fourth try
    await screenshot(page, "h5-referral-face.png")

    await page.get_by_role("button", name="查看申请进度").click()
    await expect(page.locator("#state-label")).to_have_text("需到签发机构现场办理")
    box = page.locator("#counter-reason")
    await expect(box).to_contain_text("当日刷脸认证多次未通过")
    for text in ("广州市越秀区演示路1号", "020-12345678", "8:00-12:00，14:30-17:30"):
        await expect(page.locator("#counter-counter")).to_contain_text(text)
    await expect(page.locator("#counter-bring li")).to_have_count(4)
    await expect(page.locator("#steps")).to_contain_text("请携带所列材料到广州市妇女儿童医疗中心现场办理")
    await expect(page.get_by_role("button", name="继续办理")).to_have_count(0)
    await screenshot(page, "h5-referral-status.png")


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


# ---------------------------------------------------------------- withdraw, dispute, pickup, issued, own photos


async def prepared(stack: Stack, family: Family, *, until: str = "submitted") -> MiniProgram:
    """The hospital's record, then the scripted mini-program on the parent's phone up to ``until``.

    ``until``: ``father_verified`` (photos next), ``signed`` (delivery method next) or ``submitted`` (EMS).
    """
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    if until == "submitted":
        await mp.whole_journey(ems=True)
        return mp
    await mp.login()
    await mp.start()
    await mp.verify_face("mother")
    await mp.confirm_delivery()
    await mp.provide_details()
    await mp.verify_face("father")
    if until == "signed":
        await mp.upload_all()
        await mp.sign()
    return mp


async def open_as(page: Any, openid: str, state_label: str) -> None:
    """The same WeChat user logs in on the simulator and opens her one application from the list."""
    from playwright.async_api import expect

    await page.locator("#openid").fill(openid)
    await page.get_by_role("button", name="模拟微信登录").click()
    await expect(page.locator("#nav-title")).to_have_text("我的申请")
    item = page.locator(".app-item")
    await expect(item).to_have_count(1)
    await expect(item).to_contain_text(state_label)
    await item.click()
    await expect(page.locator("#nav-title")).to_have_text("申请进度")
    await expect(page.locator("#state-label")).to_have_text(state_label)


async def issuer(stack: Stack) -> StaffClient:
    """issuer1 of GZFY01 (the demo family's hospital issues too), logged in over HTTP."""
    staff = StaffClient(stack.session, stack.api)
    await staff.login("issuer1", DEMO_PASSWORD)
    return staff


async def screenshot(page: Any, name: str, *, whole: bool = True) -> None:
    """The page from the top (``whole``) or the phone's screen as it is now, once no toast covers it.

    A dialog is fixed to the screen: take it with ``whole=False``, or it lands mid-page in the picture.
    """
    from playwright.async_api import expect

    await expect(page.locator("#toast")).to_be_hidden()
    ARTIFACTS.mkdir(exist_ok=True)
    if whole:
        await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(ARTIFACTS / name), full_page=whole)


async def api_state_is(page: Any, *states: str) -> None:
    """Wait (up to the deadline) until the parent's status view, as the API serves it, is in one of ``states``.

    The EMS process books and the status projection follows asynchronously; the page itself only reads
    the status when the parent taps 刷新, so the test waits for the API first. The predicate must answer
    at once (Playwright does not await a promise it returns): it starts one fetch at a time and answers
    from the last one that came back.
    """
    await page.evaluate("window.__statusProbe = { busy: false, state: null }")
    await page.wait_for_function(
        """(states) => {
          const probe = window.__statusProbe;
          if (!probe.busy) {
            probe.busy = true;
            fetch(`/api/v1/applications/${sessionStorage.getItem("h5.appId")}`,
              { headers: { Authorization: `Bearer ${sessionStorage.getItem("h5.token")}` } })
              .then((r) => r.json())
              .then((doc) => { probe.state = doc.state; })
              .catch(() => {})
              .finally(() => { probe.busy = false; });
          }
          return states.includes(probe.state);
        }""",
        arg=list(states),
        polling=200,
    )


async def test_a_parent_withdraws_only_after_confirming(phone: Any, stack: Stack, family: Family) -> None:
    from playwright.async_api import expect

    page = phone
    mp = await prepared(stack, family)
    await open_as(page, family.openid, "审核中")

    # Changing her mind at the confirmation leaves the application as it was.
    await page.get_by_role("button", name="撤回申请").click()
    dialog = page.get_by_role("alertdialog", name="撤回申请")
    await expect(dialog).to_contain_text("不能再继续办理或恢复")
    await screenshot(page, "h5-withdraw-confirm.png", whole=False)
    await dialog.get_by_role("button", name="暂不撤回").click()
    await expect(dialog).to_have_count(0)
    await expect(page.locator("#state-label")).to_have_text("审核中")
    assert (await mp.status())["state"] == "submitted"

    await page.get_by_role("button", name="撤回申请").click()
    await page.get_by_role("alertdialog", name="撤回申请").get_by_role("button", name="确定撤回").click()
    await expect(page.locator("#state-label")).to_have_text("已撤回")
    await expect(page.locator("#withdrawn-note")).to_contain_text("重新发起")
    await expect(page.get_by_role("button", name="撤回申请")).to_have_count(0)
    await expect(page.get_by_role("button", name="继续办理")).to_have_count(0)
    await screenshot(page, "h5-withdrawn.png")
    await page.locator("#nav-back").click()
    await expect(page.locator(".app-item .tag")).to_have_text("已撤回")

    status = await mp.status()
    assert status["state"] == "withdrawn"
    assert status["next_steps"] == []
    staff = await issuer(stack)
    queue = await staff.call("GET", "/api/v1/review/queue")
    assert all(item["application_id"] != mp.app_id for item in queue["items"])


async def test_a_rejected_photo_asks_for_that_photo_alone_and_no_new_signature(
    phone: Any, stack: Stack, family: Family
) -> None:
    from playwright.async_api import expect

    page = phone
    mp = await prepared(stack, family)
    staff = await issuer(stack)
    await staff.call(
        "POST",
        f"/api/v1/review/applications/{mp.app_id}/reject",
        json={
            "reason_codes": ["id_photo_unclear"],
            "reasons": ["母亲身份证人像面照片反光，看不清"],
            "fields": ["documents.mother_id_front"],
        },
    )
    await open_as(page, family.openid, "已退回，待修改")
    rejection = page.locator("#rejection")
    # What the reason means and how to fix it (docs/decisions/0045), then the issuer's own words.
    await expect(rejection.locator("#rejection-messages li")).to_have_text(
        ["证件照片不清晰或不完整：" + REJECTION_REASONS["id_photo_unclear"].message]
    )
    await expect(rejection.locator("#rejection-words")).to_have_text(
        "签发人员说明：母亲身份证人像面照片反光，看不清"
    )
    await screenshot(page, "h5-rejection-reasons.png")
    await expect(rejection).to_contain_text("无需重新签名")
    await expect(rejection).not_to_contain_text("重新签名提交")
    await rejection.get_by_role("button", name="去修改").click()

    await expect(page.locator("#nav-title")).to_have_text("上传证件照片")
    await expect(page.locator("#upload-title")).to_contain_text("被退回的照片")
    await expect(page.locator(".photo-slot")).to_have_count(1)
    await expect(page.locator(".photo-slot")).to_contain_text("母亲身份证人像面")
    await screenshot(page, "h5-fix-one-photo.png")
    await page.get_by_role("button", name="使用示例照片").click()
    await page.get_by_role("button", name="上传并继续").click()
    # Straight to submission: the signed form did not change, so the signature stands.
    await expect(page.locator("#nav-title")).to_have_text("提交申请")
    status = await mp.status()
    assert (status["state"], status["signature_valid"]) == ("returned", True)

    # A name sent back is printed on the form: that one does need a new signature.
    await page.get_by_label("本人承诺所填信息真实有效").check()
    await page.get_by_role("button", name="提交申请").click()
    await expect(page.locator("#state-label")).to_have_text("审核中")
    await staff.call(
        "POST",
        f"/api/v1/review/applications/{mp.app_id}/reject",
        json={"reasons": ["新生儿姓名有误"], "fields": ["newborn_name"]},
    )
    await page.get_by_role("button", name="刷新").click()
    await expect(rejection).to_contain_text("修改后重新签名提交")


async def test_a_disputed_delivery_record_waits_for_the_hospital(phone: Any, stack: Stack) -> None:
    from playwright.async_api import expect

    page = phone
    family = demo_family(2)
    his = StaffClient(stack.session, stack.api)
    await his.login("his1", DEMO_PASSWORD)
    born_at = datetime.now(timezone(timedelta(hours=8))).replace(second=0, microsecond=0) - timedelta(
        hours=20
    )
    delivery = {
        "inpatient_no": family.inpatient_no,
        "mother": {"name": family.mother.name, "id_number": family.mother.id_number},
        "newborn": {
            "sex": "F",
            "born_at": born_at.isoformat(),
            "gestational_weeks": 39,
            "weight_g": 3250,
            "length_cm": 50,
        },
        "birthplace": {"province": "广东省", "city": "广州市", "county": "越秀区"},
        "attendant": "陈助产",
    }
    record = await his.call("POST", "/api/v1/deliveries", json=delivery)

    await start_and_pass_her_face_check(page, family)
    await expect(page.locator("#nav-title")).to_have_text("核对分娩信息")
    # Personal data masked: the name's first character, the ID number's first and last four.
    masked_id = family.mother.id_number[:4] + "*" * 10 + family.mother.id_number[-4:]
    await expect(page.locator("#page")).to_contain_text("王*")
    await expect(page.locator("#page")).to_contain_text(masked_id)
    await expect(page.locator("#page")).not_to_contain_text(family.mother.id_number)

    await page.get_by_role("button", name="有异议").click()
    # No reason: the service's validation problem, in Chinese, names the field.
    await page.get_by_role("button", name="提交异议").click()
    alert = page.locator("#dispute-box").get_by_role("alert")
    await expect(alert).to_contain_text("异议原因：此项为必填项")
    reason = "出生体重应为 3350 克，不是 3250 克"
    await page.get_by_label("异议原因").fill(reason)
    await screenshot(page, "h5-dispute.png")
    await page.get_by_role("button", name="提交异议").click()

    await expect(page.locator("#nav-title")).to_have_text("申请进度")
    await expect(page.locator("#state-label")).to_have_text("填写中")
    await expect(page.locator("#page")).to_contain_text("有异议，待医院更正")
    hospital_step = page.locator("#steps li", has_text="等待医院核实分娩信息并答复")
    await expect(hospital_step).to_contain_text("医院")
    await screenshot(page, "h5-disputed-status.png")
    token = await page.evaluate("sessionStorage.getItem('h5.token')")
    app_id = await page.evaluate("sessionStorage.getItem('h5.appId')")
    headers = {"Authorization": f"Bearer {token}"}
    async with stack.session.get(
        f"{stack.api}/api/v1/applications/{app_id}/delivery-record", headers=headers
    ) as r:
        seen = (await r.json())["delivery_record"]
    assert seen["disputed"] is True
    assert seen["dispute_reason"] == reason

    # Back on the record, the dispute is shown with its reason.
    await page.locator("#steps li", has_text="确认分娩信息").get_by_role("button", name="去办理").click()
    await expect(page.locator("#dispute-note")).to_contain_text(reason)

    # The hospital corrects the weight; the mother sees the corrected record and confirms it.
    delivery["newborn"]["weight_g"] = 3350
    await his.call(
        "PUT", f"/api/v1/deliveries/{record['id']}", json={**delivery, "reason": "按产妇异议更正出生体重"}
    )
    await page.locator("#nav-back").click()
    await expect(page.locator("#page")).to_contain_text("医院已更正，待您确认")
    await expect(page.locator("#dispute-answer")).to_contain_text("按产妇异议更正出生体重")
    await expect(page.locator("#steps")).not_to_contain_text("等待医院核实")
    # The hospital's answer, in her words: what was corrected and that she must look again.
    await expect(page.locator("#steps")).to_contain_text("医院已更正分娩信息（按产妇异议更正出生体重）")
    await page.locator("#steps li", has_text="确认分娩信息").get_by_role("button", name="去办理").click()
    await expect(page.locator("#page")).to_contain_text("3350 克")
    await expect(page.locator("#dispute-note")).to_have_count(0)
    await page.get_by_role("button", name="确认无误").click()
    await expect(page.locator("#nav-title")).to_have_text("填写信息")


async def test_on_site_pickup_is_issued_then_handed_over(phone: Any, stack: Stack, family: Family) -> None:
    from playwright.async_api import expect

    page = phone
    mp = await prepared(stack, family, until="signed")
    await open_as(page, family.openid, "填写中")
    await page.get_by_role("button", name="继续办理").click()

    await expect(page.locator("#nav-title")).to_have_text("领取方式")
    await expect(page.get_by_label("收件地址")).to_be_visible()
    await page.get_by_text("到签发机构现场领取").click()
    await expect(page.get_by_label("收件地址")).to_be_hidden()
    await page.get_by_role("button", name="确定").click()

    await expect(page.locator("#nav-title")).to_have_text("提交申请")
    await page.get_by_label("本人承诺所填信息真实有效").check()
    await page.get_by_role("button", name="提交申请").click()
    await expect(page.locator("#state-label")).to_have_text("审核中")
    await expect(page.locator("#page")).to_contain_text("现场领取")

    staff = await issuer(stack)
    await staff.call(
        "POST",
        f"/api/v1/review/applications/{mp.app_id}/issue",
        json={"certificate_number": "X440100201", "sealer": "李盖章"},
    )
    await page.get_by_role("button", name="刷新").click()
    await expect(page.locator("#state-label")).to_have_text("已签发")
    await expect(page.locator("#certificate-number")).to_have_text("X440100201")
    numbers = page.locator("#numbers")
    await expect(numbers).to_contain_text("待现场领取")
    await expect(page.locator("#tracking-number")).to_have_count(0)
    await expect(page.get_by_text("证件与领取")).to_be_visible()
    collect = page.locator("#steps li", has_text="预约取证")
    await expect(collect).to_contain_text("待我办理")
    await expect(page.get_by_role("button", name="撤回申请")).to_have_count(0)
    await screenshot(page, "h5-pickup-issued.png")

    # 预约取证: she books the first slot offered.
    await collect.get_by_role("button", name="去办理").click()
    await expect(page.locator("#nav-title")).to_have_text("预约领取")
    await screenshot(page, "h5-pickup-slots.png")
    await page.get_by_role("button", name="确认预约").click()
    await expect(page.locator("#pickup")).to_contain_text("（周")
    await expect(page.locator("#steps li", has_text="现场须刷脸认证")).to_contain_text("待我办理")

    # She could send someone else: the 授权委托书, read and signed on her phone.
    await page.get_by_role("button", name="委托他人领取").click()
    await page.get_by_label("姓名").fill("李强")
    await page.get_by_label("身份证号码").fill(OTHER_MAN_ID)
    await page.get_by_role("button", name="生成委托书").click()
    await expect(page.locator("#letter-paper")).to_contain_text("授权委托书")
    pad = page.locator("#sigpad")
    await pad.scroll_into_view_if_needed()
    box = await pad.bounding_box()
    assert box is not None
    await draw_signature(page, box["x"], box["y"])
    await screenshot(page, "h5-collector-letter.png")
    await page.get_by_role("button", name="签署委托书").click()
    await expect(page.locator("#pickup")).to_contain_text("李*（已签署委托书）")
    await screenshot(page, "h5-pickup-booked.png")

    # At the counter: her face checked against the ID she shows, on her own phone, then the handover.
    check = await staff.call(
        "POST",
        f"/api/v1/review/applications/{mp.app_id}/collector-check",
        json={"name": family.mother.name, "id_number": family.mother.id_number},
    )
    await mp.verify_at_counter(check["code"])
    await staff.call(
        "POST",
        f"/api/v1/review/applications/{mp.app_id}/handover",
        json={
            "recipient_name": family.mother.name,
            "relation": "mother",
            "id_number": family.mother.id_number,
        },
    )
    await page.get_by_role("button", name="刷新").click()
    await expect(page.locator("#state-label")).to_have_text("已领取")
    await expect(numbers).to_contain_text("已现场领取")
    await expect(page.locator("#steps")).to_contain_text("已现场领取")
    await screenshot(page, "h5-collected.png")

    status = await mp.status()
    assert (status["state"], status["delivery_method"]) == ("collected", "pickup")
    assert status["tracking_number"] is None
    async with stack.session.get(f"{stack.platform}/_fake/ems/pickups") as r:
        assert (await r.json())["pickups"] == []  # nothing was booked with EMS


async def test_issued_shows_the_number_and_refuses_a_late_withdrawal(
    phone: Any, stack: Stack, family: Family
) -> None:
    from playwright.async_api import expect

    page = phone
    mp = await prepared(stack, family)
    await open_as(page, family.openid, "审核中")
    # EMS's booking system is down: the certificate stays issued until the issuer hands it over by hand.
    async with stack.session.post(f"{stack.platform}/_fake/ems/errors", json={"times": 1_000_000}) as r:
        assert r.status == 200
    staff = await issuer(stack)
    await staff.call(
        "POST",
        f"/api/v1/review/applications/{mp.app_id}/issue",
        json={"certificate_number": "X440100301", "sealer": "李盖章"},
    )

    # Her screen still says 审核中: withdrawing now is refused, and the problem is shown in Chinese.
    await page.get_by_role("button", name="撤回申请").click()
    await page.get_by_role("alertdialog", name="撤回申请").get_by_role("button", name="确定撤回").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("出生医学证明已签发，不能撤回申请")
    await expect(alert).to_contain_text("frozen_after_issue")
    # …over the application as it is now.
    await expect(page.locator("#state-label")).to_have_text("已签发")
    await screenshot(page, "h5-withdraw-refused.png")

    await page.get_by_role("button", name="刷新").click()
    await expect(alert).to_have_count(0)
    await expect(page.locator("#state-label")).to_have_text("已签发")
    await expect(page.locator("#certificate-number")).to_have_text("X440100301")
    await expect(page.locator("#numbers")).to_contain_text("等待签发机构交邮政寄出")
    await expect(page.locator("#tracking-number")).to_have_count(0)
    await expect(page.locator("#steps li", has_text="等待邮寄")).to_contain_text("签发机构")
    await expect(page.get_by_role("button", name="撤回申请")).to_have_count(0)
    await screenshot(page, "h5-issued.png")

    await staff.call(
        "POST", f"/api/v1/review/applications/{mp.app_id}/dispatch", json={"tracking_number": "1100000000018"}
    )
    await page.get_by_role("button", name="刷新").click()
    await expect(page.locator("#state-label")).to_have_text("已预约邮政揽收")
    await expect(page.locator("#certificate-number")).to_have_text("X440100301")
    await expect(page.locator("#tracking-number")).to_have_text("1100000000018")
    status = await mp.status()
    assert (status["state"], status["tracking_number"]) == ("dispatched", "1100000000018")


async def test_ems_dispatches_then_delivers_and_the_parent_sees_each(
    phone: Any, stack: Stack, family: Family
) -> None:
    from playwright.async_api import expect

    page = phone
    mp = await prepared(stack, family)
    await open_as(page, family.openid, "审核中")
    staff = await issuer(stack)
    await staff.call(
        "POST",
        f"/api/v1/review/applications/{mp.app_id}/issue",
        json={"certificate_number": "X440100401", "sealer": "李盖章"},
    )
    # EMS is up: the service books the pickup on its own and records the waybill.
    await api_state_is(page, "dispatched")
    await page.get_by_role("button", name="刷新").click()
    await expect(page.locator("#state-label")).to_have_text("已预约邮政揽收")
    await expect(page.locator("#certificate-number")).to_have_text("X440100401")
    tracking = page.locator("#tracking-number")
    await expect(tracking).to_have_text(re.compile(r"^11\d{11}$"))
    await expect(page.locator("#numbers")).to_contain_text("已预约邮政上门揽收，揽收后寄出")
    await expect(page.locator("#page")).not_to_contain_text("已寄出")
    await expect(page.locator("#page")).to_contain_text("11183")
    await screenshot(page, "h5-dispatched.png")
    waybill = await tracking.text_content()
    async with stack.session.get(f"{stack.platform}/_fake/ems/pickups") as r:
        [booked] = (await r.json())["pickups"]
    assert booked["waybill_no"] == waybill

    async with stack.session.post(f"{stack.platform}/_fake/ems/deliver", json={"waybill_no": waybill}) as r:
        answer = await r.json()
    assert answer["status"] == 200 and answer["body"]["state"] == "delivered"
    await api_state_is(page, "delivered")
    await page.get_by_role("button", name="刷新").click()
    await expect(page.locator("#state-label")).to_have_text("已送达")
    await expect(page.locator("#numbers")).to_contain_text("已签收")
    await expect(page.locator("#tracking-number")).to_have_text(waybill or "")
    await expect(page.locator("#steps li.done", has_text="已送达")).to_have_count(1)
    await expect(page.locator("#steps li.next")).to_have_count(0)
    await screenshot(page, "h5-delivered.png")
    status = await mp.status()
    assert (status["state"], status["certificate_number"], status["tracking_number"]) == (
        "delivered",
        "X440100401",
        waybill,
    )


def jpeg_photo(size: tuple[int, int], label: str) -> bytes:
    """A camera-like JPEG (with an EXIF block the service must strip)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, (226, 236, 248))
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, size[0] - 20, size[1] - 20), outline=(40, 60, 110), width=6)
    draw.text((40, 40), label, fill=(20, 30, 60))
    exif = Image.Exif()
    exif[0x010F] = "TestPhone"  # Make
    exif[0x0110] = "Model 1"  # Model
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88, exif=exif)
    return out.getvalue()


def png_photo(size: tuple[int, int], label: str) -> bytes:
    """A screenshot-like PNG."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, (248, 239, 226))
    ImageDraw.Draw(image).text((30, 30), label, fill=(90, 40, 20))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def gif_photo(size: tuple[int, int]) -> bytes:
    """A GIF: any browser shows it, the service takes JPG and PNG only."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, (200, 220, 200)).save(out, "GIF")
    return out.getvalue()


async def choose_file(page: Any, label: str, name: str, mime: str, data: bytes) -> None:
    """Tap the photo slot, as a parent does, and pick a file in the chooser."""
    slot = page.locator(".photo-slot", has_text=label)
    async with page.expect_file_chooser() as chooser_info:
        await slot.locator(".pic").click()
    chooser = await chooser_info.value
    await chooser.set_files({"name": name, "mimeType": mime, "buffer": data})


async def test_a_parent_uploads_her_own_photos(phone: Any, stack: Stack, family: Family) -> None:
    from PIL import Image
    from playwright.async_api import expect

    page = phone
    mp = await prepared(stack, family, until="father_verified")
    await open_as(page, family.openid, "填写中")
    await page.get_by_role("button", name="继续办理").click()
    await expect(page.locator("#nav-title")).to_have_text("上传证件照片")

    photos = {
        "mother_id_front": (
            "母亲身份证人像面",
            "front.jpg",
            "image/jpeg",
            jpeg_photo((856, 540), "mother front"),
        ),
        "mother_id_back": ("母亲身份证国徽面", "back.png", "image/png", png_photo((800, 505), "mother back")),
        "father_id_front": (
            "父亲身份证人像面",
            "f-front.jpg",
            "image/jpeg",
            jpeg_photo((900, 568), "father"),
        ),
        "father_id_back": (
            "父亲身份证国徽面",
            "f-back.png",
            "image/png",
            png_photo((820, 517), "father back"),
        ),
    }
    # A document saved as .jpg is no picture: the slot says so at once and asks for another.
    await choose_file(page, "母亲身份证国徽面", "scan.jpg", "image/jpeg", b"%PDF-1.4 not a photo\n")
    slots = page.locator(".photo-slot")
    back = slots.filter(has_text="母亲身份证国徽面")
    await expect(back).to_contain_text("无法识别的图片，请重新选择")
    await expect(back.locator("img")).to_have_count(0)
    # A GIF the phone shows but the service does not take (JPG or PNG only): refused on upload, in Chinese.
    await choose_file(page, "母亲身份证国徽面", "back.gif", "image/gif", gif_photo((800, 505)))
    for kind, (label, name, mime, data) in photos.items():
        if kind != "mother_id_back":
            await choose_file(page, label, name, mime, data)
    await expect(slots.locator("img")).to_have_count(4)
    await expect(slots.filter(has_text="已选择，待上传")).to_have_count(4)
    await page.get_by_role("button", name="上传并继续").click()

    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("母亲身份证国徽面上传失败")
    await expect(alert).to_contain_text("仅支持 JPG 或 PNG 格式的图片")
    await expect(slots.filter(has_text="母亲身份证人像面")).to_contain_text("已上传 ✓")
    await expect(back).to_contain_text("上传失败，请重新选择")
    await expect(back.locator("img")).to_have_count(0)
    await expect(page.locator("#nav-title")).to_have_text("上传证件照片")
    await screenshot(page, "h5-upload-refused.png")

    label, name, mime, data = photos["mother_id_back"]
    await choose_file(page, label, name, mime, data)
    await expect(slots.filter(has_text=label)).to_contain_text("已选择，待上传")
    await screenshot(page, "h5-upload-own.png")
    await page.get_by_role("button", name="上传并继续").click()
    await expect(page.locator("#nav-title")).to_have_text("签名确认")

    # The issuer receives her photos, re-encoded in their own format, the camera's EXIF gone.
    await mp.sign()
    await mp.choose_ems()
    await mp.submit()
    staff = await issuer(stack)
    review = await staff.call("GET", f"/api/v1/review/applications/{mp.app_id}")
    documents = {d["kind"]: d for d in review["documents"]}
    headers = {"Authorization": f"Bearer {staff.token}"}
    for kind, (_label, _name, mime, data) in photos.items():
        assert documents[kind]["content_type"] == mime
        async with stack.session.get(stack.api + documents[kind]["url"], headers=headers) as r:
            assert r.status == 200
            stored = await r.read()
        with Image.open(io.BytesIO(stored)) as image, Image.open(io.BytesIO(data)) as sent:
            assert image.size == sent.size
            assert not image.getexif()
