"""The limiters on a real Redis, and in this process when Redis does not answer."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from backend.throttle import LoginThrottle, RateLimited, RateLimits

SECRET = bytes(range(32))
ID_NUMBER = "11010519491231002X"


class Clock:
    """Time that moves when the test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    connection = aioredis.Redis.from_url(redis_url)
    yield connection
    await connection.aclose()


@pytest.fixture
async def dead_redis(tmp_path: Path) -> AsyncIterator[aioredis.Redis]:
    """A client whose server is gone: every command fails with a connection error."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    connection = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5)
    yield connection
    await connection.aclose()


async def _limited_after(limits: RateLimits, name: str, subject: str) -> tuple[int, RateLimited]:
    for allowed in range(100):
        try:
            await limits.hit(name, subject)
        except RateLimited as e:
            return allowed, e
    raise AssertionError("never limited")


async def test_a_window_refuses_the_request_past_its_limit_with_how_long_to_wait(
    client: aioredis.Redis,
) -> None:
    limits = RateLimits(client, {"face_id_number": "3 per 10 minutes; 5 per day"}, SECRET)
    allowed, refused = await _limited_after(limits, "face_id_number", ID_NUMBER)
    assert allowed == 3
    assert 590 <= refused.retry_after <= 600
    assert refused.message == f"操作过于频繁，请{10}分钟后再试"
    # Another subject has its own budget.
    await limits.hit("face_id_number", "440106199001011234")
    limits.close()


async def test_no_id_number_or_address_appears_in_redis(client: aioredis.Redis) -> None:
    limits = RateLimits(client, {"face_id_number": "3 per minute", "login_source": "3 per minute"}, SECRET)
    await limits.hit("face_id_number", ID_NUMBER)
    await limits.hit("login_source", "203.0.113.7")
    throttle = LoginThrottle(client, SECRET, free_failures=5, most_wait=900)
    await throttle.succeeded(await throttle.attempt("203.0.113.7", "issuer1"))
    await throttle.attempt("203.0.113.7", "issuer2")
    stored = [key + (await client.dump(key) or b"") for key in await client.keys("*")]
    assert len(stored) >= 4
    for secret in (ID_NUMBER.encode(), b"203.0.113.7", b"issuer1", b"issuer2"):
        assert not any(secret in entry for entry in stored), secret
    limits.close()


async def test_the_attackers_wait_grows_while_the_owner_gets_in(client: aioredis.Redis) -> None:
    clock = Clock()
    throttle = LoginThrottle(client, SECRET, free_failures=5, most_wait=900, clock=clock)
    attacker, owner = "203.0.113.66", "198.51.100.10"
    for _ in range(5):
        await throttle.attempt(attacker, "issuer2")  # each a wrong password: never taken back
    waits = []
    for _ in range(4):
        with pytest.raises(RateLimited) as held:
            await throttle.attempt(attacker, "issuer2")
        waits.append(held.value.retry_after)
        clock.now += held.value.retry_after  # the attacker waits it out and fails once more
        await throttle.attempt(attacker, "issuer2")
    assert waits == [1, 2, 4, 8]
    # The owner, from an address with a clean record, is let in at once.
    await throttle.succeeded(await throttle.attempt(owner, "issuer2"))


async def test_guesses_from_many_addresses_slow_the_account_for_them_not_for_its_owner(
    client: aioredis.Redis,
) -> None:
    clock = Clock()
    throttle = LoginThrottle(client, SECRET, free_failures=5, most_wait=900, clock=clock)
    usual = "198.51.100.10"
    await throttle.succeeded(await throttle.attempt(usual, "issuer2"))
    await throttle.attempt(usual, "issuer2")  # the owner mistypes once
    bots = [f"203.0.113.{n}" for n in range(1, 13)]
    for bot in bots:  # one guess each: no address has failed enough to wait on its own account
        await throttle.attempt(bot, "issuer2")
    with pytest.raises(RateLimited) as held:
        await throttle.attempt(bots[0], "issuer2")  # a second guess: the account's wait applies
    assert held.value.retry_after >= 2
    await throttle.succeeded(await throttle.attempt("192.0.2.50", "issuer2"))  # a clean address
    await throttle.succeeded(await throttle.attempt(usual, "issuer2"))  # the usual one, despite its typo
    # Another account is not slowed by this one's trouble.
    await throttle.attempt("192.0.2.51", "issuer1")


async def test_parallel_attempts_from_one_address_cannot_pass_the_free_ones(client: aioredis.Redis) -> None:
    throttle = LoginThrottle(client, SECRET, free_failures=5, most_wait=900)

    async def attempt() -> bool:
        try:
            await throttle.attempt("203.0.113.66", "issuer2")
        except RateLimited:
            return False
        return True

    answers = await asyncio.gather(*(attempt() for _ in range(30)))
    assert answers.count(True) == 5


async def test_without_redis_the_limits_hold_in_this_process(dead_redis: aioredis.Redis) -> None:
    limits = RateLimits(dead_redis, {"upload": "2 per minute"}, SECRET)
    allowed, refused = await _limited_after(limits, "upload", "oParent")
    assert allowed == 2 and 1 <= refused.retry_after <= 60
    clock = Clock()
    throttle = LoginThrottle(dead_redis, SECRET, free_failures=2, most_wait=900, clock=clock)
    await throttle.succeeded(await throttle.attempt("198.51.100.10", "issuer2"))
    for _ in range(2):
        await throttle.attempt("203.0.113.66", "issuer2")
    with pytest.raises(RateLimited):
        await throttle.attempt("203.0.113.66", "issuer2")
    await throttle.succeeded(await throttle.attempt("198.51.100.10", "issuer2"))
    limits.close()
