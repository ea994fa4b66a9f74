"""The issuers' review queue in Redis: per institution, what an issuer must act on, oldest submission first.

An application is in its institution's queue (the issuing institution of the linked delivery record)
from its first ``Submitted`` until it leaves the issuer's hands for good:

============================  ======================  ===========================================
application                   ``queue_state``         why the issuer sees it
============================  ======================  ===========================================
submitted, first time         ``new``                 to review (deadline, may be overdue)
submitted after a return      ``resubmitted``         to review again (deadline from this submission)
returned                      ``returned``            with the parent for fixes (pending elsewhere)
issued, EMS                   ``awaiting_dispatch``   to hand to the courier
issued, pickup                ``awaiting_handover``   to hand over at the counter
lost                          ``awaiting_reissue``    to print again on a new blank
============================  ======================  ===========================================

Dispatched, delivered, collected, withdrawn and counter-only applications leave the queue (their item
and set entries are deleted). As in ``projections.status``, an item is computed from the aggregate AT
THE VERSION of its last event in the page, so a rebuild writes byte-identical items whatever the
paging. The deadline is stored (``due_at``: the province profile's ``review_working_days`` counted on
the Chinese working-day calendar from the LAST submission, or a service default of 5 working days
where the province sets none, told apart by ``due_basis``; ``calendar_source`` and ``calendar_year`` say
which working-day calendar counted it: a loaded official schedule, chinesecalendar's data, or the statutory
holidays alone); ``overdue`` depends on the time of reading
and is computed by ``list()`` with the view's clock, never stored. Items hold no personal data in
plaintext: masked names only (王*, 张**), no ID numbers, addresses, phones or free-text reasons.

Keys (``key_prefix`` defaults to ``bc:``; ``<g>`` is the generation, ``projections.redis_view``):
- ``bc:queue:live``: the generation being served (``g0`` when missing)
- ``bc:queue:<g>:item:<uuid>``: the item (orjson)
- ``bc:queue:<g>:inst:<CODE>``: sorted set of the institution's application ids by first submission (µs)
- ``bc:queue:<g>:state:<CODE>:<queue_state>``: the same, one set per queue state (filters, counts)
- ``bc:queue:<g>:due:<CODE>``: the items awaiting review, scored by ``due_at`` (µs; overdue counts)
- ``bc:queue:<g>:position``: the last notification id applied

A page is applied by one Lua script that applies only on top of the position the page was read from
(compare-and-set, a missing position being 0) in the generation it was read in, moves every touched
item out of its old sets (read from the stored item) and into its new ones, and publishes
``{application_id, queue_state, version}`` on ``bc:queue:events:<CODE>`` for each item whose bytes
changed (``queue_state`` null when it left), so a page applied twice changes and announces nothing; a
generation being rebuilt announces nothing. The script derives the set keys from the stored items: it
needs a single Redis (as the service runs), not a cluster.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

import orjson
import redis.asyncio as aioredis

from domain.application import ISSUED, LOST, RETURNED, SUBMITTED, BirthCertificateApplication
from domain.errors import InvalidValue
from domain.policy import SHANGHAI, WorkingCalendar
from domain.service import Applications
from domain.values import PersonName
from projections.redis_view import CAS_EPILOGUE, CAS_PRELUDE, Generations, application_events
from projections.runner import DomainEvent, Page

JSON = dict[str, Any]
Items = list[JSON]
Entries = list[tuple[str, int]]
Found = list[tuple[str, int, JSON]]

NEW: Final = "new"
RESUBMITTED: Final = "resubmitted"
RETURNED_TO_PARENT: Final = "returned"
AWAITING_DISPATCH: Final = "awaiting_dispatch"
AWAITING_HANDOVER: Final = "awaiting_handover"
AWAITING_REISSUE: Final = "awaiting_reissue"
QUEUE_STATES: Final = (
    NEW,
    RESUBMITTED,
    RETURNED_TO_PARENT,
    AWAITING_DISPATCH,
    AWAITING_HANDOVER,
    AWAITING_REISSUE,
)
# Only these have a review deadline, and so can be overdue.
REVIEW_STATES: Final = (NEW, RESUBMITTED)

DEFAULT_REVIEW_WORKING_DAYS: Final = 5
DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 200
_SCAN_CHUNK: Final = 200
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# domain.staff.check_institution_code: 4–16 upper-case letters or digits.
_INSTITUTION_RE: Final = re.compile(r"^[A-Z0-9]{4,16}$")

# The page body after the CAS prelude. ARGV[6] n, then per item 8 values: item ('' = not in the queue),
# institution, queue state, first-submission score, due score ('' = none), id, event while present, event
# on leaving. Changes are announced on ``<base>events:<CODE>`` (not while a new generation is built).
APPLY_PAGE_LUA: Final = (
    CAS_PRELUDE
    + """
