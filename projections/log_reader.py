"""One reader of the event log per process, its pages fanned out to every follower (decision 0027).

Each follower still asks for "the page after my view's position" and applies it only on top of that
position (compare-and-set, decision 0022); what is shared is the reading and decoding (decryption,
decompression, JSON) of the log's newest events, which every follower of a process otherwise repeated.
The reader keeps the decoded notifications of an unbroken range of ids, ``(start, end]``, that ends at the
log's end as last read: a follower whose position lies in that range is served from memory, after one
query for anything stored since (usually nothing; decoded once for everyone); a follower elsewhere (a
rebuild from 0, one far behind) reads the store itself, as before. Nothing is ever served that the store
does not hold: the range is only extended by what a query returned, in order, and notification ids only
grow (commit order is id order on both stores, docs/architecture.md).

A follower a little ahead of the range (up to half of ``keep``: the most advanced follower in a catch-up, when
every follower is far behind the log's end after a start) has the gap read too, so that the range stays
unbroken and the followers just behind it are still served from memory: at a first start of a large store all
followers then share one decoding of each page instead of each decoding it (measured at 1 M applications: ≈11
followers within ~12 k events of each other, each reading the store itself). A follower far ahead in the middle of
the log reads the store itself without moving the range; the range starts again at a read that reaches the
log's end, unless followers catching up still read in it.

Followers catching up keep pace with each other (a convoy): a follower whose next page would push the range past
another catching-up follower still inside it waits for it (``must_wait``), so that each page of a catch-up is
decoded once for all of them instead of the range following the fastest while the others fall out of it and each
decode the store again (measured at 1 M applications with a range of 10,000: followers spread over 30–45 k events,
the decoding 42 % of the process's time). Only followers reading full pages are members; one that has not read for
``STALE_SECONDS`` (failing, backing off, stopped) is not waited for, and one outside the range (a rebuild from 0)
holds nobody.

Followers must not change the events they are given (they are shared).
"""

from __future__ import annotations

import bisect
import threading
import time
import weakref
from typing import Any, ClassVar

from domain.service import Applications

# Decoded notifications kept per process: a few pages of every follower's default size, and room for the
# followers of a catch-up to spread over.
TAIL_SIZE = 20_000  # ≈ 2.2 kB a decoded event: ≈ 45 MB at most
# A convoy member that has not read for this long is not waited for (failing, backing off, stopped).
STALE_SECONDS = 3.0


