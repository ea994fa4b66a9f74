"""The auditor's console (``/console/``) in headless Chromium: the whole history, the archive, the proof.

An application is submitted through the mini-program and issued over HTTP (the helpers of test_staff).
auditor1 logs in, finds it by pasting its id, reads its complete history (every event, in order, with
its log position and leaf index; the reading is recorded), opens an archived form's PDF, sees the
latest checkpoint and the integrity status, downloads the proof bundle and — like an auditor at home —
runs the exact command the page shows, with the standalone ``tools/birthcert_verify.py`` in a directory
of its own. A screenshot goes to ``test-artifacts/console-auditor-history.png`` for a person to look at.

Needs ``/usr/bin/chromium`` and a CJK font, like test_console; without them the test skips with the reason.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend.components import CONFIG
from domain.application import DOCUMENT_KINDS
from miniprogram_stub.client import MiniProgram
from miniprogram_stub.people import Family
from tests.e2e.conftest import Stack
from tests.e2e.test_audit_http import TOOL, trusted_key
from tests.e2e.test_console import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DEADLINE_MS,
    PDF_VIEWER,
    _why_not,
    log_in,
    new_page,
)
from tests.e2e.test_staff import staff, submitted

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


async def issued(stack: Stack, family: Family) -> MiniProgram:
    """Submitted by the family, issued by issuer1; then left to settle (the EMS process may book the
    courier at once), so that the history the auditor reads is the whole history."""
    mp = await submitted(stack, family)
    issuer = await staff(stack, "issuer1")
    await issuer.call(
        "POST",
        f"/api/v1/review/applications/{mp.app_id}/issue",
        json={"certificate_number": "X440100021", "sealer": "赵盖章"},
    )
    deadline = time.monotonic() + 5
    while (await mp.status())["state"] == "issued" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # polling the EMS process (an external fake's answer) with a deadline
    return mp


def application_events(stack: Stack, app_id: str) -> list[tuple[int, int, str]]:
    """(position, version, event name) of every stored event of the application (on the store thread)."""
    service = stack.service
    found = []
    for n in service.recorder.select_notifications(start=1, limit=100_000):
        if str(n.originator_id) == app_id:
            event = service.mapper.to_domain_event(n)
            found.append((n.id, n.originator_version, type(event).__name__))
    return found


def readings(stack: Stack, app_id: str) -> list[tuple[str, str]]:
    """(what, auditor id) of every recorded reading of the application's personal data."""
    service = stack.service
    found = []
    for n in service.recorder.select_notifications(start=1, limit=100_000):
        if n.topic == "birthcert:PersonalDataViewed":
            event = service.mapper.to_domain_event(n)
            if event.application_id == app_id:
                assert event.actor["role"] == "auditor", event.actor
                found.append((event.what, event.actor["id"]))
    return found


