"""粤省事 on the H5 simulator in headless Chromium (issue 10 item 1; docs/decisions/0030).

A mother who comes from 粤省事, not WeChat: the login screen offers the configured apps (from data), she logs
in with the app's ticket for her real-name account, and her face check happens *in 粤省事*: the page
navigates to the app's authorization URL (the fake issuer), which redirects back to ``/h5/face-return``; the
simulator posts the redirect's code and state to the same result endpoint WeChat's verdict uses and goes on.
She reaches a submitted application, then an issued certificate whose message reaches her through
粤省事's push, shown on her messages page. A face check that fails in 粤省事 shows why in Chinese; the day's
third failure sends her to the counter it names, and 粤省事 tells her so.

Screenshots go to ``test-artifacts/`` (``h5-yss-*.png``) for a person to look at. Needs ``/usr/bin/chromium``
and a CJK font, like ``test_h5.py``; without them the tests skip.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from domain.application import BirthCertificateApplication
from miniprogram_stub.people import Family
from tests.e2e.conftest import Stack
from tests.e2e.test_console import _why_not
from tests.e2e.test_h5 import SHA256, draw_signature, phone, screenshot
from tests.e2e.test_staff import staff
from tests.waiting import eventually

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""),
]
__all__ = ["phone"]  # the fixture, used by name

DIALOG = "粤省事刷脸认证（模拟）"


async def enter_her_record_and_come_from_yueshengshi(page: Any) -> None:
    """The demo hospital enters her delivery record; she enters from 粤省事 (her real-name account is hers)
    and starts a single mother's application (Guangdong lets her apply online) at the hospital's QR code."""
    from playwright.async_api import expect

    await page.get_by_role("button", name="演示：让医院录入我的分娩记录").click()
    await expect(page.locator(".ok")).to_contain_text("已录入")
    channel = page.locator("#channel")
    # WeChat, then every configured app, named with its province (from channels.json, not the page's text).
    await expect(channel.locator("option")).to_have_count(5)
    assert await channel.locator("option").all_text_contents() == [
        "微信",
        "粤省事（广东省）",
        "北京通（北京市）",
        "健康山东（山东省）",
        "冀时办（河北省）",
    ]
    await channel.select_option(label="粤省事（广东省）")
    await expect(page.locator("#nav-title")).to_have_text("粤省事登录")
    # Her account's real name and number: the ones the hospital recorded.
    await expect(page.locator("#account-name")).to_have_value(await page.locator("#demo-name").input_value())
    await expect(page.locator("#account-id")).to_have_value(await page.locator("#demo-id").input_value())
    await screenshot(page, "h5-yss-login.png")
    await page.get_by_role("button", name="模拟从粤省事进入").click()
    await expect(page.locator("#nav-title")).to_have_text("我的申请")
    await expect(page.locator(".hero")).to_contain_text("粤省事用户")
    await page.get_by_role("button", name="新建申请").click()
    hospital = page.locator("#institution")
    await expect(hospital.locator("option")).to_have_count(2)
    await hospital.select_option(label="广州市妇女儿童医疗中心")  # as the hospital's QR code would
    await page.get_by_text("单母亲", exact=True).click()
    await page.get_by_role("button", name="开始申办").click()
    await expect(page.locator("#nav-title")).to_have_text("母亲刷脸认证")
    await expect(page.locator("#face-in-app")).to_contain_text("刷脸认证在粤省事中进行")


async def face_check_in_yueshengshi(page: Any, choice: str) -> None:
    """She taps the button, 粤省事's face screen (simulated) takes her choice, the page goes to 粤省事's
    authorization URL and comes back through /h5/face-return."""
    from playwright.async_api import expect

    await page.get_by_role("button", name="去粤省事刷脸认证").click()
    # To the app and back, through /h5/face-return to the simulator's own page.
    async with page.expect_navigation(url="**/h5/?platform=*"):
        await page.get_by_role("dialog", name=DIALOG).get_by_role("button", name=choice).click()
    # The app's code no longer in the address, the redirect consumed.
    await expect(page.get_by_role("dialog", name=DIALOG)).to_have_count(0)
    await expect(page.locator(".loading")).to_have_count(0)
    assert "code=" not in page.url
    assert await page.evaluate("sessionStorage.getItem('h5.faceReturn')") is None


async def pushed(stack: Stack, phrase: str) -> None:
    """Wait until 粤省事's push has taken a message with this status phrase (it follows the event)."""

    async def taken() -> bool:
        async with stack.session.get(f"{stack.platform}/_fake/oidc/yueshengshi/pushes") as r:
            return any(phrase in m["data"].values() for m in (await r.json())["pushes"])

    await eventually(taken, f"a 粤省事 push saying {phrase}")


