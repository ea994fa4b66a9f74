"""出生一件事 on the H5 simulator in headless Chromium (issue 12, item 1; docs/decisions/0044).

A Hebei mother, her details given, finds 出生一件事 on her status screen, opens it from there, sees the five
services, the notice's conditions as they stand for her, what the form takes from her application (masked, not
asked again) and the extra fields of 表2 as choices; she applies, and her steps list the services as 已申请.
A Guangdong mother is not offered it. After the issue (decision 0046), her status screen follows each service
through the fake departments' answers: 户口登记 已办结 with the police's result under its labels and the registered
name and citizen ID number masked as the API masks them, a refusal with the department's reason, a hand-off not
yet answered. Screenshots (390 px wide) go to ``test-artifacts/h5-bundle-*.png``.
"""

from __future__ import annotations

from typing import Any

import pytest

from miniprogram_stub.people import hebei_family
from tests.builders import HEBEI_BUNDLE_FIELDS
from tests.e2e.conftest import Stack
from tests.e2e.test_birth_bundle_http import hebei_details_given
from tests.e2e.test_bundle_handoff_http import (
    VACCINATION,
    answer,
    issued_with_bundle,
    police_result,
    service_state,
    taken,
)
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


REFUSAL = "参保地区与户籍地不符，请到户籍地医保经办机构办理"


async def test_after_the_issue_she_follows_each_service_its_result_masked_and_a_refusal_with_its_reason(
    phone: Any, stack: Stack
) -> None:
    from playwright.async_api import expect

    page = phone
    family = hebei_family(13)
    mp, _ = await issued_with_bundle(stack, family, "R130100013")
    police = (await taken(stack, "police"))[0]["message"]
    result = police_result(police)
    vaccination = (await taken(stack, "disease_control"))[0]["message"]["message_id"]
    insurance = (await taken(stack, "medical_insurance"))[0]["message"]["message_id"]
    await taken(stack, "social_security")  # taken, not answered yet
    for reply in (
        await answer(stack, "police", police["message_id"], state="accepted"),
        await answer(stack, "police", police["message_id"], state="done", result=result),
        await answer(stack, "disease_control", vaccination, state="done", result=VACCINATION),
        await answer(stack, "medical_insurance", insurance, state="refused", reason=REFUSAL),
    ):
        assert reply["status"] == 200 and reply["body"]["recorded"] is True, reply
    household = await service_state(mp, "household_registration", "done")
    await service_state(mp, "vaccination_certificate", "done")
    await service_state(mp, "resident_medical_insurance", "refused")
    await service_state(mp, "social_security_card", "sent")

    await open_as(page, family.openid, "已签发")
    entry = page.locator("#bundle-entry")
    services = entry.locator(".bundle-service")
    await expect(services.locator(".name")).to_have_text(
        ["《出生医学证明》签发", "预防接种证办理", "户口登记", "城乡居民参保登记", "社会保障卡申领"]
    )
    await expect(services.locator(".state")).to_have_text(
        ["已办结", "已办结", "已办结", "部门未予办理", "已推送至办理部门"]
    )
    # 户口登记 已办结: the police's result under its Chinese labels, masked as the API gives it.
    police_row = entry.locator('[data-code="household_registration"]')
    await expect(police_row.locator(".meta")).to_contain_text("公安派出所")
    await expect(police_row.locator("dt")).to_have_text(["登记姓名", "公民身份号码", "户口页领取"])
    shown = household["result"]
    number = result["citizen_id_number"]
    assert shown["citizen_id_number"] == number[:4] + "*" * 10 + number[-4:]
    await expect(police_row.locator("[data-result=registered_name] dd")).to_have_text("赵**")
    await expect(police_row.locator("[data-result=citizen_id_number] dd")).to_have_text(
        shown["citizen_id_number"]
    )
    await expect(police_row.locator("[data-result=hukou_page] dd")).to_have_text(result["hukou_page"])
    await expect(entry.locator('[data-code="vaccination_certificate"] [data-result] dt')).to_have_text(
        "预防接种证编号"
    )
    await expect(entry.locator('[data-code="vaccination_certificate"] [data-result] dd')).to_have_text(
        "1301" + "*" * 9 + "1003"
    )
    # The refusal with the department's own words; no result on a refused or unanswered service.
    refused = entry.locator('[data-code="resident_medical_insurance"]')
    await expect(refused.locator(".bundle-reason")).to_have_text(f"未予办理原因：{REFUSAL}")
    await expect(page.locator("#bundle-refused-hint")).to_be_visible()
    assert await entry.locator('[data-code="social_security_card"] .bundle-result').count() == 0
    assert await entry.locator('[data-code="household_registration"] .bundle-reason').count() == 0
    # Nothing personal reaches the page in full: not the registered name, not the numbers.
    content = await page.content()
    for secret in (number, result["registered_name"], VACCINATION["vaccination_certificate_number"]):
        assert secret not in content
    await entry.scroll_into_view_if_needed()
    await screenshot(page, "h5-bundle-results.png")