class LogReader:
    """The shared reader of one ``Applications``' notification log."""

    # One per Applications instance (each process has one; a test may have several), gone with it.
    _readers: ClassVar[weakref.WeakKeyDictionary[Applications, LogReader]] = weakref.WeakKeyDictionary()
    _readers_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, applications: Applications, *, keep: int = TAIL_SIZE) -> None:
        self.applications = applications
        self.keep = keep
        # The range: ``_items[_head:]`` in id order, their ids in ``_ids`` (found by bisection); items before
        # ``_head`` are trimmed and dropped in bulk now and then.
        self._ids: list[int] = []
        self._items: list[tuple[int, Any]] = []
        self._head = 0
        self._start = 0  # the tail holds every notification with start < id <= end
        self._end = -1  # no range yet
        # ``_lock`` serialises reads (a query and its decoding run under it); ``_meta`` guards only the range's bounds
        # and the convoy, briefly, so that the followers' pacing on the event loop never waits for a query.
        self._lock = threading.Lock()
        self._meta = threading.Lock()
        self.queries = 0
        self.served_from_memory = 0
        # Followers catching up: name → (position they read after, when).
        self._convoy: dict[str, tuple[int, float]] = {}

    @classmethod
    def of(cls, applications: Applications) -> LogReader:
        """The process's reader of ``applications``' log (made on first use)."""
        with cls._readers_lock:
            reader = cls._readers.get(applications)
            if reader is None:
                reader = cls._readers[applications] = cls(applications)
            return reader

    def read(self, after: int, limit: int) -> list[tuple[int, Any]]:
        """The (decoded) notifications after ``after``, at most ``limit``, in id order."""
        with self._lock:
            now = time.monotonic()
            with self._meta:
                gap = 0 <= self._end < after <= self._end + self.keep // 2 and not self._drops_member(
                    None, after + limit - self._end, now
                )
            if gap:
                # Just ahead of the range: read the gap as well, so that the range stays unbroken for the
                # followers behind (the page itself comes from the range below).
                self._extend(self._select(self._end, after - self._end))
            if not self._start <= after <= self._end:
                page = self._select(after, limit)
                # Newer than the range kept, and at the log's end (or no range yet): it starts again here, unless
                # followers catching up are still reading it. A follower far ahead in the middle of the log (a
                # cheap one racing through a catch-up, one that started at the log's end) does not take the range
                # away from the followers behind it.
                with self._meta:
                    restart = bool(page) and after >= self._end and (len(page) < limit or self._end < 0)
                    if restart and not self._in_range(now):
                        self._ids, self._items, self._head = [], [], 0
                        self._start, self._end = after, after
                    else:
                        restart = False
                if restart:
                    self._extend(page)
                return page
            page = self._from_tail(after, limit)
            if len(page) < limit:
                # What the store holds past the range continues this page; the page is made before the range
                # is trimmed to ``keep``, which may drop the page's own first items.
                more = self._select(self._end, max(limit - len(page), 1))
                page = (page + more)[:limit]
                self._extend(more)
            else:
                self.served_from_memory += 1
            return page

    def join(self, name: str, after: int, *, now: float | None = None) -> None:
        """``name`` is catching up (its last page was full) and reads after ``after`` next."""
        with self._meta:
            self._convoy[name] = (after, time.monotonic() if now is None else now)

    def leave(self, name: str) -> None:
        """``name`` is at the log's end, stopped or failing: nobody waits for it."""
        with self._meta:
            self._convoy.pop(name, None)

    def must_wait(self, name: str, after: int, limit: int, *, now: float | None = None) -> bool:
        """Whether reading ``limit`` after ``after`` would trim from the range a fresh convoy member other than
        ``name`` that has not read it yet (then ``name`` waits for it: the range is shared, not followed)."""
        now = time.monotonic() if now is None else now
        with self._meta:
            if (
                self._end < 0
                or after + limit <= self._end
                or not self._start <= after <= self._end + self.keep // 2
            ):
                return False  # served from the range, or a read that does not move it
            return self._drops_member(name, after + limit - self._end, now)

    def _in_range(self, now: float) -> bool:
        """Whether a fresh convoy member reads within the range or just after it (it would lose it to a restart;
        under ``_meta``)."""
        return any(
            now - seen <= STALE_SECONDS and self._start <= position <= self._end
            for position, seen in self._convoy.values()
        )

    def _drops_member(self, name: str | None, new: int, now: float) -> bool:
        """Whether adding ``new`` notifications to the range would trim what a fresh convoy member other than ``name``
        has still to read (under ``_meta``)."""
        overflow = self.kept + new - self.keep
        if overflow <= 0 or not self.kept:
            return False
        # Trimming ``overflow`` items drops every id up to this one from the range.
        dropped_to = self._ids[self._head + min(overflow, self.kept) - 1]
        return any(
            member != name and now - seen <= STALE_SECONDS and self._start <= position < dropped_to
            for member, (position, seen) in self._convoy.items()
        )

    def _select(self, after: int, limit: int) -> list[tuple[int, Any]]:
        self.queries += 1
        notifications = self.applications.recorder.select_notifications(start=after + 1, limit=limit)
        to_event = self.applications.mapper.to_domain_event
        return [(n.id, to_event(n)) for n in notifications]

    @property
    def kept(self) -> int:
        """How many decoded notifications the range holds."""
        return len(self._ids) - self._head

    def _extend(self, page: list[tuple[int, Any]]) -> None:
        with self._meta:
            for item in page:
                if item[0] > self._end:
                    self._ids.append(item[0])
                    self._items.append(item)
                    self._end = item[0]
            if self.kept > self.keep:
                self._head = len(self._ids) - self.keep
                self._start = self._ids[self._head - 1]
                if self._head >= self.keep:  # drop the trimmed items in bulk
                    del self._ids[: self._head], self._items[: self._head]
                    self._head = 0

    def _from_tail(self, after: int, limit: int) -> list[tuple[int, Any]]:
        first = bisect.bisect_right(self._ids, after, self._head)
        return self._items[first : first + limit]
