"""An issuer declares a certificate void (宣布作废, decision 0040) over HTTP: the journey to an issued certificate
and its e-licence, then the revocation as the console sends it (If-Match, Idempotency-Key). Within a minute the
e-licence verifies as revoked — plainly for the public, with the ground for a department's verifier — and its bit is
set in the public status list; the parents see the certificate void and where to go, the mother gets one message,
and the auditor finds the revocation in the application's history. Refusals are RFC 9457 problems with stable
codes: the wrong state, already revoked, a ground not on the list, a parent calling it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from backend.credentials import verify_sd_jwt
from backend.routes.elicense import ELICENSE_PROCESS
from backend.routes.verification import ELICENSE_STATUS
from backend.status_list import INVALID, read_token
from miniprogram_stub.client import ApiProblem
from miniprogram_stub.people import Family
from tests.e2e.conftest import Stack
from tests.e2e.test_counter import REVIEW, beijing
from tests.e2e.test_elicense_http import image, issued_days_later, issued_elicense, jwks
from tests.e2e.test_father_invitation import redis_text, refused
from tests.e2e.test_staff import staff, wait_for_messages
from tests.e2e.test_verification_http import status_list, submitted_by_both, verifier, verify
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

NOTE = "经公安机关核查，申办时冒用他人身份证件，亲子关系不实"


async def test_an_issuer_revokes_a_certificate_and_its_e_licence_goes_with_it(
    stack: Stack, family: Family, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mother, father = await submitted_by_both(stack, family, ems=False)  # pickup: no courier to race
    issuer = await staff(stack, "issuer1")
    revoke = f"{REVIEW}/{mother.app_id}/revoke"
    body = {"reason": "obtained_by_deception", "note": NOTE}

    # Under review there is no certificate to void.
    await refused(issuer.call("POST", revoke, json=body), 409, "invalid_state")
    await issuer.call(
        "POST",
        f"{REVIEW}/{mother.app_id}/issue",
        json={"certificate_number": "X440100081", "sealer": "赵盖章"},
    )
    credential = (await issued_elicense(mother))["credential"]
    keys = await jwks(stack)
    assert (await verify(stack, {"credential": credential}))[1]["result"] == "valid"

    # A ground not on the list, and a parent calling the issuer's command: refused, nothing changes.
    bad = await refused(
        issuer.call("POST", revoke, json={**body, "reason": "misprinted"}), 422, "validation_failed"
    )
    assert [(e["field"], e["code"]) for e in bad.problem["errors"]] == [("reason", "invalid_reason")]
    with pytest.raises(ApiProblem) as parent:
        await mother.call("POST", revoke, json=body)
    assert parent.value.status == 403 and parent.value.problem["type"]

    # The console's way: the version it read (If-Match) and one key for the retries of this click.
    read = (await issuer.call("GET", f"{REVIEW}/{mother.app_id}"))["application"]["version"]
    key = uuid.uuid4().hex
    answer = await issuer.call("POST", revoke, json=body, idempotency_key=key, if_match=read)
    assert (answer["state"], answer["version"]) == ("revoked", read + 1)
    assert (
        await issuer.call("POST", revoke, json=body, idempotency_key=key, if_match=read) == answer
    )  # a retry
    await refused(issuer.call("POST", revoke, json=body), 409, "already_revoked")
    review = (await issuer.call("GET", f"{REVIEW}/{mother.app_id}"))["application"]
    assert (review["state"], review["revocation"]["note"]) == ("revoked", NOTE)  # the issuer reads the note

    # Verification: revoked for everyone within a minute; only a department's verifier learns why.
    async def revoked() -> dict[str, Any] | None:
        found = (await verify(stack, {"credential": credential}))[1]
        return found if found["result"] == "revoked" else None

    public = await eventually(revoked, "the e-licence verifies as revoked", timeout=60)
    assert (public["audience"], public["result_label"]) == ("public", "已作废")
    assert not {"reason", "grounds", "reason_label", "replaced_by"} & set(public)
    police = await verifier(stack)
    seen = (await verify(stack, {"credential": credential}, police.token))[1]
    assert (seen["audience"], seen["result"], seen["reason"], seen["grounds"], seen["replaced_by"]) == (
        "verifier",
        "revoked",
        "revoked_by_issuer",
        "obtained_by_deception",
        None,
    )
    assert seen["reason_label"] == "签发机构宣布作废：以欺骗等不正当手段取得"
    born = verify_sd_jwt(credential, keys).disclosed["born_at"][:10]
    paper = {"certificate_number": "X440100081", "newborn_name": family.newborn_name, "birth_date": born}
    assert (await verify(stack, paper))[1]["result"] == "revoked"
    await refused(
        police.call("POST", "/api/v1/verifications/archive", json={"credential": credential}),
        409,
        "not_archivable",
    )

    # The public status list has the credential's bit set within a minute (checked with nothing but the JWKS).
    entry = verify_sd_jwt(credential, keys).claims["status"]["status_list"]

    async def listed() -> bool:
        return read_token((await status_list(stack, entry["uri"]))[1], keys).status(entry["idx"]) == INVALID

    await eventually(listed, "the status list has the bit set", timeout=60)

    # The parents: the certificate void, why, where to go and what to bring; never the issuer's note.
    hers = await mother.status()
    assert (hers["state"], hers["state_label"], hers["elicense"]["state"]) == (
        "revoked",
        "出生医学证明已作废",
        "revoked",
    )
    told = hers["revocation"]
    assert (told["certificate_number"], told["reason"], told["reason_label"]) == (
        "X440100081",
        "obtained_by_deception",
        "以欺骗等不正当手段取得",
    )
    assert told["where"] and told["bring"] and "行政复议" in told["message"]
    assert [s["code"] for s in hers["next_steps"]] == ["visit_counter"]
    his = await father.status()
    assert his["state"] == "revoked" and "revocation" not in his
    for document in (hers, his):
        assert NOTE not in str(document) and "冒用" not in str(document)
    mine = await mother.call("GET", f"/api/v1/applications/{mother.app_id}/elicense")
    assert (mine["state"], mine["state_label"], mine["credential"], mine["qr"]) == (
        "revoked",
        "电子证照已作废",
        None,
        None,
    )
    assert mine["revocation"]["reason_label"] == "以欺骗等不正当手段取得"
    assert [(e["certificate_number"], e["state"]) for e in mine["superseded"]] == [("X440100081", "revoked")]
    status, _, _ = await image(stack, mother, f"/api/v1/applications/{mother.app_id}/elicense/qr.png")
    assert status == 409

    # One message to the mother (issued, then void), through the outbox; none of the note.
    messages = await wait_for_messages(stack, family.openid, 2)
    assert [m["template_id"] for m in messages] == ["tmpl-issued", "tmpl-referred"]
    assert {k: v["value"] for k, v in messages[-1]["data"].items()} | {"time5": ""} == {
        "thing1": "出生医学证明申领",
        "phrase2": "已作废",
        "thing3": "以欺骗等不正当手段取得",
        "thing4": "原证件停止使用，详询签发机构",
        "time5": "",
    }
    assert "冒用" not in str(messages)
    # Redis (the views, the outbox) and the logs hold neither the note nor, in clear, the number (decision 0042).
    kept = await redis_text(redis_url)
    assert NOTE.encode() not in kept and b"X440100081" not in kept and seen["licence_id"].encode() not in kept
    assert all(NOTE not in r.getMessage() and "冒用" not in r.getMessage() for r in caplog.records)

    # The auditor finds it in the verifiable history: who, when, the ground and the note.
    auditor = await staff(stack, "auditor1")

    async def in_the_log() -> dict[str, Any] | None:
        events = (await auditor.call("GET", f"/api/v1/audit/applications/{mother.app_id}/events"))["events"]
        return events[-1] if events[-1]["leaf_index"] is not None else None

    last = await eventually(in_the_log, "the revocation is a leaf of the audit log")
    assert last["event"] == "CertificateRevoked"
    assert (last["actor"]["role"], last["actor"]["id"], last["data"]["reason"], last["data"]["note"]) == (
        "issuer",
        "issuer1",
        "obtained_by_deception",
        NOTE,
    )


async def test_a_credential_signed_as_its_certificate_was_declared_void_never_verifies_valid(
    stack: Stack, family: Family
) -> None:
    """The race of the e-licence's signing with a revocation: the status follower passes the revocation
    before the signing thread's credential row lands. The credential was never handed to anyone, yet it can
    be found by the certificate's number: the refused issue sets its bit, so the paper verifies as revoked."""
    mp, issuer = await beijing(stack, family)  # Beijing: the e-licence comes two working days after printing
    number = "X110100093"
    await issuer.call(
        "POST", f"{REVIEW}/{mp.app_id}/issue", json={"certificate_number": number, "sealer": "钱盖章"}
    )
    process, status = stack.app[ELICENSE_PROCESS], stack.app[ELICENSE_STATUS]
    [due] = await eventually(
        lambda: stack.in_store(process.store.due_of, mp.app_id), "the print is scheduled"
    )
    app = await stack.in_store(stack.service.repository.get, uuid.UUID(mp.app_id), version=due.version)
    await issuer.call(
        "POST",
        f"{REVIEW}/{mp.app_id}/revoke",
        json={"reason": "issued_in_error", "note": "经复核，该证件不应签发"},
    )
    end = await stack.in_store(stack.service.recorder.max_notification_id)

    async def passed() -> bool:
        return await status.position() >= end

    await eventually(passed, "the status follower has passed the revocation")
    # The signing thread's write lands now, after the follower looked for credentials to void.
    await stack.in_store(process._sign, app, due, number, stack.service.clock())
    assert await issued_days_later(stack) == 0
    answer = await mp.call("GET", f"/api/v1/applications/{mp.app_id}/elicense")
    assert answer["credential"] is None
    paper = {
        "certificate_number": number,
        "newborn_name": family.newborn_name,
        "birth_date": app.record["born_at"][:10],
    }
    assert (await verify(stack, paper))[1]["result"] == "revoked"
