"""Limits on what one client can make the service spend: request rates, staff-login guesses, image decoding.

- ``RateLimits``: named limits ("5 per 10 minutes; 20 per day") counted in a moving window by the ``limits``
  package, in Redis so that every process shares them; the subject (an address, an openid, an ID number) is
  HMAC'd before it becomes part of a key. Over the limit: 429 ``rate_limited`` with ``Retry-After``.
- ``LoginThrottle``: staff passwords. Failures from one address make that address wait, the wait doubling
  with each failure; failures on one account from anywhere make that account wait, but only for addresses
  that have failed too, so an address with a clean record (or one the account logged in from before)
  still gets in at once (docs/decisions/0019-staff-login-throttle.md).
- While Redis does not answer (a connection error or a timeout), both count in this process instead, and
  Redis is asked again only every ``LocalFallback.RETRY_SECONDS``: the limits hold per process rather than
  not at all, and an outage never turns into a 500 or a slow answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import orjson
import redis
import redis.asyncio as aioredis
from aiohttp import web
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from backend.addresses import client_source
from backend.components import CONFIG, REDIS_CLIENT
from backend.config import Config
from backend.errors import REDIS_UNAVAILABLE
from domain.errors import DomainError

log = logging.getLogger(__name__)
T = TypeVar("T")

KEY_PREFIX = "bc:rl"


class RateLimited(DomainError):
    """Too many requests of one kind from one client: wait ``retry_after`` seconds."""

    code = "rate_limited"
    message = "操作过于频繁，请稍后再试"
    http_status = 429

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message or f"操作过于频繁，请{wait_text(self.retry_after)}后再试")
        self.headers = {"Retry-After": str(self.retry_after)}


def wait_text(seconds: int) -> str:
    """A wait in words a parent reads at a glance: 30秒, 5分钟, 2小时."""
    if seconds < 60:
        return f"{seconds}秒"
    if seconds < 3600:
        return f"{math.ceil(seconds / 60)}分钟"
    return f"{math.ceil(seconds / 3600)}小时"


class LocalFallback:
    """Runs a Redis operation, or its in-process stand-in when Redis does not answer.

    After a failure Redis is not asked again for ``RETRY_SECONDS``: each try costs the client's timeouts
    and retries, and a limiter that waits on them would make every limited request slow during an outage
    (and let a login wait run out while it waited). The outage is logged once, its end once.
    """

    RETRY_SECONDS = 10.0

    def __init__(self, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._what = what
        self._clock = clock
        self._down_since: float | None = None

    async def run(self, shared: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]]) -> T:
        """``shared()``; on a Redis connection error or timeout, and for a while after one, ``local()``."""
        if self._down_since is not None and self._clock() - self._down_since < self.RETRY_SECONDS:
            return await local()
        try:
            result = await shared()
        except REDIS_UNAVAILABLE as e:
            if self._down_since is None:
                log.warning(
                    "redis unavailable: %s counted in this process",
                    self._what,
                    extra={"error": type(e).__name__},
                )
            self._down_since = self._clock()
            return await local()
        if self._down_since is not None:
            log.info("redis back: %s counted in redis again", self._what)
            self._down_since = None
        return result


class RateLimits:
    """Named request-rate limits, each a list of windows; ``hit`` counts one request or raises ``RateLimited``."""

    def __init__(self, client: aioredis.Redis, rules: Mapping[str, str], secret: bytes) -> None:
        shared = RedisStorage(
            "async+redis://",
            implementation="redispy",
            # Our client's pool: no second set of connections (limits types its options as scalars).
            connection_pool=client.connection_pool,  # type: ignore[arg-type]
            key_prefix=KEY_PREFIX,
        )
        self._shared = MovingWindowRateLimiter(shared)
        self._memory = MemoryStorage()
        self._local = MovingWindowRateLimiter(self._memory)
        self._rules: dict[str, Sequence[RateLimitItem]] = {
            name: parse_many(text) for name, text in rules.items()
        }
        self._secret = secret
        self._fallback = LocalFallback("rate limits")

    async def hit(self, name: str, subject: str) -> None:
        """Count one request of kind ``name`` by ``subject``; ``RateLimited`` when a window is full."""
        key = hmac.new(self._secret, f"{name}\n{subject}".encode(), hashlib.sha256).hexdigest()
        for item in self._rules[name]:
            shared, local = self._shared, self._local
            if not await self._fallback.run(
                functools.partial(shared.hit, item, name, key), functools.partial(local.hit, item, name, key)
            ):
                stats = await self._fallback.run(
                    functools.partial(shared.get_window_stats, item, name, key),
                    functools.partial(local.get_window_stats, item, name, key),
                )
                raise RateLimited(stats.reset_time - time.time())

    def close(self) -> None:
        """Stop the in-process store's expiry task."""
        if self._memory.timer is not None:
            self._memory.timer.cancel()


