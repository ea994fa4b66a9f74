"""Items per institution in Redis, followed from the log: what the issuers' review queue and the hospitals'
worklist share.

A view of this kind holds one item (a JSON document) per member, each in its institution's sorted sets:

- ``<base><g>:item:<member>``: the item (orjson)
- ``<base><g>:inst:<CODE>``: the institution's members by the item's order score (µs)
- ``<base><g>:state:<CODE>:<state>``: the same, one set per state (filters, counts); the state is the item's
  ``state_field`` (``queue_state`` in the queue, ``kind`` in the worklist)
- ``<base><g>:due:<CODE>``: the members that have a deadline, scored by it (µs; overdue counts)
- ``<base><g>:<second>:<CODE>``: the members that have a second deadline (the queue's ``bundle_due``: 出生一件事's
  time limit, decision 0049), scored by it, where the view has one
- ``<base><g>:position``: the last notification id applied

``<base>`` is ``bc:queue:``, ``bc:worklist:`` …; ``<g>`` the generation (``projections.redis_view``). A page is
applied by one Lua script that applies only on top of the position the page was read from (compare-and-set,
a missing position being 0) in the generation it was read in, moves every touched item out of its old sets
(read from the stored item) and into its new ones, and publishes a small event per item whose bytes changed
on ``<base>events:<CODE>``, so a page applied twice changes and announces nothing; a generation being rebuilt
announces nothing. The script derives the set keys from the stored items: it needs a single Redis (as the
service runs), not a cluster.

An item is computed from its aggregate AT THE VERSION of its last event in the page, so a rebuild writes
byte-identical items whatever the paging. A deadline is stored (``due_at``); ``overdue`` depends on the time of
reading and is computed when reading, never stored. Subclasses say which aggregates a page touched
(``touched``) and compute their rows on the executor (``rows``).
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

from domain.errors import InvalidValue
from domain.policy import SHANGHAI
from projections.redis_view import CAS_EPILOGUE, CAS_PRELUDE, Generations
from projections.runner import DomainEvent, Page

JSON = dict[str, Any]
Entries = list[tuple[str, int]]
Found = list[tuple[str, int, JSON]]
# (aggregate id, its version at the page's end or None for its latest, its events in the page)
Touched = list[tuple[UUID, int | None, Sequence[DomainEvent]]]

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 200
_SCAN_CHUNK: Final = 200
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# domain.staff.check_institution_code: 4–16 upper-case letters or digits.
INSTITUTION_RE: Final = re.compile(r"^[A-Z0-9]{4,16}$")


def apply_items_lua(state_field: str, second: str = "due2") -> str:
    """The page script of a view whose items name their state in ``state_field``.

    After the CAS prelude: ARGV[6] n, then per item 9 values: item ('' = not in the view), institution, state,
    order score, due score ('' = none), member, event while present, event on leaving, the second deadline's
    score ('' = none; its set is named ``second``). Changes are announced on ``<base>events:<CODE>`` (not while
    a new generation is built)."""
    if not re.fullmatch(r"[a-z_]+", state_field) or not re.fullmatch(r"[a-z_0-9]+", second):
        raise ValueError(f"not a field name: {state_field!r}, {second!r}")
    return (
        CAS_PRELUDE
        + """
local announce = mode ~= 'build'
local n = tonumber(ARGV[6])
for i = 1, n do
  local b = 6 + (i - 1) * 9
  local doc, inst, qs, score, due = ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
  local member, present, left, due2 = ARGV[b + 6], ARGV[b + 7], ARGV[b + 8], ARGV[b + 9]
  local key = prefix .. 'item:' .. member
  local old = redis.call('GET', key)
  local old_inst = nil
  if old then
    local o = cjson.decode(old)
    old_inst = o['institution']
    redis.call('ZREM', prefix .. 'inst:' .. old_inst, member)
    redis.call('ZREM', prefix .. 'state:' .. old_inst .. ':' .. o['STATE_FIELD'], member)
    redis.call('ZREM', prefix .. 'due:' .. old_inst, member)
    redis.call('ZREM', prefix .. 'SECOND:' .. old_inst, member)
  end
  if doc ~= '' then
    redis.call('SET', key, doc)
    redis.call('ZADD', prefix .. 'inst:' .. inst, score, member)
    redis.call('ZADD', prefix .. 'state:' .. inst .. ':' .. qs, score, member)
    if due ~= '' then
      redis.call('ZADD', prefix .. 'due:' .. inst, due, member)
    end
    if due2 ~= '' then
      redis.call('ZADD', prefix .. 'SECOND:' .. inst, due2, member)
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
""".replace("STATE_FIELD", state_field).replace("SECOND", second)
        + CAS_EPILOGUE
    )


def micros(moment: datetime) -> int:
    """Whole microseconds since the epoch: exact in a Redis score (a double) for millennia to come."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def iso(moment: datetime) -> str:
    """A time as the items show it: Beijing time, milliseconds."""
    return moment.astimezone(SHANGHAI).isoformat(timespec="milliseconds")


