"""Managers' statistics in SQL beside the events: counts per Beijing day and institution, and durations (0043).

A ``View`` for ``LogFollower`` named ``statistics``, run on the elected leader only (one set of tables every
process reads; decision 0024): a page's figures and its position are written in one transaction, and only if the
stored position is the one the page was read from (compare-and-set, ``Database.move``), so no event is counted
twice and a rebuild (``birthcert projections rebuild --view statistics``: ``reset`` then a catch-up) gives the
same figures. Nothing personal is stored: codes, Beijing days, counts and durations in seconds.

Tables:

- ``statistics_daily`` ``(day, province, institution, figure, item) → count``. ``day`` is the Beijing date
  (Asia/Shanghai, from 00:00) of the event that is counted; ``institution`` is '' while the application's is not
  known yet. The figures (``FIGURES``) and their events: ``started`` (ApplicationStarted, moved to the
  institution once named or linked), ``submitted`` (a first Submitted), ``resubmitted`` (a later one),
  ``issued`` (Issued), ``delivered`` / ``collected`` (the first Delivered or CollectedOnSite of an application),
  ``referred`` by reason code (ReferredToCounter), ``withdrawn``, ``rejected`` (Rejected), ``rejected_code`` by
  the rejection's reason code (domain/data/rejection_reasons.json, decision 0045; ``other`` for rejections
  recorded before codes), ``rejected_field`` by field and ``rejected_reason`` by the field's group
  (``domain.statistics.FIELD_GROUPS``; its name is older than the codes) — the issuer's own words are never
  read, ``decided`` and ``decided_late`` (an Issued, Rejected, ReferredToCounter or
  Withdrawn of an application under review, late when past its review deadline: the province's
  ``review_working_days``, or the queue's default, on the working-day calendar from the last submission — the
  issuers' queue's ``due_at``).
- ``statistics_durations`` ``(day, province, institution, kind, seconds)``: one row per application and kind,
  no id: ``issue`` from the first submission to Issued, ``delivery`` from the first submission to the first
  Delivered or CollectedOnSite; ``day`` is that of the end. Kept whole so that a median and 90th percentile are
  exact for any scope and period (a few rows per application: a histogram would save little and lose exactness).
- ``statistics_applications``: what the follower remembers of each application to count its later events
  (where it is counted, its first submission, the deadline of a review under way). Its key is the application's
  random id, as in the audit log; nothing in it describes a person, and no answer ever shows it. The open reviews
  past their deadline at the time of reading (``overdue_open``) are counted from it.
- ``statistics_institutions``: each institution's name, province and district (InstitutionRegistered,
  InstitutionRenamed, InstitutionDistrictSet), which a district's scope and the charts' labels need.

出生一件事 (decision 0049): ``bundle_sent`` (a department's hand-off delivered), ``bundle_done`` /
``bundle_refused`` (its answers) and ``bundle_on_time`` / ``bundle_late`` (its first finishing answer against the
bundle's time limit: N working days from the accepted submission, domain/bundle_clock.py), each by department code
as the item, and a duration kind per department, ``bundle:<department>``, from the hand-off to that answer — the
department's own turnaround. ``statistics_bundle_open`` holds each hand-off not answered yet with its deadline
(ids, codes and times), from which the parts overdue at the time of reading are counted; a certificate declared
void (``revoked``, counted too: CertificateRevoked) closes its bundle's open parts.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal, TypeVar

from domain.application import BirthCertificateApplication as App
from domain.bundle import handoff_of_department
from domain.bundle_clock import FINISHING
from domain.policy import SHANGHAI, WorkingCalendar, get_profile
from domain.staff import InstitutionRecord
from domain.statistics import Scope, district_province_name, field_group
from projections.review_queue import DEFAULT_REVIEW_WORKING_DAYS
from projections.runner import DomainEvent, Page
from projections.sql import Database

NAME: Final = "statistics"
FIGURES: Final = (
    "started",
    "submitted",
    "resubmitted",
    "issued",
    "delivered",
    "collected",
    "referred",
    "withdrawn",
    "rejected",
    "rejected_code",
    "rejected_field",
    "rejected_reason",
    "decided",
    "decided_late",
    "revoked",
    "bundle_sent",
    "bundle_done",
    "bundle_refused",
    "bundle_on_time",
    "bundle_late",
)
DURATION_KINDS: Final = ("issue", "delivery")
# 出生一件事's figures, each by department code (the item).
BUNDLE_FIGURES: Final = ("bundle_sent", "bundle_done", "bundle_refused", "bundle_on_time", "bundle_late")
BUNDLE_DURATION: Final = "bundle:"
TABLES: Final = (
    "statistics_daily",
    "statistics_durations",
    "statistics_applications",
    "statistics_institutions",
    "statistics_bundle_open",
)
Granularity = Literal["day", "week"]
T = TypeVar("T")


def beijing_day(moment: datetime) -> str:
    """The Beijing date (Asia/Shanghai) of an aware moment, ISO."""
    return moment.astimezone(SHANGHAI).date().isoformat()


def utc_text(moment: datetime) -> str:
    """A moment as fixed-width UTC text, so that text order is time order (stored deadlines)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Remembered:
    """What the follower keeps of one application (a row of ``statistics_applications``)."""

    province: str
    institution: str
    started_day: str
    review_days: int | None = None
    first_submitted_at: str | None = None
    due_at: str | None = None
    handed_over: bool = False
    # 出生一件事: its time limit in working days (the profile as at the start), and the submission it counts from.
    bundle_days: int | None = None
    last_submitted_at: str | None = None


