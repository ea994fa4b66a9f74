"""出生一件事's hand-off: after the certificate is issued, each department gets its one signed message, once.

Two halves, both on the elected leader only (decision 0024), both writing under its term (``db.fence``), like
the e-licence (projections.elicense, docs/decisions/0046):

- **The outbox** — a ``View`` for ``LogFollower`` named ``bundle_handoff``. For each ``Issued`` of an application
  whose mother opted in to the bundle, one row per requested service a department takes over
  (``domain/data/bundle_departments.json``) goes into ``bundle_handoffs``, in the same transaction as the
  position (compare-and-set): a page applied twice, or by two followers, writes nothing twice. The row holds
  ids only (no personal data): the message is built again from the application at that version whenever it is
  sent, byte for byte the same.
- **Delivery** — ``run()``, a loop woken after each page and every ``poll_seconds``: each pending row that is
  due is signed (backend.departments) and POSTed; then ``BundleServiceUpdated`` (state ``sent``) is recorded on
  the application and the row marked ``sent``. A department that is down is retried with exponential backoff
  (``retry_base`` … ``RETRY_MAX`` seconds); one that refuses the message itself is marked ``rejected`` (logged,
  the issuer sees it). A department with no adapter configured keeps its rows pending until it has one.

**Nothing twice.** The message id is ``<application id>-v<version of Issued>-<department>``: derived, so every
attempt and every process sends the same id, and the department answers a second delivery as a duplicate.
Each attempt is counted in the row before the POST; a row attempted before whose answer never came (a crash
between the send and its acknowledgement, a timeout, a 503) is first looked up at the department
(``received``), and sent again only if the department does not have it. Should the department still get it
twice (it took the message in the instant it was asked), it answers the same id as a duplicate and takes it
once; the ``sent`` event is recorded once (the aggregate ignores a second one).
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import orjson

from backend.departments import (
    MATERIALS_PATH,
    RESULTS_PATH,
    DepartmentPort,
    DepartmentRejected,
    DepartmentUnavailable,
    department_actor,
)
from domain.application import REVOKED, BirthCertificateApplication
from domain.bundle import handoff_fields, handoffs
from domain.errors import Conflict, RuleViolated
from domain.service import Applications
from projections.leader_loop import SqlFollowerLoop
from projections.runner import DomainEvent, Fenced, Page
from projections.sql import Database

log = logging.getLogger(__name__)

JSON = dict[str, Any]
NAME: Final = "bundle_handoff"
POLL_SECONDS: Final = 0.5
RETRY_BASE: Final = 1.0
RETRY_MAX: Final = 600.0
DUE_BATCH: Final = 100
PENDING, SENT, REJECTED, CANCELLED = "pending", "sent", "rejected", "cancelled"
# What a pending row's ``error`` says of its last attempt ("sending" while one is in flight).
UNAVAILABLE, FAILED, RESENT = "department_unavailable", "failed", "resend"


def message_id_for(app_id: UUID | str, version: int, department: str) -> str:
    """The id a department de-duplicates on: one per application, issue and department."""
    return f"{UUID(str(app_id))}-v{int(version)}-{department}"


@dataclass(frozen=True)
class Handoff:
    """One row of ``bundle_handoffs``: ids and bookkeeping only."""

    message_id: str
    application_id: str
    version: int
    service: str
    department: str
    state: str
    attempts: int
    next_attempt_at: float
    sent_at: str | None
    error: str | None


_COLUMNS: Final = "message_id, application_id, version, service, department, state, attempts, next_attempt_at, sent_at, error"


def _row(row: tuple[Any, ...]) -> Handoff:
    return Handoff(
        message_id=str(row[0]),
        application_id=str(row[1]),
        version=int(row[2]),
        service=str(row[3]),
        department=str(row[4]),
        state=str(row[5]),
        attempts=int(row[6]),
        next_attempt_at=float(row[7]),
        sent_at=None if row[8] is None else str(row[8]),
        error=None if row[9] is None else str(row[9]),
    )


class HandoffProcess(SqlFollowerLoop):
    """Records the hand-offs due and delivers them: a ``View`` for ``LogFollower`` plus the loop ``run``."""

    NAME = NAME
    ROUND = "bundle hand-off"

    def __init__(
        self,
        db: Database,
        applications: Applications,
        executor: Executor,
        departments: dict[str, DepartmentPort],
        *,
        callback_base: str,
        poll_seconds: float = POLL_SECONDS,
        retry_base: float = RETRY_BASE,
    ) -> None:
        super().__init__(db, executor, poll_seconds)
        self.applications = applications
        self.departments = departments
        self.callback_base = callback_base.rstrip("/")
        self.retry_base = retry_base

    # ------------------------------------------------------------------ View (the outbox)

    async def reset(self) -> None:
        """The outbox is what was sent: kept, never rebuilt in place."""
        raise RuntimeError("the bundle hand-offs are kept permanently and cannot be rebuilt in place")

    def _page(self, page: Page, start: int, end: int) -> tuple[bool, int]:
        rows = [r for p, e in page if p > start for r in self._rows(p, e)]
        with self.db.transaction():
            if not self.db.move(NAME, start, end):
                return False, 0
            for row in rows:
                self.db.execute(
                    "INSERT INTO bundle_handoffs (message_id, application_id, version, service, department, "
                    "position, created_at, state, attempts, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0) "
                    "ON CONFLICT (message_id) DO NOTHING",
                    row,
                )
        return True, len(rows)

    def _rows(self, position: int, event: DomainEvent) -> list[tuple[Any, ...]]:
        if not isinstance(event, BirthCertificateApplication.Issued):
            return []
        app_id, version = UUID(str(event.originator_id)), int(event.originator_version)
        app = self.applications.get_as_stored(app_id, version)
        if not isinstance(app, BirthCertificateApplication) or app.bundle is None:
            return []
        now = datetime.now(UTC).isoformat(timespec="seconds")
        return [
            (
                message_id_for(app_id, version, h.department),
                str(app_id),
                version,
                h.service,
                h.department,
                position,
                now,
                PENDING,
            )
            for h in handoffs().values()
            if h.service in app.bundle["services"]
        ]

    # ------------------------------------------------------------------ delivery

    async def round(self) -> None:
        """Deliver every pending hand-off that is due (HTTP on the event loop, SQL and the store on the executor).

        Only the departments with an adapter are read (rows of one without cannot crowd them out), and a
        department that is down is skipped for the rest of the round after its first failure, so that it costs
        one timeout per round rather than one per row."""
        if not self.departments:
            return
        now = datetime.now(UTC).timestamp()
        due = await self._run(self._due, now, sorted(self.departments))
        down: set[str] = set()
        for handoff in due:
            if handoff.department in down:
                continue
            try:
                await self._deliver(handoff, self.departments[handoff.department])
            except DepartmentUnavailable:
                down.add(handoff.department)
            except Fenced:
                raise
            except Exception:  # one hand-off that fails must not hold back the others in this round
                log.exception("hand-off %s failed; retried later", handoff.message_id)
                await self._run(self._retry_later, handoff, FAILED)

    def _due(self, now: float, departments: list[str]) -> list[Handoff]:
        marks = ", ".join("?" for _ in departments)
        rows = self.db.fetchall(
            f"SELECT {_COLUMNS} FROM bundle_handoffs WHERE state = ? AND next_attempt_at <= ? "
            f"AND department IN ({marks}) ORDER BY position, message_id LIMIT {DUE_BATCH}",
            (PENDING, now, *departments),
        )
        return [_row(r) for r in rows]

    async def _deliver(self, handoff: Handoff, port: DepartmentPort) -> None:
        """One hand-off: asked about first when tried before, then built, counted and sent. A department that
        does not answer leaves the row pending with a longer wait and raises ``DepartmentUnavailable``."""
        try:
            # Tried before and not heard back (a crash, a timeout, a 503): ask before sending it again.
            if handoff.attempts > 0 and await port.received(handoff.message_id):
                await self._sent(handoff)
                return
        except DepartmentUnavailable:
            await self._run(self._retry_later, handoff, UNAVAILABLE, True)
            raise
        body = await self._run(self._body_unless_revoked, handoff)
        if body is None:
            # Declared void since it was issued: the family's data does not leave for a void certificate.
            await self._run(self._finish, handoff, CANCELLED, "certificate_revoked")
            return
        try:
            await self._run(self._attempt, handoff)  # the lease checked, the attempt counted: then the send
            await port.send(handoff.message_id, body)
        except DepartmentUnavailable:
            await self._run(self._retry_later, handoff, UNAVAILABLE)
            raise
        except DepartmentRejected as refusal:
            log.error(
                "department %s refused hand-off %s (%s)", handoff.department, handoff.message_id, refusal.code
            )
            await self._run(self._finish, handoff, REJECTED, refusal.message)
            return
        await self._sent(handoff)

    async def _sent(self, handoff: Handoff) -> None:
        """The department has it: the ``sent`` event on the application, then the row done. A concurrent
        command on the application (``Conflict``) leaves the row pending, asked about again next time."""
        try:
            await self._run(self._record_sent, handoff)
        except Conflict:
            await self._run(self._retry_later, handoff, "conflict")
            return
        await self._run(self._finish, handoff, SENT, None)

    def _attempt(self, handoff: Handoff) -> None:
        with self.db.transaction():
            self.db.check_fence(self.db.fence)
            self.db.execute(
                "UPDATE bundle_handoffs SET attempts = attempts + 1, error = ? WHERE message_id = ? AND state = ?",
                ("sending", handoff.message_id, PENDING),
            )

    def _current(self, handoff: Handoff) -> BirthCertificateApplication | None:
        app = self.applications.get_as_stored(UUID(handoff.application_id), None)
        return app if isinstance(app, BirthCertificateApplication) else None

    def _body_unless_revoked(self, handoff: Handoff) -> bytes | None:
        """On the executor, in one hop: the message's bytes, or None when the certificate has been declared
        void since it was issued."""
        app = self._current(handoff)
        return None if app is not None and app.state == REVOKED else self.message(handoff)

    def _issued(self, handoff: Handoff) -> BirthCertificateApplication:
        app = self.applications.get_as_stored(UUID(handoff.application_id), handoff.version)
        if not isinstance(app, BirthCertificateApplication):
            raise TypeError("a hand-off of something that is not an application")
        return app

    def materials(self, handoff: Handoff) -> list[JSON]:
        """On the executor: the materials of 表1 the hand-off's department may fetch, by reference (kind,
        label, sha256, content type, size), as the application held them when issued; none once the
        department has finished the service (decision 0047) or the certificate has been declared void."""
        now = self._current(handoff)
        if now is not None:
            answered = (now.bundle_services or {}).get(handoff.service) or {}
            if answered.get("state") == "done" or now.state == REVOKED:
                return []
        return self._issued(handoff).bundle_materials_for(handoff.service)

    def message(self, handoff: Handoff) -> bytes:
        """On the executor: the message's exact bytes, from the application as it was when issued (the same
        bytes for every attempt). Personal data: never logged.

        The materials its department needs go by reference (decision 0047): each with its sha256 and the URL
        the department fetches it from with a request signed by its own key; the key is absent when there
        are none, so a message without materials reads as it did before they existed."""
        app = self._issued(handoff)
        spec = handoffs()[handoff.service]
        record = app.record or {}
        materials = [
            {
                **m,
                "url": self.callback_base
                + MATERIALS_PATH.format(
                    department=handoff.department, message_id=handoff.message_id, document=m["kind"]
                ),
            }
            for m in app.bundle_materials_for(handoff.service)
        ]
        return orjson.dumps(
            {
                "message_id": handoff.message_id,
                "department": handoff.department,
                "service": handoff.service,
                "application_id": handoff.application_id,
                "issued_at": app.modified_on.astimezone(UTC).isoformat(),
                "institution": {
                    "code": str(record.get("institution_code") or app.institution or ""),
                    "name": str(record.get("institution_name") or ""),
                },
                "fields": handoff_fields(spec, app.bundle_table2()),
                "callback_url": self.callback_base + RESULTS_PATH.format(department=handoff.department),
                **({"materials": materials} if materials else {}),
            },
            option=orjson.OPT_SORT_KEYS,
        )

    def _retry_later(self, handoff: Handoff, error: str, count: bool = False) -> None:
        """Pending again after a wait that doubles with each attempt; ``count`` counts this one as an attempt
        (the department could not even be asked), so that its wait grows too."""
        wait = min(self.retry_base * 2**handoff.attempts, RETRY_MAX)
        with self.db.transaction():
            self.db.check_fence(self.db.fence)
            self.db.execute(
                "UPDATE bundle_handoffs SET next_attempt_at = ?, error = ?, attempts = attempts + ? "
                "WHERE message_id = ? AND state = ?",
                (datetime.now(UTC).timestamp() + wait, error, int(count), handoff.message_id, PENDING),
            )

    def _record_sent(self, handoff: Handoff) -> None:
        spec = handoffs()[handoff.service]
        try:
            self.applications.record_bundle_service(
                department_actor(handoff.department, spec.name),
                handoff.application_id,
                service=handoff.service,
                department=handoff.department,
                state=SENT,
                message_id=handoff.message_id,
            )
        except (
            RuleViolated
        ) as error:  # the certificate declared void since (the row is done: it was delivered)
            log.warning("hand-off %s delivered but not recorded (%s)", handoff.message_id, error.code)

    def _finish(self, handoff: Handoff, state: str, error: str | None) -> None:
        with self.db.transaction():
            self.db.check_fence(self.db.fence)
            self.db.execute(
                "UPDATE bundle_handoffs SET state = ?, sent_at = ?, error = ? "
                "WHERE message_id = ? AND state = ?",
                (state, datetime.now(UTC).isoformat(timespec="seconds"), error, handoff.message_id, PENDING),
            )

    def counts(self) -> dict[str, int]:
        """On the executor: the outbox at a glance, for /readyz and /metrics — rows waiting (``pending``), those
        of them whose last attempt failed (``retrying``: the department was down; ``failing``: an unexpected
        error, logged), and those a department refused outright (``rejected``, shown to the issuer)."""
        row = self.db.fetchone(
            "SELECT "
            "COALESCE(SUM(CASE WHEN state = ? THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN state = ? AND error IN (?, ?) THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN state = ? AND error = ? THEN 1 ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN state = ? THEN 1 ELSE 0 END), 0) "
            "FROM bundle_handoffs",
            (PENDING, PENDING, UNAVAILABLE, "conflict", PENDING, FAILED, REJECTED),
        )
        pending, retrying, failing, rejected = (int(v) for v in row) if row else (0, 0, 0, 0)
        return {"pending": pending, "retrying": retrying, "failing": failing, "rejected": rejected}

    def deliveries_of(self, application_id: str) -> dict[str, JSON]:
        """On the executor: how each of the application's hand-offs went, by service (``delivery_view``)."""
        return {h.service: delivery_view(h) for h in self.handoffs_of(application_id)}

    def handoff(self, message_id: str) -> Handoff | None:
        """On the executor: the outbox row of ``message_id``, if there is one."""
        row = self.db.fetchone(f"SELECT {_COLUMNS} FROM bundle_handoffs WHERE message_id = ?", (message_id,))
        return None if row is None else _row(row)

    def handoffs_of(self, application_id: str) -> list[Handoff]:
        """On the executor: the application's hand-offs (for the issuer's view)."""
        rows = self.db.fetchall(
            f"SELECT {_COLUMNS} FROM bundle_handoffs WHERE application_id = ? ORDER BY position, message_id",
            (application_id,),
        )
        return [_row(r) for r in rows]


