"""Following the event log into a view: one ``LogFollower`` per view and process.

The library's ``ProjectionRunner`` needs the recorder's ``subscribe()``, which SQLite lacks, so
the follower tails ``recorder.select_notifications`` itself: it reads the view's recorded position,
reads the page after it, and hands both to the view, which applies the page and records the page's
end atomically, and only if its stored position is still the one the page was read from
(compare-and-set). A view that was flushed, reset or moved by another follower in between refuses
the page; the follower reads the position again and goes on from there — from 0 when the position
is missing, never from where it believed it was. So no page is ever applied on top of a state it
was not read from, and any number of followers converge on the same state. Notification ids are
not dense on PostgreSQL, so the follower reads "after the last applied", never "position + 1".

A page that fails is split in halves until the one event that fails is found; that event is retried
with backoff and, after ``park_after`` attempts while the view itself answers (so that an outage of
Redis or the database never parks healthy events), parked: recorded in the ``ParkingLot`` (SQL beside
the events), skipped, and visible in ``/readyz`` and ``/metrics``. The rest of the log goes on. An
operator asks for a retry with ``birthcert projections retry``; the follower then hands the event to
the view's ``redo`` (out of order, the position untouched). A view whose order matters (the audit log:
``ordered = True``) never parks: it stops where it is and says so loudly (``stalled``).

A follower that must run once (a process with side effects) runs only on the elected leader
(``projections.leader``); its writes carry the leader's term and raise ``Fenced`` when the term is no
longer the current one: ``run()`` then stops at once (no retry, nothing parked) and lets the leadership
step down. Where it is not running, ``observe()`` reads the view's stored position for ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol

from domain.service import Applications
from projections.log_reader import LogReader

log = logging.getLogger(__name__)

DomainEvent: TypeAlias = DomainEventProtocol[UUID]
Page: TypeAlias = Sequence[tuple[int, DomainEvent]]

MAX_BACKOFF_SECONDS = 30.0
# Attempts of one failing event (each after a backoff) before it is parked.
PARK_AFTER = 5
# A follower that has not caught up and has not moved for this long is stuck (readiness fails).
STUCK_SECONDS = 60.0
# How often a follower looks for retries an operator asked for.
RETRY_POLL_SECONDS = 5.0
# How often a read-your-writes wait reads the stored position of a follower running in another process.
OBSERVE_SECONDS = 0.05
# How often a follower catching up ahead of the others looks whether it may read on (``LogReader.must_wait``).
PACE_SECONDS = 0.01


_READ_AHEAD: list[ThreadPoolExecutor] = []
_READ_AHEAD_LOCK = threading.Lock()


def _read_ahead_executor() -> ThreadPoolExecutor:
    """One thread per process reads ahead for every follower catching up (reads only; made on first use)."""
    with _READ_AHEAD_LOCK:
        if not _READ_AHEAD:
            _READ_AHEAD.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-read-ahead"))
        return _READ_AHEAD[0]


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    """A page read ahead and not used: its result or error is dropped (the page is read again)."""
    if not future.cancelled():
        future.exception()


class Fenced(Exception):
    """A leader-only write refused: this process no longer holds the leader's term (decision 0024)."""


class Fence(Protocol):
    """The leader's term this process writes under: None when it does not lead (``projections.leader``)."""

    @property
    def term(self) -> int | None:
        """The term held now, or None."""
        ...


def fenced_term(fence: Fence | None) -> int | None:
    """The term to write under (None: no fence, unchecked); ``Fenced`` when the fence is not held."""
    if fence is None:
        return None
    term = fence.term
    if term is None:
        raise Fenced("this process does not lead")
    return term


