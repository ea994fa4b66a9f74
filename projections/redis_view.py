"""What every Redis-backed view and process shares: positions, generations, and forgetting keys.

A view (the parents' status view, the issuers' queue) lives in GENERATIONS: its keys are under
``<base><generation>:`` and ``<base>live`` names the generation being served (``g0`` when the pointer
is missing, as after a flush). A page is applied by one Lua script that begins with ``CAS_PRELUDE``:
the page applies only if the generation it was read for is still the live one (a follower) or the
one being built (a rebuild), and that generation's stored position is exactly the page's start — a
missing position is 0, so after a flush the follower's in-flight page is refused and it starts
over from 0 instead of writing its page on top of nothing. A rebuild fills a new generation beside
the live one and switches the pointer atomically once the new one has caught up (``SWITCH_LUA``),
then drops the old generation after a grace period, so the service serves the whole view throughout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Sequence
from typing import Any, Final, Literal, cast
from uuid import UUID

import redis.asyncio as aioredis

from domain.errors import InvalidValue
from domain.values import PersonName

_BATCH = 500
DEFAULT_GENERATION: Final = "g0"
# How long a reader may use the generation it looked up last (the old one is kept longer than this).
GENERATION_TTL_SECONDS: Final = 1.0
# How long an old generation stays after a switch, for readers still holding its name.
GRACE_SECONDS: Final = 3.0

Mode = Literal["live", "build", "redo"]

# KEYS[1]: the live pointer. ARGV[1] base, ARGV[2] generation, ARGV[3] mode, ARGV[4] start, ARGV[5] end.
# Defines ``prefix`` (the generation's key prefix) and ``pkey`` (its position key) for the body.
CAS_PRELUDE: Final = """
local base, gen, mode = ARGV[1], ARGV[2], ARGV[3]
if mode == 'live' and (redis.call('GET', KEYS[1]) or 'g0') ~= gen then
  return 0
end
local prefix = base .. gen .. ':'
local pkey = prefix .. 'position'
if mode ~= 'redo' and tonumber(redis.call('GET', pkey) or '0') ~= tonumber(ARGV[4]) then
  return 0
end
"""
# The end of every apply script: the new position (not for an out-of-order redo).
CAS_EPILOGUE: Final = """
if mode ~= 'redo' then
  redis.call('SET', pkey, ARGV[5])
end
return 1
"""

# KEYS[1]: the pointer. ARGV[1] base, ARGV[2] fixed generation or ''. → {generation, position}
POSITION_LUA: Final = """
local gen = ARGV[2]
if gen == '' then
  gen = redis.call('GET', KEYS[1]) or 'g0'
end
return {gen, redis.call('GET', ARGV[1] .. gen .. ':position') or '0'}
"""

# KEYS[1]: the pointer. ARGV[1] base, ARGV[2] the new generation. → the old generation, or nil when
# the new one is still behind the live one.
SWITCH_LUA: Final = """
local live = redis.call('GET', KEYS[1]) or 'g0'
if live == ARGV[2] then
  return live
end
local lp = tonumber(redis.call('GET', ARGV[1] .. live .. ':position') or '0')
local np = tonumber(redis.call('GET', ARGV[1] .. ARGV[2] .. ':position') or '0')
if np < lp then
  return false
