"""The hospitals' worklist in Redis: per midwifery institution, the delivery records its staff must look at.

==============  ==========================  ============================================================
``kind``        member                      on the list while
==============  ==========================  ============================================================
``dispute``     ``dispute:<application>``   a mother disputes one of its records (DeliveryInfoDisputed) and
                                            it has neither corrected the record (DeliveryRecordRefreshed)
                                            nor upheld it (DeliveryRecordUpheld), nor has she confirmed it
                                            since; no deadline (no seed sets one)
``missing``     ``missing:<application>``   a mother whose face check passed found no record and named this
                                            institution (DeliveryReportedMissing), until a hospital enters
                                            it (AwaitedDeliveryRecorded), her application links one or
                                            ends; due at the report's ``entry_due_at``
``late_entry``  ``late:<delivery record>``  the record was entered past the province's limit
                                            (DeliveryRecorded ``entered_late``), until a certificate is
                                            issued against it; due at birth + the limit, so always overdue
==============  ==========================  ============================================================

The limit is the province profile's ``delivery_entry_hours`` (Guangdong 72, Shandong 24), counted in hours on
the clock: the seeds say 3日 and 24 hours, not working days (docs/decisions/0034-hospital-worklist.md). Items
are ordered by ``since`` (when she disputed, when she reported, when the record was entered), oldest first.

Laid out and written as ``projections.institution_items`` says, under ``bc:worklist:``; a change is announced as
``{item_id, kind, version}`` on ``bc:worklist:events:<CODE>`` (``kind`` null when it left). Items hold no
personal data in plaintext: the mother's name masked (王*), no ID numbers, no free text; her reason for a
dispute and the birth day she reported are read from the event store when the list is served
(``Applications.get_hospital_cases``).

Most of an application's events cannot change its items: a page is looked at only for the applications with
one of ``APPLICATION_EVENTS`` in it (and for every delivery record), each at the version of its last event in
the page (the version the other views ask for, so the aggregate comes from the cache). An item holds nothing
that the other events change — no version, no state — so a rebuild writes byte-identical items whatever the
paging. An event added later that changes a dispute, a report or the mother's verified name belongs in
``APPLICATION_EVENTS``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from datetime import datetime
from typing import Final
from uuid import UUID

import orjson
import redis.asyncio as aioredis

from domain.application import BirthCertificateApplication
from domain.delivery import DeliveryRecord, entry_deadline
from domain.errors import InvalidValue
from domain.policy import get_profile
from domain.service import Applications
from projections.institution_items import (
    Entry,
    InstitutionItems,
    Row,
    Touched,
    iso,
    micros,
    parse_time,
)
from projections.redis_view import events_of, masked
from projections.runner import Page

DISPUTE: Final = "dispute"
MISSING: Final = "missing"
LATE_ENTRY: Final = "late_entry"
KINDS: Final = (DISPUTE, MISSING, LATE_ENTRY)
# Only these have a deadline, and so can be overdue.
DUE_KINDS: Final = (MISSING, LATE_ENTRY)
_PREFIX: Final = {DISPUTE: "dispute", MISSING: "missing", LATE_ENTRY: "late"}
_A = BirthCertificateApplication
# The application events after which its items may differ (see the module's docstring).
APPLICATION_EVENTS: Final = (
    _A.FaceVerified,  # the mother's verified name, shown masked
    _A.DeliveryRecordLinked,
    _A.DeliveryInfoConfirmed,
    _A.DeliveryInfoDisputed,
    _A.DeliveryRecordRefreshed,
    _A.DeliveryRecordUpheld,
    _A.DeliveryReportedMissing,
    _A.AwaitedDeliveryRecorded,
    _A.Submitted,
    _A.Rejected,
    _A.ReferredToCounter,
    _A.Withdrawn,
)


def _event(member: str, kind: str | None, version: int) -> dict[str, object]:
    return {"item_id": member, "kind": kind, "version": version}


def _entry(
    member: str, kind: str, version: int, since: datetime, due: datetime | None, fields: dict[str, object]
) -> Entry:
    item = {
        "item_id": member,
        "kind": kind,
        **fields,
        "since": iso(since),
        "due_at": None if due is None else iso(due),
    }
    return Entry(
        item,
        state=kind,
        score=micros(since),
        due_score=None if due is None else micros(due),
        present=_event(member, kind, version),
        left=_event(member, None, version),
    )


def dispute_entry(app: BirthCertificateApplication) -> Entry | None:
    """The mother's open dispute of the institution's record, or None."""
    if not app.dispute_open or app.institution is None:
        return None
    mother = app.verified.get("mother") or {}
    return _entry(
        f"dispute:{app.id}",
        DISPUTE,
        app.version,
        # A dispute older than ``disputed_at`` (restored from an older snapshot): its start, which never moves.
        parse_time(app.disputed_at) if app.disputed_at else app.created_on,
        None,
        {
            "institution": app.institution,
            "application_id": str(app.id),
            "delivery_record_id": app.delivery_record_id,
            "mother_name_masked": masked(mother.get("name") or (app.record or {}).get("mother_name")),
        },
    )


def missing_entry(app: BirthCertificateApplication) -> Entry | None:
    """The delivery record she reported missing from the institution she named, or None."""
    awaited = app.delivery_awaited
    if awaited is None or not app.awaiting_delivery_record:
        return None
    due = awaited["entry_due_at"]
    return _entry(
        f"missing:{app.id}",
        MISSING,
        app.version,
        parse_time(awaited["reported_at"]),
        None if due is None else parse_time(due),
        {
            "institution": awaited["institution"],
            "application_id": str(app.id),
            "delivery_record_id": None,
            "mother_name_masked": masked((app.verified.get("mother") or {}).get("name")),
        },
    )


def late_entry(record: DeliveryRecord) -> Entry | None:
    """The record, entered past the province's limit and not yet used for a certificate, or None."""
    if not record.entered_late or record.issued_certificate is not None:
        return None
    try:
        due = entry_deadline(get_profile(record.province), datetime.fromisoformat(record.facts["born_at"]))
    except InvalidValue:
        due = None  # a province whose profile is gone: still late as recorded, its limit unknown now
    return _entry(
        f"late:{record.id}",
        LATE_ENTRY,
        record.version,
        parse_time(record.entered_at),
        due,
        {
            "institution": record.institution_code,
            "application_id": record.application_id,
            "delivery_record_id": str(record.id),
            "mother_name_masked": masked(record.facts.get("mother_name")),
            "entered_late": True,
        },
    )