# ---------------------------------------------------------------- staff login


@dataclass(frozen=True)
class Backoff:
    """How long to wait after a number of failures: nothing for the first ``free - 1``, then 1 s, doubling,
    at most ``most``."""

    free: int
    most: float

    def wait(self, failures: int) -> float:
        """The wait after ``failures`` failures."""
        if failures < self.free:
            return 0.0
        return min(self.most, 2.0 ** min(failures - self.free, 32))


@dataclass(frozen=True)
class Tally:
    """Failures counted for an address or an account, and when the last one was."""

    failures: int = 0
    last: float = 0.0

    def held_for(self, backoff: Backoff, now: float) -> float:
        """Seconds until the next attempt may be made (0: now)."""
        return max(0.0, self.last + backoff.wait(self.failures) - now)

    def failed(self, now: float) -> Tally:
        """One more failure, now."""
        return Tally(self.failures + 1, now)

    def dated(self, now: float) -> Tally:
        """The same failures, the last of them now (when the attempt counted in advance was found wrong)."""
        return Tally(self.failures, max(self.last, now)) if self.failures else self

    def undone(self) -> Tally:
        """One failure fewer (an attempt counted in advance that succeeded)."""
        return Tally(max(0, self.failures - 1), self.last)

    def encode(self) -> bytes:
        """As kept in Redis."""
        return orjson.dumps([self.failures, self.last])

    @classmethod
    def decode(cls, raw: bytes | None) -> Tally:
        """From Redis (nothing: a clean record)."""
        if not raw:
            return cls()
        failures, last = orjson.loads(raw)
        return cls(int(failures), float(last))


def admit(
    source: Tally,
    account: Tally,
    *,
    known_source: bool,
    now: float,
    per_source: Backoff,
    per_account: Backoff,
) -> float:
    """How long this attempt must wait (0: let it be checked).

    The address's own wait always applies. The account's applies only to an address with failures of its
    own that the account never logged in from: whoever guesses from many addresses slows the account for
    all of them, while its owner, from a clean address or their usual one, is let in at once.
    """
    wait = source.held_for(per_source, now)
    if source.failures and not known_source:
        wait = max(wait, account.held_for(per_account, now))
    return wait


class Contended(Exception):
    """The records changed under us too many times in a row (a burst of parallel guesses)."""


