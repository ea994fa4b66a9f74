"""Verifying and revoking e-licences over HTTP (decision 0039): a bank or a police station checks a credential
or a paper certificate; after a reissue following a loss the old one is revoked online within a minute, and the
public status list (read and checked with nothing but the JWKS) has its bit set.
"""

from __future__ import annotations

from typing import Any

import pytest

from backend.admin import operator
from backend.credentials import b64url, b64url_decode, read_jwt, verify_sd_jwt
from backend.dev import DEMO_PASSWORD
from backend.routes.staff import hash_password
from backend.status_list import INVALID, VALID, read_token
from miniprogram_stub.client import ApiProblem, StaffClient
from miniprogram_stub.people import Family
from tests.e2e.conftest import Stack
from tests.e2e.test_counter import REVIEW, reissue_after_loss
from tests.e2e.test_elicense_http import issued_elicense, jwks
from tests.e2e.test_father_invitation import on_her_phone, on_his_phone
from tests.e2e.test_staff import staff
from tests.waiting import eventually

pytestmark = pytest.mark.e2e


async def verify(stack: Stack, body: Any, token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with stack.session.post(stack.api + "/api/v1/verifications", json=body, headers=headers) as r:
        return r.status, await r.json()


async def status_list(stack: Stack, uri: str) -> tuple[str, str]:
    async with stack.session.get(uri) as r:  # public: no login
        assert r.status == 200 and r.content_type == "application/statuslist+jwt"
        return r.headers["Cache-Control"], await r.text()


async def submitted_by_both(stack: Stack, family: Family, *, ems: bool = True) -> tuple[Any, Any]:
    """The mother's application, the father's part done on his own phone, submitted: (her, his) mini-programs."""
    mother = await on_her_phone(stack, family)
    code = (await mother.invite_father())["invitation"]
    father = await on_his_phone(stack, family)
    await father.accept_invitation(code)
    await father.fathers_part()
    await mother.submit_after_fathers_part(ems=ems)
    return mother, father


async def issued(stack: Stack, family: Family) -> tuple[Any, dict[str, Any]]:
    mother, _ = await submitted_by_both(stack, family)
    issuer = await staff(stack, "issuer1")
    await issuer.call(
        "POST",
        f"{REVIEW}/{mother.app_id}/issue",
        json={"certificate_number": "X440100071", "sealer": "赵盖章"},
    )
    return mother, await issued_elicense(mother)


async def reissued_after_loss(stack: Stack, app_id: Any, number: str) -> None:
    """The issuer records the certificate lost in the post and reissues it under ``number``."""
    await reissue_after_loss(await staff(stack, "issuer1"), str(app_id), number)


async def verifier(stack: Stack) -> StaffClient:
    await stack.in_store(
        lambda: stack.service.create_staff_account(
            operator(),
            username="police1",
            role="verifier",
            institution="GZFY01",
            display_name="孙民警",
            password_hash=hash_password(DEMO_PASSWORD),
        )
    )
    client = StaffClient(stack.session, stack.api)
    await client.login("police1", DEMO_PASSWORD)
    return client


async def test_verify_then_revoke_after_a_reissue(stack: Stack, family: Family) -> None:
    mother, document = await issued(stack, family)
    credential = document["credential"]
    keys = await jwks(stack)

    status, answer = await verify(stack, {"credential": credential})
    assert (status, answer["result"], answer["audience"]) == (200, "valid", "public")
    assert answer["certificate_number"] == "X440100071" and "replaced_by" not in answer
    rheader, receipt = read_jwt(answer["receipt"], keys, "verification-receipt+jwt")  # the verifier keeps it
    assert rheader["alg"] == "ES256" and receipt["result"] == "valid" and receipt["jti"] == answer["id"]
    assert receipt["checked"]["sha256"] == answer["checked"]["sha256"] and credential not in answer["receipt"]

    # From paper: the number, the name and the birth date as printed (the birth date of the e-licence).
    born = verify_sd_jwt(credential, keys).disclosed["born_at"][:10]
    paper = {"certificate_number": "x440100071", "newborn_name": family.newborn_name, "birth_date": born}
    assert (await verify(stack, paper))[1]["result"] == "valid"
    assert (await verify(stack, {**paper, "newborn_name": "张三"}))[1]["result"] == "not_found"

    # One changed byte of the signed part.
    jws, rest = credential.split("~", 1)
    head, payload, signature = jws.split(".")
    raw = bytearray(b64url_decode(payload))
    raw[-3] ^= 0x01
    tampered = f"{head}.{b64url(bytes(raw))}.{signature}~{rest}"
    assert (await verify(stack, {"credential": tampered}))[1]["result"] in ("bad_signature", "malformed")
    sig = bytearray(b64url_decode(signature))
    sig[5] ^= 0x01
    assert (await verify(stack, {"credential": f"{head}.{payload}.{b64url(bytes(sig))}~{rest}"}))[1][
        "result"
    ] == "bad_signature"
    assert (await verify(stack, {"credential": "nonsense~"}))[1]["result"] == "malformed"

    # Bad input: a problem, nothing recorded.
    for body in ({}, {"credential": 5}, {"certificate_number": "X1", "newborn_name": "", "birth_date": "x"}):
        status, problem = await verify(stack, body)
        assert status == 422 and problem["code"] == "validation_failed", body

    # The status list: public, cacheable for its ttl, signed, this credential's bit 0.
    claims = verify_sd_jwt(credential, keys).claims["status"]["status_list"]
    cache, token = await status_list(stack, claims["uri"])
    assert cache == "public, max-age=60"
    assert read_token(token, keys).status(claims["idx"]) == VALID

    # Lost in the post, reissued with a new number: the old credential is revoked within a minute.
    await reissued_after_loss(stack, mother.app_id, "X440100072")

    async def revoked() -> dict[str, Any] | None:
        answer = (await verify(stack, {"credential": credential}))[1]
        return answer if answer["result"] == "revoked" else None

    public = await eventually(revoked, "the old e-licence is revoked", timeout=60)
    assert "replaced_by" not in public and "X440100072" not in str(public)  # no hint of the new number

    async def listed() -> bool:
        return read_token((await status_list(stack, claims["uri"]))[1], keys).status(claims["idx"]) == INVALID

    await eventually(listed, "the status list has the bit set", timeout=60)

    # A department's verifier learns why and the new number, and archives the new e-licence.
    police = await verifier(stack)
    status, seen = await verify(stack, {"credential": credential}, police.token)
    assert (seen["audience"], seen["reason"], seen["replaced_by"]) == ("verifier", "reissued", "X440100072")
    new = await issued_elicense(mother)
    archived = await police.call(
        "POST", "/api/v1/verifications/archive", json={"credential": new["credential"]}
    )
    assert archived["archived"] is True and archived["credential"] == new["credential"]
    assert archived["items"]["newborn_name"] == family.newborn_name
    with pytest.raises(ApiProblem) as old:
        await police.call("POST", "/api/v1/verifications/archive", json={"credential": credential})
    assert (old.value.status, old.value.code) == (409, "not_archivable")
    with pytest.raises(ApiProblem) as public_archive:
        await mother.call("POST", "/api/v1/verifications/archive", json={"credential": new["credential"]})
    assert public_archive.value.status == 403

    # The auditor sees every verification: digests and hashed addresses, never the data.
    auditor = await staff(stack, "auditor1")

    async def all_recorded() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = (await auditor.call("GET", "/api/v1/audit/verifications"))[
            "verifications"
        ]
        return rows if any(r["archived"] for r in rows) else None

    rows = await eventually(all_recorded, "the verifications are listed for the auditor")
    results = [r["result"] for r in rows]
    assert results.count("valid") >= 3 and "revoked" in results and "bad_signature" in results
    assert all(len(r["source"]) == 64 and "127.0.0.1" not in str(r) for r in rows)
    assert family.newborn_name not in str(rows) and credential not in str(rows)
    assert any(r["verifier"] == "police1" and r["archived"] for r in rows)
