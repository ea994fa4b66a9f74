"""The service on the real event stores: a SQLite file and PostgreSQL (every test runs on both).

What is read back equals what was written (with and without snapshots), nothing personal is
stored in clear, the unique-value indexes hold when two service instances race, and the
notification log lists every event in order.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4, uuid5

import psycopg
import pytest
from eventsourcing.application import AggregateNotFoundError, project_aggregate
from eventsourcing.cryptography import AESCipher
from eventsourcing.domain import Aggregate
from psycopg import sql

from domain.application import BirthCertificateApplication
from domain.delivery import DeliveryRecord
from domain.errors import Conflict, DomainError
from domain.idempotency import IdempotentRequest
from domain.service import INDEX_NAMESPACE, Applications, Index, Outcome
from domain.values import Actor, CertificateNumber, IdNumber, PersonName
from projections.sql import Database
from tests.builders import (
    EMS,
    GD_HOSPITAL,
    MOTHER_ID,
    NOW,
    SECOND_MOTHER_ID,
    TEST_ID_NUMBERS,
    Walk,
    facts,
    father_details,
    hospital,
    mother_details,
    sha,
)

# Every personal value the journey writes, besides the ID numbers.
PERSONAL_TEXTS = (
    "王芳",
    "张伟",
    "张小花",
    "张小草",
    "陈助产",
    "李签发",
    "赵盖章",
    "广东省广州市越秀区中山一路1号",
    "中山一路1号",
    "越秀区",
    "13812345678",
    "ZY2026001",
    "openid-mother",
)
FIRST_NUMBER = "X440100001"
SECOND_NUMBER = "X440100002"
ROUNDS = 20

Step = Callable[[str, Outcome], None]


@pytest.fixture
def env(store_env: dict[str, str]) -> dict[str, str]:
    """The store env of conftest; it must carry the index key the service needs on a persistent store."""
    assert store_env.get("BIRTHCERT_INDEX_KEY"), "conftest's store env lacks BIRTHCERT_INDEX_KEY"
    assert store_env.get("CIPHER_KEY") and store_env.get("CIPHER_TOPIC")
    return store_env


@pytest.fixture
def open_app(env: dict[str, str]) -> Iterator[Callable[..., Applications]]:
    """Builds service instances on the test's store (closed at the end); keyword arguments override the env."""
    apps: list[Applications] = []

    def build(**overrides: str) -> Applications:
        app = Applications(env={**env, **overrides}, clock=lambda: NOW)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.close()


@contextmanager
def fresh(env: dict[str, str], **overrides: str) -> Iterator[Applications]:
    """A service instance of its own on the same store, closed afterwards."""
    app = Applications(env={**env, **overrides}, clock=lambda: NOW)
    try:
        yield app
    finally:
        app.close()


def state(agg: Aggregate) -> dict[str, Any]:
    """An aggregate's whole state, private attributes included."""
    return dict(vars(agg))


def uid(value: object) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


# ---------------------------------------------------------------- the journey


def journey(app: Applications, after: Step = lambda name, out: None) -> Walk:
    """One family from the delivery record to a reissued certificate delivered; ``after`` sees every step."""
    w = Walk(app)
    after("record delivery", w.record_delivery())
    after("start", w.start())
    face(w, "mother", after)
    after("confirm", w.confirm())
    after("details", w.details())
    face(w, "father", after)
    assert w.app_id is not None
    for kind in ("mother_id_front", "mother_id_back", "father_id_front", "father_id_back"):
        out = app.upload_document(
            w.parent,
            w.app_id,
            kind=kind,
            document_id=sha(kind),
            sha256=sha(kind),
            content_type="image/jpeg",
            size=1000,
        )
        after(f"upload {kind}", out)
    after("sign", w.sign())
    after("EMS", w.choose_ems())
    after("submit", w.submit())
    after("reject", w.reject(["newborn_name"]))
    after("fix", w.details(newborn="张小草"))
    after("re-sign", w.sign())
    after("resubmit", w.submit())
    after("issue", w.issue(FIRST_NUMBER))
    after("dispatch", app.dispatch(EMS, w.app_id, tracking_number="EA123456789CN"))
    after("loss", app.report_loss(EMS, w.app_id, reason="邮件在运输途中丢失"))
    out = app.reissue(
        w.issuer, w.app_id, certificate_number=CertificateNumber(SECOND_NUMBER), sealer_name="赵盖章"
    )
    after("reissue", out)
    after("dispatch again", app.dispatch(EMS, w.app_id, tracking_number="EA987654321CN"))
    after("delivered", app.record_delivered(EMS, w.app_id))
    return w


