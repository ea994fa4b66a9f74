"""The offline verifier (tools/verify_elicense.py) agrees with ``POST /api/v1/verifications`` on every case.

A whole journey over HTTP ends with an e-licence; a department saves the public JWKS and status list from the
running service (as it would with a browser or curl), then runs the tool in a process of its own, with nothing
but those files, on each credential the server is asked about: valid, one changed byte of the payload or the
signature, a key not in the JWKS, malformed input, a disclosure the issuer did not sign; revoked after a loss
and a reissue; superseded by a misprint's replacement. The status list has one bit a credential, so where the
server says ``superseded`` the tool says ``revoked`` (and says that it cannot tell them apart). ``--fetch``
downloads what the offline run needs from the running service.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from backend.credentials import (
    Es256Signer,
    b64url,
    b64url_decode,
    disclosure,
    present,
    read_jwt,
    verify_sd_jwt,
)
from backend.status_list import INVALID, read_token
from domain.elicense import FATHER_WITHHELD, PERSONAL_ITEMS
from miniprogram_stub.client import MiniProgram
from miniprogram_stub.people import Family
from tests.e2e.conftest import Stack
from tests.e2e.test_counter import REVIEW, reissue_after_loss, replace
from tests.e2e.test_elicense_http import issued_elicense, jwks
from tests.e2e.test_staff import staff, submitted, wait_for_state
from tests.e2e.test_verification_http import issued, status_list, verify
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

TOOL = Path(__file__).resolve().parents[2] / "tools" / "verify_elicense.py"
# The server's result → the tool's: one status bit cannot tell a revocation from a replacement.
OFFLINE_RESULT = {
    "valid": "valid",
    "revoked": "revoked",
    "superseded": "revoked",
    "bad_signature": "bad_signature",
    "unknown_key": "unknown_key",
    "malformed": "malformed",
}
EXIT_STATUS = {"valid": 0, "revoked": 1, "bad_signature": 2, "unknown_key": 2, "malformed": 2}


async def run_tool(*args: str | Path, stdin: str | None = None) -> tuple[int, str, str]:
    """tools/verify_elicense.py in its own process (the service keeps serving while it runs)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(TOOL),
        *map(str, args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd="/",
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode() if stdin else None), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def offline(credential: str, *args: str | Path) -> dict[str, Any]:
    """The tool's JSON answer on a credential given on standard input; its exit status checked."""
    code, out, err = await run_tool("-", *args, "--json", stdin=credential)
    answer: dict[str, Any] = json.loads(out)
    assert code == answer["exit_code"] == EXIT_STATUS[answer["result"]], err
    return answer


async def save(stack: Stack, folder: Path, uri: str) -> Path:
    """The public JWKS and a status list, saved from the running service as a department would (no login)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "jwks.json").write_text(json.dumps(await jwks(stack)), encoding="utf-8")
    (folder / f"status-list-{uri.rsplit('/', 1)[1]}.jwt").write_text(
        (await status_list(stack, uri))[1], encoding="utf-8"
    )
    return folder


async def agree(stack: Stack, credential: str, folder: Path, expected: str) -> dict[str, Any]:
    """The server's answer is ``expected``, and the tool's on the saved files is the same (revoked for superseded)."""
    status, answer = await verify(stack, {"credential": credential})
    assert (status, answer["result"]) == (200, expected), answer
    found = await offline(credential, "--dir", folder)
    assert found["result"] == OFFLINE_RESULT[expected], found
    return found


def status_of(credential: str, keys: dict[str, Any]) -> tuple[str, int]:
    listed = verify_sd_jwt(credential, keys).claims["status"]["status_list"]
    return str(listed["uri"]), int(listed["idx"])


async def bit_set(stack: Stack, credential: str) -> None:
    """Wait (with a deadline) until the served, re-signed status list has the credential's bit."""
    keys = await jwks(stack)
    uri, idx = status_of(credential, keys)

    async def listed() -> bool:
        return read_token((await status_list(stack, uri))[1], keys).status(idx) == INVALID

    await eventually(listed, "the re-signed status list has the bit set", timeout=60)


