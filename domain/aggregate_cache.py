"""A per-process cache of aggregates as the event store holds them, each at its version.

What is kept is only ever a state projected from STORED events (a replay, or a cached state advanced by
the stored events that follow it, in order), never a command's own object before or after its save, so a
cached state at version v is by construction the state ``repository.get(id, version=v)`` rebuilds. It is
kept pickled: every reader gets its own copy, so nothing handed out is shared between threads or
changes under a reader (a pickle round trip costs a fraction of a replay). A state replaces the one kept
only when its version is higher; the least recently used go first past ``maxsize``.

Readers decide what a state is good for (docs/decisions/0027-one-load-per-command.md): a command
fast-forwards its copy with the events stored after it (so it acts on the latest state, as a load would,
and its save still refuses a version taken meanwhile); a view takes it only at exactly the version it
needs, advancing it with the page's own events when they follow it without a gap.
"""

from __future__ import annotations

import pickle
import threading
from collections import OrderedDict
from typing import Any
from uuid import UUID

DEFAULT_MAXSIZE = 10_000


class AggregateCache:
    """Aggregates by id at their version, pickled; the highest version seen wins."""

    def __init__(self, maxsize: int = DEFAULT_MAXSIZE) -> None:
        if maxsize < 0:
            raise ValueError("maxsize must not be negative")
        self.maxsize = maxsize
        self._items: OrderedDict[UUID, tuple[int, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def version(self, aggregate_id: UUID) -> int | None:
        """The version kept of this aggregate, if any."""
        with self._lock:
            item = self._items.get(aggregate_id)
        return None if item is None else item[0]

    def get(self, aggregate_id: UUID) -> Any | None:
        """A private copy of the kept state (None when there is none)."""
        with self._lock:
            item = self._items.get(aggregate_id)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(aggregate_id)
            self.hits += 1
        return pickle.loads(item[1])  # bytes this process pickled itself, never read from outside

    def put(self, aggregate: Any) -> None:
        """Keep ``aggregate`` (a state projected from stored events only) if it is newer than what is kept."""
        if self.maxsize == 0:
            return
        aggregate_id, version = aggregate.id, aggregate.version
        with self._lock:
            kept = self._items.get(aggregate_id)
            if kept is not None and kept[0] >= version:
                return
        try:
            data = pickle.dumps(aggregate, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            return  # a state that does not pickle is simply not cached
        with self._lock:
            kept = self._items.get(aggregate_id)
            if kept is not None and kept[0] >= version:
                return
            self._items[aggregate_id] = (version, data)
            self._items.move_to_end(aggregate_id)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def evict(self, aggregate_id: UUID) -> None:
        """Forget an aggregate (after a conflict on it)."""
        with self._lock:
            self._items.pop(aggregate_id, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()