class View(Protocol):
    """A read model that follows the log: where it is, how it takes a page, how it starts over."""

    async def position(self) -> int:
        """The notification id of the last event the view has applied (0 before any, or when lost)."""
        ...

    async def apply(self, page: Page, start: int, end: int | None = None) -> bool:
        """Apply a page of (notification id, event), all after ``start``, and record ``end`` (default:
        the page's last id) as the position — all or nothing, and only if the stored position is
        ``start`` (a missing position counts as 0). False, having changed nothing, when it is not.

        An empty page with an ``end`` moves the position over events the view does not take (parked).
        """
        ...

    async def reset(self) -> None:
        """Forget everything: the view's keys or rows and its position."""
        ...


@runtime_checkable
class Peekable(Protocol):
    """A view whose ``position()`` may write (the notifications process sets a missing one): ``stored_position``
    reads it without writing, for a process that only observes."""

    async def stored_position(self) -> int:
        """The position stored now (0 when missing), nothing written."""
        ...


@runtime_checkable
class Redoable(Protocol):
    """A view that can apply one parked event again, out of order, without moving its position."""

    async def redo(self, position: int, event: DomainEvent) -> None:
        """Apply the event at ``position`` again (an operator's retry of a parked event)."""
        ...


@dataclass(frozen=True)
class Parked:
    """One event a follower set aside: where, why (an exception's class name only), how often it failed."""

    follower: str
    position: int
    error: str
    attempts: int
    parked_at: str
    retry_requested: bool = False


class ParkingLot(Protocol):
    """Where parked events are recorded, durably (``projections.sql.SqlParkingLot``)."""

    async def park(self, follower: str, position: int, error: str, attempts: int) -> None:
        """Record (or update) a parked event."""
        ...

    async def parked(self, follower: str | None = None) -> list[Parked]:
        """The parked events (of one follower, or all)."""
        ...

    async def release(self, follower: str, position: int) -> None:
        """Forget a parked event that has now been applied."""
        ...


@dataclass(frozen=True)
class FollowerHealth:
    """What ``/readyz`` and ``/metrics`` say of one follower."""

    name: str
    position: int
    failing_for: float
    last_error: str | None
    parked: int
    stalled: bool
    seconds_since_progress: float


class Follower(Protocol):
    """What a process runs to follow the log (``LogFollower``, ``PdfRenderer``), as the app starts, stops and
    reports it."""

    name: str

    @property
    def running(self) -> bool: ...

    async def run(self) -> None: ...

    def stop(self) -> None: ...

    def wake(self) -> None: ...

    async def observe(self) -> int: ...

    def health(self) -> FollowerHealth: ...


