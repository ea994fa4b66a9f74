"""出生一件事 in the issuer's console, in headless Chromium (issue 12: "a department that refuses is shown to the
issuer with its reason"; docs/decisions/0046): a Hebei application whose hand-off went through the real fake
departments, the police's 户口 done, the medical insurance refused, the other two sent. The queue row carries a badge; the
application's page lists each service with its department and state in Chinese, the refusal with its reason and
the police's result with the registered name and citizen ID number masked."""

from __future__ import annotations

import re
from typing import Any

import pytest

from miniprogram_stub.people import hebei_family
from tests.e2e.conftest import Stack
from tests.e2e.test_bundle_handoff_http import (
    answer,
    fake,
    issued_with_bundle,
    police_result,
    service_state,
    taken,
)
from tests.e2e.test_console import ARTIFACTS, _why_not, browser, log_in, new_page

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""),
]
__all__ = ["browser"]  # the fixture, shared with test_console

REFUSAL = "参保地区与户籍地不符"


async def test_the_issuer_reads_each_service_a_refusal_with_its_reason_and_a_masked_result(
    stack: Stack, browser: Any
) -> None:
    from playwright.async_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    await fake(stack, "POST", "social_security/script", {"fail": 1000})  # 人社's system is down
    mp, _ = await issued_with_bundle(stack, hebei_family(31), "R130100031")
    police_message = (await taken(stack, "police"))[0]["message"]
    police, result = police_message["message_id"], police_result(police_message)
    insurance = (await taken(stack, "medical_insurance"))[0]["message"]["message_id"]
    for reply in (
        await answer(stack, "police", police, state="accepted"),
        await answer(stack, "police", police, state="done", result=result),
        await answer(stack, "medical_insurance", insurance, state="refused", reason=REFUSAL),
    ):
        assert reply["status"] == 200 and reply["body"]["recorded"] is True, reply
    await service_state(mp, "household_registration", "done")
    await service_state(mp, "resident_medical_insurance", "refused")
    await service_state(mp, "vaccination_certificate", "sent")  # taken by 疾控, no answer yet

    page = await new_page(browser)
    await log_in(page, stack, "issuer_he")  # issued_with_bundle made the Hebei issuer
    row = page.locator(f'#queue-table tr[data-application-id="{mp.app_id}"]')
    await expect(row).to_contain_text("待现场领取")
    badge = row.locator(".badge-bundle-refused")
    await expect(badge).to_have_text("一件事 1 项未予办理")
    await expect(badge).to_have_attribute("title", "出生“一件事”：城乡居民参保登记未予办理，原因见申请详情")
    await page.screenshot(path=str(ARTIFACTS / "console-bundle-queue.png"), full_page=True)

    await row.get_by_role("link").first.click()
    panel = page.locator("#bundle-panel")
    await expect(panel.get_by_role("heading")).to_contain_text("出生一件事")
    await expect(panel.locator(".panel-head .badge")).to_have_text("1 项未予办理")
    rows = panel.locator("tbody tr")
    # The five services in the offer's order: name, department, state, reason or result.
    await expect(rows.locator("th")).to_have_text(
        ["《出生医学证明》签发", "预防接种证办理", "户口登记", "城乡居民参保登记", "社会保障卡申领"]
    )
    await expect(rows.locator("td:nth-child(2)")).to_have_text(
        ["医疗保健机构（卫生健康部门）", "疾控部门", "公安派出所", "医疗保障部门", "人力资源社会保障部门"]
    )
    await expect(rows.locator("td:nth-child(3)")).to_have_text(
        ["已办结", "已推送至办理部门", "已办结", "部门未予办理", "已申请"]
    )
    # The hand-off 人社 could not take yet: the retry is visible, with when it is next tried.
    card = panel.locator("tr[data-service=social_security_card] [data-delivery=pending]")
    await expect(card).to_contain_text(
        re.compile(r"部门系统暂不可用，已推送\d+次未成功，将自动重试（下次 .+）")
    )
    refused = panel.locator("tr[data-service=resident_medical_insurance]")
    await expect(refused).to_have_class("is-refused")
    await expect(refused.locator(".bundle-reason")).to_have_text(f"原因：{REFUSAL}")
    household = panel.locator("tr[data-service=household_registration]")
    # Masked as the server sends it: the first four digits, the rest starred (the last four may show).
    number = result["citizen_id_number"]
    await expect(household.locator("dt")).to_have_text(["登记姓名", "公民身份号码", "户口页领取"])
    await expect(household.locator("[data-result=registered_name]")).to_have_text("赵**")
    await expect(household.locator("[data-result=citizen_id_number]")).to_have_text(
        re.compile(rf"^{number[:4]}\*{{6,}}({number[-4:]})?$")
    )
    await expect(household).to_contain_text(f"户口页领取{result['hukou_page']}")
    # The history reads each department's answer in Chinese.
    await expect(page.locator("#history")).to_contain_text(
        "出生“一件事”办理进展（城乡居民参保登记：部门未予办理）"
    )
    # The registered name and the citizen ID number never reach the console in full, even revealed.
    await page.locator("#reveal-pii").click()
    content = await page.content()
    assert number not in content and result["registered_name"] not in content

    await page.locator("#reveal-pii").click()
    await panel.scroll_into_view_if_needed()
    await page.screenshot(path=str(ARTIFACTS / "console-bundle.png"), full_page=True)
    assert page.errors == []