local announce = mode ~= 'build'
local n = tonumber(ARGV[6])
for i = 1, n do
  local b = 6 + (i - 1) * 8
  local doc, inst, qs, score, due = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
  local member, present, left = ARGV[b + 6], ARGV[b + 7], ARGV[b + 8]
  local key = prefix .. 'item:' .. member
  local old = redis.call('GET', key)
  local old_inst = nil
  if old then
    local o = cjson.decode(old)
    old_inst = o['institution']
    redis.call('ZREM', prefix .. 'inst:' .. old_inst, member)
    redis.call('ZREM', prefix .. 'state:' .. old_inst .. ':' .. o['queue_state'], member)
    redis.call('ZREM', prefix .. 'due:' .. old_inst, member)
  end
  if doc ~= '' then
    redis.call('SET', key, doc)
    redis.call('ZADD', prefix .. 'inst:' .. inst, score, member)
    redis.call('ZADD', prefix .. 'state:' .. inst .. ':' .. qs, score, member)
    if due ~= '' then
      redis.call('ZADD', prefix .. 'due:' .. inst, due, member)
    end
    if announce and old ~= doc then
      redis.call('PUBLISH', base .. 'events:' .. inst, present)
    end
    if announce and old_inst and old_inst ~= inst then
      redis.call('PUBLISH', base .. 'events:' .. old_inst, left)
    end
  elseif old then
    redis.call('DEL', key)
    if announce then
      redis.call('PUBLISH', base .. 'events:' .. old_inst, left)
    end
  end
end
"""
    + CAS_EPILOGUE
)


def _micros(moment: datetime) -> int:
    """Whole microseconds since the epoch: exact in a Redis score (a double) for millennia to come."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _iso(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).isoformat(timespec="milliseconds")


def _parse(moment: str) -> datetime:
    parsed = datetime.fromisoformat(moment)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _masked(name: object) -> str | None:
    if not isinstance(name, str) or not name:
        return None
    try:
        return PersonName(name).masked()
    except InvalidValue:
        return "*"


def queue_state_of(app: BirthCertificateApplication) -> str | None:
    """Where ``app`` stands in its institution's queue, or None when it is not (or no longer) there."""
    if app.institution is None or app.first_submitted_at is None:
        return None
    if app.state == SUBMITTED:
        return RESUBMITTED if app.submissions > 1 else NEW
    if app.state == RETURNED:
        return RETURNED_TO_PARENT
    if app.state == ISSUED:
        method = app.delivery_method["method"] if app.delivery_method else None
        return AWAITING_HANDOVER if method == "pickup" else AWAITING_DISPATCH
    if app.state == LOST:
        return AWAITING_REISSUE
    return None


class QueueEntry:
    """One application's queue item with the scores of its sets (computed on the store executor)."""

    __slots__ = ("due_score", "event_left", "event_present", "institution", "item", "queue_state", "score")

    def __init__(
        self,
        item: JSON,
        score: int,
        due_score: int | None,
    ) -> None:
        self.item = item
        self.institution: str = item["institution"]
        self.queue_state: str = item["queue_state"]
        self.score = score
        self.due_score = due_score
        app_id, version = item["application_id"], item["version"]
        self.event_present = orjson.dumps(
            {"application_id": app_id, "queue_state": self.queue_state, "version": version}
        )
        self.event_left = orjson.dumps({"application_id": app_id, "queue_state": None, "version": version})