def face_events(stack: Stack, app_id: str) -> list[tuple[str, str]]:
    kinds = (BirthCertificateApplication.FaceVerified, BirthCertificateApplication.FaceVerificationFailed)
    return [
        (type(e).__name__, e.channel) for e in stack.service.events.get(UUID(app_id)) if isinstance(e, kinds)
    ]


async def test_a_yueshengshi_mother_passes_her_face_check_in_the_app_and_is_issued(
    phone: Any, stack: Stack
) -> None:
    from playwright.async_api import expect

    page = phone
    navigations: list[str] = []
    page.on("request", lambda r: navigations.append(r.url) if r.is_navigation_request() else None)
    await enter_her_record_and_come_from_yueshengshi(page)
    await screenshot(page, "h5-yss-face.png")
    await page.get_by_role("button", name="去粤省事刷脸认证").click()
    dialog = page.get_by_role("dialog", name=DIALOG)
    await expect(dialog).to_contain_text("粤省事将核验")
    await screenshot(page, "h5-yss-face-dialog.png", whole=False)
    async with page.expect_navigation(url="**/h5/?platform=*"):
        await dialog.get_by_role("button", name="本人刷脸通过").click()

    # A real round trip: to 粤省事's authorization endpoint (the fake issuer), back to /h5/face-return.
    assert any(f"{stack.platform}/oidc/yueshengshi/authorize?" in url for url in navigations), navigations
    assert any(url.startswith(f"{stack.api}/h5/face-return?code=") for url in navigations), navigations
    await expect(page.locator("#nav-title")).to_have_text("核对分娩信息")
    assert "code=" not in page.url
    await expect(page.locator("#page")).to_contain_text("广州市妇女儿童医疗中心")
    await page.get_by_role("button", name="确认无误").click()

    await expect(page.locator("#nav-title")).to_have_text("填写信息")
    await expect(page.locator("#mother-ethnicity option")).to_have_count(58)
    await page.get_by_label("新生儿姓名").fill("王小花")
    await page.locator("#mother-address").fill("广东省广州市越秀区中山二路58号")
    await page.get_by_role("button", name="保存并继续").click()

    await expect(page.locator("#nav-title")).to_have_text("上传证件照片")
    await page.get_by_role("button", name="使用示例照片").click()
    await expect(page.locator(".photo-slot img")).to_have_count(2)  # hers: a single mother's application
    await page.get_by_role("button", name="上传并继续").click()

    await expect(page.locator("#nav-title")).to_have_text("签名确认")
    await expect(page.locator("#form-sha")).to_have_text(SHA256)
    pad = page.locator("#sigpad")
    await pad.scroll_into_view_if_needed()
    box = await pad.bounding_box()
    assert box is not None
    await draw_signature(page, box["x"], box["y"])
    await page.get_by_role("button", name="确认签名").click()

    await expect(page.locator("#nav-title")).to_have_text("领取方式")
    await page.get_by_label("手机号").fill("13800138000")
    await page.get_by_label("收件地址").fill("广东省广州市越秀区中山二路58号")
    await page.get_by_role("button", name="确定").click()

    await expect(page.locator("#nav-title")).to_have_text("提交申请")
    await expect(page.locator("#page")).to_contain_text("审核结果将通过粤省事消息告知")
    await page.get_by_label("本人承诺所填信息真实有效").check()
    await page.get_by_role("button", name="提交申请").click()
    await expect(page.locator("#state-label")).to_have_text("审核中")
    await screenshot(page, "h5-yss-submitted.png")

    token = await page.evaluate("sessionStorage.getItem('h5.token')")
    app_id = await page.evaluate("sessionStorage.getItem('h5.appId')")
    headers = {"Authorization": f"Bearer {token}"}
    async with stack.session.get(f"{stack.api}/api/v1/applications/{app_id}", headers=headers) as r:
        status = await r.json()
    assert (status["state"], status["signature_valid"]) == ("submitted", True)
    assert face_events(stack, app_id) == [("FaceVerified", "yueshengshi")]

    # Issued: the number on her status page, and 粤省事 (not WeChat) tells her.
    issuer = await staff(stack, "issuer1")
    await issuer.call(
        "POST",
        f"/api/v1/review/applications/{app_id}/issue",
        json={"certificate_number": "Y440100077", "sealer": "赵盖章"},
    )
    await page.get_by_role("button", name="刷新").click()
    await expect(page.locator("#certificate-number")).to_have_text("Y440100077")
    await pushed(stack, "已签发")  # the push follows the event
    await page.locator("#nav-back").click()
    await page.get_by_role("button", name="粤省事消息").click()
    await expect(page.locator("#nav-title")).to_have_text("粤省事消息")
    # Once each (EMS's booking may have added "dispatched" by now, above it: newest first).
    issued = page.locator("#messages .message").filter(has_text="已签发")
    await expect(issued).to_have_count(1)
    await expect(issued).to_contain_text("Y440100077")
    await screenshot(page, "h5-yss-messages.png")