def parse_time(moment: str) -> datetime:
    """A stored ISO time (UTC when it names no offset)."""
    parsed = datetime.fromisoformat(moment)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def check_institution(code: str) -> str:
    """An institution code as the service issues them (4–16 upper-case letters or digits), else InvalidValue."""
    value = code.strip().upper() if isinstance(code, str) else ""
    if not INSTITUTION_RE.match(value):
        raise InvalidValue("institution", "invalid_institution_code", "机构代码为4到16位大写字母或数字")
    return value


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Entry:
    """One item with the scores of its sets and what is announced when it changes or leaves."""

    __slots__ = (
        "due_score",
        "event_left",
        "event_present",
        "institution",
        "item",
        "score",
        "second_score",
        "state",
    )

    def __init__(
        self,
        item: JSON,
        *,
        state: str,
        score: int,
        due_score: int | None,
        present: JSON,
        left: JSON,
        second_score: int | None = None,
    ) -> None:
        self.item = item
        self.institution: str = item["institution"]
        self.state = state
        self.score = score
        self.due_score = due_score
        self.second_score = second_score
        self.event_present = orjson.dumps(present)
        self.event_left = orjson.dumps(left)


# One member's row of a page: its entry (None: not, or no longer, in the view) and what its leaving announces.
Row = tuple[str, Entry | None, bytes]