def queue_entry(
    app: BirthCertificateApplication,
    calendar: WorkingCalendar,
    default_review_working_days: int = DEFAULT_REVIEW_WORKING_DAYS,
) -> QueueEntry | None:
    """The queue item of ``app`` as stored (without ``overdue``), or None when it is not in a queue."""
    queue_state = queue_state_of(app)
    if queue_state is None or app.institution is None or app.first_submitted_at is None:
        return None
    first = _parse(app.first_submitted_at)
    last = _parse(app.submitted_at or app.first_submitted_at)
    due: datetime | None = None
    basis: str | None = None
    days: int | None = None
    source: str | None = None
    source_year: int | None = None
    if queue_state in REVIEW_STATES:
        days = app.profile.review_working_days
        basis = "province"
        if days is None:
            days, basis = default_review_working_days, "default"
        deadline = calendar.deadline(last, days)
        due, source, source_year = deadline.at, deadline.source, deadline.year
    mother = app.verified.get("mother")
    mother_name = (mother or {}).get("name") or (app.record or {}).get("mother_name")
    method = app.delivery_method["method"] if app.delivery_method else None
    # Times sent back to the parent: an issuer's rejection, or a hospital's correction under review.
    returns = app.submissions if app.state == RETURNED else app.submissions - 1
    item: JSON = {
        "application_id": str(app.id),
        "institution": app.institution,
        "state": app.state,
        "queue_state": queue_state,
        "submitted_at": _iso(first),
        "last_submitted_at": _iso(last),
        "submissions": app.submissions,
        "due_at": None if due is None else _iso(due),
        "due_basis": basis,
        "due_working_days": days,
        # Which calendar counted the days (domain.policy.Deadline): official, chinesecalendar or statutory.
        "calendar_source": source,
        "calendar_year": source_year,
        "delivery_method": method,
        "province": app.province,
        "newborn_name_masked": _masked((app.details or {}).get("newborn_name")),
        "mother_name_masked": _masked(mother_name),
        "rejection_count": max(returns, 0),
        "returned_fields": list(app.rejection.get("fields", []))
        if app.state == RETURNED and app.rejection
        else None,
        "updated_at": _iso(app.modified_on),
        "version": app.version,
    }
    return QueueEntry(item, _micros(first), None if due is None else _micros(due))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse_cursor(cursor: str) -> tuple[int, str]:
    score, _, app_id = cursor.partition(":")
    try:
        return int(score), str(UUID(app_id))
    except ValueError:
        raise InvalidValue("cursor", "invalid_cursor", "分页参数无效，请从第一页重新加载") from None