async def test_a_face_check_failed_in_yueshengshi_is_explained_and_the_third_refers_her(
    phone: Any, stack: Stack
) -> None:
    from playwright.async_api import expect

    page = phone
    await enter_her_record_and_come_from_yueshengshi(page)
    for attempt in range(2):
        await face_check_in_yueshengshi(page, "刷脸未通过")
        await expect(page.locator("#nav-title")).to_have_text("母亲刷脸认证")
        alert = page.get_by_role("alert")
        await expect(alert).to_contain_text("刷脸认证未通过，请重试")
        await expect(alert).to_contain_text("face_failed")
        await expect(page.locator("#problem-referral")).to_have_count(0)
        if attempt == 0:
            await screenshot(page, "h5-yss-face-failed.png")
    await face_check_in_yueshengshi(page, "他人代刷")  # someone else's face: counted too
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("当日刷脸认证多次未通过")
    for text in ("广州市妇女儿童医疗中心", "广州市越秀区演示路1号", "020-12345678"):
        await expect(page.locator("#problem-referral-counter")).to_contain_text(text)
    await expect(page.locator("#problem-referral-bring li")).to_have_count(4)
    await expect(page.get_by_role("button", name="去粤省事刷脸认证")).to_have_count(0)  # no fourth try
    await screenshot(page, "h5-yss-referral.png")

    app_id = await page.evaluate("sessionStorage.getItem('h5.appId')")
    assert [name for name, _ in face_events(stack, app_id)] == ["FaceVerificationFailed"] * 3
    await page.get_by_role("button", name="查看申请进度").click()
    await expect(page.locator("#state-label")).to_have_text("需到签发机构现场办理")
    await pushed(stack, "转现场办理")
    await page.locator("#nav-back").click()
    await page.get_by_role("button", name="粤省事消息").click()
    messages = page.locator("#messages .message")
    await expect(messages).to_have_count(1)
    await expect(messages).to_contain_text("转现场办理")
    await screenshot(page, "h5-yss-referral-message.png")


async def test_the_father_of_a_yueshengshi_mother_is_invited_to_verify_on_his_own_account(
    phone: Any, stack: Stack, family: Family
) -> None:
    """粤省事 vouches for its logged-in account's holder, so the father cannot pass his face check on the
    mother's phone: the simulator offers her an invitation instead; he joins and verifies on his own 粤省事
    account (his phone played by the scripted mini-program), and her journey goes on to the photos."""
    from playwright.async_api import expect

    assert family.father is not None
    await stack.record_delivery(family)
    page = phone
    await page.locator("#channel").select_option(label="粤省事（广东省）")
    await page.locator("#openid").fill("yss-h5-mother")
    await page.locator("#account-name").fill(family.mother.name)
    await page.locator("#account-id").fill(family.mother.id_number)
    await page.get_by_role("button", name="模拟从粤省事进入").click()
    await page.get_by_role("button", name="新建申请").click()
    await page.get_by_role("button", name="开始申办").click()
    await page.locator("#mother-name").fill(family.mother.name)
    await page.locator("#mother-id").fill(family.mother.id_number)
    await face_check_in_yueshengshi(page, "本人刷脸通过")
    await page.get_by_role("button", name="确认无误").click()
    await expect(page.locator("#mother-ethnicity option")).to_have_count(58)
    await page.get_by_label("新生儿姓名").fill(family.newborn_name)
    await page.locator("#mother-address").fill("广东省广州市越秀区中山二路58号")
    await page.get_by_label("姓名", exact=True).fill(family.father.name)
    await page.locator("#father-id").fill(family.father.id_number)
    await page.get_by_role("button", name="同母亲住址").click()
    await page.get_by_role("button", name="保存并继续").click()

    await expect(page.locator("#nav-title")).to_have_text("父亲身份核验")
    await expect(page.locator("#father-own-account")).to_contain_text("父亲须用本人的粤省事账号刷脸认证")
    await expect(page.get_by_role("button", name="去粤省事刷脸认证")).to_have_count(0)
    await page.get_by_role("button", name="生成邀请码").click()
    code = page.locator("#invitation-code")
    await expect(code).not_to_be_empty()
    await screenshot(page, "h5-yss-invite-father.png")

    father = stack.mini_program(family)
    await father.login_channel("yueshengshi", openid="yss-h5-father", holder=family.father)
    await father.accept_invitation(await code.inner_text())
    assert (await father.verify_face("father"))["verified"] is True

    await page.get_by_role("button", name="刷新进度").click()
    await expect(page.locator("#nav-title")).to_have_text("上传证件照片")
    await expect(page.locator(".photo-slot")).to_have_count(4)
    app_id = await page.evaluate("sessionStorage.getItem('h5.appId')")
    assert face_events(stack, app_id) == [("FaceVerified", "yueshengshi")] * 2