def altered(credential: str) -> dict[str, str]:
    """The credentials a forger or a careless copy makes of this one."""
    jws, rest = credential.split("~", 1)
    head, payload, signature = jws.split(".")
    raw = bytearray(b64url_decode(payload))
    raw[-3] ^= 0x01  # still JSON: only the signature tells
    broken = bytearray(raw)
    broken[0] ^= 0x01  # "{" no more: not JSON
    sig = bytearray(b64url_decode(signature))
    sig[5] ^= 0x01
    stranger = Es256Signer.generate()  # a key the JWKS does not have
    header = json.loads(b64url_decode(head))
    signing_input = f"{b64url(json.dumps({**header, 'kid': stranger.kid}).encode())}.{payload}"
    return {
        "one changed byte of the payload": f"{head}.{b64url(bytes(raw))}.{signature}~{rest}",
        "one changed byte that breaks the payload's JSON": f"{head}.{b64url(bytes(broken))}.{signature}~{rest}",
        "one changed byte of the signature": f"{head}.{payload}.{b64url(bytes(sig))}~{rest}",
        "signed by a key not in the JWKS": f"{signing_input}.{b64url(stranger.sign(signing_input.encode()))}~{rest}",
        "not a credential": "nonsense~",
        "a JWS without its ~": jws,
        "a disclosure not in _sd": credential + disclosure(b64url(b"x" * 16), "newborn_name", "李四") + "~",
        "a disclosure that is not ASCII": credential + "出生~",
    }


async def test_the_offline_tool_agrees_with_the_server_on_every_case(
    stack: Stack, family: Family, tmp_path: Path
) -> None:
    mother, document = await issued(stack, family)
    credential = document["credential"]
    keys = await jwks(stack)
    uri, idx = status_of(credential, keys)
    before = await save(stack, tmp_path / "before", uri)

    found = await agree(stack, credential, before, "valid")
    assert found["status"]["checked"] and (found["status"]["uri"], found["status"]["idx"]) == (uri, idx)
    assert found["status"]["status"] == 0 and found["status"]["expired"] is False
    assert found["credential"]["licence_id"] == document["licence_id"]
    assert found["credential"]["kid"] == document["key_id"] and found["credential"]["key_status"] == "current"
    assert "claims" not in found and family.newborn_name not in json.dumps(found, ensure_ascii=False)
    for copy in (present(credential, FATHER_WITHHELD), present(credential, PERSONAL_ITEMS)):
        assert (await agree(stack, copy, before, "valid"))["status"]["status"] == 0

    expected = {
        "one changed byte of the payload": "bad_signature",
        "one changed byte that breaks the payload's JSON": "malformed",
        "one changed byte of the signature": "bad_signature",
        "signed by a key not in the JWKS": "unknown_key",
        "not a credential": "malformed",
        "a JWS without its ~": "malformed",
        "a disclosure not in _sd": "bad_signature",
        "a disclosure that is not ASCII": "bad_signature",
    }
    for case, text in altered(credential).items():
        answer = await agree(stack, text, before, expected[case])
        assert answer["failed"] == "credential", case

    # Lost in the post, reissued: the old credential is revoked online, and offline once the list is fetched again.
    issuer = await staff(stack, "issuer1")
    await reissue_after_loss(issuer, str(mother.app_id), "X440100072")
    await bit_set(stack, credential)
    after = await save(stack, tmp_path / "after", uri)
    revoked = await agree(stack, credential, after, "revoked")
    assert revoked["status"]["status"] == 1
    assert "one_bit_status" in [note["code"] for note in revoked["notes"]]
    # The list saved before the loss still says valid: the answer is as of that list, and says how old it is.
    stale = await offline(credential, "--dir", before)
    assert stale["result"] == "valid" and stale["status"]["signed_age_seconds"] >= 0
    assert "status_as_of_list" in [note["code"] for note in stale["notes"]]
    code, out, _ = await run_tool("-", "--dir", after, stdin=credential)
    assert code == 1 and "结果 / result: 已作废 — revoked (invalid)" in out and "离线无法区分" in out
    assert "状态列表签发于" in out and family.newborn_name not in out

    async def reissued() -> dict[str, Any] | None:
        found = await issued_elicense(mother)
        return found if found["certificate_number"] == "X440100072" else None

    new = (await eventually(reissued, "the reissued certificate's e-licence is generated"))["credential"]
    new_list = await save(stack, tmp_path / "new", status_of(new, keys)[0])
    assert (await agree(stack, new, new_list, "valid"))["credential"]["certificate_number"] == "X440100072"
    # A JWKS without the key that signed it (e.g. one saved from elsewhere) makes it an unknown key, for both.
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "jwks.json").write_text('{"keys": []}', encoding="utf-8")
    assert (await offline(new, "--dir", tmp_path / "empty"))["result"] == "unknown_key"


