"""``python -m bench [--quick]``: measure, print the tables, write ``bench/results/latest.json``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import commands, httpbench, report
from bench.common import CLIENT_CPU, Settings, busy_cpus, pin_to

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="short measurements (a smoke test, ~15 s)")
    p.add_argument("--seconds", type=float, help="time budget of one measurement (default 3, quick 0.4)")
    p.add_argument("--rounds", type=int, help="measurements per target; the median is reported (default 3)")
    p.add_argument("--concurrency", type=int, default=16, help="HTTP requests in flight (default 16)")
    p.add_argument(
        "--pin", action="store_true", help="pin this process and the servers to separate CPUs (an experiment)"
    )
    p.add_argument("--only", choices=("commands", "http"), help="run one part only")
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    args = p.parse_args(argv)
    if args.seconds is not None and not 0 < args.seconds <= 10:
        p.error("--seconds must be in (0, 10]: every measurement stays short")
    if args.rounds is not None and not 1 <= args.rounds <= 5:
        p.error("--rounds must be 1 to 5")
    if not 1 <= args.concurrency <= 256:
        p.error("--concurrency must be 1 to 256")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    pinned = args.pin and pin_to(CLIENT_CPU)
    settings = Settings.make(
        quick=args.quick,
        seconds=args.seconds,
        rounds=args.rounds,
        concurrency=args.concurrency,
        pinned=pinned,
    )
    console = Console()
    started = datetime.now().astimezone()
    busy: dict[str, float | None] = {"before": busy_cpus()}

    def say(text: str) -> None:
        console.log(f"[dim]{text}[/]")

    command_summary: dict[str, Any] | None = None
    http_summary: dict[str, Any] | None = None
    if args.only in (None, "commands"):
        command_summary = report.summarise_commands(commands.measure(settings, say))
    if args.only in (None, "http"):
        http_summary = report.summarise_http(httpbench.measure(settings, say))
    busy["after"] = busy_cpus()
    doc = report.document(settings, started, busy, command_summary, http_summary)
    report.print_tables(console, doc)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    console.print(f"[dim]written {args.output}[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