def face(w: Walk, role: str, after: Step) -> None:
    """Request a face check for ``role`` and record WeChat's pass, as two steps."""
    assert w.app_id is not None
    seq = w.next_seq()
    mother = role == "mother"
    out = w.app.request_face_verification(
        w.parent,
        w.app_id,
        role="mother" if mother else "father",
        name=PersonName(w.mother_name if mother else "张伟"),
        id_number=IdNumber(w.mother_id if mother else (w.father_id or "")),
        out_seq_no=seq,
    )
    after(f"{role} face requested", out)
    after(
        f"{role} face passed",
        w.app.record_face_verification(w.parent, w.app_id, out_seq_no=seq, verify_ret=10000),
    )


def index_values(w: Walk) -> list[tuple[str, str]]:
    """Every (kind, value) the journey indexed."""
    assert w.app_id is not None
    return [
        ("delivery-slot", f"{GD_HOSPITAL.code}:ZY2026001:1"),
        ("mother-deliveries", MOTHER_ID),
        ("face-seq", f"{str(w.app_id)[:8]}-0001"),
        ("face-seq", f"{str(w.app_id)[:8]}-0002"),
        ("certificate-number", FIRST_NUMBER),
        ("certificate-number", SECOND_NUMBER),
        ("first-certificate", str(w.record_id)),
    ]


# ---------------------------------------------------------------- 1. read back after every step


def test_every_step_reads_back_equal_from_a_new_instance(
    env: dict[str, str], open_app: Callable[..., Applications]
) -> None:
    app = open_app()
    steps: list[str] = []

    def read_back(name: str, out: Outcome) -> None:
        with fresh(env) as reader:
            stored: Aggregate = reader.repository.get(out.id)
        assert type(stored) is type(out.aggregate), name
        assert state(stored) == state(out.aggregate), name
        assert out.version == stored.version, name
        steps.append(name)

    w = journey(app, read_back)
    assert len(steps) == 25
    with fresh(env) as reader:
        final = reader.get_application(w.parent, w.app_id or "")
        record = reader.get_delivery_record(w.record_id or "")
    assert (final.state, final.certificate_number, final.voided_numbers) == (
        "delivered",
        SECOND_NUMBER,
        [FIRST_NUMBER],
    )
    assert (record.application_id, record.issued_certificate) == (str(w.app_id), FIRST_NUMBER)


# ---------------------------------------------------------------- 2. snapshots


def test_snapshots_read_the_same_as_replaying_the_events(
    env: dict[str, str], open_app: Callable[..., Applications]
) -> None:
    app = open_app(BIRTHCERT_SNAPSHOT_INTERVAL="5")

    def compare(name: str, out: Outcome) -> None:
        with fresh(env, BIRTHCERT_SNAPSHOT_INTERVAL="5") as reader:
            through_snapshot: Aggregate = reader.repository.get(out.id)
            replayed = project_aggregate(None, reader.events.get(out.id))
        assert replayed is not None
        assert state(through_snapshot) == state(replayed) == state(out.aggregate), name

    w = journey(app, compare)
    assert w.app_id is not None and app.snapshots is not None
    final: Aggregate = app.repository.get(w.app_id)
    assert final.version > 5
    snapshots = list(app.snapshots.get(w.app_id))
    assert [s.originator_version for s in snapshots] == list(range(5, final.version + 1, 5))
    for snapshot in snapshots:
        at_version = project_aggregate(None, app.events.get(w.app_id, lte=snapshot.originator_version))
        assert at_version is not None
        assert state(snapshot.mutate(None)) == state(at_version)
        assert state(app.repository.get(w.app_id, version=snapshot.originator_version)) == state(at_version)
    # The short aggregates (the delivery record, the indexes) have no snapshot.
    assert list(app.snapshots.get(w.record_id)) == []  # type: ignore[arg-type]