Key = tuple[str, str, str, str, str]  # day, province, institution, figure, item


@dataclass
class Tally:
    """A page's work before it is written: counts to add, durations, what is remembered, institutions."""

    counts: dict[Key, int] = field(default_factory=lambda: defaultdict(int))
    durations: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    remembered: dict[str, Remembered | None] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    institutions: dict[str, dict[str, str | None]] = field(default_factory=dict)
    # Hand-offs not answered yet, by (application, department): (province, institution, sent_at, due_at) to
    # keep, None to drop; and the applications whose open parts all close (a certificate declared void).
    bundle_open: dict[tuple[str, str], tuple[str, str, str, str | None] | None] = field(default_factory=dict)
    bundle_closed: set[str] = field(default_factory=set)

    def add(self, day: str, where: Remembered, figure: str, item: str = "", n: int = 1) -> None:
        self.counts[(day, where.province, where.institution, figure, item)] += n


class StatisticsView:
    """The managers' figures: a ``View`` (leader only) and what the statistics route reads."""

    def __init__(
        self,
        db: Database,
        executor: Executor,
        *,
        calendar: WorkingCalendar | None = None,
        default_review_working_days: int = DEFAULT_REVIEW_WORKING_DAYS,
    ) -> None:
        self.db = db
        self.executor = executor
        self.calendar = calendar or WorkingCalendar()
        self.default_review_working_days = default_review_working_days

    def __repr__(self) -> str:
        return "StatisticsView()"

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # ------------------------------------------------------------------ View

    async def position(self) -> int:
        """The last notification id counted."""
        return await self._run(self.db.position, NAME)

    async def apply(self, page: Page, start: int, end: int | None = None) -> bool:
        """Count the page and record its end, in one transaction, if the position is ``start``."""
        if end is None:
            end = page[-1][0] if page else start
        return await self._run(self.apply_now, page, start, end)

    async def reset(self) -> None:
        """Forget every figure and the position (a rebuild then counts the whole log again)."""
        await self._run(self.reset_now)

    def reset_now(self) -> None:
        """``reset``, blocking (the CLI's rebuild); under the leader's fence when the connection has one."""
        with self.db.fenced_transaction(self.db.fence):
            for table in TABLES:
                self.db.execute(f"DELETE FROM {table}")
            self.db.execute("DELETE FROM projection_positions WHERE name = ?", (NAME,))

    def apply_now(self, page: Page, start: int, end: int) -> bool:
        """``apply``, blocking."""
        with self.db.transaction():
            if not self.db.move(NAME, start, end):
                return False
            tally = Tally()
            for position, event in page:
                if position > start:
                    self._take(tally, event)
            self._write(tally)
        return True

    # ------------------------------------------------------------------ counting

    def _remembered(self, tally: Tally, app_id: str) -> Remembered | None:
        if app_id not in tally.remembered:
            row = self.db.fetchone(
                "SELECT province, institution, started_day, review_days, first_submitted_at, due_at, handed_over, "
                "bundle_days, last_submitted_at FROM statistics_applications WHERE application_id = ?",
                (app_id,),
            )
            tally.remembered[app_id] = (
                None
                if row is None
                else Remembered(
                    str(row[0]),
                    str(row[1]),
                    str(row[2]),
                    None if row[3] is None else int(row[3]),
                    None if row[4] is None else str(row[4]),
                    None if row[5] is None else str(row[5]),
                    bool(row[6]),
                    None if row[7] is None else int(row[7]),
                    None if row[8] is None else str(row[8]),
                )
            )
        return tally.remembered[app_id]

    def _take(self, tally: Tally, event: DomainEvent) -> None:
        """Count one event (the one place each event's figures are decided)."""
        if isinstance(event, InstitutionRecord.Event):
            self._take_institution(tally, event)
            return
        if not isinstance(event, App.Event):
            return
        app_id = str(event.originator_id)
        day = beijing_day(event.timestamp)
        if isinstance(event, App.ApplicationStarted):
            memo = Remembered(event.province, "", day, _review_days(event.policy))
            memo.bundle_days = _bundle_days(event.policy)
            tally.add(day, memo, "started")
            self._keep(tally, app_id, memo)
            return
        found = self._remembered(tally, app_id)
        # An application whose start was parked: counted where nothing is known of it.
        memo = found if found is not None else Remembered("", "", day)
        if isinstance(event, App.ProvinceAdopted):
            memo.review_days = _review_days(event.policy)
            memo.bundle_days = _bundle_days(event.policy)
            self._move(tally, memo, replace(memo, province=event.province))
        elif isinstance(event, App.InstitutionNamed | App.DeliveryRecordLinked):
            self._move(tally, memo, replace(memo, institution=event.institution))
        elif isinstance(event, App.Submitted):
            if memo.first_submitted_at is None:
                memo.first_submitted_at = utc_text(event.timestamp)
                tally.add(day, memo, "submitted")
            else:
                tally.add(day, memo, "resubmitted")
            memo.last_submitted_at = utc_text(event.timestamp)
            days = memo.review_days if memo.review_days is not None else self.default_review_working_days
            memo.due_at = utc_text(self.calendar.deadline(event.timestamp, days).at)
        elif isinstance(event, App.Rejected):
            tally.add(day, memo, "rejected")
            for code in dict.fromkeys(event.reason_codes):
                tally.add(day, memo, "rejected_code", code)
            for name in dict.fromkeys(event.fields):
                tally.add(day, memo, "rejected_field", name)
            for group in dict.fromkeys(field_group(name) for name in event.fields):
                tally.add(day, memo, "rejected_reason", group)
            self._decided(tally, day, memo, event.timestamp)
        elif isinstance(event, App.ReferredToCounter):
            tally.add(day, memo, "referred", event.reason)
            self._decided(tally, day, memo, event.timestamp)
        elif isinstance(event, App.Withdrawn):
            tally.add(day, memo, "withdrawn")
            self._decided(tally, day, memo, event.timestamp)
        elif isinstance(event, App.Issued):
            tally.add(day, memo, "issued")
            self._decided(tally, day, memo, event.timestamp)
            self._duration(tally, day, memo, "issue", event.timestamp)
        elif isinstance(event, App.Delivered | App.CollectedOnSite):
            if not memo.handed_over:
                memo.handed_over = True
                figure = "delivered" if isinstance(event, App.Delivered) else "collected"
                tally.add(day, memo, figure)
                self._duration(tally, day, memo, "delivery", event.timestamp)
        elif isinstance(event, App.BundleServiceUpdated):
            self._bundle(tally, app_id, day, memo, event)
        elif isinstance(event, App.CertificateRevoked):
            tally.add(day, memo, "revoked")
            tally.bundle_closed.add(app_id)  # nothing more is handed on: no part of it can be overdue
            for key in [k for k in tally.bundle_open if k[0] == app_id]:
                tally.bundle_open[key] = None
        elif isinstance(event, App.DeliveryRecordRefreshed):
            # The hospital's correction sends a review back to the parent: no decision, no deadline any more.
            memo.due_at = None
        else:
            return
        self._keep(tally, app_id, memo)

    def _keep(self, tally: Tally, app_id: str, memo: Remembered) -> None:
        tally.remembered[app_id] = memo
        tally.changed.add(app_id)

    def _move(self, tally: Tally, memo: Remembered, to: Remembered) -> None:
        """The application is counted elsewhere from now on: its start moves there too."""
        if (to.province, to.institution) != (memo.province, memo.institution):
            tally.add(memo.started_day, memo, "started", n=-1)
            tally.add(memo.started_day, to, "started")
            memo.province, memo.institution = to.province, to.institution

    def _decided(self, tally: Tally, day: str, memo: Remembered, at: datetime) -> None:
        if memo.due_at is None:
            return
        tally.add(day, memo, "decided")
        if utc_text(at) > memo.due_at:
            tally.add(day, memo, "decided_late")
        memo.due_at = None

    def _duration(self, tally: Tally, day: str, memo: Remembered, kind: str, at: datetime) -> None:
        if memo.first_submitted_at is None:
            return
        seconds = max(0, round((at - _moment(memo.first_submitted_at)).total_seconds()))
        tally.durations.append((day, memo.province, memo.institution, kind, seconds))

    def _bundle(
        self, tally: Tally, app_id: str, day: str, memo: Remembered, event: App.BundleServiceUpdated
    ) -> None:
        """A department's hand-off delivered, or its answer: counted, timed against the bundle's limit."""
        department, key = event.department, (app_id, event.department)
        if event.state == "sent":
            tally.add(day, memo, "bundle_sent", department)
            handoff = handoff_of_department(department)
            days = handoff.working_days if handoff and handoff.working_days else memo.bundle_days
            start = memo.last_submitted_at or memo.first_submitted_at
            due = None if days is None or start is None else self.calendar.deadline(_moment(start), days).at
            sent = utc_text(event.timestamp)
            tally.bundle_open[key] = (
                memo.province,
                memo.institution,
                sent,
                None if due is None else utc_text(due),
            )
            return
        if event.state not in FINISHING:
            return
        tally.add(day, memo, f"bundle_{event.state}", department)
        open_part = self._open_part(tally, key)
        if open_part is None:
            return  # answered before (a department reconsidering a refusal): timed once
        _, _, sent_at, due_at = open_part
        if due_at is not None:
            tally.add(
                day,
                memo,
                "bundle_late" if utc_text(event.timestamp) > due_at else "bundle_on_time",
                department,
            )
        seconds = max(0, round((event.timestamp - _moment(sent_at)).total_seconds()))
        tally.durations.append((day, memo.province, memo.institution, BUNDLE_DURATION + department, seconds))
        tally.bundle_open[key] = None

    def _open_part(self, tally: Tally, key: tuple[str, str]) -> tuple[str, str, str, str | None] | None:
        if key in tally.bundle_open:
            return tally.bundle_open[key]
        if key[0] in tally.bundle_closed:
            return None
        row = self.db.fetchone(
            "SELECT province, institution, sent_at, due_at FROM statistics_bundle_open "
            "WHERE application_id = ? AND department = ?",
            key,
        )
        return (
            None
            if row is None
            else (str(row[0]), str(row[1]), str(row[2]), None if row[3] is None else str(row[3]))
        )

    def _take_institution(self, tally: Tally, event: InstitutionRecord.Event) -> None:
        code = self._institution_code(tally, str(event.originator_id), event)
        if code is None:
            return
        known = tally.institutions.setdefault(code, {})
        if isinstance(event, InstitutionRecord.InstitutionRegistered):
            known.update(id=str(event.originator_id), name=event.name, province=event.province)
        elif isinstance(event, InstitutionRecord.InstitutionRenamed):
            known["name"] = event.name
        elif isinstance(event, InstitutionRecord.DistrictSet):
            known["district"] = event.district

    def _institution_code(self, tally: Tally, record_id: str, event: InstitutionRecord.Event) -> str | None:
        if isinstance(event, InstitutionRecord.InstitutionRegistered):
            return event.code
        for code, known in tally.institutions.items():
            if known.get("id") == record_id:
                return code
        row = self.db.fetchone("SELECT code FROM statistics_institutions WHERE record_id = ?", (record_id,))
        return None if row is None else str(row[0])

    def _write(self, tally: Tally) -> None:
        counts = [(*key, n) for key, n in tally.counts.items() if n]
        if counts:
            self.db.executemany(
                "INSERT INTO statistics_daily (day, province, institution, figure, item, count) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (day, province, institution, figure, item) "
                "DO UPDATE SET count = statistics_daily.count + excluded.count",
                counts,
            )
        if tally.durations:
            self.db.executemany(
                "INSERT INTO statistics_durations (day, province, institution, kind, seconds) "
                "VALUES (?, ?, ?, ?, ?)",
                tally.durations,
            )
        rows = []
        for app_id in sorted(tally.changed):
            memo = tally.remembered[app_id]
            if memo is not None:
                rows.append(
                    (
                        app_id,
                        memo.province,
                        memo.institution,
                        memo.started_day,
                        memo.review_days,
                        memo.first_submitted_at,
                        memo.due_at,
                        int(memo.handed_over),
                        memo.bundle_days,
                        memo.last_submitted_at,
                    )
                )
        if rows:
            self.db.executemany(
                "INSERT INTO statistics_applications (application_id, province, institution, started_day, "
                "review_days, first_submitted_at, due_at, handed_over, bundle_days, last_submitted_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (application_id) DO UPDATE SET province = excluded.province, "
                "institution = excluded.institution, review_days = excluded.review_days, "
                "first_submitted_at = excluded.first_submitted_at, due_at = excluded.due_at, "
                "handed_over = excluded.handed_over, bundle_days = excluded.bundle_days, "
                "last_submitted_at = excluded.last_submitted_at",
                rows,
            )
        for app_id in sorted(tally.bundle_closed):
            self.db.execute("DELETE FROM statistics_bundle_open WHERE application_id = ?", (app_id,))
        for (app_id, department), part in sorted(tally.bundle_open.items()):
            if part is None:
                self.db.execute(
                    "DELETE FROM statistics_bundle_open WHERE application_id = ? AND department = ?",
                    (app_id, department),
                )
            else:
                self.db.execute(
                    "INSERT INTO statistics_bundle_open (application_id, department, province, institution, "
                    "sent_at, due_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (application_id, department) "
                    "DO UPDATE SET province = excluded.province, institution = excluded.institution, "
                    "sent_at = excluded.sent_at, due_at = excluded.due_at",
                    (app_id, department, *part),
                )
        for code, known in tally.institutions.items():
            current = self.db.fetchone(
                "SELECT record_id, name, province, district FROM statistics_institutions WHERE code = ?",
                (code,),
            )
            merged = dict(zip(("id", "name", "province", "district"), current or (None,) * 4, strict=True))
            merged.update(known)
            self.db.execute(
                "INSERT INTO statistics_institutions (code, record_id, name, province, district) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (code) DO UPDATE SET record_id = excluded.record_id, "
                "name = excluded.name, province = excluded.province, district = excluded.district",
                (
                    code,
                    merged["id"] or "",
                    merged["name"] or code,
                    merged["province"] or "",
                    merged["district"],
                ),
            )

    # ------------------------------------------------------------------ reading

    def institution(self, code: str) -> tuple[str, str, str | None] | None:
        """An institution's (name, province, district) as the figures know it, or None."""
        row = self.db.fetchone(
            "SELECT name, province, district FROM statistics_institutions WHERE code = ?", (code,)
        )
        return None if row is None else (str(row[0]), str(row[1]), None if row[2] is None else str(row[2]))

    def contains(self, outer: Scope, inner: Scope) -> bool:
        """Whether a manager of ``outer`` may see ``inner`` (the same, or a part of it)."""
        if outer == inner:
            return True
        if inner.kind == "institution" and outer.kind != "institution":
            known = self.institution(inner.code)
            if known is None:
                return False
            return known[1] == outer.code if outer.kind == "province" else known[2] == outer.code
        if inner.kind == "district" and outer.kind == "province":
            return district_province_name(inner.code) == get_profile(outer.code).name
        return False

    def figures(
        self, scope: Scope, first: date, last: date, granularity: Granularity, now: datetime
    ) -> dict[str, Any]:
        """The figures of ``scope`` for the Beijing days ``first``..``last``, per day or week (weeks from
        Monday, labelled by their Monday), with the totals and the reviews overdue at ``now``."""
        where, params = _scope_filter(scope)
        daily = self.db.fetchall(
            "SELECT day, figure, item, SUM(count) FROM statistics_daily "
            f"WHERE day >= ? AND day <= ? AND {where} GROUP BY day, figure, item",
            (first.isoformat(), last.isoformat(), *params),
        )
        durations = self.db.fetchall(
            f"SELECT day, kind, seconds FROM statistics_durations WHERE day >= ? AND day <= ? AND {where}",
            (first.isoformat(), last.isoformat(), *params),
        )
        overdue = self.db.fetchone(
            "SELECT COUNT(*) FROM statistics_applications "
            f"WHERE due_at IS NOT NULL AND due_at < ? AND {where}",
            (utc_text(now), *params),
        )
        late = self.db.fetchall(
            "SELECT department, COUNT(*) FROM statistics_bundle_open "
            f"WHERE due_at IS NOT NULL AND due_at < ? AND {where} GROUP BY department",
            (utc_text(now), *params),
        )
        periods = {label: _Period() for label in period_labels(first, last, granularity)}
        total = _Period()
        for day, figure, item, count in daily:
            for bucket in (periods[period_of(str(day), granularity)], total):
                bucket.add(str(figure), str(item), int(count))
        for day, kind, seconds in durations:
            for bucket in (periods[period_of(str(day), granularity)], total):
                bucket.durations[str(kind)].append(int(seconds))
        return {
            "periods": [{"period": label, **bucket.answer()} for label, bucket in periods.items()],
            "total": total.answer(),
            "overdue_open": int(overdue[0]) if overdue else 0,
            # 出生一件事: the departments' parts past the time limit, not answered yet, by department (0049).
            "bundle_overdue_open": {str(d): int(n) for d, n in sorted(late)},
            "position": self.db.position(NAME),
        }


