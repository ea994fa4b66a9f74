"""Fixtures of the integration tests of the log followers: the store executor, the service, a Redis client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis.asyncio as aioredis

from domain.service import Applications
from tests.builders import NOW


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    """One store thread, as the service runs on SQLite."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-store")
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def applications(sqlite_env: dict[str, str]) -> Iterator[Applications]:
    """The service on a SQLite file, at the builders' fixed time."""
    app = Applications(env=sqlite_env, clock=lambda: NOW)
    yield app
    app.close()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """An asyncio Redis client on the test's emptied database."""
    r = aioredis.Redis.from_url(redis_url)
    yield r
    await r.aclose()
