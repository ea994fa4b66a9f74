"""Auditors over real HTTP: the complete history, proofs verified offline, and a tampered store at start.

An auditor reads an application's history (the reading itself becomes an event of the log),
downloads its proof bundle, the checkpoint and a consistency proof, and verifies them with the
standalone ``tools/birthcert_verify.py`` in a process of its own, as an auditor without birthcert
would. Parents and issuers are refused. Then the stack is stopped, one byte of a stored event is
flipped in the SQLite file, and a new service on the same data directory refuses every write.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from backend.app import create_app
from backend.components import CONFIG
from backend.config import Config
from backend.dev import DEMO_PASSWORD, channel_environ, seed_demo_staff
from backend.routes.audit import AUDIT_FOLLOWER, AUDIT_LOG, log_signing_keys
from domain.values import Actor
from miniprogram_stub.client import ApiProblem, MiniProgram, StaffClient
from miniprogram_stub.people import Family
from projections.signed_note import Ed25519NoteSigner
from projections.sql import Database
from tests.builders import SECOND_MOTHER_ID, Walk
from tests.e2e.conftest import Stack, free_port, running_stack
from tests.e2e.openapi_check import OpenApiCheck
from tests.e2e.test_staff import delivery_body
from tests.waiting import eventually

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "birthcert_verify.py"


def verify_offline(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The standalone verifier, in its own process, from a directory with nothing of birthcert in it."""
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )


def trusted_key(config: Config) -> str:
    """The verifier key as the operator hands it over (``birthcert audit key``), not as the API says it."""
    (private, *_) = log_signing_keys(config).private_keys()
    return Ed25519NoteSigner(config.log_origin, private).verifier_key()


async def login(stack: Stack, username: str, api: str | None = None, check: Any = None) -> StaffClient:
    client = StaffClient(stack.session, api or stack.api, check=check or stack.check)
    await client.login(username, DEMO_PASSWORD)
    return client


async def submitted_application(stack: Stack, family: Family) -> MiniProgram:
    """Staff seeded, the delivery entered by the HIS, the family's whole journey to submission."""
    await stack.in_store(seed_demo_staff, stack.service)
    his = await login(stack, "his1")
    await his.call("POST", "/api/v1/deliveries", json=delivery_body(family))
    mp = stack.mini_program(family)
    await mp.whole_journey()
    assert mp.app_id
    return mp


def write(path: Path, content: Any) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False), "utf-8")
    return path