class HospitalWorklistView(InstitutionItems):
    """The hospitals' worklist: a ``View`` for ``projections.runner.LogFollower``."""

    state_field = "kind"
    states = KINDS
    due_states = DUE_KINDS
    state_error = ("invalid_kind_filter", "工作单类别不正确")

    def __init__(
        self,
        redis: aioredis.Redis,
        applications: Applications,
        executor: Executor,
        *,
        key_prefix: str = "bc:",
        clock: Callable[[], datetime] | None = None,
        generation: str | None = None,
    ) -> None:
        super().__init__(redis, executor, base=f"{key_prefix}worklist:", clock=clock, generation=generation)
        self.applications = applications

    def member(self, value: str) -> str:
        """``dispute:<uuid>``, ``missing:<uuid>`` or ``late:<uuid>`` (ValueError otherwise)."""
        prefix, _, rest = value.partition(":")
        if prefix not in _PREFIX.values():
            raise ValueError(f"not a worklist item: {value!r}")
        return f"{prefix}:{UUID(rest)}"

    def touched(self, page: Page) -> Touched:
        """The delivery records the page touched, and the applications with one of ``APPLICATION_EVENTS`` in it."""
        found = events_of(page, (BirthCertificateApplication.Event, DeliveryRecord.Event))
        return [
            (a, events[-1].originator_version, events)
            for a, events in found.items()
            if isinstance(events[0], DeliveryRecord.Event)
            or any(isinstance(e, APPLICATION_EVENTS) for e in events)
        ]

    def rows(self, touched: Touched) -> list[Row]:
        """On the executor: the items of each application (dispute, missing) or record (late entry) at its
        version, or at its latest; the aggregate as stored then from the cache and the page's events."""
        rows: list[Row] = []
        for aggregate_id, at, page_events in touched:
            found: object = self.applications.get_as_stored(aggregate_id, at, page_events)
            entries: list[tuple[str, Entry | None]]
            if isinstance(found, BirthCertificateApplication):
                entries = [(DISPUTE, dispute_entry(found)), (MISSING, missing_entry(found))]
            elif isinstance(found, DeliveryRecord):
                entries = [(LATE_ENTRY, late_entry(found))]
            else:
                continue
            for kind, entry in entries:
                member = f"{_PREFIX[kind]}:{aggregate_id}"
                rows.append((member, entry, orjson.dumps(_event(member, None, found.version))))
        return rows
