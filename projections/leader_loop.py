"""A follower of the log whose page work is SQL beside the events, plus a loop that acts on what it recorded.

The e-licence issuer (``projections.elicense``) and the status lists (``projections.elicense_status``) are both: a
``View`` for ``LogFollower`` (a page and its position in one transaction, on the store executor) and, on the
leader, a loop ``run`` that does the round's work when woken by a page or every ``poll_seconds``, and stops when
the process stops leading (``stop``) or loses its fence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, ClassVar, TypeVar

from projections.runner import Fenced, Page
from projections.sql import Database

log = logging.getLogger(__name__)

T = TypeVar("T")


class SqlFollowerLoop:
    """Subclasses set ``NAME`` (the position's name), ``ROUND`` (what the loop does, for the log) and define
    ``_page(page, start, end) -> (applied, changed)`` and ``_round()``; both run on the executor."""

    NAME: ClassVar[str]
    ROUND: ClassVar[str]

    def __init__(self, db: Database, executor: Executor, poll_seconds: float) -> None:
        self.db = db
        self.executor = executor
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._stopping = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _page(self, page: Page, start: int, end: int) -> tuple[bool, int]:
        raise NotImplementedError

    def _round(self) -> int:
        raise NotImplementedError

    async def round(self) -> None:
        """One round of the loop: ``_round`` on the executor (a loop that talks HTTP overrides this)."""
        await self._run(self._round)

    # ------------------------------------------------------------------ View

    async def position(self) -> int:
        """The last notification id applied."""
        return await self._run(self.db.position, self.NAME)

    async def apply(self, page: Page, start: int, end: int | None = None) -> bool:
        """The page's work and its end in one transaction, if the position is ``start``; wakes the loop when
        the page changed something."""
        if end is None:
            end = page[-1][0] if page else start
        applied, changed = await self._run(self._page, page, start, end)
        if changed:
            self.wake()
        return applied

    # ------------------------------------------------------------------ the loop

    def wake(self) -> None:
        """Do a round now (after a page, or when a test moved the clock)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop the loop (the leadership calls it when this process stops leading)."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """A round, then wait for a wake-up or ``poll_seconds``; until stopped or fenced."""
        self._stopping = False
        while not self._stopping:
            try:
                await self.round()
            except Fenced:
                log.warning("%s stopped: this process no longer leads", self.ROUND)
                return
            except Exception as error:  # retried at the next round; what it had to do stays recorded
                log.error("%s failed (%s); retrying", self.ROUND, type(error).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()