# ---------------------------------------------------------------- 3. encryption at rest


def forms(text: str) -> list[bytes]:
    """``text`` as UTF-8 and as JSON escapes (lower- and upper-case hex)."""
    escaped = json.dumps(text)[1:-1]
    return list(dict.fromkeys([text.encode(), escaped.encode(), escaped.upper().encode()]))


def stored_bytes(env: dict[str, str], tables: tuple[str, ...] = (), *, snapshots: bool = True) -> list[bytes]:
    """What the store holds: the SQLite file and its WAL, or PostgreSQL's stored event and snapshot states
    (there must be snapshots unless ``snapshots`` is False) and every column of every row of ``tables``
    (ours beside the events, e.g. ``archive_forms``)."""
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        db = Path(env["SQLITE_DBNAME"])
        return [p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists()]
    blobs: list[bytes] = []
    with postgres(env) as conn:
        for table in ("applications_events", "applications_snapshots"):
            query = sql.SQL("SELECT topic, state FROM {}").format(
                sql.Identifier(env["POSTGRES_SCHEMA"], table)
            )
            rows = conn.execute(query).fetchall()
            assert rows or (table == "applications_snapshots" and not snapshots), table
            blobs += [bytes(row[1]) for row in rows]
            blobs += [str(row[0]).encode() for row in rows]
        for table in tables:
            query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(env["POSTGRES_SCHEMA"], table))
            rows = conn.execute(query).fetchall()
            assert rows, table
            for row in rows:
                blobs += [bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode() for v in row]
    return blobs


def assert_nothing_in_clear(everything: bytes, texts: Iterable[str]) -> None:
    """None of ``texts`` occurs in ``everything`` as UTF-8 or as a JSON escape."""
    for text in texts:
        for form in forms(text):
            assert form not in everything, f"{text!r} is stored in clear as {form!r}"


@contextmanager
def postgres(env: dict[str, str]) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    conn = psycopg.connect(
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        dbname=env["POSTGRES_DBNAME"],
        user=env["POSTGRES_USER"],
        password=env.get("POSTGRES_PASSWORD") or None,
        autocommit=True,
    )
    try:
        yield conn
    finally:
        conn.close()


def test_nothing_personal_is_stored_in_clear(
    env: dict[str, str], open_app: Callable[..., Applications]
) -> None:
    app = open_app(BIRTHCERT_SNAPSHOT_INTERVAL="5")  # so that snapshots are scanned too
    w = journey(app)
    assert w.app_id is not None
    blobs = stored_bytes(env)
    everything = b"\n".join(blobs)
    # The scan reads the right bytes: what is meant to be in clear is there.
    assert b"birthcert:ApplicationStarted" in everything
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        assert w.app_id.hex.encode() in everything  # the library stores ids as hex there
    assert_nothing_in_clear(everything, (*TEST_ID_NUMBERS, *PERSONAL_TEXTS))


def test_index_ids_depend_on_the_index_key(
    env: dict[str, str], open_app: Callable[..., Applications]
) -> None:
    app = open_app()
    w = journey(app)
    other_key = open_app(BIRTHCERT_INDEX_KEY=AESCipher.create_key(32))
    stored_ids = {uid(n.originator_id) for n in app.recorder.select_notifications(1, 10_000)}
    everything = b"\n".join(stored_bytes(env)) if "SQLITE_DBNAME" in env else b""
    for kind, value in index_values(w):
        keyed = app.index_id(kind, value)
        plain = uuid5(INDEX_NAMESPACE, f"{kind}:{value}")
        assert keyed != plain, kind
        assert keyed in stored_ids, kind
        assert plain not in stored_ids, kind
        assert other_key.index_id(kind, value) != keyed, kind
        assert str(plain).encode() not in everything
        assert plain.hex.encode() not in everything
        assert isinstance(app.repository.get(keyed), Index)
        with pytest.raises(AggregateNotFoundError):
            app.repository.get(plain)