def _review_days(policy: dict[str, Any]) -> int | None:
    days = policy.get("review_working_days")
    return days if isinstance(days, int) else None


def _bundle_days(policy: dict[str, Any]) -> int | None:
    """出生一件事's time limit in the profile snapshotted at the start (None: no bundle, or no limit)."""
    days = (policy.get("birth_bundle") or {}).get("working_days")
    return days if isinstance(days, int) else None


def _scope_filter(scope: Scope) -> tuple[str, tuple[str, ...]]:
    if scope.kind == "institution":
        return "institution = ?", (scope.code,)
    if scope.kind == "district":
        return "institution IN (SELECT code FROM statistics_institutions WHERE district = ?)", (scope.code,)
    return "province = ?", (scope.code,)


def period_of(day: str, granularity: Granularity) -> str:
    """The label of the period a Beijing day falls in: the day, or its week's Monday."""
    if granularity == "day":
        return day
    d = date.fromisoformat(day)
    return (d - timedelta(days=d.weekday())).isoformat()


def period_labels(first: date, last: date, granularity: Granularity) -> list[str]:
    """Every period's label from ``first`` to ``last``, in order."""
    labels: dict[str, None] = {}
    day = first
    while day <= last:
        labels[period_of(day.isoformat(), granularity)] = None
        day += timedelta(days=1)
    return list(labels)