async def test_an_auditor_reads_the_whole_history_and_verifies_the_proof_offline(
    stack: Stack, family: Family, browser: Any, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    started = time.monotonic()
    ARTIFACTS.mkdir(exist_ok=True)
    mp = await issued(stack, family)
    app_id = str(mp.app_id)
    page = await new_page(browser)

    # The read-only banner on every page; the application found by pasting its id (it left the queue).
    await log_in(page, stack, "auditor1")
    banner = page.locator("#audit-banner")
    await expect(banner).to_contain_text("只读")
    await expect(page.get_by_label("签发机构")).to_be_visible()  # the queues of every institution
    await banner.get_by_label("按申请号查找").fill("not-an-id")
    await banner.get_by_role("button", name="查找").click()
    await expect(page.locator("#find-error")).to_contain_text("申请号格式不正确")
    await banner.get_by_label("按申请号查找").fill(f"  {app_id.upper()} ")
    await banner.get_by_role("button", name="查找").click()
    await expect(page).to_have_url(re.compile(f"#/applications/{app_id}$"))
    await expect(page.locator("#app-state")).to_have_text(re.compile("已签发|已寄出"))
    await expect(page.locator(".action-bar-readonly")).to_contain_text("只读")
    await expect(page.locator("[data-action]")).to_have_count(0)
    audit = page.locator("#audit")
    await expect(audit.locator("#audit-app-id")).to_have_text(app_id)
    await expect(page.locator("#integrity")).to_have_attribute("data-ok", "true")
    await expect(page.locator("#integrity")).to_contain_text("数据完整性校验通过")

    # Opening the application (its form and photos) was recorded as the auditor's reading; the
    # complete history is read (and recorded) only when the auditor asks, knowing it is recorded.
    page_readings = await stack.in_store(readings, stack, app_id)
    assert ("review", "auditor1") in page_readings
    looked_at = {"review", "document:signature"} | {f"document:{k}" for k in DOCUMENT_KINDS}
    assert {what for what, _ in page_readings} <= looked_at
    await expect(page.locator("#full-history")).to_contain_text("读取本身会被记录")
    await page.get_by_role("button", name="查看完整记录（将被记录）").click()
    rows = page.locator("#audit-events tr.event-row")
    stored = await stack.in_store(application_events, stack, app_id)
    await expect(rows).to_have_count(len(stored))
    shown = await rows.evaluate_all(
        "rows => rows.map(r => [Number(r.dataset.position), Number(r.dataset.version), r.dataset.event,"
        " r.querySelector('[data-col=position]').textContent, r.querySelector('[data-col=leaf]').textContent])"
    )
    assert [tuple(r[:3]) for r in shown] == stored  # every event, in order, at its position
    assert [r[3] for r in shown] == [str(p) for p, _, _ in stored]
    leaves = [int(r[4]) for r in shown]  # each one in the verifiable log
    assert leaves == sorted(leaves) and len(set(leaves)) == len(leaves)
    names = [e for _, _, e in stored]
    assert names[0] == "ApplicationStarted" and "Submitted" in names and "Issued" in names
    await expect(rows.first).to_contain_text("发起申办")
    issued_row = page.locator('#audit-events tr.event-row[data-event="Issued"]')
    await expect(issued_row).to_contain_text("签发人员 李签发")
    await expect(issued_row).to_contain_text("X440100021")
    await expect(page.locator("#history-status")).to_contain_text(f"共 {len(stored)} 个事件")
    after = await stack.in_store(readings, stack, app_id)
    assert [r for r in after if r[0] not in looked_at] == [("events", "auditor1")]

    # The event's data: collapsed, ID numbers masked until revealed.
    history = page.locator("#full-history")
    face = page.locator('#audit-events tr.event-row[data-event="FaceVerified"]').first
    await face.get_by_role("button", name="展开").click()
    data = page.locator(f"#{await face.get_by_role('button').get_attribute('aria-controls')}")
    await expect(data).to_be_visible()
    await expect(data).to_contain_text(family.mother.name)
    masked = family.mother.id_number[:4] + "*" * 10 + family.mother.id_number[-4:]
    full = data.locator(".pii-full", has_text=family.mother.id_number)
    await expect(data.locator(".pii-masked", has_text=masked)).to_be_visible()
    await expect(full).to_be_hidden()
    assert family.mother.id_number not in await history.inner_text()  # the text a person sees
    await page.locator("#history-reveal").click()
    await expect(full).to_be_visible()
    assert family.mother.id_number in await data.inner_text()
    await page.locator("#history-reveal").click()
    await expect(full).to_be_hidden()

    # 存档登记表: the signed and the issued versions; the issued one's PDF opens in a new tab.
    forms = page.locator("#archive-table tbody tr")
    await expect(forms).to_have_count(2)
    await expect(forms.nth(0)).to_contain_text("申办人签名版")
    await expect(forms.nth(1)).to_contain_text("签发版")
    await expect(forms.nth(1)).to_contain_text("X440100021")
    async with (
        page.expect_response(lambda r: "/api/v1/archive/forms/" in r.url) as answered,
        page.context.expect_page() as opened,
    ):
        await forms.nth(1).get_by_role("button", name="打开 PDF").click()
    pdf = await answered.value
    assert pdf.headers["content-type"] == "application/pdf"
    tab = await opened.value
    await expect(tab).to_have_url(re.compile("^blob:"))
    while not any(f.url.startswith(PDF_VIEWER) for f in tab.frames):  # Chromium's viewer took it
        await tab.wait_for_event("framenavigated")
    await tab.close()
    await expect(forms.nth(1).locator(".pdf-check")).to_contain_text("摘要一致")
    assert ("archive_form", "auditor1") in await stack.in_store(readings, stack, app_id)

    # 可验证日志: the checkpoint, the key (the operator's), the command; the bundle downloads.
    await expect(page.locator("#checkpoint-size")).to_have_text(re.compile(r"^\d+$"))
    assert int(await page.locator("#checkpoint-size").inner_text()) >= max(p for p, _, _ in stored)
    await expect(page.locator("#checkpoint-root")).to_have_text(re.compile(r"^[A-Za-z0-9+/]{43}=$"))
    key = (await page.locator("#verifier-key").inner_text()).strip()
    assert key == trusted_key(stack.app[CONFIG])
    command = (await page.locator("#verify-command").inner_text()).strip()
    assert command == f"python3 birthcert_verify.py bundle proof-{app_id}.json --key '{key}'"
    async with page.expect_download() as downloading:
        await page.get_by_role("button", name="下载证明包").click()
    download = await downloading.value
    assert download.suggested_filename == f"proof-{app_id}.json"
    offline = tmp_path / "offline"
    offline.mkdir()
    await download.save_as(offline / download.suggested_filename)
    bundle = json.loads((offline / download.suggested_filename).read_text("utf-8"))
    assert [leaf["index"] for leaf in bundle["leaves"]] == leaves  # the leaves the history page showed
    await expect(page.locator("#proof-status")).to_contain_text("已下载")
    # The page from its top to the end of the audit panel, as one picture (no sticky header over it).
    await page.evaluate("window.scrollTo(0, 0)")
    box = await page.locator("#audit").bounding_box()
    assert box
    await page.screenshot(
        path=str(ARTIFACTS / "console-auditor-history.png"),
        full_page=True,
        clip={"x": 0, "y": 0, "width": 1366, "height": box["y"] + box["height"] + 16},
    )

    # Offline, as the page says: the tool and the bundle in one directory, the command as shown.
    shutil.copy(TOOL, offline / TOOL.name)
    argv = shlex.split(command)
    assert argv[0] == "python3"
    done = subprocess.run(
        [sys.executable, *argv[1:]], capture_output=True, text=True, timeout=60, check=False, cwd=offline
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(line.startswith("VERIFIED") for line in done.stdout.splitlines()), done.stdout

    # What the page shows when the start-up check found the store altered (test_audit_http makes the
    # service find it for real): red, with the position. Here the answer is played to the page.
    failed = {
        "ok": False,
        "checked_size": 40,
        "message": "position 33: the stored event differs from its leaf",
        "position": 33,
    }
    await page.route("**/api/v1/audit/integrity", lambda route: route.fulfill(json=failed))
    await page.reload()
    await expect(page.locator("#integrity")).to_have_attribute("data-ok", "false")
    await expect(page.locator("#integrity")).to_contain_text("数据完整性校验未通过")
    await expect(page.locator("#integrity-position")).to_have_text("33")
    assert page.errors == []
    assert time.monotonic() - started < 30
