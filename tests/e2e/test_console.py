"""The issuers' console (``/console/``) in headless Chromium, against the real service and the fake WeChat.

One issuer's session from login to issue, with the parent's side played by the scripted mini-program in
between: reject with reasons from the picklist, the issuer's words and a field, the parent fixes, re-signs and resubmits, the queue shows it
live (no reload), the issuer sees the changes since the rejection and issues. Also: the auditor's
read-only view and a wrong password. Screenshots go to ``test-artifacts/`` for a person to look at.

Needs ``/usr/bin/chromium`` (Debian's build, driven by Playwright without ``playwright install``) and a
CJK font; without them the tests skip with the reason (``.ci/run`` installs both).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend.dev import DEMO_INSTITUTIONS, DEMO_PASSWORD, seed_demo_staff
from miniprogram_stub.client import MiniProgram, StaffClient
from miniprogram_stub.people import Family, demo_family
from tests.e2e.conftest import Stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PDF_VIEWER = "chrome-extension://mhjfbmdgcfjbbpaeojofohoefgiehjai/"  # Chromium's built-in PDF viewer
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Generous for a slow CI machine; every wait is on a condition, none is a sleep.
DEADLINE_MS = 15_000


def _why_not() -> str | None:
    if not CHROMIUM.exists():
        return "no /usr/bin/chromium (apt-get install -y chromium fonts-noto-cjk)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "python playwright missing (pip install -e '.[dev]')"
    if shutil.which("fc-list") is None:
        return "fontconfig's fc-list missing: cannot tell whether a CJK font is installed"
    fonts = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=False).stdout
    if not fonts.strip():
        return "no CJK font (apt-get install -y fonts-noto-cjk): Chinese would render as boxes"
    return None


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""),
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Headless Chromium (the system's), one per test."""
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=DEADLINE_MS)
    async with async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