def nearest_rank(values: Iterable[int], p: float) -> int | None:
    """The ``p`` quantile (0 < p ≤ 1) by the nearest-rank method: the smallest value with at least ``p`` of the
    values at or below it — always a duration some application had (None for none)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(1, math.ceil(p * len(ordered))) - 1]


COUNTED: Final = (
    "started",
    "submitted",
    "resubmitted",
    "issued",
    "delivered",
    "collected",
    "withdrawn",
    "revoked",
)
BY_ITEM: Final = {
    "referred": "referrals_by_reason",
    "rejected_code": "rejections_by_reason",
    "rejected_field": "rejections_by_field",
    "rejected_reason": "rejections_by_field_group",  # the stored figure's name is older than the codes
}


@dataclass
class _Period:
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    items: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    durations: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def add(self, figure: str, item: str, count: int) -> None:
        if figure in BY_ITEM or figure in BUNDLE_FIGURES:
            self.items[figure][item] += count
            if figure == "referred":
                self.counts["referred"] += count
        else:
            self.counts[figure] += count

    def answer(self) -> dict[str, Any]:
        counts = {
            name: self.counts[name] for name in (*COUNTED, "referred", "rejected", "decided", "decided_late")
        }
        online, referred = counts["issued"], counts["referred"]
        return {
            **counts,
            # Of the applications that ended online (issued) or at the counter (referred) in the period.
            "online_share": None if online + referred == 0 else round(online / (online + referred), 4),
            **{name: dict(sorted(self.items[figure].items())) for figure, name in BY_ITEM.items()},
            **{
                f"{kind}_seconds": {
                    "count": len(self.durations[kind]),
                    "median": nearest_rank(self.durations[kind], 0.5),
                    "p90": nearest_rank(self.durations[kind], 0.9),
                }
                for kind in DURATION_KINDS
            },
            "bundle": self._bundle(),
        }

    def _bundle(self) -> dict[str, dict[str, Any]]:
        """出生一件事 by department: hand-offs, answers, on time or late, and the turnaround (hand-off to answer)."""
        departments = {d for figure in BUNDLE_FIGURES for d in self.items[figure]}
        departments |= {k[len(BUNDLE_DURATION) :] for k in self.durations if k.startswith(BUNDLE_DURATION)}
        out: dict[str, dict[str, Any]] = {}
        for department in sorted(departments):
            seconds = self.durations[BUNDLE_DURATION + department]
            out[department] = {
                **{figure[len("bundle_") :]: self.items[figure][department] for figure in BUNDLE_FIGURES},
                "turnaround_seconds": {
                    "count": len(seconds),
                    "median": nearest_rank(seconds, 0.5),
                    "p90": nearest_rank(seconds, 0.9),
                },
            }
        return out


__all__ = [
    "DURATION_KINDS",
    "FIGURES",
    "NAME",
    "TABLES",
    "Granularity",
    "StatisticsView",
    "beijing_day",
    "nearest_rank",
    "period_labels",
    "period_of",
]
