"""The audit log at scale: start-up check, memory and proofs at 10 k, 100 k and 1 M leaves (decision 0029).

``python -m bench.audit_scale [--sizes 10000,100000,1000000] [--proofs 2000] [--full]``

For each size a throw-away SQLite store is built quickly: ``size`` small stored events (one
``Synthetic`` aggregate each, encrypted and compressed like the service's) and their leaves written
straight into the tables, the tree's nodes computed
the way an older store is migrated (``AuditLog.complete_tree``), a checkpoint signed, then one real
journey (16 events) appended by the follower as the tail past the checkpoint. A fresh process then
opens the store as the service does at start — ``complete_tree`` (nothing to do) and
``check(thorough=False)`` — and reports its time and the process's peak RSS, then times inclusion and
consistency proofs from SQL at random indexes. ``--full`` also times the auditor's full check.

Not part of ``make bench`` (it takes minutes at 1 M, most of it building the store). Timings are
wall-clock on this machine; the claim is that they do not grow with the size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from eventsourcing.domain import Aggregate, event

ROOT = Path(__file__).resolve().parent.parent


class Synthetic(Aggregate):
    """A stand-in aggregate: one small event, stored with the service's cipher and compressor."""

    TOPIC = "bench:Synthetic"

    class Created(Aggregate.Created):
        TOPIC = "bench:Synthetic.Created"
        note: str

    @event(Created)
    def __init__(self, note: str) -> None:
        self.note = note


def _config(directory: Path) -> Any:
    from backend.config import Config

    return Config.from_env({}, data_dir=directory)


def _open(directory: Path) -> tuple[Any, Any]:
    from backend.routes.audit import open_audit_log
    from domain.service import Applications

    config = _config(directory)
    applications = Applications(config.event_store_env())
    return applications, open_audit_log(config, applications, ThreadPoolExecutor(max_workers=1))


class _Notification:
    """What ``AuditLog._leaf`` reads of a stored event at a position."""

    def __init__(self, position: int, stored: Any) -> None:
        self.id = position
        self.originator_id = stored.originator_id
        self.originator_version = stored.originator_version
        self.topic = stored.topic
        self.state = stored.state


def build(directory: Path, size: int) -> dict[str, float]:
    """A store of ``size`` synthetic events with their leaves, nodes and checkpoint, and a real tail."""
    from projections.audit_log import NAME, canonical
    from projections.merkle import leaf_hash
    from projections.runner import LogFollower
    from tests.builders import Walk

    applications, audit = _open(directory)
    file = _config(directory).event_store_env()["SQLITE_DBNAME"]
    started = time.perf_counter()
    conn = sqlite3.connect(file, isolation_level=None)
    conn.execute("BEGIN")
    batch_events: list[tuple[str, int, str, bytes]] = []
    batch_leaves: list[tuple[int, int, str, int, str, bytes]] = []
    mapper = applications.mapper
    for position in range(1, size + 1):
        created = Synthetic(note=f"synthetic {position}").collect_events()[0]
        stored = mapper.to_stored_event(created)
        leaf = audit._leaf(_Notification(position, stored), created)
        data = canonical(leaf)
        batch_events.append((str(stored.originator_id), 1, stored.topic, stored.state))
        batch_leaves.append((position - 1, position, leaf["aggregate_id"], 1, data.decode(), leaf_hash(data)))
        if len(batch_events) == 20_000 or position == size:
            conn.executemany("INSERT INTO stored_events VALUES (?, ?, ?, ?)", batch_events)
            conn.executemany(
                "INSERT INTO audit_leaves (leaf_index, position, aggregate_id, version, leaf_json, leaf_hash) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                batch_leaves,
            )
            batch_events.clear()
            batch_leaves.clear()
    conn.execute("INSERT INTO projection_positions (name, position) VALUES (?, ?)", (NAME, size))
    conn.execute("COMMIT")
    conn.close()
    built = time.perf_counter() - started
    started = time.perf_counter()
    audit.complete_tree()  # what the first start of this version does to a store written before it
    migrated = time.perf_counter() - started
    audit.make_checkpoint()
    walk = Walk(applications)
    walk.record_delivery()
    walk.submitted()
    asyncio.run(LogFollower(applications, audit, executor=audit.executor).catch_up())
    audit.db.close()
    applications.close()
    return {"build_seconds": round(built, 1), "nodes_migration_seconds": round(migrated, 2)}


def measure(directory: Path, proofs: int, full: bool) -> dict[str, Any]:
    """In a fresh process: the start-up audit work, peak RSS, proof times."""
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    applications, audit = _open(directory)
    opened = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    audit.complete_tree()
    result = audit.check(thorough=False)
    startup = time.perf_counter() - started
    assert result.ok, result
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tree = audit.tree()
    size = int(audit.latest_checkpoint()["tree_size"])
    rng = random.Random(7)
    inclusion, inclusion_cpu = [], []
    for _ in range(proofs):
        index = rng.randrange(size)
        t0, c0 = time.perf_counter(), time.process_time()
        tree.inclusion_proof(index, size)
        inclusion.append(time.perf_counter() - t0)
        inclusion_cpu.append(time.process_time() - c0)
    consistency = []
    for _ in range(max(1, proofs // 10)):
        size1 = rng.randrange(1, size)
        t0 = time.perf_counter()
        tree.consistency_proof(size1, size)
        consistency.append(time.perf_counter() - t0)
    inclusion.sort()
    inclusion_cpu.sort()
    out: dict[str, Any] = {
        "leaves": audit.size(),
        "checkpoint": size,
        "startup_check_seconds": round(startup, 3),
        "rss_mb_after_imports": round(baseline / 1024, 1),
        "rss_mb_after_open": round(opened / 1024, 1),
        "rss_mb_peak_after_check": round(peak / 1024, 1),
        "inclusion_proof_ms_median": round(statistics.median(inclusion) * 1000, 3),
        "inclusion_proof_ms_p99": round(inclusion[int(len(inclusion) * 0.99) - 1] * 1000, 3),
        # CPU time: what the proof costs, without the waits a busy machine adds to the wall-clock tail.
        "inclusion_proof_cpu_ms_p99": round(inclusion_cpu[int(len(inclusion_cpu) * 0.99) - 1] * 1000, 3),
        "consistency_proof_ms_median": round(statistics.median(consistency) * 1000, 3),
    }
    if full:
        started = time.perf_counter()
        assert audit.check().ok
        out["full_check_seconds"] = round(time.perf_counter() - started, 1)
        out["rss_mb_peak_after_full_check"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        )
    audit.db.close()
    applications.close()
    return out


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.audit_scale", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--proofs", type=int, default=2000)
    parser.add_argument("--full", action="store_true", help="also time the auditor's full check")
    parser.add_argument("--child", nargs=2, metavar=("WHAT", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        what, directory = args.child[0], Path(args.child[1])
        result = (
            build(directory, args.size) if what == "build" else measure(directory, args.proofs, args.full)
        )
        print(json.dumps(result))
        return 0
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="birthcert-audit-scale-") as tmp:
            row = {"synthetic_events": size}
            row |= _child("--child", "build", tmp, "--size", str(size))
            extra = ["--full"] if args.full else []
            row |= _child("--child", "measure", tmp, "--proofs", str(args.proofs), *extra)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