class FollowerProgress:
    """What every follower of the log keeps and reports alike (``LogFollower``, ``PdfRenderer``): where it is, since
    when and why it fails, its parked events; woken and stopped the same way."""

    def __init__(
        self, name: str, *, parking: ParkingLot | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.parking = parking
        self._clock = clock
        self._position = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._running = False
        self._failing_since: float | None = None
        self._last_error: str | None = None
        self._stalled = False
        self._parked = 0
        self._progress_at = clock()

    @property
    def running(self) -> bool:
        """Whether ``run()`` follows the log in this process now (a leader-only follower elsewhere: no)."""
        return self._running

    def wake(self) -> None:
        """Read the log now (a command of this process was just saved, or new rows are there)."""
        self._wake.set()

    def stop(self) -> None:
        """Let ``run()`` return after the page in hand (a page is never left half applied)."""
        self._stopping = True
        self._wake.set()

    def health(self) -> FollowerHealth:
        """Position, failures and parked events, as ``/readyz`` and ``/metrics`` report them."""
        now = self._clock()
        return FollowerHealth(
            name=self.name,
            position=self._position,
            failing_for=0.0 if self._failing_since is None else now - self._failing_since,
            last_error=self._last_error,
            parked=self._parked,
            stalled=self._stalled,
            seconds_since_progress=now - self._progress_at,
        )

    def _failed(self, error: BaseException) -> None:
        if self._failing_since is None:
            self._failing_since = self._clock()
        self._last_error = type(error).__name__

    async def _count_parked(self) -> None:
        if self.parking is None:
            return
        with contextlib.suppress(Exception):
            self._parked = len(await self.parking.parked(self.name))

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but return at once on ``wake()`` or ``stop()``."""
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)


class LogFollower(FollowerProgress):
    """Keeps one view caught up with the event log of ``applications``."""

    def __init__(
        self,
        applications: Applications,
        view: View,
        *,
        executor: Executor,
        page_size: int = 500,
        poll_interval: float = 0.5,
        name: str | None = None,
        parking: ParkingLot | None = None,
        park_after: int = PARK_AFTER,
        retry_poll_seconds: float = RETRY_POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be positive")
        super().__init__(name or type(view).__name__, parking=parking, clock=clock)
        self.applications = applications
        self.view = view
        self.executor = executor
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.park_after = max(1, park_after)
        self.retry_poll_seconds = retry_poll_seconds
        # Order matters to this view (the audit log): it stops on a failing event rather than skip it.
        self.ordered = bool(getattr(view, "ordered", False))
        self._moved = asyncio.Condition()
        self._limit = page_size
        # The failing event being narrowed down: its position and how many times it failed alone.
        self._failing_at: int | None = None
        self._attempts = 0
        self._retries_checked_at = 0.0
        self._recovering = False
        # While catching up, the page after the one being applied is read meanwhile: (start, limit, page).
        self._ahead: tuple[int, int, asyncio.Future[list[tuple[int, DomainEvent]]]] | None = None
        # Catching up beside other followers (``projections.log_reader``: the convoy).
        self._in_convoy = False

    @property
    def position(self) -> int:
        """The last position this follower knows the view to have reached."""
        return self._position

    @property
    def recovering(self) -> bool:
        """The view went back (lost: flushed, replaced) and has not caught up again yet."""
        return self._recovering

    async def run(self) -> None:
        """Follow the log until ``stop()``: failures are retried, split down to one event and parked.

        ``Fenced`` (this process lost the leadership) ends it at once and propagates. ``run()`` may be
        called again after it returned (a process elected leader again).
        """
        self._stopping, self._running = False, True
        try:
            await self._run()
        finally:
            self._running = False
            self._convoy(False, 0)

    async def observe(self) -> int:
        """Read the view's stored position without applying anything (the follower runs elsewhere);
        a position that moved counts as progress for ``health()``."""
        view = self.view
        position = await (view.stored_position() if isinstance(view, Peekable) else view.position())
        if position != self._position:
            self._progress_at = self._clock()
        await self._moved_to(position)
        await self._count_parked()
        return position

    async def _run(self) -> None:
        first_backoff = min(max(self.poll_interval, 0.01), 1.0)
        backoff = first_backoff
        await self._count_parked()
        while not self._stopping:
            self._wake.clear()
            try:
                full = await self._step()
            except (asyncio.CancelledError, Fenced):
                raise
            except _PageFailed as failed:
                if await self._on_page_failure(failed):
                    continue  # split or parked: go on at once
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            except Exception as error:
                # Reading the position or the log failed: the store or the view's server is away.
                self._failed(error)
                log.warning(
                    "view %s: cannot read at position %d (%s); retrying in %.1fs",
                    self.name,
                    self._position,
                    type(error).__name__,
                    backoff,
                )
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            backoff = first_backoff
            await self._retry_requested()
            if not full:
                await self._sleep(self.poll_interval)

    async def catch_up(self, on_page: Callable[[int], None] | None = None) -> int:
        """Apply every page up to the end of the log once; returns the position reached.

        Unlike ``run()`` a failure propagates: a one-shot rebuild should stop, not spin.
        ``on_page`` is told the position after each page (for a progress bar).
        """
        while True:
            try:
                full = await self._step()
            except _PageFailed as failed:
                raise failed.error from None
            if on_page is not None:
                on_page(self._position)
            if not full:
                return self._position

    async def wait_for(self, position: int | None, timeout: float) -> bool:
        """True as soon as the view has reached ``position`` (read-your-writes), False after ``timeout``.

        Where the follower does not run (another process leads), the view's stored position is read
        until it gets there."""
        if position is None or self._position >= position:
            return True
        if not self._running:
            return await self._observe_until(position, timeout)
        self.wake()
        async with self._moved:
            try:
                await asyncio.wait_for(self._moved.wait_for(lambda: self._position >= position), timeout)
            except TimeoutError:
                return False
        return True

    async def _observe_until(self, position: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                if await self.observe() >= position:
                    return True
            if self._running:  # elected meanwhile: wait as a running follower does
                return await self.wait_for(position, max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(OBSERVE_SECONDS)

    # ------------------------------------------------------------------ internals

    async def _step(self) -> bool:
        """Apply the page after the view's position; True when more may follow at once."""
        # The view's own position, even when lower than ours: a flush or a rebuild may have reset it.
        current = await self.view.position()
        if current < self._position:
            self._recovering = True
            log.warning(
                "view %s: position went back from %d to %d; catching up again",
                self.name,
                self._position,
                current,
            )
        await self._moved_to(current)
        page = await self._read(current)
        full = len(page) >= self._limit
        self._convoy(full, page[-1][0] if full else current)
        if not page:
            self._caught_up()
            return False
        if full and not self._stopping and not self._reader.must_wait(self.name, page[-1][0], self._limit):
            self._read_ahead(page[-1][0])
        try:
            applied = await self.view.apply(page, current)
        except (asyncio.CancelledError, Fenced):
            raise
        except Exception as error:
            self._convoy(False, current)
            raise _PageFailed(page, current, error) from error
        if not applied:
            return True  # the view moved under us (flush, rebuild, another follower): read it again
        await self._moved_to(page[-1][0])
        self._succeeded(page)
        full = len(page) >= self._limit
        if not full and self._limit >= self.page_size:
            self._caught_up()
        return full or self._limit < self.page_size

    async def _read(self, current: int) -> list[tuple[int, DomainEvent]]:
        """The page after ``current``: the one read ahead while the last page was applied when it starts there
        (a view that moved or a narrowed page makes it useless: dropped), else read now."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            start, limit, future = ahead
            if start == current and limit == self._limit:
                return await future
            future.add_done_callback(_ignore_outcome)
        while (
            self._in_convoy and not self._stopping and self._reader.must_wait(self.name, current, self._limit)
        ):
            self._reader.join(self.name, current)  # waiting is not failing: still waited for
            await asyncio.sleep(PACE_SECONDS)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._read_page, current, self._limit)

    def _read_ahead(self, after: int) -> None:
        """Catching up: read the next page on the process's read-ahead thread while this one is applied (the
        view's documents, its Redis or SQL write), so that the store's reading and decoding overlap them."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(_read_ahead_executor(), self._read_page, after, self._limit)
        self._ahead = (after, self._limit, future)

    @property
    def _reader(self) -> LogReader:
        return LogReader.of(self.applications)

    def _convoy(self, catching_up: bool, after: int) -> None:
        """Join the followers catching up side by side (a full page: more follows at once), or leave them."""
        self._in_convoy = catching_up
        if catching_up:
            self._reader.join(self.name, after)
        else:
            self._reader.leave(self.name)

    def _read_page(self, after: int, limit: int | None = None) -> list[tuple[int, DomainEvent]]:
        """On the executor: the notifications after ``after`` (ids may have gaps), decoded — read once for
        every follower of this process (``projections.log_reader``)."""
        return LogReader.of(self.applications).read(after, limit or self.page_size)

    async def _on_page_failure(self, failed: _PageFailed) -> bool:
        """Narrow a failing page down to its event; park it when it keeps failing alone. True: go on now."""
        page, error = failed.page, failed.error
        self._failed(error)
        if len(page) > 1:
            self._limit = max(1, len(page) // 2)
            log.warning(
                "view %s: page of %d after position %d failed (%s); trying %d",
                self.name,
                len(page),
                failed.start,
                type(error).__name__,
                self._limit,
            )
            return True
        position = page[0][0]
        if self._failing_at != position:
            self._failing_at, self._attempts = position, 0
        if not await self._view_answers():
            # The view's own store is away: not this event's fault; wait for it without counting.
            log.warning("view %s: cannot reach the view (%s); retrying", self.name, type(error).__name__)
            return False
        self._attempts += 1
        if self.ordered or self.parking is None:
            self._stalled = self._attempts >= self.park_after
            log.error(
                "view %s: event at position %d failed %d times (%s)%s",
                self.name,
                position,
                self._attempts,
                type(error).__name__,
                "; the log stops here until it is fixed" if self._stalled else "",
            )
            return False
        if self._attempts < self.park_after:
            log.warning(
                "view %s: event at position %d failed (%s), attempt %d of %d",
                self.name,
                position,
                type(error).__name__,
                self._attempts,
                self.park_after,
            )
            return False
        await self.parking.park(self.name, position, type(error).__name__, self._attempts)
        if await self.view.apply([], failed.start, position):
            self._parked += 1
            log.error(
                "view %s: event at position %d parked after %d failures (%s); the rest goes on "
                "(birthcert projections parked / retry)",
                self.name,
                position,
                self._attempts,
                type(error).__name__,
            )
            await self._moved_to(position)
        self._failing_at, self._attempts = None, 0
        return True

    async def _view_answers(self) -> bool:
        try:
            await self.view.position()
        except Exception:
            return False
        return True

    def _succeeded(self, page: Page) -> None:
        self._progress_at = self._clock()
        if self._failing_at is not None and page[-1][0] >= self._failing_at:
            self._failing_at, self._attempts = None, 0
        if self._failing_at is None:
            self._failing_since, self._last_error, self._stalled = None, None, False
        if self._limit < self.page_size:
            self._limit = min(self.page_size, self._limit * 2)

    def _caught_up(self) -> None:
        self._recovering = False
        self._progress_at = self._clock()
        self._failing_since, self._last_error, self._stalled = None, None, False

    async def _retry_requested(self) -> None:
        """Apply again the parked events an operator asked to retry (now and then, between pages)."""
        if self.parking is None or not isinstance(self.view, Redoable):
            return
        now = self._clock()
        if now - self._retries_checked_at < self.retry_poll_seconds:
            return
        self._retries_checked_at = now
        try:
            parked = await self.parking.parked(self.name)
        except Exception:
            return
        self._parked = len(parked)
        loop = asyncio.get_running_loop()
        for item in parked:
            if not item.retry_requested:
                continue
            page = await loop.run_in_executor(self.executor, self._read_page, item.position - 1, 1)
            if not page or page[0][0] != item.position:
                continue
            try:
                await self.view.redo(item.position, page[0][1])
            except Fenced:
                raise
            except Exception as error:
                await self.parking.park(self.name, item.position, type(error).__name__, item.attempts + 1)
                log.error(
                    "view %s: retry of the event at %d failed (%s)",
                    self.name,
                    item.position,
                    type(error).__name__,
                )
                continue
            await self.parking.release(self.name, item.position)
            self._parked -= 1
            log.info("view %s: parked event at %d applied on retry", self.name, item.position)

    async def _moved_to(self, position: int) -> None:
        if position == self._position:
            return
        async with self._moved:
            self._position = position
            self._moved.notify_all()


class _PageFailed(Exception):
    """The view refused a page with an exception (not a compare-and-set miss)."""

    def __init__(self, page: Page, start: int, error: Exception) -> None:
        super().__init__(type(error).__name__)
        self.page, self.start, self.error = page, start, error
