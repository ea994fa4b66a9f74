"""Issue 11 on the H5 simulator in headless Chromium: the parents see the electronic certificate (电子证照).

- The mother: after printing, the status screen says 电子证照 已生成; its screen (电子出生医学证明) shows the
  certificate's data items as the credential discloses them (ID numbers masked until tapped), the issuing
  institution and date, the licence id, and a QR code that a counter's scanner reads from the screen — read
  here with zxing-cpp from a screenshot of the phone's screen: it is the verify page's URL. 复制电子证照 puts the
  credential on the clipboard. A misprint replaced: the old e-licence is listed 已作废 and the new one shown.
  An e-licence voided for a reason this page does not know yet (an issuer's revocation, added by another
  change) still reads 已作废, without a QR code to show.
- The father, on his own WeChat account, joins with the mother's invitation code; his reduced view reaches the
  same e-licence, without the mother's ID number.
- Beijing: printed today, the e-licence is 待生成 with the day it is expected.

The family's part the page does not show is played by the scripted mini-program, the issuer by ``StaffClient``
over HTTP. Screenshots go to ``test-artifacts/h5-elicense-*.png``. Needs ``/usr/bin/chromium`` and a CJK font,
like ``test_h5.py``; without them the tests skip.
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import zxingcpp
from PIL import Image

from backend.credentials import verify_sd_jwt
from miniprogram_stub.client import MiniProgram
from miniprogram_stub.people import Family
from tests.e2e.conftest import Stack
from tests.e2e.test_console import _why_not
from tests.e2e.test_counter import REVIEW, beijing, replace
from tests.e2e.test_elicense_http import jwks
from tests.e2e.test_father_invitation import on_her_phone, on_his_phone
from tests.e2e.test_h5 import issuer, open_as, phone, prepared, screenshot
from tests.waiting import eventually

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""),
]
__all__ = ["phone"]  # the fixture, used by name


async def elicense_of(mp: MiniProgram) -> dict[str, Any]:
    answer: dict[str, Any] = await mp.call("GET", f"/api/v1/applications/{mp.app_id}/elicense")
    return answer


async def generated(mp: MiniProgram, *, other_than: str | None = None) -> dict[str, Any]:
    """The e-licence once generated (Guangdong: at once after printing, by the leader's process) and shown by the
    status view the page reads."""

    async def ready() -> dict[str, Any] | None:
        document = await elicense_of(mp)
        if document["state"] != "issued" or document["licence_id"] == other_than:
            return None
        status = await mp.status()
        return document if status["elicense"]["licence_id"] == document["licence_id"] else None

    found: dict[str, Any] = await eventually(ready, "the e-licence is generated and the status view shows it")
    return found


async def open_elicense(page: Any, status_screenshot: str) -> None:
    """From the status screen (refreshed, and taken as ``status_screenshot``), to the e-licence's screen."""
    from playwright.async_api import expect

    await page.get_by_role("button", name="刷新").click()
    entry = page.locator("#elicense-entry")
    await expect(entry).to_contain_text("已生成")
    await screenshot(page, status_screenshot)
    await entry.click()
    await expect(page.locator("#nav-title")).to_have_text("电子出生医学证明")


async def scanned_from_the_screen(page: Any) -> str:
    """What a scanner reads from the QR code as the phone shows it (a screenshot of the code at the phone's
    pixel density), after checking it is drawn large enough to be read at a counter."""
    from playwright.async_api import expect

    code = page.locator("#elicense-qr svg")
    await expect(code).to_be_visible()
    box = await code.bounding_box()
    assert box is not None and box["width"] >= 250 and abs(box["width"] - box["height"]) < 1
    shot = await code.screenshot()  # the screen's pixels, not the API's file
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(shot)), formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(results) == 1 and results[0].ec_level == "Q"
    return str(results[0].text)


def masked(id_number: str) -> str:
    return id_number[:4] + "*" * (len(id_number) - 8) + id_number[-4:]


