"""The scale run's results: JSON, a Markdown table (printed and written) and a PNG of latency over time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markdown import Markdown

from bench.report import machine as _machine


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return _machine()


def _f(value: Any, fmt: str = "{:,.1f}", none: str = "—") -> str:
    if value is None:
        return none
    if isinstance(value, (int, float)):
        return fmt.format(value)
    return str(value)


class _Blocks(list[str]):
    """Markdown blocks (paragraphs, headings, tables), one blank line apart; ``row`` adds to the last."""

    def row(self, text: str) -> None:
        self[-1] += "\n" + text


def markdown(doc: dict[str, Any]) -> str:
    """Every measured part of the run as Markdown tables."""
    out = _Blocks()
    m = doc.get("machine", {})
    store = doc.get("store", {})
    out.append(
        f"## birthcert at scale — {doc.get('date')}\n\n{m.get('cpus')} CPUs · Python {m.get('python')} · "
        f"eventsourcing {m.get('eventsourcing')} · aiohttp {m.get('aiohttp')}"
    )
    if store:
        out.append(
            f"Store: {store.get('store', '?')} `{store.get('path')}`, {_f(store.get('applications'), '{:,}')} "
            f"submitted applications, {_f(store.get('max_notification_id'), '{:,}')} events."
        )
    if doc.get("warning"):
        out.append(f"**Warning:** {doc['warning']}.")
    seeding = doc.get("seeding") or []
    if seeding:
        out.append("### Seeding (fast path through the domain service, batch inserts)\n")
        out.append(
            "| applications | events | seconds | applications/s | events/s | jobs |\n|---:|---:|---:|---:|---:|---:|"
        )
        for r in seeding:
            out.row(
                f"| {r['applications']:,} | {r['events']:,} | {_f(r['seconds'])} | "
                f"{_f(r['applications_per_second'])} | {_f(r['events_per_second'], '{:,.0f}')} | {r['jobs']} |"
            )
    baseline = (doc.get("baseline") or {}).get("stock_commands_per_second")
    for key, title in (
        ("load", "Load: whole journeys over HTTP"),
        ("processes", "Processes (shared store and Redis)"),
    ):
        levels = doc.get(key) or []
        if not levels:
            continue
        out.append(f"### {title}\n")
        out.append(
            "| processes | users | think s | commands/s | ÷ stock | command p50 / p99 ms | status read p50 / p99 ms "
            "| events/s | status lag p50 / p99 ms | queue lag p50 / p99 ms | journeys | errors | client CPU |"
            + (" ÷ 1 process |" if key == "processes" else "")
        )
        out.row("|---:" * (13 + (1 if key == "processes" else 0)) + "|")
        for lv in levels:
            ratio = lv["commands_per_second"] / baseline if baseline else None
            row = (
                f"| {lv.get('processes', 1)} | {lv['users']:,} | {_f(lv['think_seconds'], '{:g}')} | "
                f"{_f(lv['commands_per_second'])} | {_f(ratio, '{:.2f}×')} | "
                f"{_f(lv['command_p50_ms'])} / {_f(lv['command_p99_ms'])} | "
                f"{_f(lv['status_read_p50_ms'])} / {_f(lv['status_read_p99_ms'])} | "
                f"{_f(lv.get('events_per_second'))} | "
                f"{_f(lv['status_lag']['p50_ms'])} / {_f(lv['status_lag']['p99_ms'])} | "
                f"{_f(lv['queue_lag']['p50_ms'])} / {_f(lv['queue_lag']['p99_ms'])} | "
                f"{lv['journeys_completed']:,} | {lv['errors']:,} | {_f(lv['client_cpu'], '{:.2f}')} |"
            )
            if key == "processes":
                row += f" {_f(lv.get('ratio_to_first'), '{:.2f}×')} |"
            out.row(row)
        out.append("Per route, p50 / p99 ms (requests/s) at each level:\n")
        heads = [
            f"{lv.get('processes', 1)}p × {lv['users']:,} users, think {lv['think_seconds']:g} s"
            for lv in levels
        ]
        out.append("| route | " + " | ".join(heads) + " |")
        out.row("|---" + "|---:" * len(levels) + "|")
        routes = sorted({route for lv in levels for route in lv["routes"]})
        for route in routes:
            cells = []
            for lv in levels:
                r = lv["routes"].get(route)
                cells.append(
                    "—"
                    if r is None
                    else f"{_f(r['p50_ms'])} / {_f(r['p99_ms'])} ({_f(r['per_second'])})"
                    + (f" {r['errors']} err" if r["errors"] else "")
                )
            out.row(f"| `{route}` | " + " | ".join(cells) + " |")
    if baseline:
        runs = " / ".join(_f(v, "{:,.0f}") for v in doc["baseline"]["runs"])
        out.append(
            f"\nStock library, same run (get + `@event` method + save, SQLite file beside the store): "
            f"{baseline:,.0f} commands/s ({runs})."
        )
    startup = doc.get("startup") or []
    if startup:
        out.append("### Start-up and memory of `birthcert serve`\n")
        out.append(
            "| store | start | applications | events | /healthz s | /readyz s | caught up s | RSS settled MB "
            "| RSS peak MB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|"
        )
        for s in startup:
            out.row(
                f"| `{Path(s['store']).name}` | {s['start']} | {_f(s['applications'], '{:,}')} | "
                f"{_f(s['events'], '{:,}')} | {_f(s['healthz_seconds'])} | "
                f"{_f(s['readyz_seconds'], none='not ready')} | {_f(s.get('caught_up_seconds'), none='no')} | "
                f"{_f(s['rss_ready_mb'], '{:,.0f}')} | "
                f"{_f(s['rss_peak_mb'], '{:,.0f}')} |"
            )
    proof = doc.get("proof")
    if proof:
        out.append("### Audit inclusion proofs\n")
        out.append(
            f"{proof['proofs']} proof bundles over HTTP at {_f(proof['leaves'], '{:,}')} leaves: first "
            f"{_f(proof['first_ms'])} ms, then p50 {_f(proof['p50_ms'])} ms, p99 {_f(proof['p99_ms'])} ms."
        )
    api = doc.get("proof_api")
    if api and "p50_ms" in api:
        out.append(
            f"One inclusion proof in process (`AuditLog.tree().inclusion_proof`) at {_f(api['leaves'], '{:,}')} "
            f"leaves: p50 {_f(api['p50_ms'], '{:.4f}')} ms, p99 {_f(api['p99_ms'], '{:.4f}')} ms over "
            f"{api['proofs']:,} random leaves, after a first `tree()` of {_f(api['first_tree_ms'])} ms."
        )
    elif api:
        out.append(f"Inclusion proofs in process: {api.get('error', api)}")
    rebuild = doc.get("rebuild")
    if rebuild:
        raw = rebuild["raw"]
        out.append("### Rebuild vs the library's raw catch-up (same store, same run)\n")
        out.append("| what | events | seconds | events/s | ÷ raw |\n|---|---:|---:|---:|---:|")
        out.row(
            f"| raw: `select_notifications` + decode | {raw['events']:,} | {_f(raw['seconds'])} | "
            f"{_f(raw['events_per_second'], '{:,.0f}')} | 1.00× |"
        )
        for view in ("status", "queue"):
            r = rebuild.get(view)
            if r:
                out.row(
                    f"| `birthcert projections rebuild --view {view}`{'' if r['ok'] else ' (FAILED)'} | "
                    f"{r['events']:,} | {_f(r['seconds'])} | {_f(r['events_per_second'], '{:,.0f}')} | "
                    f"{_f(r.get('ratio_to_raw'), '{:.2f}×')} |"
                )
    return "\n\n".join(out) + "\n"


def plot(doc: dict[str, Any], path: Path) -> bool:
    """Command and read p50/p99 per second of each load level; False when there is nothing to plot."""
    levels = (doc.get("load") or []) + (doc.get("processes") or [])
    if not levels:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(levels), 1, figsize=(10, 3 * len(levels)), squeeze=False)
    for ax, lv in zip(axes[:, 0], levels, strict=True):
        for kind, colour in (("command", "tab:red"), ("read", "tab:blue")):
            seconds = sorted(int(s) for s, k in lv["timeline"].items() if kind in k)
            for q, style in (("p50_ms", "-"), ("p99_ms", ":")):
                ax.plot(
                    seconds,
                    [lv["timeline"][str(s)][kind][q] for s in seconds],
                    style,
                    color=colour,
                    label=f"{kind} {q[:3]}",
                )
        ax.axvline(lv["ramp_seconds"], color="grey", linewidth=0.5)
        ax.set_yscale("log")
        ax.set_ylabel("ms")
        ax.set_title(
            f"{lv.get('processes', 1)} process(es), {lv['users']} users, think {lv['think_seconds']:g} s: "
            f"{lv['commands_per_second']:.1f} commands/s",
            fontsize=9,
        )
        ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("seconds since the level started (grey: end of the ramp)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write(doc: dict[str, Any], directory: Path, name: str, console: Console) -> None:
    """``scale-NAME.json``, ``.md`` and ``-latency.png`` in ``directory``; the Markdown printed."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"scale-{name}.json").write_text(
        json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    text = markdown(doc)
    (directory / f"scale-{name}.md").write_text(text, encoding="utf-8")
    console.print(Markdown(text))
    png = directory / f"scale-{name}-latency.png"
    if plot(doc, png):
        console.print(f"[dim]written {directory}/scale-{name}.json, .md and {png.name}[/]")
    else:
        console.print(f"[dim]written {directory}/scale-{name}.json and .md[/]")