async def misprinted_and_replaced(stack: Stack, family: Family) -> tuple[MiniProgram, str]:
    """An e-licence whose paper was misprinted, delivered, then replaced: the first credential is superseded."""
    mp = await submitted(stack, family)
    issuer = await staff(stack, "issuer1")
    await issuer.call(
        "POST", f"{REVIEW}/{mp.app_id}/issue", json={"certificate_number": "X440100081", "sealer": "赵盖章"}
    )
    first = (await issued_elicense(mp))["credential"]
    dispatched = await wait_for_state(mp, "dispatched")
    await mp.fake("/_fake/ems/deliver", {"waybill_no": dispatched["tracking_number"]})
    await wait_for_state(mp, "delivered")
    await replace(issuer, str(mp.app_id), "X440100082")
    return mp, first


async def test_superseded_by_a_replacement_reads_revoked_offline_and_fetch_saves_what_it_needs(
    stack: Stack, family: Family, tmp_path: Path
) -> None:
    mp, first = await misprinted_and_replaced(stack, family)
    await bit_set(stack, first)
    folder = tmp_path / "fetched"

    # --fetch downloads the JWKS and the list the credential names, saves them, and checks with those files.
    code, out, err = await run_tool("-", "--fetch", stack.api, "--save", folder, stdin=first)
    assert code == 1, out + err
    assert sorted(p.name for p in folder.iterdir()) == [
        "fetched.json",
        "jwks.json",
        f"status-list-{status_of(first, await jwks(stack))[0].rsplit('/', 1)[1]}.jwt",
    ]
    assert "结果 / result: 已作废 — revoked (invalid)" in out and "状态列表获取于 " in out
    assert "离线无法区分" in out and "superseded" in out  # it says why it cannot tell a replacement apart
    keys = json.loads((folder / "jwks.json").read_text(encoding="utf-8"))
    assert keys == await jwks(stack)
    status, answer = await verify(stack, {"credential": first})
    assert (status, answer["result"]) == (200, "superseded")
    found = await offline(first, "--dir", folder)  # later, offline: files only
    assert found["result"] == OFFLINE_RESULT["superseded"] == "revoked"
    assert found["status"]["fetched_at"] is not None and found["status"]["fetched_age_seconds"] >= 0

    # The replacement's own e-licence: valid for both; --fetch again updates the saved list beside the other.
    async def replaced() -> dict[str, Any] | None:
        document = await issued_elicense(mp)
        return document if document["certificate_number"] == "X440100082" else None

    second = (await eventually(replaced, "the replacement's e-licence is generated"))["credential"]
    fetched = await offline(second, "--fetch", stack.api, "--save", folder)
    assert fetched["result"] == "valid" and fetched["status"]["checked"]
    assert (await agree(stack, second, folder, "valid"))["status"]["status"] == 0
    rheader, receipt = read_jwt(
        answer["receipt"], keys, "verification-receipt+jwt"
    )  # the saved JWKS checks it
    assert receipt["result"] == "superseded" and rheader["kid"] in {k["kid"] for k in keys["keys"]}
