"""Following the event log into a view: one ``LogFollower`` per view and process.

The library's ``ProjectionRunner`` needs the recorder's ``subscribe()``, which SQLite lacks, so
the follower tails ``recorder.select_notifications`` itself: it reads the page after the view's
recorded position, hands it to the view, which writes the page's changes and the new position
atomically, and repeats while pages come back full. Then it sleeps until ``wake()`` (a local
command was just saved) or ``poll_interval`` (another process may have written).

The position is always read back from the view, never kept only in memory: a second follower
(another process, a rebuild) may have moved it, and the view refuses a page that does not move
it forward, so any number of followers converge on the same state. Notification ids are not
dense on PostgreSQL, so the follower reads "after the last applied", never "position + 1 exists".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Protocol, TypeAlias
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol

from domain.service import Applications

log = logging.getLogger(__name__)

DomainEvent: TypeAlias = DomainEventProtocol[UUID]
Page: TypeAlias = Sequence[tuple[int, DomainEvent]]

MAX_BACKOFF_SECONDS = 30.0


class View(Protocol):
    """A read model that follows the log: where it is, how it takes a page, how it starts over."""

    async def position(self) -> int:
        """The notification id of the last event the view has applied (0 before any)."""
        ...

    async def apply(self, page: Page) -> None:
        """Apply a page of (notification id, event) and record its last id, all or nothing.

        A page whose last id is not beyond the recorded position changes nothing.
        """
        ...

    async def reset(self) -> None:
        """Forget everything: the view's keys or rows and its position."""
        ...


class LogFollower:
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
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be positive")
        self.applications = applications
        self.view = view
        self.executor = executor
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.name = name or type(view).__name__
        self._position = 0
        self._wake = asyncio.Event()
        self._moved = asyncio.Condition()
        self._stopping = False

    @property
    def position(self) -> int:
        """The last position this follower knows the view to have reached."""
        return self._position

    def wake(self) -> None:
        """Read the log now: a command of this process was just saved."""
        self._wake.set()

    def stop(self) -> None:
        """Let ``run()`` return after the page in hand (a page is never left half applied)."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Follow the log until ``stop()`` (for good); failures are logged and retried, never skipped."""
        first_backoff = min(max(self.poll_interval, 0.01), 1.0)
        backoff = first_backoff
        while not self._stopping:
            self._wake.clear()
            try:
                full = await self._step()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # The class name only: messages may quote stored values.
                log.warning(
                    "view %s: page after position %d failed (%s); retrying in %.1fs",
                    self.name,
                    self._position,
                    type(error).__name__,
                    backoff,
                )
                await self._sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            backoff = first_backoff
            if not full:
                await self._sleep(self.poll_interval)

    async def catch_up(self, on_page: Callable[[int], None] | None = None) -> int:
        """Apply every page up to the end of the log once; returns the position reached.

        Unlike ``run()`` a failure propagates: a one-shot rebuild should stop, not spin.
        ``on_page`` is told the position after each page (for a progress bar).
        """
        while True:
            full = await self._step()
            if on_page is not None:
                on_page(self._position)
            if not full:
                return self._position

    async def wait_for(self, position: int | None, timeout: float) -> bool:
        """True as soon as the view has reached ``position`` (read-your-writes), False after ``timeout``."""
        if position is None or self._position >= position:
            return True
        self.wake()
        async with self._moved:
            try:
                await asyncio.wait_for(self._moved.wait_for(lambda: self._position >= position), timeout)
            except TimeoutError:
                return False
        return True

    # ------------------------------------------------------------------ internals

    async def _step(self) -> bool:
        """Apply the page after the view's position; True when the page was full (more may follow)."""
        # The view's own position, even when lower than ours: a rebuild may have reset it.
        current = await self.view.position()
        await self._moved_to(current)
        loop = asyncio.get_running_loop()
        page = await loop.run_in_executor(self.executor, self._read_page, current)
        if page:
            await self.view.apply(page)
            # The view now stands at the page's end, or beyond it if another follower got there first.
            await self._moved_to(max(current, page[-1][0]))
        return len(page) >= self.page_size

    def _read_page(self, after: int) -> list[tuple[int, DomainEvent]]:
        """On the executor: the notifications after ``after`` (ids may have gaps), decoded."""
        notifications = self.applications.recorder.select_notifications(start=after + 1, limit=self.page_size)
        to_event = self.applications.mapper.to_domain_event
        return [(n.id, to_event(n)) for n in notifications]

    async def _moved_to(self, position: int) -> None:
        if position == self._position:
            return
        async with self._moved:
            self._position = position
            self._moved.notify_all()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but return at once on ``wake()`` or ``stop()``."""
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
