"""The public verify page (``/verify/``) in headless Chromium, opened the way a clerk opens it: from the QR code.

A real journey to an issued e-licence; the QR code's PNG (as the app serves it) is decoded with zxing-cpp and
the URL it holds is opened: the page checks the signature, the disclosures and the status list in the
browser and says 有效, with the issuing institution, the issue date and the licence id, and the paper
certificate's three items typed into its form match. The mother's whole credential shared in the fragment
verifies too, without the page showing anything personal. A credential with one changed byte in its signed
part says 签名无效. After a loss and a reissue, once the status list is re-signed with the old
credential's bit set, the old QR code's page says 已作废 — never the new number. Screenshots (desktop and
a phone's 390 px) go to the test's tmp dir and ``test-artifacts/`` for a person to look at.

Needs ``/usr/bin/chromium`` and a CJK font, like ``test_console.py``; without them the tests skip.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from backend.credentials import b64url, b64url_decode, verify_sd_jwt
from backend.status_list import INVALID, read_token
from domain.elicense import LicenceId
from miniprogram_stub.people import Family
from tests.e2e.conftest import Stack
from tests.e2e.test_console import ARTIFACTS, DEADLINE_MS, _why_not, browser
from tests.e2e.test_elicense_http import jwks, scanned
from tests.e2e.test_verification_http import issued, reissued_after_loss, status_list
from tests.e2e.test_verify_page_http import personal_values
from tests.waiting import eventually

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_why_not() is not None, reason=_why_not() or ""),
]
__all__ = ["browser"]  # the fixture, shared with the console's tests

DESK = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
DONE = "#result[aria-busy='false']:not([data-result='idle']):not([data-result='checking'])"


async def new_page(browser: Any, viewport: dict[str, int]) -> Any:
    """A page whose script errors and Content-Security-Policy violations are collected (the test wants none)."""
    phone = viewport["width"] < 600
    context = await browser.new_context(
        viewport=viewport,
        device_scale_factor=2 if phone else 1,
        is_mobile=phone,
        has_touch=phone,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
    )
    context.set_default_timeout(DEADLINE_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.errors = errors
    return page


async def verdict(page: Any, url: str) -> str:
    """Open ``url`` afresh and wait for the page's result: its large word."""
    await page.goto("about:blank")
    await page.goto(url)
    await page.locator(DONE).wait_for()
    return str(await page.locator("#result-title").inner_text())


async def shot(page: Any, tmp_path: Path, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(tmp_path / name), full_page=True)
    shutil.copyfile(tmp_path / name, ARTIFACTS / name)


def one_byte_changed(credential: str) -> str:
    """The credential with one byte of its signed payload changed (the disclosures kept)."""
    jws, rest = credential.split("~", 1)
    head, payload, signature = jws.split(".")
    raw = bytearray(b64url_decode(payload))
    at = raw.index(b'"certificate_number":"') + len('"certificate_number":"') + 3
    raw[at] ^= 0x01  # X440100071 → X441100071: still JSON, another certificate
    return f"{head}.{b64url(bytes(raw))}.{signature}~{rest}"


