"""The verifiable audit log over real stores: SQLite files (and PostgreSQL where it applies).

Leaves are appended exactly once and in notification order, whatever the followers do; they carry
no personal data. Bundles and consistency proofs round-trip through the standalone verifier, run as
an auditor runs it (a subprocess over files). The append-only triggers refuse UPDATE and DELETE in
the database itself. And the store is tampered with after a checkpoint, the way someone holding
the SQLite file would: each change is caught by ``AuditLog.check()``, by ``birthcert audit check``
(a subprocess on the data directory) and by the standalone verifier given a bundle made from the
tampered store and the key of the earlier checkpoint.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backend.config import LIBRARY_VARIABLES, Config
from backend.migrate import migrate
from backend.routes.audit import open_audit_log
from domain.service import Applications
from projections.audit_log import AuditLog, IntegrityError, canonical
from projections.merkle import MerkleTree, leaf_hash
from projections.runner import Fenced, LogFollower
from projections.signed_note import Ed25519NoteSigner, checkpoint_body, sign_note
from projections.sql import SCHEMA_VERSION, Database
from tests.builders import OTHER_WOMAN_ID, SECOND_MOTHER_ID, TEST_ID_NUMBERS, Walk
from tests.integration.following import Term, taken_over

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "birthcert_verify.py"
ORIGIN = "birthcert.test/audit-log"
PERSONAL_TEXTS = (
    *TEST_ID_NUMBERS,
    "王芳",
    "张伟",
    "张小花",
    "李梅",
    "陈助产",
    "李签发",
    "赵盖章",
    "13812345678",
    "中山一路",
    "openid-mother",
    "issuer-GZFY01",
    "his-GZFY01",
)


# ---------------------------------------------------------------------- helpers


def run_verifier(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """tools/birthcert_verify.py, as an auditor runs it: its own process, files, no birthcert imports."""
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )


def run_cli(data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``birthcert …`` in its own process, configured only by BIRTHCERT_DATA_DIR."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in LIBRARY_VARIABLES
        and not k.startswith(("BIRTHCERT_", "CIPHER_", "COMPRESSOR_", "POSTGRES_"))
    }
    env["BIRTHCERT_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env=env,
    )


def follow(applications: Applications, audit: AuditLog, page_size: int = 500) -> int:
    """Catch the audit log up with the event store (a one-shot follower)."""
    follower = LogFollower(applications, audit, executor=audit.executor, page_size=page_size)
    return asyncio.run(follower.catch_up())


def journey(
    applications: Applications, inpatient_no: str = "ZY2026001", number: str = "X440100001", **walk: Any
) -> Walk:
    """A whole journey: delivery, the application, submission, issue."""
    w = Walk(applications, **walk)
    w.record_delivery(inpatient_no=inpatient_no)
    w.submitted()
    w.issue(number)
    return w


def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def leaves_of(db: Database) -> list[tuple[int, int, str]]:
    return [
        (int(r[0]), int(r[1]), str(r[2]))
        for r in db.fetchall("SELECT leaf_index, position, leaf_json FROM audit_leaves ORDER BY leaf_index")
    ]


def make_audit(env: dict[str, str], applications: Applications, key: Ed25519PrivateKey) -> AuditLog:
    """An AuditLog on its own connection and its own store thread (as another process would have)."""
    return AuditLog(
        Database.open(env),
        applications,
        ThreadPoolExecutor(max_workers=1),
        pseudonym_key=b"k" * 32,
        origin=ORIGIN,
        signing_keys=[key],
    )


@dataclass
class Store:
    """Applications and an audit log (or two) over one store env, closed afterwards."""

    env: dict[str, str]
    applications: Applications
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    audits: list[AuditLog] = field(default_factory=list)

    def audit(self) -> AuditLog:
        audit = make_audit(self.env, self.applications, self.key)
        self.audits.append(audit)
        return audit

    @property
    def verifier_key(self) -> str:
        return str(self.audits[0].verifier_keys()[0])

    def close(self) -> None:
        for audit in self.audits:
            audit.db.close()
            audit.executor.shutdown()
        self.applications.close()


@pytest.fixture
def store(store_env: dict[str, str]) -> Iterator[Store]:
    s = Store(store_env, Applications(store_env))
    yield s
    s.close()


def raw_connection(env: dict[str, str]) -> Any:
    """A plain driver connection to the store's database, as an attacker (or a DBA) would open it."""
    if env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres":
        conn = psycopg.connect(
            host=env["POSTGRES_HOST"],
            port=env["POSTGRES_PORT"],
            dbname=env["POSTGRES_DBNAME"],
            user=env["POSTGRES_USER"],
            password=env.get("POSTGRES_PASSWORD") or None,
            autocommit=True,
        )
        conn.execute(f'SET search_path TO "{env["POSTGRES_SCHEMA"]}"')
        return conn
    return sqlite3.connect(env["SQLITE_DBNAME"], isolation_level=None)