async def test_the_mother_sees_her_e_licence_its_qr_scans_to_the_verify_page_and_she_copies_it(
    phone: Any, stack: Stack, family: Family
) -> None:
    from playwright.async_api import expect

    page = phone
    mp = await prepared(stack, family)
    await open_as(page, family.openid, "审核中")
    await expect(page.locator("#elicense-entry")).to_have_count(0)  # nothing before printing
    # EMS's booking is down: the certificate stays at the institution (issued), so it can be replaced below.
    async with stack.session.post(f"{stack.platform}/_fake/ems/errors", json={"times": 1_000_000}) as r:
        assert r.status == 200
    staff = await issuer(stack)
    await staff.call(
        "POST", f"{REVIEW}/{mp.app_id}/issue", json={"certificate_number": "X440100501", "sealer": "李盖章"}
    )
    first = await generated(mp)
    await open_elicense(page, "h5-elicense-status-mother.png")

    await expect(page.locator("#elicense-state")).to_have_text("已生成")
    assert await scanned_from_the_screen(page) == first["verify_url"]
    assert first["verify_url"] == f"{stack.api}/verify/#{first['licence_id']}"
    await expect(page.locator(".qr-id")).to_contain_text(first["licence_id"])
    items = page.locator("#elicense-items")
    await expect(page.locator("#elicense-number")).to_have_text("X440100501")
    seen = verify_sd_jwt(first["credential"], await jwks(stack))
    disclosed = seen.disclosed
    for name in ("newborn_name", "mother_name", "father_name", "birthplace"):
        await expect(page.locator(f"#item-{name}")).to_have_text(disclosed[name])
    await expect(page.locator("#item-newborn_sex")).to_have_text(
        {"F": "女", "M": "男"}[disclosed["newborn_sex"]]
    )
    await expect(page.locator("#item-weight_g")).to_have_text(f"{disclosed['weight_g']} 克")
    await expect(page.locator("#item-mother_ethnicity")).to_have_text("汉族")
    await expect(page.locator("#item-mother_id_type")).to_have_text("居民身份证")
    await expect(items).to_contain_text(seen.claims["issuer_name"])
    issued_on = datetime.fromisoformat(seen.claims["issue_date"])
    await expect(items).to_contain_text(f"{issued_on.year}年{issued_on.month}月{issued_on.day}日")
    # ID numbers are shown masked, the full number on a tap.
    mother_id = page.locator("#item-mother_id_number")
    await expect(mother_id).to_have_text(masked(family.mother.id_number))
    await expect(page.locator("#page")).not_to_contain_text(family.mother.id_number)
    await mother_id.locator("..").get_by_role("button", name="显示").click()
    await expect(mother_id).to_have_text(family.mother.id_number)
    await mother_id.locator("..").get_by_role("button", name="隐藏").click()
    await expect(mother_id).to_have_text(masked(family.mother.id_number))
    await expect(page.locator("#elicense-verify")).to_contain_text("扫描上方二维码")
    await expect(page.locator("#elicense-verify")).to_contain_text(f"{stack.api}/verify/")
    await screenshot(page, "h5-elicense-mother.png")

    # 复制电子证照: the credential itself, as the API gave it, to hand to a department that wants the file.
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.api)
    await page.get_by_role("button", name="复制电子证照").click()
    await expect(page.locator("#toast")).to_have_text("电子证照已复制")
    assert await page.evaluate("navigator.clipboard.readText()") == first["credential"]

    # Misprinted: replaced on a new blank. The old e-licence is void, the new one is shown.
    await replace(staff, str(mp.app_id), "X440100502")
    second = await generated(mp, other_than=first["licence_id"])
    await page.get_by_role("button", name="刷新").click()
    await expect(page.locator("#elicense-number")).to_have_text("X440100502")
    assert await scanned_from_the_screen(page) == second["verify_url"] != first["verify_url"]
    voided = page.locator("#elicense-superseded")
    await expect(voided).to_contain_text("X440100501")
    await expect(voided).to_contain_text("已作废")
    await expect(voided).to_contain_text(first["licence_id"])
    await expect(voided).to_contain_text("签发机构已换发新证（原证打印错误或毁损）")
    await screenshot(page, "h5-elicense-replaced.png")

    # Another change adds an issuer's revocation, with a reason code this page has never seen: the e-licence
    # reads 已作废 all the same, with nothing left to show at a counter. (The service cannot say it yet: the
    # page is given the real answer with that state added.)
    async def revoked(route: Any) -> None:
        answer = await route.fetch()
        document = await answer.json()
        document |= {
            "state": "revoked",
            "state_label": "电子证照已撤销",
            "revocation": {"reason": "issuer_recall"},
        }
        await route.fulfill(response=answer, body=json.dumps(document))

    await page.route("**/elicense", revoked)
    await page.get_by_role("button", name="刷新").click()
    await expect(page.locator("#elicense-state")).to_have_text("已作废")
    await expect(page.locator("#elicense-void")).to_contain_text("该电子证照已作废不能再用于办理业务")
    await expect(page.locator("#elicense-void")).to_contain_text("issuer_recall")
    await expect(page.locator("#elicense-qr")).to_have_count(0)
    await expect(page.get_by_role("button", name="复制电子证照")).to_have_count(0)
    await screenshot(page, "h5-elicense-revoked.png")