async def new_page(browser: Any) -> Any:
    context = await browser.new_context(
        viewport={"width": 1366, "height": 768}, locale="zh-CN", timezone_id="Asia/Shanghai"
    )
    context.set_default_timeout(DEADLINE_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors  # the test asserts there were none
    return page


async def submitted(stack: Stack, family: Family) -> MiniProgram:
    """The hospital's record, then the parent's whole journey to submission (EMS delivery)."""
    await stack.in_store(seed_demo_staff, stack.service)
    await stack.record_delivery(family)
    mp = stack.mini_program(family)
    await mp.whole_journey()
    return mp


async def log_in(page: Any, stack: Stack, username: str) -> None:
    await page.goto(f"{stack.api}/console/")
    await page.get_by_label("用户名").fill(username)
    await page.get_by_label("密码").fill(DEMO_PASSWORD)
    await page.get_by_role("button", name="登 录").click()
    await page.locator("#app-header").wait_for(state="visible")


async def until_listed(page: Any, number: str) -> None:
    """Query the pickup list until it shows ``number`` (the EMS process indexes a dispatch asynchronously)."""
    from playwright.async_api import expect

    deadline = time.monotonic() + DEADLINE_MS / 1000
    while True:
        try:
            await expect(page.locator("#pickup-table")).to_contain_text(number, timeout=1000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await page.get_by_role("button", name="查询").click()


def has_route(stack: Stack, path: str) -> bool:
    return any(r.canonical == path for r in stack.app.router.resources())


async def test_an_issuer_rejects_sees_the_fix_live_and_issues(
    stack: Stack, family: Family, browser: Any
) -> None:
    from playwright.async_api import expect

    started = time.monotonic()
    ARTIFACTS.mkdir(exist_ok=True)
    mp = await submitted(stack, family)
    app_id = str(mp.app_id)
    page = await new_page(browser)
    commands: list[dict[str, str]] = []
    page.on(
        "request",
        lambda r: (
            commands.append(r.headers) if r.method == "POST" and "/review/applications/" in r.url else None
        ),
    )

    # A wrong password: the Chinese error, and still on the login page.
    await page.goto(f"{stack.api}/console/")
    await expect(page.get_by_role("heading", name="出生医学证明签发工作台")).to_be_visible()
    await page.get_by_label("用户名").fill("issuer1")
    await page.get_by_label("密码").fill("not-the-password")
    await page.get_by_role("button", name="登 录").click()
    await expect(page.locator("#login-error")).to_have_text("用户名或密码不正确")
    await expect(page.locator("#app-header")).to_be_hidden()

    # The queue: the institution in the header, the submitted application, the live indicator.
    await page.get_by_label("密码").fill(DEMO_PASSWORD)
    await page.get_by_role("button", name="登 录").click()
    await expect(page.locator("#header-institution")).to_contain_text("广州市妇女儿童医疗中心")
    await expect(page.locator("#header-user")).to_contain_text("李签发")
    row = page.locator(f'#queue-table tr[data-application-id="{app_id}"]')
    await expect(row).to_be_visible()
    await expect(row).to_contain_text("新提交")
    # Under the deadline: which calendar counted it (the State Council's schedule, or an estimate).
    await expect(row.locator(".calendar-note")).to_have_text(
        re.compile(r"^(按\d{4}年国务院放假安排计算|按法定节假日估算（未载入\d{4}年调休安排）)$")
    )
    await expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
    await page.screenshot(path=str(ARTIFACTS / "console-queue.png"), full_page=True)

    # The application: the record side by side, the four ID photos (and the signature), the history.
    await row.get_by_role("link").first.click()
    await expect(page.locator("#app-state")).to_have_text("待审核")
    await expect(page.locator("#comparison")).to_contain_text("全部一致")
    await expect(page.locator("#comparison tr[data-field=verified_mother_name]")).to_contain_text(
        family.mother.name
    )
    photos = page.locator("img.doc-img:not([data-kind=signature])")
    await expect(photos).to_have_count(4)
    loaded = await photos.evaluate_all("imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
    assert loaded == [True] * 4
    await expect(page.locator("#history")).to_contain_text("提交审核")
    await expect(page.locator("#bundle-panel")).to_have_count(0)  # she did not opt in to 出生一件事
    await page.locator("button.thumb").first.click()  # enlarge, then close with Escape
    await expect(page.locator("#modal .viewer img")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(page.locator("#modal")).to_be_hidden()

    # 驳回 with reasons from the picklist (docs/decisions/0045), the issuer's words and a field.
    await page.locator("[data-action=reject]").click()
    dialog = page.locator("#modal")
    await dialog.get_by_role("button", name="确认驳回").click()  # nothing filled: refused in the page
    await expect(dialog.locator(".alert-error")).to_contain_text("请选择驳回原因")
    await expect(dialog.locator(".alert-error")).to_contain_text("请选择需要修改的项目")
    await dialog.get_by_label("其他问题", exact=True).check()  # 其他问题 needs the issuer's words
    await dialog.get_by_role("button", name="确认驳回").click()
    await expect(dialog.locator(".alert-error")).to_contain_text("选择“其他问题”时，请填写补充说明")
    await dialog.get_by_label("其他问题", exact=True).uncheck()
    # A reason about one field ticks that field.
    await dialog.get_by_label("新生儿姓名有误或前后不一致", exact=True).check()
    await expect(dialog.get_by_label("新生儿姓名", exact=True)).to_be_checked()
    await dialog.get_by_label("姓名含生僻字或不规范字", exact=True).check()
    await dialog.get_by_label("补充说明", exact=True).fill("新生儿姓名与户口登记不一致")
    await expect(dialog.locator(".field-error")).to_have_count(0)  # each error went with its change
    await expect(dialog.locator(".alert-error")).to_be_hidden()
    await page.set_viewport_size({"width": 1366, "height": 1000})  # the whole dialog in the picture
    await page.screenshot(path=str(ARTIFACTS / "console-reject-dialog.png"))
    await page.set_viewport_size({"width": 1366, "height": 768})
    await dialog.get_by_role("button", name="确认驳回").click()
    await expect(page.locator("#app-state")).to_have_text("已驳回")
    # In the picklist's order (the catalogue's), whatever the order of the clicks.
    await expect(page.locator("#rejection-codes")).to_have_text(
        "驳回原因：姓名含生僻字或不规范字、新生儿姓名有误或前后不一致"
    )
    status = await mp.status()
    assert status["rejection"]["reason_codes"] == ["name_rare_character", "newborn_name_inconsistent"]
    assert status["rejection"]["reasons"] == ["新生儿姓名与户口登记不一致"]
    assert status["rejection"]["fields"] == ["newborn_name"]

    # Back to the queue; the parent fixes, re-signs and resubmits: the row changes without a reload.
    await page.get_by_role("link", name="审核队列").first.click()
    await expect(page.locator("#queue-table")).to_be_visible()
    await expect(page.locator("#live-indicator")).to_have_attribute("data-state", "live")
    await page.evaluate("window.__sameDocument = true")
    await mp.provide_details(newborn_name="张小草")
    await mp.sign()
    await mp.submit()
    await expect(row).to_have_attribute("data-queue-state", "resubmitted")
    await expect(row).to_contain_text("再次提交")
    assert await page.evaluate("window.__sameDocument === true"), "the queue was reloaded"

    # The issuer opens it: the changes since the rejection, highlighted; issues it with a number.
    await row.get_by_role("link").first.click()
    changes = page.locator("#changes-since-rejection")
    await expect(changes).to_contain_text("新生儿姓名")
    await expect(changes).to_contain_text("张小草")
    await expect(page.locator('td.is-changed[data-field="newborn.name"]')).to_contain_text("张小草")
    await expect(page.locator("img.doc-img")).to_have_count(5)
    # 办理记录 says whose face check each was and why it came back.
    history = page.locator("#history")
    await expect(history.locator('li[data-event="FaceVerified"]')).to_have_count(2)
    await expect(history.locator('li[data-event="FaceVerified"]').first).to_contain_text("父亲")
    await expect(history.locator('li[data-event="Rejected"]')).to_contain_text("新生儿姓名与户口登记不一致")
    await expect(history.locator('li[data-event="Rejected"]')).to_contain_text(
        "原因：姓名含生僻字或不规范字、新生儿姓名有误或前后不一致"
    )
    await page.screenshot(path=str(ARTIFACTS / "console-application.png"), full_page=True)
    # EMS's booking system is down for this test, so the certificate waits for the issuer to hand it to
    # the courier herself (寄出 by hand); the automatic booking has its own tests.
    async with stack.session.post(f"{stack.platform}/_fake/ems/errors", json={"times": 1_000_000}) as r:
        assert r.status == 200
    await page.locator("[data-action=issue]").click()
    await dialog.get_by_label("出生医学证明编号").fill("12345")
    await dialog.get_by_label("盖章人").fill("赵盖章")
    await dialog.get_by_role("button", name="确认签发").click()
    await expect(dialog.locator(".alert-error")).to_contain_text("1个大写字母加9位数字")
    await page.screenshot(path=str(ARTIFACTS / "console-issue-dialog.png"))
    await dialog.get_by_label("出生医学证明编号").fill("x440100021")  # upper-cased as typed
    await dialog.get_by_role("button", name="确认签发").click()
    # Issued; EMS cannot be booked, so the issuer hands it to the courier by hand.
    await expect(page.locator("#app-state")).to_have_text("已签发")
    await expect(page.locator("#app-printed-by")).to_have_text("打证人 李签发 · 盖章人 赵盖章")
    status = await mp.status()
    assert status["certificate_number"] == "X440100021"
    assert len(commands) == 2
    for headers in commands:
        assert headers.get("idempotency-key")
        assert headers.get("if-match", "").strip('"').isdigit()
    assert commands[0]["idempotency-key"] != commands[1]["idempotency-key"]
    await page.locator("[data-action=dispatch]").click()
    await dialog.get_by_label("EMS 邮件号").fill("EA123456789CN")
    await dialog.get_by_role("button", name="确认寄出").click()
    await expect(page.locator("#app-state")).to_have_text("已寄出")

    # 打印揽件清单: the PDF opens in a new tab (a blob: URL fetched with the token); the CSV downloads.
    if has_route(stack, "/api/v1/review/pickup-list"):
        await page.get_by_role("link", name="揽件清单").click()
        await until_listed(page, "X440100021")
        await page.screenshot(path=str(ARTIFACTS / "console-pickup.png"))
        async with (
            page.expect_response(lambda r: "format=pdf" in r.url) as answered,
            page.context.expect_page() as opened,
        ):
            await page.locator("#pickup-pdf").click()
        pdf = await answered.value
        assert pdf.headers["content-type"].startswith("application/pdf")
        assert int(pdf.headers["content-length"]) > 1000
        tab = await opened.value
        await expect(tab).to_have_url(re.compile("^blob:"))
        while not any(f.url.startswith(PDF_VIEWER) for f in tab.frames):  # Chromium's viewer took it
            await tab.wait_for_event("framenavigated")
        await tab.close()
        async with page.expect_download() as downloading:
            await page.locator("#pickup-csv").click()
        download = await downloading.value
        csv = Path(await download.path()).read_text(encoding="utf-8-sig")
        assert "X440100021" in csv
    else:
        warnings.warn("GET /api/v1/review/pickup-list is not wired yet: pickup list not tested", stacklevel=1)

    # Logging out forgets the token.
    await page.get_by_role("button", name="退出登录").click()
    await expect(page.get_by_label("用户名")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
    assert page.errors == []
    assert time.monotonic() - started < 60


async def test_a_resubmission_with_nothing_changed_is_pointed_out(
    stack: Stack, family: Family, browser: Any
) -> None:
    from playwright.async_api import expect

    from miniprogram_stub.client import StaffClient

    mp = await submitted(stack, family)
    issuer = StaffClient(stack.session, stack.api, check=stack.check)
    await issuer.login("issuer1", DEMO_PASSWORD)
    await issuer.call(
        "POST",
        f"/api/v1/review/applications/{mp.app_id}/reject",
        json={"reasons": ["身份证照片不清晰"], "fields": ["documents.mother_id_front"]},
    )
    await mp.sign()  # the same form, the same photos: nothing the issuer asked for was changed
    await mp.submit()
    page = await new_page(browser)
    await log_in(page, stack, "issuer1")
    await page.goto(f"{stack.api}/console/#/applications/{mp.app_id}")
    await expect(page.locator("#app-state")).to_have_text("待审核")
    await expect(page.locator("#unchanged-since-rejection")).to_contain_text("未修改任何内容")
    await expect(page.locator("#changes-since-rejection")).to_have_count(0)
    assert page.errors == []


async def test_an_auditor_reads_without_acting(stack: Stack, family: Family, browser: Any) -> None:
    from playwright.async_api import expect

    mp = await submitted(stack, family)
    page = await new_page(browser)
    await log_in(page, stack, "auditor1")
    await expect(page.locator("#header-user")).to_contain_text("审计人员")
    picker = page.get_by_label("签发机构")
    await expect(picker.locator("option")).to_have_count(len(DEMO_INSTITUTIONS))  # every demo institution
    await expect(page.get_by_role("link", name="揽件清单")).to_be_hidden()
    await page.goto(f"{stack.api}/console/#/applications/{mp.app_id}")
    await expect(page.locator("#app-state")).to_have_text("待审核")
    await expect(page.locator("img.doc-img")).to_have_count(5)
    await expect(page.locator(".action-bar-readonly")).to_contain_text("只读")
    await expect(page.locator("[data-action]")).to_have_count(0)
    await page.screenshot(path=str(ARTIFACTS / "console-auditor.png"))
    assert page.errors == []


async def test_the_console_is_served_with_a_strict_policy(stack: Stack) -> None:
    async with stack.session.get(f"{stack.api}/console/") as r:
        assert r.status == 200
        html = await r.text()
        assert r.headers["X-Frame-Options"] == "DENY"
        policy = r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
    assert "<script>" not in html.replace(" ", "") and 'type="module" src="console.js"' in html
    async with stack.session.get(f"{stack.api}/console/console.js") as r:
        assert r.status == 200
        assert r.content_type == "text/javascript"
        etag = r.headers["ETag"]
    async with stack.session.get(f"{stack.api}/console/console.js", headers={"If-None-Match": etag}) as r:
        assert r.status == 304
    for path in ("/console/app.py", "/console/..%2Froutes%2Fconsole.py", "/console/%2e%2e/app.py"):
        async with stack.session.get(f"{stack.api}{path}") as r:
            assert r.status == 404, path
    async with stack.session.get(f"{stack.api}/console/institutions.json") as r:
        assert r.status == 401


async def test_a_hospital_answers_disputes_from_its_worklist(stack: Stack, browser: Any) -> None:
    """The midwifery institution's staff: the worklist with the mother's reason, an answer that the record
    stands, a correction, and a record entered late shown as overdue."""
    from playwright.async_api import expect

    from tests.e2e.test_hospital_worklist import delivery

    ARTIFACTS.mkdir(exist_ok=True)
    await stack.in_store(seed_demo_staff, stack.service)
    his = StaffClient(stack.session, stack.api, check=stack.check)
    await his.login("his1", DEMO_PASSWORD)
    mothers = []
    for n, reason in ((1, "出生体重应为3350克，不是3250克"), (2, "出生身长应为51厘米")):
        family = demo_family(n)
        await his.call("POST", "/api/v1/deliveries", json=delivery(family))
        mother = stack.mini_program(family)
        await mother.login()
        await mother.start()
        await mother.verify_face("mother")
        await mother.call("POST", f"{mother.base}/delivery-record/dispute", json={"reason": reason})
        mothers.append(mother)
    await his.call("POST", "/api/v1/deliveries", json=delivery(demo_family(3), hours_ago=80))

    page = await new_page(browser)
    await log_in(page, stack, "his1")
    await expect(page).to_have_url(re.compile(r"#/worklist$"))
    await expect(page.locator("#nav-worklist")).to_be_visible()
    await expect(page.locator("#nav-queue")).to_be_hidden()
    first = page.locator(f'#worklist-table tr[data-item-id="dispute:{mothers[0].app_id}"]')
    await expect(first).to_contain_text("出生体重应为3350克，不是3250克")
    late = page.locator("#worklist-table tr[data-kind=late_entry]")
    await expect(late).to_contain_text("超期")
    await expect(page.locator(".tab[data-kind=overdue] .count")).to_have_text("1")
    await page.screenshot(path=str(ARTIFACTS / "console-worklist.png"), full_page=True)

    # The record stands: the answer, in the mother's status view.
    await first.get_by_role("button", name="答复原记录无误").click()
    dialog = page.locator("#modal")
    await dialog.get_by_role("button", name="提交答复").click()  # nothing filled: refused in the page
    await expect(dialog.locator(".alert-error")).to_contain_text("请填写2到200个字的答复原因")
    await dialog.get_by_label("答复原因").fill("经核对产房称重记录，出生体重为3250克，原记录无误")
    await dialog.get_by_role("button", name="提交答复").click()
    await expect(first).to_have_count(0)
    status = await mothers[0].status()
    assert status["delivery_dispute"]["answer"] == "经核对产房称重记录，出生体重为3250克，原记录无误"

    # The other is corrected: the length changes, and the mother must confirm again.
    second = page.locator(f'#worklist-table tr[data-item-id="dispute:{mothers[1].app_id}"]')
    await second.get_by_role("button", name="更正分娩信息").click()
    await expect(dialog.get_by_label("出生身长（厘米）")).to_have_value("50")
    await dialog.get_by_label("出生身长（厘米）").fill("51")
    await dialog.get_by_label("更正原因").fill("按产妇异议核对后更正出生身长")
    await page.screenshot(path=str(ARTIFACTS / "console-worklist-correct.png"), full_page=True)
    await dialog.get_by_role("button", name="保存更正").click()
    await expect(second).to_have_count(0)
    await expect(page.locator(".tab[data-kind=dispute] .count")).to_have_text("0")
    shown = (await mothers[1].delivery_record())["delivery_record"]
    assert (shown["newborn"]["length_cm"], shown["confirmed"]) == (51, False)
    assert (await mothers[1].status())["delivery_dispute"]["status"] == "corrected"
    assert page.errors == []