# ---------------------------------------------------------------------- leaves: once, in order, anonymous


def test_leaves_are_appended_once_in_notification_order_without_personal_data(store: Store) -> None:
    journey(store.applications)
    journey(
        store.applications,
        "ZY2026002",
        "X440100002",
        mother_id=SECOND_MOTHER_ID,
        father_id=None,
        mother_name="李梅",
    )
    one, two = store.audit(), store.audit()

    async def race() -> None:
        # Two followers at once, each on its own connection and thread, in small pages.
        await asyncio.gather(
            LogFollower(store.applications, one, executor=one.executor, page_size=3).catch_up(),
            LogFollower(store.applications, two, executor=two.executor, page_size=4).catch_up(),
        )

    asyncio.run(race())
    # A page applied twice, and a page overlapping what is there and what is new, change nothing twice.
    notifications = store.applications.recorder.select_notifications(start=1, limit=1000)
    mapper = store.applications.mapper
    page = [(n.id, mapper.to_domain_event(n)) for n in notifications[:5]]
    assert not asyncio.run(one.apply(page, 0))
    assert not asyncio.run(two.apply(page, 0))
    before = asyncio.run(one.position())
    Walk(store.applications, mother_id=OTHER_WOMAN_ID).record_delivery(inpatient_no="ZY2026003")
    notifications = store.applications.recorder.select_notifications(start=1, limit=1000)
    overlapping = [(n.id, mapper.to_domain_event(n)) for n in notifications[-4:]]
    assert asyncio.run(one.apply(overlapping, before))
    assert not asyncio.run(two.apply(overlapping, before))

    leaves = leaves_of(one.db)
    assert [position for _, position, _ in leaves] == [n.id for n in notifications]
    assert [index for index, _, _ in leaves] == list(range(len(notifications)))
    assert one.db.position("audit_log") == notifications[-1].id
    for (_, position, text), n in zip(leaves, notifications, strict=True):
        leaf = json.loads(text)
        assert leaf["position"] == position == n.id
        assert (leaf["aggregate_id"], leaf["version"], leaf["topic"]) == (
            str(n.originator_id),
            n.originator_version,
            n.topic,
        )
        assert leaf["state_sha256"] == hashlib.sha256(n.state).hexdigest()
        assert text == canonical(leaf).decode()
        assert sorted(leaf) == [
            "actor",
            "aggregate_id",
            "position",
            "recorded_at",
            "state_sha256",
            "topic",
            "version",
        ]
    everything = "\n".join(text for _, _, text in leaves)
    for personal in PERSONAL_TEXTS:
        assert personal not in everything
    assert one.check().ok


# ---------------------------------------------------------------------- proofs through the standalone verifier