async def test_auditor_reads_history_and_verifies_proofs_offline(
    stack: Stack, family: Family, tmp_path: Path
) -> None:
    mp = await submitted_application(stack, family)
    auditor = await login(stack, "auditor1")
    app_id = mp.app_id

    history = await auditor.call("GET", f"/api/v1/audit/applications/{app_id}/events")
    events = history["events"]
    assert [e["version"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["event"] == "ApplicationStarted" and events[-1]["event"] == "Submitted"
    for e in events:
        assert e["actor"]["role"] == "parent" and e["actor"]["id"], e
        assert e["at"] and isinstance(e["position"], int) and isinstance(e["leaf_index"], int), e
    positions = [e["position"] for e in events]
    assert positions == sorted(positions)

    # The reading itself is in the store, after every event it read, by the auditor.
    (viewed,) = await stack.in_store(
        lambda: [
            stack.service.mapper.to_domain_event(n)
            for n in stack.service.recorder.select_notifications(start=positions[-1] + 1, limit=1000)
            if n.topic == "birthcert:PersonalDataViewed"
        ]
    )
    assert (viewed.application_id, viewed.what) == (app_id, "events")
    assert viewed.actor["role"] == "auditor"

    # The proof bundle, the checkpoint and the key, as files; verified offline.
    bundle = await auditor.call("GET", f"/api/v1/audit/applications/{app_id}/proof")
    checkpoint = await auditor.call("GET", "/api/v1/audit/checkpoint")
    key = trusted_key(stack.app[CONFIG])
    assert checkpoint["verifier_keys"] == [key]
    assert bundle["checkpoint"] == checkpoint["note"]
    assert [entry["index"] for entry in bundle["leaves"]] == [e["leaf_index"] for e in events]
    assert all(entry["event_state"] for entry in bundle["leaves"])
    done = verify_offline("bundle", write(tmp_path / "proof.json", bundle), "--key", key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERIFIED" in done.stdout

    # The log grows (a second reading); a fresh checkpoint extends the first one.
    await auditor.call("GET", f"/api/v1/audit/applications/{app_id}/events")
    newer = await auditor.call("GET", "/api/v1/audit/checkpoint?fresh=true")
    assert newer["tree_size"] > checkpoint["tree_size"]
    proof = await auditor.call(
        "GET", f"/api/v1/audit/consistency?from={checkpoint['tree_size']}&to={newer['tree_size']}"
    )
    assert (proof["checkpoint1"], proof["checkpoint2"]) == (checkpoint["note"], newer["note"])
    done = verify_offline(
        "consistency",
        write(tmp_path / "old.txt", checkpoint["note"]),
        write(tmp_path / "new.txt", newer["note"]),
        write(tmp_path / "consistency.json", proof),
        "--key",
        key,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERIFIED" in done.stdout

    # Parents and issuers are not auditors.
    issuer = await login(stack, "issuer1")
    audit_paths = [
        f"/api/v1/audit/applications/{app_id}/events",
        f"/api/v1/audit/applications/{app_id}/proof",
        "/api/v1/audit/checkpoint",
        f"/api/v1/audit/consistency?from=1&to={newer['tree_size']}",
        "/api/v1/audit/integrity",
    ]
    for client in (mp, issuer):
        for path in audit_paths:
            with pytest.raises(ApiProblem) as refused:
                await client.call("GET", path)
            assert refused.value.status == 403, (path, refused.value)


async def readings(stack: Stack, after: int) -> list[Any]:
    """The auditors' recorded readings stored after position ``after``."""
    found: list[Any] = await stack.in_store(
        lambda: [
            stack.service.mapper.to_domain_event(n)
            for n in stack.service.recorder.select_notifications(start=after + 1, limit=1000)
            if n.topic == "birthcert:PersonalDataViewed"
        ]
    )
    return found


async def test_an_auditors_look_at_the_review_page_and_photos_is_recorded(
    stack: Stack, family: Family
) -> None:
    mp = await submitted_application(stack, family)
    issuer, auditor = await login(stack, "issuer1"), await login(stack, "auditor1")
    before = await stack.in_store(stack.service.recorder.max_notification_id)
    review = await issuer.call("GET", f"/api/v1/review/applications/{mp.app_id}")
    assert await readings(stack, before) == []  # the issuer's own work is not an audit reading

    review = await auditor.call("GET", f"/api/v1/review/applications/{mp.app_id}")
    (seen,) = await readings(stack, before)
    assert (seen.application_id, seen.what, seen.actor["role"]) == (mp.app_id, "review", "auditor")
    photo = next(d for d in review["documents"] if d["kind"] == "mother_id_front")
    async with stack.session.get(
        stack.api + photo["url"], headers={"Authorization": f"Bearer {auditor.token}"}
    ) as r:
        assert r.status == 200 and r.content_type in ("image/jpeg", "image/png")
    *_, photo_seen = await readings(stack, before)
    assert (photo_seen.what, photo_seen.actor["role"]) == ("document:mother_id_front", "auditor")


async def serve(config: Config) -> tuple[web.AppRunner, str]:
    """A new service process-alike on ``config`` (its own port), as an operator restarts it."""
    port = free_port()
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def flip_a_byte_of(file: Path, state: bytes) -> None:
    """Flip one byte inside ``state`` where it lies in the SQLite file (the store is stopped)."""
    conn = sqlite3.connect(file)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file
    conn.close()
    raw = bytearray(file.read_bytes())
    probe = state[16:48]
    at = raw.find(probe)
    assert at > 0 and raw.find(probe, at + 1) < 0, "the event's bytes are in the file once"
    raw[at + 8] ^= 0x20
    file.write_bytes(bytes(raw))


async def test_tampered_store_found_at_start_refuses_every_write(
    stack: Stack, family: Family, tmp_path: Path
) -> None:
    mp = await submitted_application(stack, family)
    auditor = await login(stack, "auditor1")
    bundle = await auditor.call("GET", f"/api/v1/audit/applications/{mp.app_id}/proof")
    signed = next(e for e in bundle["leaves"] if e["leaf"]["topic"] == "birthcert:FormSigned")
    position = signed["leaf"]["position"]
    assert signed["index"] < bundle["tree_size"]  # the event is under the signed checkpoint
    (notification,) = await stack.in_store(
        stack.service.recorder.select_notifications, start=position, limit=1
    )
    config: Config = stack.app[CONFIG]
    key = trusted_key(config)
    done = verify_offline("bundle", write(tmp_path / "before.json", bundle), "--key", key)
    assert done.returncode == 0, done.stdout

    # Stop the service; flip a byte of the signed form's stored event in the SQLite file.
    await stack.app.shutdown()
    await stack.app.cleanup()
    flip_a_byte_of(Path(config.event_store_env()["SQLITE_DBNAME"]), notification.state)

    restarted = Config.from_env(
        {
            "REDIS_URL": config.redis_url or "",
            "WECHAT_API_BASE": stack.platform,
            "WECHAT_PAY_BASE": stack.platform,
            **channel_environ(stack.platform),
            "POPULATION_REGISTRY_URL": f"{stack.platform}/registry",
            "EMS_API_BASE": f"{stack.platform}/ems",
        },
        data_dir=config.data_dir,
    )
    runner, api = await serve(restarted)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{api}/api/v1/openapi.json") as r:
                check = OpenApiCheck(await r.json())
            # Staff can still log in (it writes nothing to the store) and see what was found.
            auditor = StaffClient(session, api, check=check)
            await auditor.login("auditor1", DEMO_PASSWORD)
            found = await auditor.call("GET", "/api/v1/audit/integrity")
            assert found["ok"] is False
            assert found["position"] == position
            assert f"position {position}" in found["message"]

            issuer = StaffClient(session, api, check=check)
            await issuer.login("issuer1", DEMO_PASSWORD)
            his = StaffClient(session, api, check=check)
            await his.login("his1", DEMO_PASSWORD)
            parent = MiniProgram(session, api, stack.platform, family, check=check, token=mp.token)
            writes: list[tuple[StaffClient | MiniProgram, str, dict[str, Any]]] = [
                (
                    issuer,
                    f"/api/v1/review/applications/{mp.app_id}/issue",
                    {"certificate_number": "X440100009"},
                ),
                (his, "/api/v1/deliveries", delivery_body(family, inpatient_no="ZY-OTHER")),
                (parent, f"/api/v1/applications/{mp.app_id}/submit", {}),
                (parent, "/api/v1/auth/wechat", {"code": f"dev:{family.openid}:{uuid.uuid4().hex[:8]}"}),
            ]
            for client, path, body in writes:
                with pytest.raises(ApiProblem) as refused:
                    await client.call("POST", path, json=body)
                assert (refused.value.status, refused.value.code) == (503, "integrity_failure"), path
                assert refused.value.problem.get("position") == position
            # A full reading must be recorded first: refused as well, with the same answer.
            with pytest.raises(ApiProblem) as reading:
                await auditor.call("GET", f"/api/v1/audit/applications/{mp.app_id}/events")
            assert (reading.value.status, reading.value.code) == (503, "integrity_failure")
            # Reads that write nothing still answer: the checkpoint, and a bundle made now from the
            # altered store, which the standalone verifier rejects with the earlier checkpoint's key.
            assert (await auditor.call("GET", "/api/v1/audit/checkpoint"))["tree_size"] == bundle["tree_size"]
            after = await auditor.call("GET", f"/api/v1/audit/applications/{mp.app_id}/proof")
            assert after["checkpoint"] == bundle["checkpoint"]
            done = verify_offline("bundle", write(tmp_path / "after.json", after), "--key", key)
            assert done.returncode == 1, done.stdout
            failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED:")]
            assert len(failed) == 1 and f"(position {position})" in failed[0] and "bytes hash to" in failed[0]
    finally:
        await runner.cleanup()


async def test_checkpoints_come_sooner_in_a_burst_and_at_a_clean_stop(tmp_path: Path, redis_url: str) -> None:
    """The next start checks every unsigned leaf in full: a burst is signed before the period is up, and a
    clean stop signs the rest, so a restart after a catch-up checks nothing past its checkpoint."""
    data_dir = tmp_path / "var"
    settings = {"BIRTHCERT_CHECKPOINT_SECONDS": "3600", "BIRTHCERT_CHECKPOINT_LEAVES": "10"}
    async with running_stack(data_dir, redis_url, settings) as stack:
        audit = stack.app[AUDIT_LOG]
        first = await stack.in_store(Walk(stack.service).submitted)

        async def signed() -> int:
            return int((await stack.in_store(audit.latest_checkpoint) or {}).get("tree_size", 0))

        # Long before the hour is up: signed because more than 10 leaves were unsigned.
        assert await eventually(signed, "a checkpoint within seconds of the burst", timeout=30)
        assert await signed() <= first.position
        second = Walk(
            stack.service, mother_id=SECOND_MOTHER_ID, parent=Actor(id="openid-second", role="parent")
        )
        await stack.in_store(second.record_delivery, inpatient_no="ZY2026002")
        last = await stack.in_store(second.start)
        follower = stack.app[AUDIT_FOLLOWER]
        await eventually(lambda: follower.position >= last.position, "the audit log has the last event")
    config = Config.from_env({}, data_dir=data_dir)
    db = Database.open(config.event_store_env())
    try:
        (leaves,) = db.fetchone("SELECT MAX(leaf_index) + 1 FROM audit_leaves") or (0,)
        (size,) = db.fetchone("SELECT MAX(tree_size) FROM audit_checkpoints") or (0,)
    finally:
        db.close()
    assert leaves >= last.position
    assert size == leaves  # the stop signed every leaf