# ---------------------------------------------------------------- 4. races between service instances


def race(
    *contenders: tuple[Applications, Callable[[Applications], Outcome]],
) -> list[Outcome | Exception]:
    """Run each command on its own instance in its own thread, all at once.

    Each instance's ``save()`` waits until every command has reached its save, so the
    commands have all read the same state before any writes: every round is a real race.
    """
    n = len(contenders)
    start = threading.Barrier(n, timeout=20)
    saving = threading.Barrier(n, timeout=20)
    results: list[Outcome | Exception | None] = [None] * n

    def run(i: int, app: Applications, command: Callable[[Applications], Outcome]) -> None:
        original = app.save
        first = [True]

        def save(*objs: Any, **kwargs: Any) -> Any:
            if first[0]:  # only the first save races; a retry after losing goes straight through
                first[0] = False
                saving.wait()
            return original(*objs, **kwargs)

        app.save = save  # type: ignore[method-assign]
        try:
            start.wait()
            results[i] = command(app)
        except Exception as e:
            results[i] = e
            saving.abort()  # a command that failed before saving must not hold the other one up
        finally:
            del app.save

    threads = [threading.Thread(target=run, args=(i, *c)) for i, c in enumerate(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in results), results
    return [r for r in results if r is not None]


def split(results: list[Outcome | Exception]) -> tuple[Outcome, Exception]:
    """The one winner and the one loser of a two-way race."""
    wins = [r for r in results if isinstance(r, Outcome)]
    losses = [r for r in results if not isinstance(r, Outcome)]
    assert (len(wins), len(losses)) == (1, 1), results
    return wins[0], losses[0]


def submitted(app: Applications, n: int, mother_id: str = MOTHER_ID) -> Walk:
    """A submitted single-mother application on a delivery record of its own."""
    w = Walk(app, mother_id=mother_id, father_id=None, parent=Actor(id=f"openid-{n}", role="parent"))
    w.record_delivery(inpatient_no=f"ZY{n:07d}")
    w.submitted()
    return w


def issuing(w: Walk, number: str) -> Callable[[Applications], Outcome]:
    """The issuer issues ``w``'s application with ``number``, on the given instance."""

    def command(app: Applications) -> Outcome:
        return app.issue(
            w.issuer, w.app_id or "", certificate_number=CertificateNumber(number), sealer_name="赵盖章"
        )

    return command


def recording_pass(w: Walk, seq: str) -> Callable[[Applications], Outcome]:
    """WeChat's pass for the face check ``seq`` of ``w``'s application, recorded on the given instance."""

    def command(app: Applications) -> Outcome:
        return app.record_face_verification(w.parent, w.app_id or "", out_seq_no=seq, verify_ret=10000)

    return command


def recording_delivery(birth_order: int) -> Callable[[Applications], Outcome]:
    """The hospital records newborn number ``birth_order`` of one delivery, on the given instance."""

    def command(app: Applications) -> Outcome:
        return app.record_delivery(hospital(), institution=GD_HOSPITAL, facts=facts(birth_order=birth_order))

    return command


def test_two_issuers_racing_on_one_application(open_app: Callable[..., Applications]) -> None:
    setup, first, second = open_app(), open_app(), open_app()
    for n in range(ROUNDS):
        w = submitted(setup, n)
        assert w.app_id is not None
        numbers = (f"X44{n:07d}", f"X45{n:07d}")
        results = race((first, issuing(w, numbers[0])), (second, issuing(w, numbers[1])))
        winner, loser = split(results)
        assert isinstance(loser, Conflict), loser
        assert loser.code == "concurrent_modification"
        agg = setup.get_application(w.parent, w.app_id)
        used = agg.certificate_number
        assert (agg.state, agg.version) == ("issued", winner.version)
        assert used in numbers
        lost_number = numbers[1 - numbers.index(used or "")]
        assert setup.find_application_by_certificate(CertificateNumber(used or "")) == w.app_id
        # Nothing of the losing command was written: its number stays free.
        assert setup.find_application_by_certificate(CertificateNumber(lost_number)) is None
        assert setup.get_delivery_record(w.record_id or "").issued_certificate == used


def test_two_applications_racing_for_one_certificate_number(open_app: Callable[..., Applications]) -> None:
    setup, first, second = open_app(), open_app(), open_app()
    for n in range(ROUNDS):
        walks = [submitted(setup, 2 * n), submitted(setup, 2 * n + 1, mother_id=SECOND_MOTHER_ID)]
        number = CertificateNumber(f"X44{n:07d}")
        results = race((first, issuing(walks[0], number.value)), (second, issuing(walks[1], number.value)))
        winner, loser = split(results)
        assert isinstance(loser, Conflict), loser
        assert loser.code in ("certificate_number_used", "concurrent_modification")
        assert setup.find_application_by_certificate(number) == winner.id
        won = next(w for w in walks if w.app_id == winner.id)
        lost = next(w for w in walks if w.app_id != winner.id)
        assert won.state() == "issued"
        # The loser's save wrote nothing: its application and its delivery record are untouched.
        assert lost.state() == "submitted"
        assert setup.get_delivery_record(lost.record_id or "").issued_certificate is None
        assert setup.get_delivery_record(won.record_id or "").issued_certificate == number.value


def test_one_face_verification_result_recorded_twice_at_once(open_app: Callable[..., Applications]) -> None:
    setup, first, second = open_app(), open_app(), open_app()
    for n in range(ROUNDS):
        w = Walk(setup, father_id=None, parent=Actor(id=f"openid-{n}", role="parent"))
        w.record_delivery(inpatient_no=f"ZY{n:07d}")
        w.start()
        assert w.app_id is not None
        seq = f"race-{n:04d}"
        setup.request_face_verification(
            w.parent,
            w.app_id,
            role="mother",
            name=PersonName("王芳"),
            id_number=IdNumber(MOTHER_ID),
            out_seq_no=seq,
        )
        results = race((first, recording_pass(w, seq)), (second, recording_pass(w, seq)))
        # The loser was a retry sent while the first was running: it answers the recorded pass.
        assert all(isinstance(r, Outcome) and r.detail is None for r in results), results
        winner, loser = sorted(results, key=lambda r: r.position is None)  # type: ignore[union-attr]
        assert isinstance(winner, Outcome) and isinstance(loser, Outcome)
        assert (winner.position is not None, loser.position, loser.version) == (True, None, winner.version)
        agg = setup.get_application(w.parent, w.app_id)
        assert agg.version == winner.version
        recorded = [
            e for e in setup.events.get(w.app_id) if isinstance(e, BirthCertificateApplication.FaceVerified)
        ]
        assert len(recorded) == 1
        assert agg.delivery_record_id == str(w.record_id)
        record = setup.get_delivery_record(w.record_id or "")
        assert (record.application_id, record.version) == (str(w.app_id), 2)
        index: Aggregate = setup.repository.get(setup.index_id("face-seq", seq))
        assert isinstance(index, Index) and index.refs == [str(w.app_id)]


def test_twins_recorded_at_once_are_both_recorded(open_app: Callable[..., Applications]) -> None:
    first, second = open_app(), open_app()
    results = race((first, recording_delivery(1)), (second, recording_delivery(2)))
    assert all(isinstance(r, Outcome) for r in results), results
    assert len(first.get_deliveries_of_mother(IdNumber(MOTHER_ID))) == 2


# ---------------------------------------------------------------- 5. If-Match


def test_stale_expected_version_reports_the_stored_version(open_app: Callable[..., Applications]) -> None:
    mine, theirs = open_app(), open_app()
    w = Walk(mine)
    w.record_delivery()
    w.start()
    seen = w.verify()
    newer = theirs.confirm_delivery_info(w.parent, w.app_id or "", expected_version=seen.version)
    assert newer.version > seen.version
    with pytest.raises(Conflict) as exc:
        mine.provide_details(
            w.parent,
            w.app_id or "",
            newborn_name=PersonName("张小花"),
            mother=mother_details(),
            father=father_details(),
            expected_version=seen.version,
        )
    assert exc.value.code == "version_mismatch"
    assert exc.value.current_version == newer.version
    assert mine.get_application(w.parent, w.app_id or "").version == newer.version


# ---------------------------------------------------------------- 6. the notification log


def test_notification_log_lists_every_event_in_order(
    env: dict[str, str], open_app: Callable[..., Applications]
) -> None:
    app = open_app()
    positions: list[int] = []

    def note(name: str, out: Outcome) -> None:
        assert out.position is not None, name
        positions.append(out.position)

    w = journey(app, note)
    notifications = app.recorder.select_notifications(1, 1000)
    ids = [n.id for n in notifications]
    assert ids == sorted(set(ids))
    assert app.recorder.max_notification_id() == ids[-1] == positions[-1]
    assert positions == sorted(set(positions))
    assert set(positions) <= set(ids)

    aggregate_ids = [w.app_id, w.record_id, *(app.index_id(kind, value) for kind, value in index_values(w))]
    expected = [
        (uid(e.originator_id), e.originator_version)
        for agg_id in aggregate_ids
        for e in app.events.get(agg_id)  # type: ignore[arg-type]
    ]
    listed = [(uid(n.originator_id), n.originator_version) for n in notifications]
    assert sorted(listed) == sorted(expected)
    assert len(listed) == stored_event_count(env)
    # Each aggregate's versions appear in the log in the order they were written.
    for agg_id in aggregate_ids:
        versions = [v for i, v in listed if i == agg_id]
        assert versions == list(range(1, len(versions) + 1))
    assert isinstance(app.repository.get(w.record_id), DeliveryRecord)  # type: ignore[arg-type]


def stored_event_count(env: dict[str, str]) -> int:
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite":
        import sqlite3

        with sqlite3.connect(env["SQLITE_DBNAME"]) as conn:
            (count,) = conn.execute("SELECT count(*) FROM stored_events").fetchone()
        return int(count)
    with postgres(env) as pg:
        query = sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(env["POSTGRES_SCHEMA"], "applications_events")
        )
        row = pg.execute(query).fetchone()
    assert row is not None
    return int(row[0])


