"""The managers' statistics page (``/console/statistics.html``) in headless Chromium (decision 0043).

After real journeys (one rejected then issued and delivered, one issued, one sent to the counter), the province's
manager logs in through the console and lands on the statistics page: the cards show the day's figures, the six
charts are drawn by the vendored Chart.js with Chinese labels, the CSV export downloads a file Excel opens, and
nothing on the page failed. A screenshot goes to ``test-artifacts/`` for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest

from backend.dev import seed_demo_staff
from tests.e2e.conftest import Stack
from tests.e2e.test_console import ARTIFACTS, browser, log_in, new_page
from tests.e2e.test_console import pytestmark as console_marks
from tests.e2e.test_statistics_http import _journeys

pytestmark = console_marks
__all__ = ["browser"]  # the fixture, used by name

CHARTS = (
    "chart-volume",
    "chart-online",
    "chart-durations",
    "chart-overdue",
    "chart-rejections",
    "chart-referrals",
)


async def test_the_manager_sees_the_days_figures_and_charts(stack: Stack, browser: Any) -> None:
    from playwright.async_api import expect

    await stack.in_store(seed_demo_staff, stack.service)
    await _journeys(stack)
    page = await new_page(browser)
    await page.goto(f"{stack.api}/console/")
    await page.get_by_label("用户名").fill("manager1")
    await page.get_by_label("密码").fill(os.environ.get("BIRTHCERT_DEMO_PASSWORD", "birthcert-dev"))
    await page.get_by_role("button", name="登 录").click()
    await page.wait_for_url("**/console/statistics.html")
    await page.locator("body[data-loaded=true]").wait_for()
    await expect(page.locator("#header-scope")).to_contain_text("广东省")
    cards = page.locator("#cards")
    await expect(cards.locator(".card", has_text="签发").first).to_contain_text("2")
    await expect(cards.locator(".card", has_text="网办占比")).to_contain_text("66.7%")
    await expect(cards.locator(".card", has_text="送达（")).to_contain_text("邮寄 1")
    drawn = await page.evaluate(
        "(ids) => ids.map((id) => { const c = window.Chart.getChart(id);"
        " return c ? c.data.datasets.reduce((n, d) => n + d.data.filter((v) => v !== null && v !== undefined).length, 0) : -1; })",
        list(CHARTS),
    )
    assert all(n > 0 for n in drawn), dict(zip(CHARTS, drawn, strict=True))
    referrals = await page.evaluate("() => window.Chart.getChart('chart-referrals').data.labels")
    assert referrals == ["退回修改次数已达上限"]
    # Rejections by reason code (their labels), then by field (docs/decisions/0045).
    rejections = await page.evaluate("() => window.Chart.getChart('chart-rejections').data.labels")
    assert rejections[:3] == ["姓名含生僻字或不规范字", "新生儿姓名有误或前后不一致", "其他问题"]
    assert "· 新生儿姓名" in rejections[3:]
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="导出 CSV").click()
    download = await download_info.value
    path = await download.path()
    assert path is not None
    with open(path, "rb") as f:
        assert f.read(3) == b"\xef\xbb\xbf"
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "console-statistics.png"
    await page.screenshot(path=str(shot), full_page=True)
    notes = "/work/notes"
    if os.path.isdir(notes) and os.access(notes, os.W_OK):
        shutil.copy(shot, f"{notes}/statistics-console.png")
    # A week view of the same: one period, the same total.
    await page.locator("#granularity").select_option("week")
    await page.get_by_role("button", name="查询").click()
    await expect(page.locator("#as-of")).to_contain_text("按周")
    assert page.errors == []


async def test_an_issuer_is_not_shown_the_statistics(stack: Stack, browser: Any) -> None:
    await stack.in_store(seed_demo_staff, stack.service)
    page = await new_page(browser)
    await log_in(page, stack, "issuer1")
    await page.goto(f"{stack.api}/console/statistics.html")
    await page.wait_for_url(f"{stack.api}/console/")


@pytest.fixture(autouse=True)
def _artifacts() -> None:
    ARTIFACTS.mkdir(exist_ok=True)