async def test_the_qr_code_opens_a_page_that_says_valid_then_revoked_and_a_changed_byte_is_refused(
    stack: Stack, family: Family, browser: Any, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    mother, document = await issued(stack, family)
    url = await scanned(stack, mother, document)  # what a phone reads from the QR code's PNG
    assert url == f"{stack.api}/verify/#{document['licence_id']}"
    keys = await jwks(stack)
    personal = verify_sd_jwt(document["credential"], keys).disclosed

    desk = await new_page(browser, DESK)
    assert await verdict(desk, url) == "有效"
    await expect(desk.locator("#result-note")).to_contain_text("未被作废")
    await expect(desk.locator("#fact-issuer")).to_have_text("广州市妇女儿童医疗中心")
    await expect(desk.locator("#fact-licence")).to_have_text(document["licence_id"])
    await expect(desk.locator("#fact-number")).to_have_text("X440100071")
    await expect(desk.locator("#fact-date")).to_contain_text("年")
    await expect(desk.locator("#fact-freshness")).to_contain_text("更新于")
    await expect(desk.locator("#checked")).to_contain_text("ES256")
    await expect(desk.locator("#receipt")).to_contain_text("核验记录号")

    # The paper certificate: its number is filled in from the e-licence; the name and birth date as typed.
    await expect(desk.get_by_label("出生医学证明编号")).to_have_value("X440100071")
    await desk.get_by_label("出生日期").fill(str(personal["born_at"])[:10])
    await desk.get_by_label("新生儿姓名").fill(family.newborn_name + "明")
    await desk.get_by_role("button", name="核对", exact=True).click()
    await expect(desk.locator("#paper-title")).to_have_text("不相符")
    await desk.get_by_label("新生儿姓名").fill(family.newborn_name)
    await desk.get_by_role("button", name="核对", exact=True).click()
    await expect(desk.locator("#paper-title")).to_have_text("相符，有效")
    await shot(desk, tmp_path, "verify-valid.png")

    phone = await new_page(browser, PHONE)
    await phone.goto(f"{stack.api}/verify/")  # opened by hand: what to do
    await expect(phone.locator("#result-title")).to_have_text("请扫描二维码")
    await shot(phone, tmp_path, "verify-phone-idle.png")
    assert await verdict(phone, url) == "有效"
    assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await shot(phone, tmp_path, "verify-phone.png")

    # The mother shares her whole credential: checked with its disclosures, nothing personal shown, and the
    # address bar cut back to the licence id.
    assert await verdict(desk, f"{stack.api}/verify/#{document['credential']}") == "有效"
    await expect(desk.locator("#checked")).to_contain_text(f"{len(personal)} 项披露")
    assert desk.url.endswith("#" + document["licence_id"])
    shown = await desk.locator("body").inner_text()
    assert not [v for v in personal_values(document["credential"], keys) if v in shown]

    # One changed byte of the signed part.
    assert (
        await verdict(desk, f"{stack.api}/verify/#{one_byte_changed(document['credential'])}") == "签名无效"
    )
    await expect(desk.locator("#facts")).to_be_hidden()
    await shot(desk, tmp_path, "verify-tampered.png")

    # Pasted by a clerk: a licence id that was never issued, then something that is no e-licence at all.
    paste = desk.get_by_label("电子证照、电子证照标识或核验链接")
    await paste.fill(f"{stack.api}/verify/#{LicenceId.new('GZFY01')}")
    await desk.get_by_role("button", name="核验", exact=True).click()
    await expect(desk.locator("#result-title")).to_have_text("未找到")
    await shot(desk, tmp_path, "verify-not-found.png")
    await paste.fill("出生医学证明")
    await desk.get_by_role("button", name="核验", exact=True).click()
    await expect(desk.locator("#result-title")).to_have_text("格式错误")

    # Lost in the post and reissued: the old QR code's page says it is void once the list is re-signed.
    await reissued_after_loss(stack, mother.app_id, "X440100072")
    entry = verify_sd_jwt(document["credential"], keys).claims["status"]["status_list"]

    async def re_signed() -> bool:
        return read_token((await status_list(stack, entry["uri"]))[1], keys).status(entry["idx"]) == INVALID

    await eventually(re_signed, "the status list is re-signed with the old e-licence's bit set", timeout=60)
    assert await verdict(desk, url) == "已作废"
    await expect(desk.locator("#result-note")).to_contain_text("作废")
    await expect(desk.locator("#checked")).to_contain_text(f"第 {entry['idx']} 位（已作废）")
    assert "X440100072" not in await desk.content()
    await shot(desk, tmp_path, "verify-revoked.png")
    assert await verdict(phone, url) == "已作废"
    await shot(phone, tmp_path, "verify-phone-revoked.png")

    assert desk.errors == [] and phone.errors == []


async def test_an_older_version_of_an_amended_e_licence_says_so_and_the_newer_one_is_valid(
    stack: Stack, browser: Any, tmp_path: Path
) -> None:
    """出生一件事 (decision 0048): once the police's registration amended the e-licence, the first version's QR
    code reads 旧版本 — the paper certificate stands, the holder is asked for the newest version — and the new
    one's reads 有效."""
    from miniprogram_stub.people import hebei_family
    from tests.e2e.test_bundle_handoff_http import answer, issued_with_bundle, police_result, taken
    from tests.e2e.test_elicense_http import issued_elicense
    from tests.e2e.test_elicense_registration_http import version_shown

    mp, _ = await issued_with_bundle(stack, hebei_family(45), "R130100045")
    first = await issued_elicense(mp)
    police = (await taken(stack, "police"))[0]["message"]
    reply = await answer(stack, "police", police["message_id"], state="done", result=police_result(police))
    assert reply["status"] == 200, reply
    second = await version_shown(mp, "002")
    page = await new_page(browser, PHONE)

    async def older() -> bool:
        return await verdict(page, first["verify_url"]) == "旧版本"

    await eventually(older, "the first version's page says 旧版本 once its list is re-signed")
    await expect_note(page, "此电子证照已更新为新版本（出生医学证明本身仍有效），请持证人出示最新版本。")
    await shot(page, tmp_path, "verify-amended-phone.png")
    assert await verdict(page, second["verify_url"]) == "有效"
    assert page.errors == []


async def expect_note(page: Any, text: str) -> None:
    from playwright.async_api import expect

    await expect(page.locator("#result-note")).to_have_text(text)