end
redis.call('SET', KEYS[1], ARGV[2])
return live
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Generations:
    """The generations of one Redis view under ``base``; ``fixed`` pins one (a rebuild's)."""

    def __init__(self, redis: aioredis.Redis, base: str, fixed: str | None = None) -> None:
        self.redis = redis
        self.base = base
        self.fixed = fixed
        self.pointer_key = f"{base}live"
        self._position = redis.register_script(POSITION_LUA)
        self._switch = redis.register_script(SWITCH_LUA)
        self._cached: tuple[str, float] | None = None
        # The generation the last position() was read in: the one the next page is applied to.
        self.read_in = fixed or DEFAULT_GENERATION

    def prefix(self, generation: str) -> str:
        """The key prefix of one generation."""
        return f"{self.base}{generation}:"

    @property
    def mode(self) -> Mode:
        """How a page is applied: to the live generation, or to the fixed one being built."""
        return "live" if self.fixed is None else "build"

    async def current(self) -> str:
        """The generation to read from (the live one, looked up at most once a second)."""
        if self.fixed is not None:
            return self.fixed
        now = time.monotonic()
        if self._cached is not None and now - self._cached[1] < GENERATION_TTL_SECONDS:
            return self._cached[0]
        raw = await self.redis.get(self.pointer_key)
        generation = DEFAULT_GENERATION if raw is None else _text(raw)
        self._cached = (generation, now)
        return generation

    def cached(self) -> str:
        """The generation last looked up (without asking Redis)."""
        if self.fixed is not None:
            return self.fixed
        return DEFAULT_GENERATION if self._cached is None else self._cached[0]

    async def position(self) -> int:
        """The position of the live (or fixed) generation; remembers which generation it was."""
        generation, position = await self._position(
            keys=[self.pointer_key], args=[self.base, self.fixed or ""]
        )
        self.read_in = _text(generation)
        self._cached = (self.read_in, time.monotonic()) if self.fixed is None else None
        return int(position)

    def cas_args(self, start: int, end: int, mode: Mode | None = None) -> list[str | int]:
        """The prelude's ARGV for a page read in ``read_in`` from ``start`` to ``end``."""
        return [self.base, self.read_in, mode or self.mode, start, end]

    async def switch(self) -> str | None:
        """Serve the fixed generation from now on, if it has caught up with the live one: the old one's name."""
        if self.fixed is None:
            raise ValueError("only a generation being built can be switched to")
        old = await self._switch(keys=[self.pointer_key], args=[self.base, self.fixed])
        return None if old is None else _text(old)

    async def drop(self, generation: str) -> None:
        """Delete every key of ``generation`` (its position last)."""
        prefix = self.prefix(generation)
        await delete_prefix(self.redis, prefix, position_key=f"{prefix}position")

    async def drop_strays(self, keep: Collection[str]) -> int:
        """Delete keys under ``base`` that belong to no kept generation (older layouts, abandoned rebuilds)."""
        kept = tuple(self.prefix(g) for g in keep)
        stray: list[bytes | str] = []
        deleted = 0
        async for key in self.redis.scan_iter(match=f"{self.base}*", count=_BATCH):
            name = _text(key)
            if name == self.pointer_key or name.startswith(kept) or name.startswith(f"{self.base}events:"):
                continue
            stray.append(key)
            if len(stray) >= _BATCH:
                deleted += await self.redis.delete(*stray)
                stray = []
        if stray:
            deleted += await self.redis.delete(*stray)
        return deleted


async def stored_position(redis: aioredis.Redis, key: str) -> int:
    """The position recorded at ``key`` (0 before any)."""
    raw = await redis.get(key)
    return 0 if raw is None else int(raw)


async def delete_prefix(redis: aioredis.Redis, prefix: str, *, position_key: str | None = None) -> None:
    """Delete every key under ``prefix`` in batches, and ``position_key`` last.

    The position goes last so that a follower racing a reset can only redo pages, never skip one.
    """
    keep: Collection[str] = () if position_key is None else (position_key,)
    batch: list[bytes | str] = []
    async for key in redis.scan_iter(match=f"{prefix}*", count=_BATCH):
        name = _text(key)
        if name in keep:
            continue
        batch.append(key)
        if len(batch) >= _BATCH:
            await redis.delete(*batch)
            batch = []
    if batch:
        await redis.delete(*batch)
    if position_key is not None:
        await redis.delete(position_key)


def application_events(page: Sequence[tuple[int, object]]) -> dict[UUID, list[Any]]:
    """The applications a page touched, each with its events there in order (the last one's version is
    the version the page leaves it at)."""
    from domain.application import BirthCertificateApplication

    # Delivery-record and index events make no document; a correction reaches a linked
    # application as its own DeliveryRecordRefreshed event.
    return events_of(page, BirthCertificateApplication.Event)


def events_of(page: Sequence[tuple[int, object]], kind: type | tuple[type, ...]) -> dict[UUID, list[Any]]:
    """The aggregates whose events (of ``kind``) a page holds, each with those events in order."""
    found: dict[UUID, list[Any]] = {}
    for _, event in page:
        if isinstance(event, kind):
            originator = cast(Any, event).originator_id
            if not isinstance(originator, UUID):
                originator = UUID(str(originator))
            found.setdefault(originator, []).append(event)
    return found


def masked(name: object) -> str | None:
    """A name as the views show it (王*), or None."""
    if not isinstance(name, str) or not name:
        return None
    try:
        return PersonName(name).masked()
    except InvalidValue:
        return "*"


async def sleep_grace() -> None:
    """Wait until readers holding an old generation's name have looked again."""
    await asyncio.sleep(GRACE_SECONDS)