def list_handoffs(db: Database, *, state: str | None = None, department: str | None = None) -> list[Handoff]:
    """The outbox's rows (ids and bookkeeping only), oldest first, for the operator's ``birthcert bundle``."""
    where, args = [], []
    for column, value in (("state", state), ("department", department)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = db.fetchall(
        f"SELECT {_COLUMNS} FROM bundle_handoffs{clause} ORDER BY position, message_id", tuple(args)
    )
    return [_row(r) for r in rows]


def resend_rejected(db: Database, message_ids: list[str]) -> list[str]:
    """Hand-offs a department's system refused outright (``rejected``) made pending again, due now: after the
    operator has mended what made it refuse (an adapter's configuration, the department's interface). The
    department is asked first whether it has the message (``attempts`` kept), then sent the same bytes under
    the same id. Returns the ids made pending; the others (unknown, not rejected) are left alone."""
    done = []
    with db.transaction():
        for message_id in message_ids:
            row = db.fetchone("SELECT state FROM bundle_handoffs WHERE message_id = ?", (message_id,))
            if row is None or row[0] != REJECTED:
                continue
            db.execute(
                "UPDATE bundle_handoffs SET state = ?, next_attempt_at = 0, error = ?, sent_at = NULL "
                "WHERE message_id = ? AND state = ?",
                (PENDING, RESENT, message_id, REJECTED),
            )
            done.append(message_id)
    return done


def delivery_view(handoff: Handoff) -> JSON:
    """What the issuer reads of one hand-off's delivery: sent, waiting (how many attempts, why the last failed,
    when the next is due: the retry is visible), or refused outright by the department's system. Ids and
    bookkeeping only: no personal data."""
    if handoff.state == SENT:
        label = "已送达部门"
    elif handoff.state == CANCELLED:
        label = "出生医学证明已作废，未推送"
    elif handoff.state == REJECTED:
        label = f"部门系统拒收推送：{handoff.error or '未说明原因'}（已记录，待运维处理）"
    elif handoff.error == UNAVAILABLE:
        label = f"部门系统暂不可用，已推送{handoff.attempts}次未成功，将自动重试"
    elif handoff.error == RESENT:
        label = "运维已安排重新推送"
    elif handoff.error == FAILED:
        label = f"推送出错（已记录），已推送{handoff.attempts}次，将自动重试"
    elif handoff.attempts:
        label = "正在推送"
    else:
        label = "等待推送"
    waiting = handoff.state == PENDING and handoff.attempts > 0
    return {
        "state": handoff.state,
        "label": label,
        "attempts": handoff.attempts,
        "error": handoff.error if handoff.state != SENT else None,
        "next_attempt_at": datetime.fromtimestamp(handoff.next_attempt_at, UTC).isoformat(timespec="seconds")
        if waiting
        else None,
        "sent_at": handoff.sent_at,
    }


__all__ = [
    "CANCELLED",
    "NAME",
    "PENDING",
    "REJECTED",
    "SENT",
    "Handoff",
    "HandoffProcess",
    "delivery_view",
    "list_handoffs",
    "message_id_for",
    "resend_rejected",
]