class InstitutionItems:
    """A ``View`` (``projections.runner``) of items per institution; see the module's docstring."""

    #: the item field that names its state (a Lua table key: letters and underscores)
    state_field: str = "state"
    #: every state, in the order counts are given
    states: tuple[str, ...] = ()
    #: the states whose items may have a deadline, and so be overdue
    due_states: tuple[str, ...] = ()
    #: ``overdue`` is placed in a read item right after this field (the stored order otherwise)
    overdue_after: str = "due_at"
    #: the code and message of a state filter the view does not know
    state_error: tuple[str, str] = ("invalid_state_filter", "筛选状态不正确")
    #: a second deadline items may carry, in any state: (its set's name, the item's field, the flag a read item
    #: gets); the queue's is 出生一件事's time limit (``bundle_due``, ``bundle_due_at``, ``bundle_overdue``)
    second_due: tuple[str, str, str] | None = None

    def __init__(
        self,
        redis: aioredis.Redis,
        executor: Executor,
        *,
        base: str,
        clock: Callable[[], datetime] | None = None,
        generation: str | None = None,
    ) -> None:
        self.redis = redis
        self.executor = executor
        self.generations = Generations(redis, base, fixed=generation)
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        second = self.second_due[0] if self.second_due else "due2"
        self._apply_page = redis.register_script(apply_items_lua(self.state_field, second))

    # ------------------------------------------------------------------ what a subclass says

    def touched(self, page: Page) -> Touched:
        """The aggregates of the page whose items may have changed, each at its version at the page's end."""
        raise NotImplementedError

    def rows(self, touched: Touched) -> list[Row]:
        """On the executor: every item of the touched aggregates, as it stands at their versions."""
        raise NotImplementedError

    def member(self, value: str) -> str:
        """A member as the view names them (ValueError otherwise): used for keys and cursors."""
        return str(UUID(value))

    # ------------------------------------------------------------------ keys

    @property
    def prefix(self) -> str:
        """The key prefix of the generation last looked up (``await self.generations.current()``)."""
        return self.generations.prefix(self.generations.cached())

    def item_key(self, member: UUID | str) -> str:
        """The key of one item."""
        return f"{self.prefix}item:{self.member(str(member))}"

    def institution_key(self, institution: str) -> str:
        """The institution's items, in order."""
        return f"{self.prefix}inst:{institution}"

    def state_key(self, institution: str, state: str) -> str:
        """The institution's items in one state."""
        return f"{self.prefix}state:{institution}:{state}"

    def due_key(self, institution: str) -> str:
        """The institution's items that have a deadline, by deadline."""
        return f"{self.prefix}due:{institution}"

    def second_key(self, institution: str) -> str:
        """The institution's members with a second deadline, scored by it (µs)."""
        return f"{self.prefix}{self.second_due[0] if self.second_due else 'due2'}:{institution}"

    def channel(self, institution: str) -> str:
        """The Pub/Sub channel of the institution's changes (the same in every generation)."""
        return f"{self.generations.base}events:{institution}"

    # ------------------------------------------------------------------ View

    async def position(self) -> int:
        """The last notification id applied in the live generation (0 before any, or when lost)."""
        return await self.generations.position()

    async def apply(self, page: Page, start: int, end: int | None = None) -> bool:
        """Write the items of the aggregates the page touched and the page's end, atomically, if the view
        still stands at ``start`` (False otherwise)."""
        if end is None:
            end = page[-1][0] if page else start
        return await self._write(self.touched(page), self.generations.cas_args(start, end))

    async def redo(self, position: int, event: DomainEvent) -> None:
        """A parked event retried: the items of its aggregate as of now, the position untouched."""
        touched: Touched = [(a, None, ()) for a, _, _ in self.touched([(position, event)])]
        await self._write(touched, self.generations.cas_args(0, 0, "redo"))

    async def _write(self, touched: Touched, cas: list[str | int]) -> bool:
        rows: list[Row] = []
        if touched:
            loop = asyncio.get_running_loop()
            rows = await loop.run_in_executor(self.executor, self.rows, touched)
        args: list[str | bytes | int] = [*cas, len(rows)]
        for member, entry, left in rows:
            if entry is None or not INSTITUTION_RE.match(entry.institution):
                # Not (or no longer) in the view — or under a code the keys could not carry safely, which the
                # service never produces: the script deletes an item that was there and says so.
                args += [b"", "", "", 0, "", member, b"", left, ""]
                continue
            args += [
                orjson.dumps(entry.item),
                entry.institution,
                entry.state,
                entry.score,
                "" if entry.due_score is None else entry.due_score,
                member,
                entry.event_present,
                entry.event_left,
                "" if entry.second_score is None else entry.second_score,
            ]
        return bool(await self._apply_page(keys=[self.generations.pointer_key], args=args))

    async def reset(self) -> None:
        """Delete every key of the generation being followed, its position last."""
        await self.generations.drop(await self.generations.current())

    # ------------------------------------------------------------------ queries

    def is_overdue(self, item: JSON, now: datetime | None = None) -> bool:
        """Past its deadline at ``now`` (default: the view's clock), in a state that has one."""
        due = item.get("due_at")
        if item.get(self.state_field) not in self.due_states or not isinstance(due, str):
            return False
        return (now or self.clock()) > datetime.fromisoformat(due)

    def is_second_overdue(self, item: JSON, now: datetime) -> bool:
        """Past its second deadline at ``now`` (the queue: 出生一件事's time limit with a department still open)."""
        due = item.get(self.second_due[1]) if self.second_due else None
        return isinstance(due, str) and now > datetime.fromisoformat(due)

    def _with_overdue(self, stored: JSON, now: datetime) -> JSON:
        item: JSON = {}
        for key, value in stored.items():
            item[key] = value
            if key == self.overdue_after:
                item["overdue"] = self.is_overdue(stored, now)
            if self.second_due and key == self.second_due[1]:
                item[self.second_due[2]] = self.is_second_overdue(stored, now)
        item.setdefault("overdue", self.is_overdue(stored, now))
        return item

    async def get(self, member: UUID | str) -> JSON | None:
        """One item with ``overdue`` as of now, or None (not in the view, malformed member)."""
        try:
            self.member(str(member))
        except ValueError:
            return None
        await self.generations.current()
        raw = await self.redis.get(self.item_key(member))
        if raw is None:
            return None
        return self._with_overdue(orjson.loads(raw), self.clock())

    async def counts(self, institution: str, now: datetime | None = None) -> dict[str, int]:
        """How many items per state, how many overdue (at ``now``), and the total."""
        institution = check_institution(institution)
        await self.generations.current()
        now_us = micros(now or self.clock())
        async with self.redis.pipeline(transaction=True) as pipe:
            for state in self.states:
                pipe.zcard(self.state_key(institution, state))
            pipe.zcount(self.due_key(institution), "-inf", f"({now_us}")
            pipe.zcard(self.institution_key(institution))
            if self.second_due:
                pipe.zcount(self.second_key(institution), "-inf", f"({now_us}")
            raw = await pipe.execute()
        counts = {state: int(n) for state, n in zip(self.states, raw, strict=False)}
        counts["overdue"] = int(raw[len(self.states)])
        counts["total"] = int(raw[len(self.states) + 1])
        if self.second_due:
            counts[self.second_due[2]] = int(raw[len(self.states) + 2])
        return counts

    async def list(
        self,
        institution: str,
        *,
        state: str | None = None,
        overdue: bool | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_LIMIT,
        second_overdue: bool | None = None,
    ) -> JSON:
        """The institution's items in order: ``{institution, as_of, items, counts, next_cursor}``.

        ``state`` keeps one state, ``overdue`` only the overdue (True) or the others (False), ``second_overdue``
        likewise past the second deadline; ``counts`` are of the whole view of the institution, whatever the
        filters. ``next_cursor`` is None on the last page.
        """
        institution = check_institution(institution)
        if state is not None and state not in self.states:
            raise InvalidValue("state", *self.state_error)
        limit = max(1, min(limit, MAX_LIMIT))
        after = None if cursor is None else self._parse_cursor(cursor)
        await self.generations.current()
        now = self.clock()

        def wanted(item: JSON) -> bool:
            return (overdue is None or item["overdue"] is overdue) and (
                second_overdue is None or bool(self.second_due and item[self.second_due[2]]) is second_overdue
            )

        if overdue is True and (state is None or state in self.due_states):
            found = await self._late_after(
                self.due_key(institution), institution, state, after, limit + 1, now, wanted
            )
        elif overdue is True:
            found = []
        elif second_overdue is True and self.second_due:
            key = self.second_key(institution)
            found = await self._late_after(key, institution, state, after, limit + 1, now, wanted)
        elif second_overdue is True:
            found = []
        else:
            base = self.institution_key(institution) if state is None else self.state_key(institution, state)
            filtered = overdue is not None or second_overdue is not None
            found = await self._scan(base, after, limit + 1, now, wanted, filtered=filtered)
        more = len(found) > limit
        found = found[:limit]
        next_cursor = f"{found[-1][1]}:{found[-1][0]}" if more and found else None
        return {
            "institution": institution,
            "as_of": iso(now),
            "items": [item for _, _, item in found],
            "counts": await self.counts(institution, now),
            "next_cursor": next_cursor,
        }

    def _parse_cursor(self, cursor: str) -> tuple[int, str]:
        score, _, member = cursor.partition(":")
        try:
            return int(score), self.member(member)
        except ValueError:
            raise InvalidValue("cursor", "invalid_cursor", "分页参数无效，请从第一页重新加载") from None

    async def _scan(
        self,
        key: str,
        after: tuple[int, str] | None,
        wanted: int,
        now: datetime,
        keep: Callable[[JSON], bool],
        *,
        filtered: bool,
    ) -> Found:
        """Items of ``key`` after the cursor in order, keeping those ``keep`` keeps."""
        chunk = max(wanted, _SCAN_CHUNK) if filtered else wanted
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
                if keep(item):
                    found.append((member, score, item))
            after = (entries[-1][1], entries[-1][0])
            if len(entries) < chunk:
                break
        return found[:wanted]

    async def _late_after(
        self,
        key: str,
        institution: str,
        state: str | None,
        after: tuple[int, str] | None,
        wanted: int,
        now: datetime,
        keep: Callable[[JSON], bool],
    ) -> Found:
        """The items past a deadline (from that deadline's set ``key``, which holds only those that have one) that
        ``keep`` keeps, in order."""
        raw = await self.redis.zrangebyscore(key, "-inf", f"({micros(now)}")
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
            if (state is not None and item[self.state_field] != state) or not keep(item):
                continue
            found.append((member, int(score), item))
        found.sort(key=lambda row: (row[1], row[0]))
        if after is not None:
            found = [row for row in found if (row[1], row[0]) > after]
        return found[:wanted]

    async def _range_after(self, key: str, after: tuple[int, str] | None, count: int) -> Entries:
        """Up to ``count`` (member, score) of the sorted set after ``after`` (score, member), ascending."""
        if after is None:
            raw = await self.redis.zrange(key, 0, count - 1, withscores=True)
            return [(_text(m), int(s)) for m, s in raw]
        after_score, after_member = after
        # Same-score entries come in member order: skip those up to the cursor's.
        ties = int(await self.redis.zcount(key, after_score, after_score))
        raw = await self.redis.zrangebyscore(
            key, after_score, "+inf", start=0, num=count + ties, withscores=True
        )
        entries = [
            (m, s)
            for m, s in ((_text(m), int(s)) for m, s in raw)
            if s > after_score or (s == after_score and m > after_member)
        ]
        return entries[:count]

    async def count(self) -> int:
        """How many items there are, over every institution."""
        n = 0
        await self.generations.current()
        async for _ in self.redis.scan_iter(match=f"{self.prefix}item:*", count=1000):
            n += 1
        return n
