"""One leader among the service's processes, for the followers that must run once (decision 0024).

The lease is one row of ``leader_lease`` in the event store's own database (SQLite or PostgreSQL): who holds
it, its **term** and until when, on the database's clock. It is taken and renewed by a single conditional
UPDATE: the holder renews its own unexpired term; anyone takes an expired lease, and taking it adds one to
the term. So every term has had exactly one holder, and terms only grow: the term is the fencing token.

The leader's followers write under their term: each SQL position move checks, in the same transaction, that
the lease's term is still theirs (``Database.check_fence``); each Redis script of a process checks the
highest term Redis has seen (``FENCE_LUA``, published by every new leader) and refuses a lower one. A
refused write raises ``Fenced``: the follower stops and the process steps down. Before a side effect
outside (a WeChat message, an EMS booking) the process checks its lease locally (``Fence.term``).

A process holds its term locally until ``ttl`` after it *sent* the renewal that the database accepted, so it
stops acting before the database lets another take over (both clocks measure the same seconds). A killed
leader's lease runs out after ``ttl`` (6 s by default), and the next renewal round of another process takes
it: a takeover within ``ttl`` plus ``ttl / 3``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import redis.asyncio as aioredis

from projections.runner import Fence, Fenced, fenced_term
from projections.sql import LEASE_NAME, Database

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS: Final = 6.0
# How long a follower that is told to stop may finish what it has in hand (a send in flight records its
# outcome) before it is cancelled.
STOP_GRACE_SECONDS: Final = 5.0

# Prepended to a Redis script whose last key is the fence key and last argument the writer's term ('' for an
# unfenced writer: the CLI, tests). A term below the highest seen is refused (-1, nothing written); a higher
# one becomes the highest (so a fence lost with Redis's data is set again by the first write of the leader).
FENCE_LUA: Final = """
local fence_term = ARGV[#ARGV]
if fence_term ~= '' then
  local highest = tonumber(redis.call('GET', KEYS[#KEYS]) or '0')
  if highest > tonumber(fence_term) then
    return -1
  end
  if highest < tonumber(fence_term) then
    redis.call('SET', KEYS[#KEYS], fence_term)
  end
end
"""
# What a script guarded by FENCE_LUA answers when the writer's term is not the highest.
REFUSED: Final = -1
# KEYS[1] the fence key, ARGV[1] a term: the highest term seen becomes at least ARGV[1]; returns the highest.
PUBLISH_LUA: Final = """
local highest = tonumber(redis.call('GET', KEYS[1]) or '0')
if highest < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
  return tonumber(ARGV[1])
end
return highest
"""


def fence_key(key_prefix: str = "bc:") -> str:
    """The Redis key holding the highest leader term seen."""
    return f"{key_prefix}leader:term"


def fenced_args(fence: Fence | None, key_prefix: str = "bc:") -> tuple[str, str]:
    """The key and the argument a script guarded by ``FENCE_LUA`` takes last (``Fenced`` when the fence is
    not held now)."""
    term = fenced_term(fence)
    return fence_key(key_prefix), "" if term is None else str(term)


def refused(answer: Any) -> bool:
    """Whether a script guarded by ``FENCE_LUA`` refused the writer's term."""
    return isinstance(answer, int) and answer == REFUSED


def holder_id() -> str:
    """This process among all: host, pid and a random part (a pid is reused after a restart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Lease:
    """The lease row as read: ``since`` and ``expires_at`` in epoch seconds on the database's clock."""

    holder: str
    term: int
    since: float
    expires_at: float
    now: float

    @property
    def live(self) -> bool:
        """Held (not expired) at the time it was read."""
        return bool(self.holder) and self.expires_at > self.now


class LeaderLease:
    """The ``leader_lease`` row (blocking: one connection of its own, used from one thread)."""

    def __init__(self, db: Database, holder: str, ttl: float = DEFAULT_TTL_SECONDS, name: str = LEASE_NAME):
        if ttl <= 0:
            raise ValueError("the lease's ttl must be positive")
        self.db, self.holder, self.ttl, self.name = db, holder, ttl, name
        # The epoch on the database's clock (on SQLite, the host's: SQLite is one host's anyway).
        self._now = (
            "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"
            if db.dialect == "postgres"
            else "((julianday('now') - 2440587.5) * 86400.0)"
        )
        db.execute(
            "INSERT INTO leader_lease (name, holder, term, expires_at, since) VALUES (?, '', 0, 0, 0) "
            "ON CONFLICT (name) DO NOTHING",
            (name,),
        )

    def acquire(self, term: int | None = None) -> Lease | None:
        """Renew ``term`` if this holder still holds it unexpired, else take the lease if it has expired (the
        term + 1); the lease now held, or None (someone else holds it, or ``term`` was lost)."""
        now, held = self._now, -1 if term is None else term
        mine = f"(holder = ? AND term = ? AND expires_at > {now})"
        # All rows fetched: on SQLite an UPDATE … RETURNING holds the write lock until its cursor is exhausted.
        rows = self.db.fetchall(
            f"UPDATE leader_lease SET term = CASE WHEN {mine} THEN term ELSE term + 1 END, "
            f"since = CASE WHEN {mine} THEN since ELSE {now} END, holder = ?, expires_at = {now} + ? "
            f"WHERE name = ? AND ({mine} OR expires_at <= {now}) "
            f"RETURNING holder, term, since, expires_at, {now}",
            (
                *(self.holder, held),
                *(self.holder, held),
                self.holder,
                float(self.ttl),
                self.name,
                *(self.holder, held),
            ),
        )
        return _lease(rows[0]) if rows else None

    def release(self, term: int) -> None:
        """Give the lease up at once (a clean stop), if ``term`` is still this holder's."""
        self.db.execute(
            "UPDATE leader_lease SET expires_at = 0 WHERE name = ? AND holder = ? AND term = ?",
            (self.name, self.holder, term),
        )

    def current(self) -> Lease | None:
        """The lease as it stands (whoever holds it, live or expired)."""
        row = self.db.fetchone(
            f"SELECT holder, term, since, expires_at, {self._now} FROM leader_lease WHERE name = ?",
            (self.name,),
        )
        return None if row is None else _lease(row)

    @classmethod
    def open(cls, env: dict[str, str], holder: str, ttl: float = DEFAULT_TTL_SECONDS) -> LeaderLease:
        """On a connection of its own, which waits at most a third of ``ttl`` for a lock or an answer."""
        db = Database.open(env)
        wait_ms = max(100, int(ttl * 1000 / 3))
        if db.dialect == "postgres":
            db.execute(f"SET lock_timeout = {wait_ms}")
            db.execute(f"SET statement_timeout = {wait_ms}")
        else:
            db.execute(f"PRAGMA busy_timeout = {wait_ms}")
        return cls(db, holder, ttl)


def _lease(row: tuple[Any, ...]) -> Lease:
    return Lease(str(row[0]), int(row[1]), float(row[2]), float(row[3]), float(row[4]))


@dataclass
class _Duty:
    """Work that runs only while this process leads: ``run`` until ``stop`` (or cancelled)."""

    name: str
    run: Callable[[], Awaitable[None]]
    stop: Callable[[], None] | None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Leadership:
    """Contends for the lease, renews it every ``ttl / 3``, and runs the duties while this process leads.

    ``term`` (a ``Fence``) is the term held now, or None: not elected, lost, or the renewal late. A duty
    whose write is refused (``Fenced``) makes the process step down at once.
    """

    def __init__(
        self,
        lease: LeaderLease,
        executor: Executor,
        *,
        redis: aioredis.Redis | None = None,
        key_prefix: str = "bc:",
        grace: float = STOP_GRACE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lease = lease
        self.executor = executor
        self.redis = redis
        self.fence_key = fence_key(key_prefix)
        self.ttl = lease.ttl
        self.grace = grace
        self._clock = clock
        self._duties: list[_Duty] = []
        self._term: int | None = None  # the term the duties run under
        self._held: int | None = None  # the term last renewed (kept through a late renewal, to renew it)
        self._deadline = 0.0
        self._seen: Lease | None = None
        self._nudge = asyncio.Event()  # set by step_down() and close(): look now
        self._refused = False
        self._closing = False
        self._loop_task: asyncio.Task[None] | None = None
        self._publish = redis.register_script(PUBLISH_LUA) if redis is not None else None

    @property
    def holder(self) -> str:
        """This process's holder id."""
        return self.lease.holder

    @property
    def term(self) -> int | None:
        """The term this process holds now (None unless it leads and its renewal is on time)."""
        if self._term is None or self._clock() >= self._deadline:
            return None
        return self._term

    @property
    def leading(self) -> bool:
        """Whether this process leads now."""
        return self.term is not None

    def check(self) -> int:
        """The term held now; ``Fenced`` when this process does not lead (before a side effect outside)."""
        term = fenced_term(self)
        assert term is not None
        return term

    def lead(
        self, name: str, run: Callable[[], Awaitable[None]], stop: Callable[[], None] | None = None
    ) -> None:
        """Declare work that must run once: ``run()`` on the leader only, ``stop()`` when it stops leading."""
        duty = _Duty(name, run, stop)
        self._duties.append(duty)
        if self._term is not None:
            self._start(duty)

    def info(self) -> dict[str, Any]:
        """Who leads, as ``/readyz`` says it: ``{holder, term, this_process, since}`` (None before any)."""
        seen = self._seen
        live = seen is not None and seen.live
        return {
            "holder": seen.holder if seen is not None and live else None,
            "term": seen.term if seen is not None else None,
            "this_process": self.leading,
            "since": datetime.fromtimestamp(seen.since, UTC).isoformat(timespec="seconds")
            if seen is not None and live
            else None,
            "holder_id": self.holder,
        }

    async def start(self) -> None:
        """Contend once now (a lone process leads from its start), then keep contending in the background."""
        await self._contend()
        self._loop_task = asyncio.create_task(self._keep(), name="leadership")

    async def close(self) -> None:
        """Stop the duties (each finishes what it has in hand), then give the lease up for the next leader."""
        self._closing = True
        self._nudge.set()
        if self._loop_task is not None:
            # The loop ends by itself at its next look (a renewal in flight: within ttl / 3); cancelled if not.
            _, pending = await asyncio.wait([self._loop_task], timeout=self.ttl)
            for task in pending:
                task.cancel()
            self._loop_task = None
        await self._stop_duties(keep_term=True)
        held, self._term, self._held = self._held, None, None
        if held is not None:
            try:
                await self._in_executor(self.lease.release, held)
                log.info("leadership: term %d given up", held)
            except Exception as error:
                log.warning("leadership: could not give term %d up (%s)", held, type(error).__name__)

    def step_down(self) -> None:
        """A write was refused: stop leading now (the next round contends again)."""
        self._refused = True
        self._nudge.set()

    # ------------------------------------------------------------------ internals

    async def _keep(self) -> None:
        every = self.ttl / 3
        # asyncio.wait on a task, not wait_for: Python 3.11's wait_for can swallow a cancellation (close() would
        # then wait on this loop); ``_closing`` ends it in any case.
        woken = asyncio.ensure_future(self._nudge.wait())
        try:
            while not self._closing:
                wait = every
                if self._term is not None:
                    wait = max(0.0, min(every, self._deadline - self._clock()))
                await asyncio.wait([woken], timeout=wait)
                if self._closing:
                    return
                if woken.done():
                    self._nudge.clear()
                    woken = asyncio.ensure_future(self._nudge.wait())
                if self._refused:
                    self._refused = False
                    if self._term is not None:
                        log.warning(
                            "leadership: a write under term %d was refused; stepping down", self._term
                        )
                        self._held = None
                        await self._stop_duties(keep_term=False)
                try:
                    await self._contend()
                except asyncio.CancelledError:
                    raise
                except Exception:  # never let the loop die: the next round tries again
                    log.exception("leadership: contending failed")
        finally:
            woken.cancel()

    async def _contend(self) -> None:
        sent = self._clock()
        try:
            remaining = self.ttl if self._term is None else max(0.05, self._deadline - sent)
            lease = await asyncio.wait_for(self._in_executor(self.lease.acquire, self._held), remaining)
        except Exception as error:  # TimeoutError included: the database did not answer in time
            log.warning("leadership: the lease could not be renewed or taken (%s)", type(error).__name__)
            if self._term is not None and self._clock() >= self._deadline:
                log.error(
                    "leadership: term %d not renewed in time; stopping the leader's followers", self._term
                )
                await self._stop_duties(keep_term=False)
            return
        if lease is None:
            if self._term is not None:
                log.error("leadership: term %d lost; stopping the leader's followers", self._term)
                await self._stop_duties(keep_term=False)
            self._held = None
            with contextlib.suppress(Exception):
                self._seen = await self._in_executor(self.lease.current)
            return
        self._seen = lease
        self._deadline = sent + self.ttl
        if lease.term == self._term:
            return  # renewed
        if self._term is not None:  # another term of ours (the old one ran out unnoticed): start afresh
            await self._stop_duties(keep_term=False)
        self._held = lease.term
        await self._publish_term(lease.term)
        self._term = lease.term
        log.warning("leadership: this process (%s) leads, term %d", self.holder, lease.term)
        for duty in self._duties:
            self._start(duty)

    async def _publish_term(self, term: int) -> None:
        """Tell Redis the new term before any duty writes, so a paused old leader's writes there are refused."""
        if self._publish is None:
            return
        try:
            await self._publish(keys=[self.fence_key], args=[term])
        except Exception as error:  # the first fenced write publishes it too (FENCE_LUA)
            log.warning("leadership: term %d not published to Redis (%s)", term, type(error).__name__)

    def _start(self, duty: _Duty) -> None:
        if duty.task is None or duty.task.done():
            duty.task = asyncio.create_task(self._perform(duty), name=f"leader-{duty.name}")

    async def _perform(self, duty: _Duty) -> None:
        try:
            await duty.run()
        except Fenced as refusal:
            log.warning("leadership: %s refused (%s)", duty.name, refusal)
            self.step_down()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("leadership: %s failed", duty.name)

    async def _stop_duties(self, *, keep_term: bool) -> None:
        """Tell every duty to stop, give them ``grace`` to finish what is in hand, cancel the rest (a duty
        without a ``stop`` at once)."""
        if not keep_term:
            self._term = None
        running = [duty for duty in self._duties if duty.task is not None and not duty.task.done()]
        for duty in running:
            if duty.stop is not None:
                duty.stop()
            elif duty.task is not None:
                duty.task.cancel()  # nothing in hand to finish (a loop that sleeps between rounds)
        tasks = [duty.task for duty in running if duty.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.grace)
            for task in pending:
                task.cancel()
            if pending:  # bounded: a task that would not end is left behind, said, never waited on for ever
                _, stuck = await asyncio.wait(pending, timeout=self.grace)
                for task in stuck:
                    log.error("leadership: %s did not stop", task.get_name())
        for duty in self._duties:
            duty.task = None
        self._term = None

    async def _in_executor(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)


__all__ = [
    "DEFAULT_TTL_SECONDS",
    "FENCE_LUA",
    "Fenced",
    "LeaderLease",
    "Leadership",
    "Lease",
    "fence_key",
    "fenced_args",
    "holder_id",
    "refused",
]
