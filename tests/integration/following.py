"""What the tests of the log followers (views and processes) share: running service calls off the loop,
followers in the background, reading a page of the log, dumping Redis, and the fake platform in a thread."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
import requests

from domain.service import Applications
from projections.cli import register_projections
from projections.leader import LeaderLease
from projections.runner import LogFollower, Page

T = TypeVar("T")
TIMEOUT = 10.0


@dataclass
class Term:
    """A fence (``projections.runner.Fence``) at a fixed leader's term; None: not held."""

    term: int | None


def taken_over(env: dict[str, str]) -> tuple[int, int]:
    """The leader's lease held by one process and then taken by another: (the old term, the new one)."""
    old_holder, new_holder = (LeaderLease.open(env, name, ttl=60) for name in ("old", "new"))
    try:
        old = old_holder.acquire()
        assert old is not None
        old_holder.release(old.term)
        new = new_holder.acquire()
        assert new is not None and new.term > old.term
        return old.term, new.term
    finally:
        old_holder.db.close()
        new_holder.db.close()


async def off_loop(executor: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
    """Run a service command on the store executor, as the HTTP layer does."""
    return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)


@asynccontextmanager
async def running(*followers: LogFollower) -> AsyncIterator[None]:
    """Followers running in the background for the block."""
    tasks = [asyncio.create_task(f.run()) for f in followers]
    try:
        yield
    finally:
        for f in followers:
            f.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)


def log_page(applications: Applications, after: int = 0, limit: int = 1000) -> Page:
    """The log after ``after``, decoded, as a follower would read it."""
    notifications = applications.recorder.select_notifications(start=after + 1, limit=limit)
    return [(n.id, applications.mapper.to_domain_event(n)) for n in notifications]


async def dump(r: aioredis.Redis) -> dict[str, Any]:
    """Every key of the database with its value (strings as bytes, sorted sets as pairs)."""
    out: dict[str, Any] = {}
    async for key in r.scan_iter(match="*"):
        kind = (await r.type(key)).decode()
        if kind == "string":
            out[key.decode()] = await r.get(key)
        elif kind == "zset":
            out[key.decode()] = await r.zrange(key, 0, -1, withscores=True)
        else:
            raise AssertionError(f"unexpected {kind} at {key!r}")
    return out


class Background:
    """An event loop in a thread, for the fake platform (the WeChat adapter under test is synchronous)."""

    def __init__(self) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-platform", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class PlatformControl:
    """The fake platform's base URL and its control API (tests add their own queries)."""

    base_url: str
    http: requests.Session = field(default_factory=requests.Session)

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        reply = self.http.request(method, f"{self.base_url}{path}", json=body, timeout=10)
        assert reply.status_code < 500, reply.text
        return reply.json()


def projections_cli(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], data_dir: Path, *args: str) -> int:
    """Run ``birthcert projections ARGS`` as the command line would, with the store ``env`` in the environment."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BIRTHCERT_DATA_DIR", str(data_dir))
    parser = argparse.ArgumentParser()
    register_projections(parser.add_subparsers(dest="command"))
    parsed = parser.parse_args(["projections", *args])
    code: int = parsed.handler(parsed)
    return code