async def test_the_father_joins_with_her_code_and_sees_the_e_licence_without_her_id_number(
    phone: Any, stack: Stack, family: Family
) -> None:
    from playwright.async_api import expect

    page = phone
    assert family.father is not None
    mother = await on_her_phone(stack, family)
    code = (await mother.invite_father())["invitation"]

    # On his own phone, his own WeChat account: he joins with the code she shared.
    await page.locator("#openid").fill(family.father_openid)
    await page.get_by_role("button", name="模拟微信登录").click()
    await page.get_by_role("button", name="我是孩子父亲：凭邀请码加入").click()
    await page.locator("#invitation").fill(code)
    await page.get_by_role("button", name="加入申请").click()
    await expect(page.locator("#nav-title")).to_have_text("申请进度")
    await expect(page.locator("#state-label")).to_have_text("填写中")
    await expect(page.locator("#steps li.next").first).to_contain_text("待我办理")
    await expect(page.get_by_role("button", name="撤回申请")).to_have_count(0)  # hers alone

    father = await on_his_phone(stack, family)
    father.app_id = mother.app_id
    await father.fathers_part()
    await mother.submit_after_fathers_part()
    staff = await issuer(stack)
    await staff.call(
        "POST",
        f"{REVIEW}/{mother.app_id}/issue",
        json={"certificate_number": "X440100511", "sealer": "李盖章"},
    )
    hers = await generated(mother)
    his = await generated(father)
    assert his["role"] == "father" and his["licence_id"] == hers["licence_id"]

    await open_elicense(page, "h5-elicense-status-father.png")
    assert await scanned_from_the_screen(page) == his["verify_url"]
    await expect(page.locator("#elicense-number")).to_have_text("X440100511")
    await expect(page.locator("#item-newborn_name")).to_have_text(family.newborn_name)
    await expect(page.locator("#item-mother_id_number")).to_have_text("仅母亲可见")
    await expect(page.locator("#item-father_id_number")).to_have_text(masked(family.father.id_number))
    await expect(page.locator("#page")).not_to_contain_text(masked(family.mother.id_number))
    await expect(page.locator("#page")).to_contain_text("不含孩子母亲的证件号码")
    await screenshot(page, "h5-elicense-father.png")


async def test_in_beijing_the_e_licence_is_pending_with_the_day_it_is_expected(
    phone: Any, stack: Stack, family: Family
) -> None:
    from playwright.async_api import expect

    page = phone
    mp, staff = await beijing(stack, family)
    await open_as(page, family.openid, "审核中")
    await staff.call(
        "POST", f"{REVIEW}/{mp.app_id}/issue", json={"certificate_number": "X110100521", "sealer": "钱盖章"}
    )

    async def scheduled() -> str | None:
        expected: str | None = (await elicense_of(mp))["expected_at"]
        return expected

    expected = datetime.fromisoformat(await eventually(scheduled, "the e-licence's due day is known"))
    await page.get_by_role("button", name="刷新").click()
    entry = page.locator("#elicense-entry")
    await expect(entry).to_contain_text("待生成")
    await entry.click()
    await expect(page.locator("#elicense-state")).to_have_text("待生成")
    day = expected.astimezone(ZoneInfo("Asia/Shanghai"))  # the end of a working day in Beijing
    await expect(page.locator("#elicense-note")).to_contain_text(f"预计 {day.year}年{day.month}月{day.day}日")
    await expect(page.locator("#elicense-note")).to_contain_text("X110100521")
    await expect(page.locator("#elicense-qr")).to_have_count(0)
    await screenshot(page, "h5-elicense-pending.png")


async def test_in_hebei_the_police_registration_amends_the_e_licence_and_the_old_version_is_listed(
    phone: Any, stack: Stack
) -> None:
    """出生一件事 (decision 0048): the police register the 户口; the mother's e-licence becomes version 002 with
    the registered name, the citizen ID number (masked until tapped) and 户籍地; version 001 is listed 旧版本."""
    from playwright.async_api import expect

    from miniprogram_stub.people import hebei_family
    from tests.e2e.test_bundle_handoff_http import answer, issued_with_bundle, police_result, taken
    from tests.e2e.test_elicense_registration_http import PLACE, version_shown

    page = phone
    family = hebei_family(44)
    mp, _ = await issued_with_bundle(stack, family, "R130100044")
    first = await generated(mp)
    police = (await taken(stack, "police"))[0]["message"]
    result = police_result(police, household_place=PLACE)
    reply = await answer(stack, "police", police["message_id"], state="done", result=result)
    assert reply["status"] == 200, reply
    second = await version_shown(mp, "002")
    await generated(mp, other_than=first["licence_id"])  # the status view follows

    await open_as(page, family.openid, "已签发")
    await open_elicense(page, "h5-elicense-status-hebei.png")
    number = result["citizen_id_number"]
    await expect(page.locator("#item-registered_name")).to_have_text("赵小雪")
    await expect(page.locator("#item-household_place")).to_have_text(PLACE)
    citizen = page.locator("#item-citizen_id_number")
    await expect(citizen).to_have_text(masked(number))
    await expect(page.locator("#page")).not_to_contain_text(number)
    await citizen.locator("..").get_by_role("button", name="显示").click()
    await expect(citizen).to_have_text(number)
    await citizen.locator("..").get_by_role("button", name="隐藏").click()
    await expect(page.locator("#elicense-registration")).to_have_text(
        "户口登记信息（登记姓名、公民身份号码、户籍地）已写入电子证照，当前为第 002 版。"
    )
    assert await scanned_from_the_screen(page) == second["verify_url"] != first["verify_url"]
    older = page.locator("#elicense-superseded")
    await expect(older).to_contain_text("旧版本")
    await expect(older).to_contain_text(first["licence_id"])
    await expect(older).to_contain_text(
        "户口登记后电子证照已更新为新版本，此旧版本停用（出生医学证明本身仍有效）"
    )
    await expect(page.locator(".section-title", has_text="旧版本")).to_have_text("已作废的电子证照及旧版本")
    await screenshot(page, "h5-elicense-amended.png")