class _RedisTallies:
    """Tallies in Redis, read and written in one optimistic transaction (WATCH/MULTI)."""

    ROUNDS = 8

    def __init__(self, client: aioredis.Redis, remember: int) -> None:
        self._redis = client
        self._remember = remember
        # One transaction at a time from this process (a few ms each): WATCH then only races other processes.
        self._turn = asyncio.Lock()

    async def update(self, keys: Sequence[str], change: Callable[[list[Tally]], tuple[T, list[Tally]]]) -> T:
        async with self._turn, self._redis.pipeline(transaction=True) as pipe:
            for _ in range(self.ROUNDS):
                try:
                    await pipe.watch(*keys)
                    tallies = [Tally.decode(await pipe.get(key)) for key in keys]
                    result, changed = change(tallies)
                    pipe.multi()
                    for key, tally in zip(keys, changed, strict=True):
                        if tally.failures:
                            pipe.set(key, tally.encode(), ex=self._remember)
                        else:
                            pipe.delete(key)
                    await pipe.execute()
                    return result
                except redis.WatchError:
                    continue
        raise Contended()

    async def mark(self, key: str, seconds: int) -> None:
        await self._redis.set(key, b"1", ex=seconds)

    async def marked(self, key: str) -> bool:
        return bool(await self._redis.exists(key))


class _LocalTallies:
    """The same in this process (while Redis is away): bounded dicts; no await between read and write."""

    MOST_KEYS = 100_000

    def __init__(self, remember: int, clock: Callable[[], float]) -> None:
        self._remember = remember
        self._clock = clock
        self._tallies: dict[str, tuple[Tally, float]] = {}
        self._marks: dict[str, float] = {}

    async def update(self, keys: Sequence[str], change: Callable[[list[Tally]], tuple[T, list[Tally]]]) -> T:
        now = self._clock()
        tallies = [self._tallies.get(key, (Tally(), 0.0)) for key in keys]
        result, changed = change([tally if expires > now else Tally() for tally, expires in tallies])
        for key, tally in zip(keys, changed, strict=True):
            if tally.failures:
                _bounded(self._tallies, now, expiry=lambda entry: entry[1])[key] = (
                    tally,
                    now + self._remember,
                )
            else:
                self._tallies.pop(key, None)
        return result

    async def mark(self, key: str, seconds: int) -> None:
        now = self._clock()
        _bounded(self._marks, now, expiry=lambda expires: expires)[key] = now + seconds

    async def marked(self, key: str) -> bool:
        return self._marks.get(key, 0.0) > self._clock()


def _bounded(entries: dict[str, T], now: float, *, expiry: Callable[[T], float]) -> dict[str, T]:
    """``entries`` with room for one more: the expired dropped, then the oldest while still full."""
    if len(entries) >= _LocalTallies.MOST_KEYS:
        for key in [k for k, v in entries.items() if expiry(v) <= now]:
            del entries[key]
        while len(entries) >= _LocalTallies.MOST_KEYS:
            del entries[next(iter(entries))]
    return entries


@dataclass(frozen=True)
class Attempt:
    """A login attempt let through, counted as a failure in advance (``LoginThrottle.succeeded`` undoes it)."""

    source_key: str
    account_key: str
    known_key: str