# ---------------------------------------------------------------- 7. answers under an Idempotency-Key


def once(app: Applications, key: str) -> IdempotentRequest:
    """A request under ``key`` whose answer names the outcome (the HTTP side seals a real response)."""
    return IdempotentRequest(
        record_id=app.index_id("idempotency", key),
        request_digest=f"digest-of-{key}",
        answer=lambda outcome: {
            "status": 201,
            "content_type": "application/json",
            "headers": {},
            "id": str(outcome.id),
        },
    )


def test_an_answer_is_saved_with_the_commands_events_and_read_by_a_new_instance(
    open_app: Callable[..., Applications],
) -> None:
    app = open_app()
    w = Walk(app)
    before = app.recorder.max_notification_id() or 0
    outcome = app.run_once(once(app, "k-start"), w.start)
    assert outcome.recorded
    written = app.recorder.select_notifications(start=before + 1, limit=10)
    assert [n.topic for n in written] == [
        "birthcert:ApplicationStarted",
        "birthcert:IdempotentAnswerRecorded",
    ]
    assert outcome.position == written[-1].id
    app.close()
    restarted = open_app()  # as after a crash: nothing of the first instance is left but the store
    record = restarted.get_recorded_answer(once(restarted, "k-start").record_id)
    assert record is not None
    assert (record.request_digest, record.answer["id"]) == ("digest-of-k-start", str(outcome.id))
    assert restarted.get_recorded_answer(once(restarted, "k-other").record_id) is None


