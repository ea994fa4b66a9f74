"""The electronic certificate (电子证照) over HTTP: both parents see it, its QR code scans, its signature verifies.

Guangdong generates it at once after printing; Beijing two working days after (the service's clock is moved,
as test_father_invitation does, and the issuing loop woken). The QR PNG is decoded with zxing-cpp, and the
credential is checked against the public JWKS with nothing but the JWKS. Each print's archived form (its stub
page) carries the QR code of its own e-licence: read with zxing-cpp from an image of the PDF's page.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
import zxingcpp
from PIL import Image

from backend.credentials import verify_sd_jwt
from backend.routes.elicense import ELICENSE_PROCESS
from domain.elicense import LicenceId
from miniprogram_stub.client import ApiProblem, MiniProgram
from miniprogram_stub.people import Family
from tests.e2e.conftest import Stack
from tests.e2e.test_archive_http import get, rendered
from tests.e2e.test_counter import REVIEW, beijing, replace
from tests.e2e.test_father_invitation import on_her_phone, on_his_phone
from tests.e2e.test_staff import staff, submitted, wait_for_state
from tests.pdf_reading import rendering_unavailable, scan_qr_codes
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


async def image(stack: Stack, mp: MiniProgram, path: str) -> tuple[int, str, bytes]:
    async with stack.session.get(stack.api + path, headers={"Authorization": f"Bearer {mp.token}"}) as r:
        return r.status, r.content_type, await r.read()


async def jwks(stack: Stack) -> dict[str, Any]:
    async with stack.session.get(stack.api + "/api/v1/elicense/jwks.json") as r:  # public: no login
        assert r.status == 200 and "public" in r.headers["Cache-Control"]
        body: dict[str, Any] = await r.json()
        return body


async def issued_elicense(mp: MiniProgram) -> dict[str, Any]:
    async def ready() -> dict[str, Any] | None:
        answer = await mp.call("GET", f"/api/v1/applications/{mp.app_id}/elicense")
        return answer if answer["state"] == "issued" else None

    found: dict[str, Any] = await eventually(ready, "the e-licence is generated")
    return found


async def issued_days_later(stack: Stack, days: int = 6) -> int:
    """One issuing round of the e-licence process as if run ``days`` later (every due row is due by then)."""
    process = stack.app[ELICENSE_PROCESS]
    real_clock = stack.service.clock
    stack.service.clock = lambda: real_clock() + timedelta(days=days)
    try:
        issued: int = await stack.in_store(process.issue_due)
        return issued
    finally:
        stack.service.clock = real_clock


async def scanned(stack: Stack, mp: MiniProgram, document: dict[str, Any]) -> str:
    """What a phone reads from the QR code's PNG."""
    status, media, png = await image(stack, mp, document["qr"]["png"])
    assert (status, media) == (200, "image/png")
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(results) == 1 and results[0].format == zxingcpp.BarcodeFormat.QRCode
    assert results[0].ec_level == "Q"
    status, media, svg = await image(stack, mp, document["qr"]["svg"])
    assert (status, media) == (200, "image/svg+xml") and svg.startswith(b"<svg")
    return str(results[0].text)


async def test_both_parents_get_the_e_licence_its_qr_scans_and_it_verifies(
    stack: Stack, family: Family
) -> None:
    mother = await on_her_phone(stack, family)
    code = (await mother.invite_father())["invitation"]
    father = await on_his_phone(stack, family)
    await father.accept_invitation(code)
    await father.fathers_part()
    await mother.submit_after_fathers_part()
    before = await mother.call("GET", f"/api/v1/applications/{mother.app_id}/elicense")
    assert (before["state"], before["credential"], before["certificate_number"]) == ("none", None, None)
    try:
        await mother.call("GET", f"/api/v1/applications/{mother.app_id}/elicense/qr.png")
        pytest.fail("a QR code before the e-licence exists")
    except ApiProblem as problem:
        assert (problem.status, problem.code) == (409, "elicense_not_issued")

    issuer = await staff(stack, "issuer1")
    await issuer.call(
        "POST",
        f"{REVIEW}/{mother.app_id}/issue",
        json={"certificate_number": "X440100091", "sealer": "赵盖章"},
    )

    hers = await issued_elicense(mother)
    licence = LicenceId.parse(hers["licence_id"])  # the national structure, its check character holds
    assert licence.issuer_code == "GZFY01" and hers["certificate_number"] == "X440100091"
    assert hers["role"] == "mother" and hers["superseded"] == []
    url = await scanned(stack, mother, hers)
    assert url == f"{stack.api}/verify/#{hers['licence_id']}" == hers["verify_url"]

    keys = await jwks(stack)
    assert [k["status"] for k in keys["keys"]] == ["current"] and all("d" not in k for k in keys["keys"])
    verified = verify_sd_jwt(hers["credential"], keys)
    assert verified.header["kid"] == hers["key_id"]
    assert verified.claims["licence_id"] == url.rsplit("#", 1)[1]  # what the QR says is what was signed
    assert verified.claims["certificate_number"] == "X440100091"
    assert verified.claims["status"]["status_list"]["uri"].startswith(f"{stack.api}/api/v1/status-lists/")
    assert 0 <= verified.claims["status"]["status_list"]["idx"] < 2**17
    assert verified.disclosed["newborn_name"] == family.newborn_name
    assert verified.disclosed["mother_id_number"] == family.mother.id_number
    assert family.mother.id_number not in hers["credential"]  # disclosed, never in clear in the JWT

    his = await issued_elicense(father)
    assert his["role"] == "father" and his["licence_id"] == hers["licence_id"]
    seen = verify_sd_jwt(his["credential"], keys)
    assert "mother_id_number" not in seen.disclosed and seen.disclosed["newborn_name"] == family.newborn_name
    for parent in (father, mother):  # the status views follow the log

        async def shown(parent: MiniProgram = parent) -> bool:
            return bool(
                (await parent.status())["elicense"] == {"state": "issued", "licence_id": hers["licence_id"]}
            )

        await eventually(shown, "the status view shows the e-licence")

    # A stranger learns nothing, not even that it exists.
    stranger = stack.mini_program(family)
    await stranger.login("oStrangerElicense1")
    try:
        await stranger.call("GET", f"/api/v1/applications/{mother.app_id}/elicense")
        pytest.fail("a stranger read the e-licence")
    except ApiProblem as problem:
        assert problem.status == 404