def test_bundle_of_a_whole_journey_verifies_offline(store: Store, tmp_path: Path) -> None:
    w = journey(store.applications)
    audit = store.audit()
    follow(store.applications, audit)
    bundle = audit.proof_bundle(w.id)
    versions = [entry["leaf"]["version"] for entry in bundle["leaves"]]
    assert versions == list(range(1, w.app.get_application(w.parent, w.id).version + 1))
    for entry in bundle["leaves"]:
        assert (
            hashlib.sha256(base64.b64decode(entry["event_state"])).hexdigest()
            == entry["leaf"]["state_sha256"]
        )
    submitted = next(e for e in bundle["leaves"] if e["leaf"]["topic"] == "birthcert:Submitted")
    event_file = tmp_path / "submitted.bin"
    event_file.write_bytes(base64.b64decode(submitted["event_state"]))

    done = run_verifier(
        "bundle",
        write_json(tmp_path / "bundle.json", bundle),
        "--key",
        store.verifier_key,
        "--event-bytes",
        event_file,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERIFIED" in done.stdout
    assert done.stdout.count("the stored event's bytes match its state_sha256") == len(bundle["leaves"])
    assert f"matches the state_sha256 of leaf index {submitted['index']}" in done.stdout

    # Another key is not the log's key.
    other = Ed25519PrivateKey.generate()
    stranger = make_audit(store.env, store.applications, other)
    try:
        wrong = run_verifier("bundle", tmp_path / "bundle.json", "--key", stranger.verifier_keys()[0])
    finally:
        stranger.db.close()
    assert wrong.returncode == 1
    assert "not signed by the given key" in wrong.stdout


def test_a_checkpoint_is_signed_under_the_leaders_term_only(store: Store) -> None:
    journey(store.applications)
    audit = store.audit()
    follow(store.applications, audit)
    old, new = taken_over(store.env)  # a leader paused, its lease taken by another process meanwhile

    def checkpoints() -> list[tuple[Any, ...]]:
        return audit.db.fetchall("SELECT tree_size FROM audit_checkpoints")

    with pytest.raises(Fenced):
        audit.make_checkpoint(Term(old))
    with pytest.raises(Fenced):
        audit.make_checkpoint(Term(None))  # a process that knows it does not lead
    assert checkpoints() == [], "the old leader signed nothing"
    signed = audit.make_checkpoint(Term(new))
    assert signed["tree_size"] == audit.size() > 0 and checkpoints() == [(audit.size(),)]


def test_consistency_proofs_between_successive_checkpoints_verify(store: Store, tmp_path: Path) -> None:
    audit = store.audit()
    w = Walk(store.applications)
    steps: list[Callable[[], Any]] = [
        w.record_delivery,
        w.start,
        lambda: w.verify("mother"),
        w.confirm,
        w.details,
        lambda: w.verify("father"),
        w.upload_all,
        w.sign,
        w.choose_ems,
        w.submit,
        w.issue,
    ]
    checkpoints: list[dict[str, Any]] = []
    for step in steps:
        step()
        follow(store.applications, audit)
        checkpoints.append(audit.make_checkpoint())
    sizes = [c["tree_size"] for c in checkpoints]
    assert sizes == sorted(set(sizes)) and sizes[0] >= 1
    pairs = [*itertools.pairwise(checkpoints), (checkpoints[0], checkpoints[-1])]
    for number, (old, new) in enumerate(pairs):
        proof = audit.consistency(old["tree_size"], new["tree_size"])
        assert (proof["checkpoint1"], proof["checkpoint2"]) == (old["note"], new["note"])
        old_file = tmp_path / f"old-{number}.txt"
        new_file = tmp_path / f"new-{number}.txt"
        old_file.write_text(old["note"], encoding="utf-8")
        new_file.write_text(new["note"], encoding="utf-8")
        done = run_verifier(
            "consistency",
            old_file,
            new_file,
            write_json(tmp_path / f"proof-{number}.json", proof),
            "--key",
            store.verifier_key,
        )
        assert done.returncode == 0, done.stdout
        assert "VERIFIED" in done.stdout
    # Swapped round, the proof does not hold.
    backwards = run_verifier(
        "consistency", new_file, old_file, tmp_path / f"proof-{number}.json", "--key", store.verifier_key
    )
    assert backwards.returncode == 1


def test_a_store_from_before_the_stored_tree_gets_its_nodes_from_db_migrate(store: Store) -> None:
    """Schema version 1 had leaves and no audit_nodes: `birthcert db migrate` adds the table and its rows."""
    journey(store.applications)
    audit = store.audit()
    follow(store.applications, audit)
    size = audit.size()
    assert size > 16
    reference = MerkleTree(
        [bytes(r[0]) for r in audit.db.fetchall("SELECT leaf_hash FROM audit_leaves ORDER BY leaf_index")]
    )
    conn = raw_connection(store.env)
    try:  # back to the layout of version 1, as a database owner could
        conn.execute("DROP TABLE audit_nodes")
        conn.execute("DELETE FROM birthcert_schema WHERE version > 1")
    finally:
        conn.close()
    assert migrate(store.env).version == SCHEMA_VERSION
    assert audit.tree().root() == reference.root()
    assert audit.tree().inclusion_proof(3, size) == reference.inclusion_proof(3, size)
    assert audit.db.fetchone("SELECT COUNT(*) FROM audit_nodes") == (1,)  # the one complete 16-leaf subtree
    assert audit.check().ok and audit.check(thorough=False).ok


# ---------------------------------------------------------------------- the database refuses changes


@pytest.mark.parametrize("table", ["audit_leaves", "audit_checkpoints"])
def test_triggers_refuse_update_and_delete_in_the_database(store: Store, table: str) -> None:
    journey(store.applications)
    audit = store.audit()
    follow(store.applications, audit)
    audit.make_checkpoint()
    before = audit.db.fetchall(f"SELECT * FROM {table}")
    assert before
    column = "leaf_json" if table == "audit_leaves" else "note"
    conn = raw_connection(store.env)
    postgres = store.env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres"
    refused = (psycopg.Error,) if postgres else (sqlite3.DatabaseError,)
    statements = [f"UPDATE {table} SET {column} = 'forged'", f"DELETE FROM {table}"]
    if postgres:
        statements.append(f"TRUNCATE {table}")
    try:
        for statement in statements:
            with pytest.raises(refused) as error:
                conn.execute(statement)
            assert f"{table} is append-only" in str(error.value)
    finally:
        conn.close()
    assert audit.db.fetchall(f"SELECT * FROM {table}") == before
    assert audit.check().ok


# ---------------------------------------------------------------------- tampering with the SQLite file


@dataclass
class Deployment:
    """A service's data directory on SQLite: the store, its audit log and a signed checkpoint."""

    config: Config
    applications: Applications
    audit: AuditLog
    walk: Walk
    checkpoint: dict[str, Any]

    @property
    def file(self) -> str:
        return self.config.event_store_env()["SQLITE_DBNAME"]

    def position_of(self, version: int) -> int:
        for entry in self.audit.leaves_of(self.walk.id):
            if entry["version"] == version:
                return int(entry["position"])
        raise AssertionError(version)

    def sql(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        conn = sqlite3.connect(self.file, isolation_level=None)
        try:
            conn.execute("BEGIN")
            for statement, params in statements:
                conn.execute(statement, params)
            conn.execute("COMMIT")
        finally:
            conn.close()

    def row(self, position: int) -> tuple[Any, ...]:
        conn = sqlite3.connect(self.file)
        try:
            row = conn.execute(
                "SELECT originator_id, originator_version, topic, state FROM stored_events WHERE rowid = ?",
                (position,),
            ).fetchone()
        finally:
            conn.close()
        assert row is not None
        return tuple(row)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    config = Config.from_env({}, data_dir=tmp_path / "var")
    applications = Applications(config.event_store_env())
    audit = open_audit_log(config, applications, ThreadPoolExecutor(max_workers=1))
    w = journey(applications)
    follow(applications, audit)
    d = Deployment(config, applications, audit, w, audit.make_checkpoint())
    assert audit.check().ok
    yield d
    audit.db.close()
    applications.close()


def test_the_start_up_check_decrypts_only_what_no_checkpoint_covers(deployment: Deployment) -> None:
    d = deployment
    Walk(d.applications, mother_id=SECOND_MOTHER_ID).record_delivery(inpatient_no="ZY2026002")
    follow(d.applications, d.audit)
    past = d.audit.size() - d.checkpoint["tree_size"]
    assert past > 0
    decoded: list[int] = []
    mapper = d.applications.mapper
    original = mapper.to_domain_event

    def counting(stored: Any) -> Any:  # a spy: the real decoder runs, we only count
        decoded.append(stored.originator_version)
        return original(stored)

    mapper.to_domain_event = counting  # type: ignore[method-assign]
    try:
        assert d.audit.check(thorough=False).ok
        assert len(decoded) == past
        decoded.clear()
        assert d.audit.check().ok
        assert len(decoded) == d.audit.size()
    finally:
        mapper.to_domain_event = original  # type: ignore[method-assign]


def test_the_start_up_check_reads_the_tail_and_a_sample_not_the_history(deployment: Deployment) -> None:
    """Decision 0029: under the checkpoint, start-up reads a bounded sample; the full check reads everything."""
    d = deployment
    journey(d.applications, "ZY2026002", "X440100002", mother_id=SECOND_MOTHER_ID, father_id=None)
    follow(d.applications, d.audit)
    d.audit.make_checkpoint()
    Walk(d.applications, mother_id=OTHER_WOMAN_ID).record_delivery(inpatient_no="ZY2026003")
    follow(d.applications, d.audit)
    size = int(d.audit.latest_checkpoint()["tree_size"])  # type: ignore[index]
    tail = d.audit.size() - size
    assert size > 20 and tail > 0
    read: list[int] = []
    recorder = d.applications.recorder
    original = recorder.select_notifications

    def counting(*args: Any, **kwargs: Any) -> Any:  # a spy: the real recorder answers, we only count
        rows = original(*args, **kwargs)
        read.extend(n.id for n in rows)
        return rows

    recorder.select_notifications = counting  # type: ignore[method-assign]
    try:
        assert d.audit.check(thorough=False, sample=4).ok
        assert len(read) <= tail + 4 + 2  # the tail, the sample, the first and last leaf under the checkpoint
        read.clear()
        assert d.audit.check().ok
        assert len(read) == d.audit.size()
        # What start-up does not read it cannot see: an event altered under the checkpoint, outside the
        # sample, is left to the full check (an auditor's `birthcert audit check`), which names it.
        position = flip_a_byte(d)
        assert d.audit.check(thorough=False, sample=0).ok
        result = d.audit.check()
        assert not result.ok and result.position == position
    finally:
        recorder.select_notifications = original  # type: ignore[method-assign]


def flip_a_byte(d: Deployment) -> int:
    position = d.position_of(13)  # the signed form
    state = bytearray(d.row(position)[3])
    state[len(state) // 2] ^= 0x01
    d.sql(("UPDATE stored_events SET state = ? WHERE rowid = ?", (bytes(state), position)))
    return position


def delete_the_last_rows(d: Deployment) -> int:
    position = d.position_of(15)  # submission, issue and everything after them
    d.sql(("DELETE FROM stored_events WHERE rowid >= ?", (position,)))
    return position


def swap_two_rows(d: Deployment) -> int:
    a, b = d.position_of(3), d.position_of(8)  # the mother's and the father's face checks
    row_a, row_b = d.row(a), d.row(b)
    update = "UPDATE stored_events SET originator_id = ?, originator_version = ?, topic = ?, state = ? WHERE rowid = ?"
    d.sql(
        ("UPDATE stored_events SET originator_version = -1 WHERE rowid = ?", (a,)),
        (update, (*row_a, b)),
        (update, (*row_b, a)),
    )
    return a


TAMPERING = {
    "flipped-byte": (flip_a_byte, "state_sha256", "bytes hash to"),
    "last-rows-deleted": (delete_the_last_rows, "missing from the store", "no longer holds an event"),
    "rows-swapped": (swap_two_rows, "differs from its leaf", "bytes hash to"),
}


@pytest.mark.parametrize("kind", list(TAMPERING))
def test_tampered_store_is_caught_by_check_cli_and_standalone_verifier(
    deployment: Deployment, kind: str, tmp_path: Path
) -> None:
    tamper, check_says, verifier_says = TAMPERING[kind]
    earlier_key = deployment.audit.verifier_keys()[0]
    position = tamper(deployment)

    result = deployment.audit.check()
    assert not result.ok
    assert result.position == position, result
    assert check_says in result.message
    assert f"position {position}" in result.message
    assert deployment.audit.check(thorough=False) == result  # the service's start-up check

    cli = run_cli(deployment.config.data_dir, "audit", "check")
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert cli.stdout.startswith("MISMATCH")
    assert f"position {position}" in cli.stdout

    # A bundle made AFTER the tampering, from the tampered store, against the earlier checkpoint's key.
    bundle = deployment.audit.proof_bundle(deployment.walk.id)
    assert bundle["checkpoint"] == deployment.checkpoint["note"]
    done = run_verifier("bundle", write_json(tmp_path / "bundle.json", bundle), "--key", earlier_key)
    assert done.returncode == 1, done.stdout
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED:")]
    assert any(f"(position {position})" in line and verifier_says in line for line in failed), failed
    assert "NOT VERIFIED" in done.stdout


def test_edited_leaf_row_is_caught_even_with_the_trigger_dropped(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    earlier = d.checkpoint
    key = d.audit.verifier_keys()[0]
    position = d.position_of(16)  # the issue
    row = d.audit.db.fetchone("SELECT leaf_json FROM audit_leaves WHERE position = ?", (position,))
    assert row is not None
    leaf = json.loads(row[0])
    leaf["recorded_at"] = "2026-01-01T00:00:00+00:00"  # backdated, and the leaf's hash made to agree
    data = canonical(leaf)
    d.sql(
        ("DROP TRIGGER audit_leaves_no_update", ()),
        (
            "UPDATE audit_leaves SET leaf_json = ?, leaf_hash = ? WHERE position = ?",
            (data.decode(), leaf_hash(data), position),
        ),
    )
    result = d.audit.check()
    assert not result.ok
    assert result.position == position
    assert "recorded_at" in result.message
    assert d.audit.check(thorough=False) == result  # the root differs, so the quick check looks closer
    cli = run_cli(d.config.data_dir, "audit", "check")
    assert cli.returncode == 1 and f"position {position}" in cli.stdout, cli.stdout + cli.stderr

    bundle = d.audit.proof_bundle(d.walk.id)
    done = run_verifier("bundle", write_json(tmp_path / "bundle.json", bundle), "--key", key)
    assert done.returncode == 1
    assert "the inclusion proof does not lead to the checkpoint's root" in done.stdout

    # The log grows: after a restart (its leaves read afresh) the service signs no checkpoint over
    # the altered leaf, in process or from the CLI…
    Walk(d.applications, mother_id=SECOND_MOTHER_ID).record_delivery(inpatient_no="ZY2026002")
    restarted = open_audit_log(d.config, d.applications, d.audit.executor)
    try:
        follow(d.applications, restarted)
        with pytest.raises(IntegrityError, match="refusing to sign"):
            restarted.make_checkpoint()
        assert restarted.latest_checkpoint() == earlier
        cli = run_cli(d.config.data_dir, "audit", "checkpoint")
        assert cli.returncode == 1 and "refusing to sign" in cli.stdout, cli.stdout + cli.stderr
        # …and should someone holding the signing key sign one anyway, it is not consistent with
        # the earlier checkpoint an auditor kept.
        size = restarted.size()
        forged_note = sign_note(
            checkpoint_body(d.config.log_origin, size, restarted.tree().root(size)), restarted.signers
        )
        proof = restarted.consistency(earlier["tree_size"], size)
    finally:
        restarted.db.close()
    (tmp_path / "old.txt").write_text(earlier["note"], encoding="utf-8")
    (tmp_path / "new.txt").write_text(forged_note, encoding="utf-8")
    done = run_verifier(
        "consistency",
        tmp_path / "old.txt",
        tmp_path / "new.txt",
        write_json(tmp_path / "proof.json", {"proof": proof["proof"]}),
        "--key",
        key,
    )
    assert done.returncode == 1, done.stdout
    assert (
        f"the consistency proof from tree size {earlier['tree_size']} to {size} does NOT verify"
        in done.stdout
    )


def test_event_rewritten_by_an_insider_with_the_cipher_key_is_caught_by_the_root(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Store and leaf made to agree (new bytes, new state_sha256, new leaf hash): only the signed root differs."""
    d = deployment
    key = d.audit.verifier_keys()[0]
    position = d.position_of(16)
    (notification,) = d.applications.recorder.select_notifications(start=position, limit=1)
    event = d.applications.mapper.to_domain_event(notification)
    assert getattr(event, "certificate_number", None) == "X440100001"
    object.__setattr__(event, "certificate_number", "X440199999")
    forged = d.applications.mapper.to_stored_event(event)
    row = d.audit.db.fetchone("SELECT leaf_json FROM audit_leaves WHERE position = ?", (position,))
    assert row is not None
    leaf = json.loads(row[0])
    leaf["state_sha256"] = hashlib.sha256(forged.state).hexdigest()
    data = canonical(leaf)
    d.sql(
        ("UPDATE stored_events SET state = ? WHERE rowid = ?", (forged.state, position)),
        ("DROP TRIGGER audit_leaves_no_update", ()),
        (
            "UPDATE audit_leaves SET leaf_json = ?, leaf_hash = ? WHERE position = ?",
            (data.decode(), leaf_hash(data), position),
        ),
    )
    assert d.applications.get_application(d.walk.issuer, d.walk.id).certificate_number == "X440199999"

    result = d.audit.check()
    assert not result.ok
    assert "recomputed root" in result.message and "differs from signed checkpoint" in result.message
    cli = run_cli(d.config.data_dir, "audit", "check")
    assert cli.returncode == 1 and "differs from signed checkpoint" in cli.stdout, cli.stdout + cli.stderr

    bundle = d.audit.proof_bundle(d.walk.id)
    done = run_verifier("bundle", write_json(tmp_path / "bundle.json", bundle), "--key", key)
    assert done.returncode == 1
    assert "does not lead to the checkpoint's root" in done.stdout


def test_checkpoint_appended_without_the_signing_key_is_reported_not_raised(deployment: Deployment) -> None:
    """INSERT is allowed (the table is append-only): a checkpoint signed by another key fails the check."""
    d = deployment
    size = d.audit.size()
    impostor = Ed25519NoteSigner(d.config.log_origin, Ed25519PrivateKey.generate())
    root = d.audit.tree().root(size)
    d.sql(
        (
            "INSERT INTO audit_checkpoints (tree_size, root_hash, note, created_at) VALUES (?, ?, ?, ?)",
            (
                size + 1,
                root,
                sign_note(checkpoint_body(d.config.log_origin, size + 1, root), impostor),
                "now",
            ),
        )
    )
    result = d.audit.check()
    assert not result.ok
    assert "checkpoint does not verify" in result.message and "no known key signed" in result.message
    cli = run_cli(d.config.data_dir, "audit", "check")
    assert cli.returncode == 1 and cli.stdout.startswith("MISMATCH"), cli.stdout + cli.stderr
    with pytest.raises(IntegrityError):
        d.audit.make_checkpoint()