class LoginThrottle:
    """Progressive delays for staff logins, per address and per account (see the module's docstring)."""

    # How long failures are remembered after the last one, and an address the account logged in from.
    REMEMBER_SECONDS = 24 * 3600
    KNOWN_SECONDS = 30 * 24 * 3600

    def __init__(
        self,
        client: aioredis.Redis,
        secret: bytes,
        *,
        free_failures: int,
        most_wait: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.per_source = Backoff(free_failures, most_wait)
        self.per_account = Backoff(2 * free_failures, most_wait)
        self._secret = secret
        self._clock = clock
        self._shared = _RedisTallies(client, self.REMEMBER_SECONDS)
        self._local = _LocalTallies(self.REMEMBER_SECONDS, clock)
        self._fallback = LocalFallback("staff login failures")

    def _key(self, kind: str, *parts: str) -> str:
        digest = hmac.new(self._secret, "\n".join((kind, *parts)).encode(), hashlib.sha256).hexdigest()
        return f"bc:login:{kind}:{digest}"

    async def attempt(self, source: str, username: str) -> Attempt:
        """Let an attempt on ``username`` from ``source`` through (counting it as a failure until it succeeds),
        or raise ``RateLimited`` with how long to wait."""
        attempt = Attempt(
            self._key("source", source), self._key("account", username), self._key("known", username, source)
        )
        known = await self._fallback.run(
            lambda: self._shared.marked(attempt.known_key), lambda: self._local.marked(attempt.known_key)
        )
        now = self._clock()

        def count(tallies: list[Tally]) -> tuple[float, list[Tally]]:
            source_tally, account_tally = tallies
            wait = admit(
                source_tally,
                account_tally,
                known_source=known,
                now=now,
                per_source=self.per_source,
                per_account=self.per_account,
            )
            if wait > 0:
                return wait, tallies
            return 0.0, [source_tally.failed(now), account_tally.failed(now)]

        keys = (attempt.source_key, attempt.account_key)
        try:
            wait = await self._fallback.run(
                lambda: self._shared.update(keys, count), lambda: self._local.update(keys, count)
            )
        except Contended:
            wait = 1.0
        if wait > 0:
            raise RateLimited(wait, f"登录尝试过于频繁，请{wait_text(max(1, math.ceil(wait)))}后再试")
        return attempt

    async def failed(self, attempt: Attempt) -> None:
        """The password was wrong: the wait it earned runs from now, not from when the attempt began."""
        now = self._clock()
        await self._settle(attempt, lambda tally: tally.dated(now))

    async def _settle(self, attempt: Attempt, how: Callable[[Tally], Tally]) -> None:
        def change(tallies: list[Tally]) -> tuple[None, list[Tally]]:
            return None, [how(tally) for tally in tallies]

        keys = (attempt.source_key, attempt.account_key)
        with contextlib.suppress(Contended):
            await self._fallback.run(
                lambda: self._shared.update(keys, change), lambda: self._local.update(keys, change)
            )

    async def succeeded(self, attempt: Attempt) -> None:
        """The password was right: take back the failure counted in advance, and remember the address."""
        await self._settle(attempt, Tally.undone)
        await self._fallback.run(
            lambda: self._shared.mark(attempt.known_key, self.KNOWN_SECONDS),
            lambda: self._local.mark(attempt.known_key, self.KNOWN_SECONDS),
        )


# ---------------------------------------------------------------- in the app

RATE_LIMITS = web.AppKey("rate_limits", RateLimits)
LOGIN_THROTTLE = web.AppKey("login_throttle", LoginThrottle)
# Images decoded at once (BIRTHCERT_UPLOAD_DECODES): N parallel uploads cannot multiply the memory.
UPLOAD_DECODES = web.AppKey("upload_decodes", asyncio.Semaphore)


def build(config: Config, client: aioredis.Redis) -> tuple[RateLimits, LoginThrottle]:
    """The limiters for ``config`` on ``client``."""
    limits = RateLimits(client, config.rate_limits, config.index_key)
    login = LoginThrottle(
        client,
        config.index_key,
        free_failures=config.staff_login_free_failures,
        most_wait=config.staff_login_max_wait,
    )
    return limits, login


async def throttle_ctx(app: web.Application) -> AsyncIterator[None]:
    """The limiters, on the Redis client the app already has (after ``_neighbours``)."""
    app[RATE_LIMITS], app[LOGIN_THROTTLE] = build(app[CONFIG], app[REDIS_CLIENT])
    app[UPLOAD_DECODES] = asyncio.Semaphore(app[CONFIG].upload_decodes)
    yield
    app[RATE_LIMITS].close()


async def limit(request: web.Request, name: str, subject: str) -> None:
    """Count one request of kind ``name`` by ``subject`` (an openid, an ID number: HMAC'd before Redis)."""
    await request.app[RATE_LIMITS].hit(name, subject)


async def limit_client(request: web.Request, name: str) -> None:
    """Count one request of kind ``name`` by the client's address (backend/addresses.py)."""
    await limit(request, name, client_source(request))