def test_a_refused_command_records_no_answer(open_app: Callable[..., Applications]) -> None:
    app = open_app()
    w = Walk(app)
    w.start()
    before = app.recorder.max_notification_id()
    with pytest.raises(DomainError):
        app.run_once(once(app, "k-submit"), lambda: app.submit(w.parent, w.app_id or ""))
    assert app.recorder.max_notification_id() == before
    assert app.get_recorded_answer(once(app, "k-submit").record_id) is None


def test_twins_in_two_instances_commit_once(open_app: Callable[..., Applications]) -> None:
    first, second = open_app(), open_app()
    for n in range(ROUNDS):
        parent = Actor(id=f"openid-{n}", role="parent")

        def start(app: Applications, n: int = n, parent: Actor = parent) -> Outcome:
            return app.run_once(once(app, f"twin-{n}"), lambda: Walk(app, parent=parent).start())

        winner, loser = split(race((first, start), (second, start)))
        assert isinstance(loser, Conflict), loser  # the HTTP side then replays the winner's answer
        record = first.get_recorded_answer(once(first, f"twin-{n}").record_id)
        assert record is not None and record.answer["id"] == str(winner.id)
    started = first.recorder.select_notifications(
        start=1, limit=10_000, topics=("birthcert:ApplicationStarted",)
    )
    assert len(started) == ROUNDS