class ReviewQueueView:
    """The issuers' review queue: a ``View`` for ``projections.runner.LogFollower``."""

    def __init__(
        self,
        redis: aioredis.Redis,
        applications: Applications,
        executor: Executor,
        *,
        key_prefix: str = "bc:",
        calendar: WorkingCalendar | None = None,
        clock: Callable[[], datetime] | None = None,
        default_review_working_days: int = DEFAULT_REVIEW_WORKING_DAYS,
        generation: str | None = None,
    ) -> None:
        if default_review_working_days < 0:
            raise ValueError("default_review_working_days must not be negative")
        self.redis = redis
        self.applications = applications
        self.executor = executor
        self.generations = Generations(redis, f"{key_prefix}queue:", fixed=generation)
        self.calendar = calendar or WorkingCalendar()
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.default_review_working_days = default_review_working_days
        self._apply_page = redis.register_script(APPLY_PAGE_LUA)

    # ------------------------------------------------------------------ keys

    @property
    def prefix(self) -> str:
        """The key prefix of the generation last looked up (``await self.generations.current()``)."""
        return self.generations.prefix(self.generations.cached())

    def item_key(self, app_id: UUID | str) -> str:
        """The key of one application's item."""
        return f"{self.prefix}item:{UUID(str(app_id))}"

    def institution_key(self, institution: str) -> str:
        """The institution's queue: application ids by first submission."""
        return f"{self.prefix}inst:{institution}"

    def state_key(self, institution: str, queue_state: str) -> str:
        """The institution's items in one queue state."""
        return f"{self.prefix}state:{institution}:{queue_state}"

    def due_key(self, institution: str) -> str:
        """The institution's items awaiting review, by deadline."""
        return f"{self.prefix}due:{institution}"

    def channel(self, institution: str) -> str:
        """The Pub/Sub channel of the institution's queue changes (the same in every generation)."""
        return f"{self.generations.base}events:{institution}"

    # ------------------------------------------------------------------ View

    async def position(self) -> int:
        """The last notification id applied in the live generation (0 before any, or when lost)."""
        return await self.generations.position()

    async def apply(self, page: Page, start: int, end: int | None = None) -> bool:
        """Write the items of the applications the page touched and the page's end, atomically, if the
        view still stands at ``start`` (False otherwise)."""
        if end is None:
            end = page[-1][0] if page else start
        touched = [
            (a, events[-1].originator_version, events) for a, events in application_events(page).items()
        ]
        return await self._write(touched, self.generations.cas_args(start, end))

    async def redo(self, position: int, event: DomainEvent) -> None:
        """A parked event retried: the application's item as of now, the position untouched."""
        touched: list[tuple[UUID, int | None, Sequence[DomainEvent]]] = [
            (a, None, ()) for a in application_events([(position, event)])
        ]
        await self._write(touched, self.generations.cas_args(0, 0, "redo"))

    async def _write(
        self, touched: Sequence[tuple[UUID, int | None, Sequence[DomainEvent]]], cas: list[str | int]
    ) -> bool:
        rows = []
        if touched:
            loop = asyncio.get_running_loop()
            rows = await loop.run_in_executor(self.executor, self._entries, touched)
        args: list[str | bytes | int] = [*cas, len(rows)]
        for app_id, version, entry in rows:
            if entry is None:
                # Not (or no longer) queued: the script deletes an item that was there and says so.
                left = orjson.dumps({"application_id": str(app_id), "queue_state": None, "version": version})
                args += [b"", "", "", 0, "", str(app_id), b"", left]
                continue
            args += [
                orjson.dumps(entry.item),
                entry.institution,
                entry.queue_state,
                entry.score,
                "" if entry.due_score is None else entry.due_score,
                str(app_id),
                entry.event_present,
                entry.event_left,
            ]
        return bool(await self._apply_page(keys=[self.generations.pointer_key], args=args))

    def _entries(
        self, versions: Sequence[tuple[UUID, int | None, Sequence[DomainEvent]]]
    ) -> list[tuple[UUID, int, QueueEntry | None]]:
        """On the executor: each application's entry at its version, or its latest (None: not in a queue);
        the application as stored then from the cache and the page's events (decision 0027)."""
        rows: list[tuple[UUID, int, QueueEntry | None]] = []
        for app_id, at, page_events in versions:
            app: object = self.applications.get_as_stored(app_id, at, page_events)
            if not isinstance(app, BirthCertificateApplication):
                continue
            version = app.version
            entry = queue_entry(app, self.calendar, self.default_review_working_days)
            if entry is not None and not _INSTITUTION_RE.match(entry.institution):
                entry = None  # a code the keys could not carry safely; never produced by the service
            rows.append((app_id, version, entry))
        return rows

    async def reset(self) -> None:
        """Delete every key of the generation being followed, its position last."""
        await self.generations.drop(await self.generations.current())

    # ------------------------------------------------------------------ queries

    def is_overdue(self, item: JSON, now: datetime | None = None) -> bool:
        """Past its review deadline at ``now`` (default: the view's clock), while awaiting review."""
        due = item.get("due_at")
        if item.get("queue_state") not in REVIEW_STATES or not isinstance(due, str):
            return False
        return (now or self.clock()) > datetime.fromisoformat(due)

    def _with_overdue(self, stored: JSON, now: datetime) -> JSON:
        item: JSON = {}
        for key, value in stored.items():
            item[key] = value
            if key == "due_basis":
                item["overdue"] = self.is_overdue(stored, now)
        item.setdefault("overdue", self.is_overdue(stored, now))
        return item

    async def get(self, app_id: UUID | str) -> JSON | None:
        """One application's item with ``overdue`` as of now, or None (not queued, malformed id)."""
        try:
            UUID(str(app_id))
        except ValueError:
            return None
        await self.generations.current()
        raw = await self.redis.get(self.item_key(app_id))
        if raw is None:
            return None
        return self._with_overdue(orjson.loads(raw), self.clock())

    async def counts(self, institution: str, now: datetime | None = None) -> dict[str, int]:
        """How many items per queue state, how many overdue (at ``now``), and the total."""
        institution = check_institution(institution)
        await self.generations.current()
        now_us = _micros(now or self.clock())
        async with self.redis.pipeline(transaction=True) as pipe:
            for queue_state in QUEUE_STATES:
                pipe.zcard(self.state_key(institution, queue_state))
            pipe.zcount(self.due_key(institution), "-inf", f"({now_us}")
            pipe.zcard(self.institution_key(institution))
            raw = await pipe.execute()
        counts = {queue_state: int(n) for queue_state, n in zip(QUEUE_STATES, raw, strict=False)}
        counts["overdue"] = int(raw[len(QUEUE_STATES)])
        counts["total"] = int(raw[len(QUEUE_STATES) + 1])
        return counts

    async def list(
        self,
        institution: str,
        *,
        state: str | None = None,
        overdue: bool | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> JSON:
        """The institution's queue, oldest first submission first: ``{items, counts, next_cursor}``.

        ``state`` keeps one queue state, ``overdue`` only the overdue (True) or the others (False);
        ``counts`` are of the whole queue, whatever the filters. ``next_cursor`` is None on the last page.
        """
        institution = check_institution(institution)
        if state is not None and state not in QUEUE_STATES:
            raise InvalidValue("state", "invalid_queue_state", "队列状态不正确")
        limit = max(1, min(limit, MAX_LIMIT))
        after = None if cursor is None else _parse_cursor(cursor)
        await self.generations.current()
        now = self.clock()
        if overdue is True:
            found = await self._overdue_after(institution, state, after, limit + 1, now)
        else:
            base = self.institution_key(institution) if state is None else self.state_key(institution, state)
            found = await self._scan(base, after, limit + 1, now, overdue)
        more = len(found) > limit
        found = found[:limit]
        next_cursor = f"{found[-1][1]}:{found[-1][0]}" if more and found else None
        return {
            "institution": institution,
            "as_of": _iso(now),
            "items": [item for _, _, item in found],
            "counts": await self.counts(institution, now),
            "next_cursor": next_cursor,
        }

    async def _scan(
        self, key: str, after: tuple[int, str] | None, wanted: int, now: datetime, overdue: bool | None
    ) -> Found:
        """Items of ``key`` after the cursor in order, keeping those that match ``overdue``."""
        chunk = wanted if overdue is None else max(wanted, _SCAN_CHUNK)
        found: Found = []
        while len(found) < wanted:
            entries = await self._range_after(key, after, chunk)
            if not entries:
                break
            values = await self.redis.mget([self.item_key(m) for m, _ in entries])
            for (member, score), raw in zip(entries, values, strict=True):
                if raw is None:
                    continue  # left between the two reads
                item = self._with_overdue(orjson.loads(raw), now)
                if overdue is None or item["overdue"] is overdue:
                    found.append((member, score, item))
            after = (entries[-1][1], entries[-1][0])
            if len(entries) < chunk:
                break
        return found[:wanted]

    async def _overdue_after(
        self, institution: str, state: str | None, after: tuple[int, str] | None, wanted: int, now: datetime
    ) -> Found:
        """The overdue items (from the deadline set, which holds only those awaiting review), in queue order."""
        if state is not None and state not in REVIEW_STATES:
            return []
        raw = await self.redis.zrangebyscore(self.due_key(institution), "-inf", f"({_micros(now)}")
        members = [_text(m) for m in raw]
        if not members:
            return []
        async with self.redis.pipeline(transaction=True) as pipe:
            for member in members:
                pipe.zscore(self.institution_key(institution), member)
            pipe.mget([self.item_key(m) for m in members])
            results = await pipe.execute()
        scores, values = results[:-1], results[-1]
        found: Found = []
        for member, score, value in zip(members, scores, values, strict=True):
            if score is None or value is None:
                continue
            item = self._with_overdue(orjson.loads(value), now)
            if (state is not None and item["queue_state"] != state) or not item["overdue"]:
                continue
            found.append((member, int(score), item))
        found.sort(key=lambda row: (row[1], row[0]))
        if after is not None:
            found = [row for row in found if (row[1], row[0]) > after]
        return found[:wanted]

    async def _range_after(self, key: str, after: tuple[int, str] | None, count: int) -> Entries:
        """Up to ``count`` (id, score) of the sorted set after ``after`` (score, id), ascending."""
        if after is None:
            raw = await self.redis.zrange(key, 0, count - 1, withscores=True)
            return [(_text(m), int(s)) for m, s in raw]
        after_score, after_id = after
        # Same-score entries come in id order: skip those up to the cursor's.
        ties = int(await self.redis.zcount(key, after_score, after_score))
        raw = await self.redis.zrangebyscore(
            key, after_score, "+inf", start=0, num=count + ties, withscores=True
        )
        entries = [
            (m, s)
            for m, s in ((_text(m), int(s)) for m, s in raw)
            if s > after_score or (s == after_score and m > after_id)
        ]
        return entries[:count]

    async def count(self) -> int:
        """How many applications are queued, over every institution."""
        n = 0
        await self.generations.current()
        async for _ in self.redis.scan_iter(match=f"{self.prefix}item:*", count=1000):
            n += 1
        return n


def check_institution(code: str) -> str:
    """An institution code as the service issues them (4–16 upper-case letters or digits), else InvalidValue."""
    value = code.strip().upper() if isinstance(code, str) else ""
    if not _INSTITUTION_RE.match(value):
        raise InvalidValue("institution", "invalid_institution_code", "机构代码为4到16位大写字母或数字")
    return value