async def test_beijing_generates_it_two_working_days_after_printing(stack: Stack, family: Family) -> None:
    mp, issuer = await beijing(stack, family)
    await issuer.call(
        "POST", f"{REVIEW}/{mp.app_id}/issue", json={"certificate_number": "X110100091", "sealer": "钱盖章"}
    )
    pending = await mp.call("GET", f"/api/v1/applications/{mp.app_id}/elicense")
    assert (pending["state"], pending["credential"]) == ("pending", None)
    assert (await mp.status())["elicense"] == {"state": "pending", "licence_id": None}
    process = stack.app[ELICENSE_PROCESS]
    await eventually(
        lambda: mp.call("GET", f"/api/v1/applications/{mp.app_id}/elicense"),
        "the print is scheduled",
    )
    expected = (await mp.call("GET", f"/api/v1/applications/{mp.app_id}/elicense"))["expected_at"]
    if expected is None:  # scheduling follows the log: wait until the row is there

        async def scheduled() -> Any:
            return (await mp.call("GET", f"/api/v1/applications/{mp.app_id}/elicense"))["expected_at"]

        expected = await eventually(scheduled, "the e-licence's due time is known")
    assert expected.endswith("15:59:59+00:00")  # the end of a working day, Beijing time

    process.wake()  # not due yet: nothing happens
    await process._run(process.issue_due)
    assert (await mp.call("GET", f"/api/v1/applications/{mp.app_id}/elicense"))["state"] == "pending"

    real_clock = stack.service.clock
    stack.service.clock = lambda: real_clock() + timedelta(days=6)  # past two working days, whatever today is
    try:
        process.wake()
        document = await issued_elicense(mp)
    finally:
        stack.service.clock = real_clock
    assert LicenceId.parse(document["licence_id"]).issuer_code == "BJFY01"
    verified = verify_sd_jwt(document["credential"], await jwks(stack))
    assert verified.claims["issuer_name"] == "北京妇产医院" and verified.disclosed["birthplace"].startswith(
        "北京市"
    )
    assert await scanned(stack, mp, document) == document["verify_url"]


async def printed_stub(stack: Stack, token: str, app_id: str, number: str) -> bytes:
    """The archived form printed with certificate ``number`` (its stub page), as a PDF once it is drawn."""
    _, _, body = await rendered(stack, token, app_id)
    [form] = [f for f in json.loads(body)["forms"] if f["certificate_number"] == number]
    status, _, pdf = await get(stack, token, form["url"], accept="application/pdf")
    assert status == 200
    return pdf


async def test_each_printed_stub_carries_the_qr_code_of_the_e_licence_the_parents_later_see(
    stack: Stack, family: Family
) -> None:
    reason = rendering_unavailable()
    if reason:
        pytest.skip(reason)
    mp = await submitted(stack, family)
    app_id = str(mp.app_id)
    issuer = await staff(stack, "issuer1")
    assert issuer.token
    await issuer.call(
        "POST", f"{REVIEW}/{app_id}/issue", json={"certificate_number": "X440100095", "sealer": "赵盖章"}
    )
    [printed] = scan_qr_codes(
        await printed_stub(stack, issuer.token, app_id, "X440100095"), "elicense-stub-issued"
    )
    first = await issued_elicense(mp)
    assert (printed.text, printed.ec_level) == (first["verify_url"], "Q")
    assert printed.text == f"{stack.api}/verify/#{first['licence_id']}"
    assert printed.quiet_zone_clear and printed.printed_mm >= 20

    # Misprinted: replaced on a new blank. Its stub carries the new print's own e-licence, the old one superseded.
    dispatched = await wait_for_state(mp, "dispatched")
    await mp.fake("/_fake/ems/deliver", {"waybill_no": dispatched["tracking_number"]})
    await wait_for_state(mp, "delivered")
    await replace(issuer, app_id, "X440100096")
    [again] = scan_qr_codes(
        await printed_stub(stack, issuer.token, app_id, "X440100096"), "elicense-stub-replaced"
    )

    async def replaced() -> dict[str, Any] | None:
        document = await issued_elicense(mp)
        return document if document["certificate_number"] == "X440100096" else None

    second = await eventually(replaced, "the replacement's e-licence is generated")
    assert (again.text, again.ec_level) == (second["verify_url"], "Q") and again.quiet_zone_clear
    assert second["licence_id"] != first["licence_id"] and again.text != printed.text
    assert [s["licence_id"] for s in second["superseded"]] == [first["licence_id"]]