def test_one_sql_connection_shared_by_store_threads_keeps_each_transaction_whole(
    store_env: dict[str, str],
) -> None:
    """On PostgreSQL the store executor has a thread per pooled connection, and the audit log's, the archive's
    and the positions' ``Database`` is shared by them: transactions from several threads must not interleave
    on its one connection (they did: a checkpoint inside an append broke both and left one open)."""
    db = Database.open(store_env)
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            for step in range(1, 41):
                with db.transaction():
                    assert db.move(name, step - 1, step)
                    db.fetchone("SELECT position FROM projection_positions WHERE name = ?", (name,))
        except BaseException as error:
            errors.append(error)

    try:
        threads = [threading.Thread(target=work, args=(f"thread-{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert [db.position(f"thread-{i}") for i in range(4)] == [40] * 4
        if db.dialect == "postgres":
            assert db.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    finally:
        db.close()


def test_two_processes_moving_one_position_from_the_same_start_move_it_once(
    store_env: dict[str, str],
) -> None:
    """Two processes' followers (a rebuild beside the service, a paused old leader) both read the position at
    ``start`` inside their transactions; only one may move it, or its page is counted twice. On PostgreSQL the
    second's write waits for the first's commit and must then find the position moved."""
    if store_env.get("PERSISTENCE_MODULE") != "eventsourcing.postgres":
        pytest.skip("the interleaving needs two writers at once: PostgreSQL's (SQLite has one writer)")
    first, second = Database.open(store_env), Database.open(store_env)
    name = f"race-{uuid4().hex[:8]}"
    moved: list[bool] = []
    try:
        with first.transaction():
            assert first.move(name, 0, 0)
        with postgres(store_env) as watcher, first.transaction():
            assert first.move(name, 0, 5)  # holds the row until it commits

            def other() -> None:
                with second.transaction():
                    moved.append(second.move(name, 0, 7))

            thread = threading.Thread(target=other)
            thread.start()

            def blocked() -> bool:
                row = watcher.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()
                return bool(row and row[0])

            deadline = time.monotonic() + 30
            while not blocked():  # the other's UPDATE waits on our row lock (a condition, not a guess)
                assert time.monotonic() < deadline, "the second writer never reached the row"
                time.sleep(0.01)
        thread.join(30)
        assert moved == [False]
        assert first.position(name) == 5
    finally:
        first.close()
        second.close()
