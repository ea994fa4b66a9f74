"""``python -m bench.seed --store DIR --scale 100k``: fill a store with N submitted applications, fast.

The fast path goes through the domain service, not around it: for each batch of families an in-memory
``Applications`` (the library's POPO recorder) with the store's OWN cipher, compressor and index keys
(``Config.event_store_env()`` of the store's data directory) runs the whole journey of every family —
the hospital's delivery record, start, both face checks, confirm, details, four ID photos, sign, EMS,
submit (``tests.builders.Walk``, 15 commands) — so the domain objects make every event, the index
aggregates included, and the library's mapper encrypts and compresses them exactly as the service would.
The batch's stored events are then written to the real store in ONE ``insert_events`` call (one
transaction; the recorder gives them their notification ids in order). With ``--jobs N`` N processes make
batches and this one only inserts them. A store seeded this way is a store the service writes: every
follower can rebuild from it.

The store directory is the service's data directory (``BIRTHCERT_DATA_DIR``): the key files, the SQLite
file (or, with ``--postgres``, the PostgreSQL settings in ``store.env``), and ``seed.json``, which says
how many applications it holds and how fast they were seeded. Seeding again adds to the store; the bench
reuses a seeded store as it is (``python -m bench.scale --store DIR``).

What the seeder does NOT do: render the archived form PDFs of the seeded history (26 PDFs/s on main,
hours at 1 M). It records the form archive's position at the end of the seeded log, as if caught up
(``--render-archive`` leaves it to the service). The status view, the queue and the audit log are left
to the service and to ``birthcert projections rebuild``, which the bench measures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from eventsourcing.persistence import IntegrityError, StoredEvent
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

SCALES = {"1k": 1_000, "10k": 10_000, "100k": 100_000, "1M": 1_000_000}
DEFAULT_BATCH = 1_000
STORE_ENV = "store.env"  # the persistence settings of a PostgreSQL store (not the keys: they are files)
SEED_FILE = "seed.json"
# Seeded mothers and fathers get ID numbers in districts the demo and the load generator never use.
MOTHER_REGION = "440105"
FATHER_REGION = "440103"
# The seeded history's hospital: not the demo institution (GZFY01), whose queue the load's issuer works, so that
# the issuer's queue holds the load's applications, not a million seeded ones it cannot archive (their signature
# images are not in the blob store).
SEED_INSTITUTION_CODE = "GZPY01"
ARCHIVE_POSITION = "archive"  # projections.archive's tracked position (projections.sql)
STARTED_TOPIC = "birthcert:ApplicationStarted"  # counted per batch: the applications it holds


def parse_scale(text: str) -> int:
    """``10k``, ``100k``, ``1M`` or a plain number."""
    if text in SCALES:
        return SCALES[text]
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        msg = f"scale must be one of {', '.join(SCALES)} or a number, not {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if value < 1:
        msg = "scale must be at least 1"
        raise argparse.ArgumentTypeError(msg)
    return value


def postgres_settings(dbname: str, schema: str | None = None) -> dict[str, str]:
    """The library's PostgreSQL settings for a local database (trust auth, as in the tests)."""
    settings = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": os.environ.get("POSTGRES_HOST", "127.0.0.1"),
        "POSTGRES_PORT": os.environ.get("POSTGRES_PORT", "5432"),
        "POSTGRES_USER": os.environ.get("POSTGRES_USER", "postgres"),
        "POSTGRES_PASSWORD": os.environ.get("POSTGRES_PASSWORD", ""),
    }
    if schema:
        settings["POSTGRES_SCHEMA"] = schema
    return settings


def store_environ(store: Path) -> dict[str, str]:
    """The environment a service (or a tool) needs for the store in ``store``: its data directory and,
    for PostgreSQL, the settings saved in ``store.env``."""
    env = {"BIRTHCERT_DATA_DIR": str(store)}
    path = store / STORE_ENV
    if path.exists():
        env.update(json.loads(path.read_text(encoding="utf-8")))
    return env


def store_env(store: Path) -> dict[str, str]:
    """``Config.event_store_env()`` of the store: the library's settings, the cipher and index keys."""
    from backend.config import Config

    return Config.from_env(store_environ(store), data_dir=store).event_store_env()


def seeded_count(store: Path) -> int:
    """How many applications ``seed.json`` says the store holds (0 when never seeded)."""
    path = store / SEED_FILE
    if not path.exists():
        return 0
    return int(json.loads(path.read_text(encoding="utf-8")).get("applications", 0))


def seed_info(store: Path) -> dict[str, Any]:
    """``seed.json`` (empty when never seeded)."""
    path = store / SEED_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


# ---------------------------------------------------------------- making the events (any process)


@dataclass(frozen=True)
class Batch:
    """Families ``first`` .. ``first + count - 1`` (each number gives unique ID and inpatient numbers)."""

    first: int
    count: int


_KEYS: dict[str, str] = {}


def _init_worker(keys: Mapping[str, str]) -> None:
    _KEYS.clear()
    _KEYS.update(keys)
    with contextlib.suppress(OSError):
        os.nice(0)  # inherits the parent's niceness; nothing to add


def memory_env(store_env_: Mapping[str, str]) -> dict[str, str]:
    """The store's cipher, compressor and keys on the library's in-memory recorder."""
    kept = ("CIPHER_TOPIC", "CIPHER_KEY", "COMPRESSOR_TOPIC", "BIRTHCERT_INDEX_KEY", "BIRTHCERT_PROVINCE")
    env = {k: store_env_[k] for k in kept if k in store_env_}
    env["PERSISTENCE_MODULE"] = "eventsourcing.popo"
    # Each family's aggregates stay in memory between its commands (the library's own cache): no replay.
    # Nothing is deep-copied or fast-forwarded: one thread, and every command of the seed succeeds.
    env["AGGREGATE_CACHE_MAXSIZE"] = "1000"
    env["AGGREGATE_CACHE_FASTFORWARD"] = "n"
    env["DEEPCOPY_FROM_AGGREGATE_CACHE"] = "n"
    env["BIRTHCERT_SNAPSHOT_INTERVAL"] = store_env_.get("BIRTHCERT_SNAPSHOT_INTERVAL", "50")
    return env


def family_walk(app: Any, n: int) -> Any:
    """The n-th seeded family's ``Walk`` (ID numbers unique up to ~1.8 M families)."""
    from domain.delivery import Institution
    from domain.values import Actor
    from tests.builders import Walk, make_id_number

    class SeedWalk(Walk):
        def next_seq(self) -> str:
            # The family's number: 8 hex digits of the application id would repeat ~100 times in a million.
            self._seq += 1
            return f"S{n:09d}-{self._seq:02d}"

    born = (date(1980, 1, 1) + timedelta(days=n // 499)).strftime("%Y%m%d")
    seq = 2 * (n % 499) + 2
    return SeedWalk(
        app,
        inst=Institution(SEED_INSTITUTION_CODE, "广州市番禺区何贤纪念医院", "GD"),
        mother_id=make_id_number(MOTHER_REGION, born, f"{seq:03d}"),
        father_id=make_id_number(FATHER_REGION, born, f"{seq + 1:03d}"),
        parent=Actor(id=f"oSeed{n:08d}", role="parent"),
    )


def make_batch(batch: Batch) -> list[StoredEvent]:
    """Run the batch's journeys on an in-memory store with the real keys; its stored events, in order."""
    from domain.service import Applications
    from tests.builders import NOW

    app = Applications(memory_env(_KEYS), clock=lambda: NOW)
    try:
        for n in range(batch.first, batch.first + batch.count):
            walk = family_walk(app, n)
            walk.record_delivery(inpatient_no=f"ZYS{n:09d}")
            walk.submitted()
        return stored_events(app)
    finally:
        app.close()


def stored_events(app: Any) -> list[StoredEvent]:
    """Every stored event of an in-memory application, in log order (as the store will number them)."""
    recorder = app.recorder
    events: list[StoredEvent] = []
    start = 1
    while True:
        page = recorder.select_notifications(start, 10_000)
        if not page:
            return events
        events.extend(
            StoredEvent(
                originator_id=n.originator_id,
                originator_version=n.originator_version,
                topic=n.topic,
                state=n.state,
            )
            for n in page
        )
        start = page[-1].id + 1


# ---------------------------------------------------------------- writing them (this process)


def batches(first: int, total: int, size: int) -> Iterator[Batch]:
    """Families ``first`` .. ``first + total - 1`` in batches of ``size``."""
    n = first
    end = first + total
    while n < end:
        count = min(size, end - n)
        yield Batch(n, count)
        n += count


def seed(
    store: Path,
    total: int,
    *,
    batch_size: int = DEFAULT_BATCH,
    jobs: int = 1,
    postgres: dict[str, str] | None = None,
    render_archive: bool = False,
    console: Console | None = None,
) -> dict[str, Any]:
    """Add ``total`` submitted applications to the store in ``store``; return what ``seed.json`` now says."""
    from domain.service import Applications
    from projections.sql import Database

    console = console or Console()
    store.mkdir(parents=True, exist_ok=True)
    if postgres is not None:
        (store / STORE_ENV).write_text(json.dumps(postgres, indent=2) + "\n", encoding="utf-8")
    env = store_env(store)
    if postgres is not None:
        from backend.migrate import migrate

        migrate(env)  # as an operator would before the first start: processes only check the schema (0026)
    before = seed_info(store)
    first = int(before.get("next_family", 0))
    writer = Applications(env)
    db = Database.open(env)
    db.create_tables()
    runs = list(before.get("runs", []))
    columns = (
        TextColumn("[bold]seeding[/] {task.fields[where]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    where = "PostgreSQL " + env["POSTGRES_DBNAME"] if "POSTGRES_DBNAME" in env else "SQLite"
    started = time.perf_counter()
    events = 0
    done = 0
    end = int(before.get("max_notification_id", 0))

    def checkpoint(final: bool) -> dict[str, Any]:
        """``seed.json`` as of the last batch written: a run stopped half-way resumes with ``--top-up``."""
        seconds = time.perf_counter() - started
        run = {
            "applications": done,
            "events": events,
            "seconds": round(seconds, 1),
            "applications_per_second": round(done / seconds, 1) if seconds else None,
            "events_per_second": round(events / seconds, 1) if seconds else None,
            "jobs": jobs,
            "batch": batch_size,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "finished": final,
        }
        info = {
            "applications": int(before.get("applications", 0)) + done,
            "events": int(before.get("events", 0)) + events,
            "max_notification_id": end,
            "next_family": first + done,
            "store": where,
            "archive_rendered": render_archive,
            "runs": [*runs, run],
        }
        staging = store / f".{SEED_FILE}.tmp"
        staging.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        staging.replace(store / SEED_FILE)
        return info

    pool = None
    try:
        work = batches(first, total, batch_size)
        made: Iterator[list[StoredEvent]]
        if jobs > 1:
            pool = multiprocessing.get_context("spawn").Pool(
                jobs, initializer=_init_worker, initargs=(memory_env(env),)
            )
            made = pool.imap(make_batch, work)
        else:
            _init_worker(memory_env(env))
            made = (make_batch(b) for b in work)
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("applications", total=total, where=where, rate="")
            for number, stored in enumerate(made):
                try:
                    writer.recorder.insert_events(stored)
                    events += len(stored)
                except IntegrityError:
                    if number or not before:
                        raise
                    # A run stopped between this batch's insert and its checkpoint: the batch is there.
                    console.print(
                        "[yellow]the first batch was already in the store (resumed run): skipped[/]"
                    )
                done += len({e.originator_id for e in stored if e.topic == STARTED_TOPIC})
                end = writer.recorder.max_notification_id() or 0
                if not render_archive:
                    with db.transaction():
                        db.advance(ARCHIVE_POSITION, end)
                info = checkpoint(final=False)
                elapsed = time.perf_counter() - started
                progress.update(
                    task,
                    completed=done,
                    rate=f"{done / elapsed:,.0f} applications/s · {events / elapsed:,.0f} events/s",
                )
        info = checkpoint(final=True)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        db.close()
        writer.close()
    run = info["runs"][-1]
    console.print(
        f"seeded {done:,} applications ({events:,} events) in {run['seconds']:,.1f} s: "
        f"{run['applications_per_second']:,} applications/s, {run['events_per_second']:,} events/s; "
        f"the store now holds {info['applications']:,} ({store})"
    )
    return info


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.seed", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", type=Path, required=True, help="the store's data directory (created)")
    p.add_argument("--scale", type=parse_scale, default=SCALES["10k"], help="10k, 100k, 1M or a number")
    p.add_argument(
        "--top-up",
        action="store_true",
        help="add only what the store lacks to hold --scale applications (else add --scale more)",
    )
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="applications per transaction")
    p.add_argument("--jobs", type=int, default=1, help="processes making the events (default 1)")
    p.add_argument(
        "--postgres",
        metavar="DBNAME",
        help="seed PostgreSQL database DBNAME at 127.0.0.1:5432 (created if missing) instead of SQLite",
    )
    p.add_argument("--render-archive", action="store_true", help="leave the form archive to render the PDFs")
    return p.parse_args(argv)


def ensure_database(dbname: str) -> None:
    """CREATE DATABASE ``dbname`` on the local server if it is not there."""
    import psycopg

    settings = postgres_settings("postgres")
    with psycopg.connect(
        host=settings["POSTGRES_HOST"],
        port=int(settings["POSTGRES_PORT"]),
        user=settings["POSTGRES_USER"],
        password=settings["POSTGRES_PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not found:
            conn.execute(f'CREATE DATABASE "{dbname}"')


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    postgres = None
    if args.postgres:
        ensure_database(args.postgres)
        postgres = postgres_settings(args.postgres)
    total = args.scale - seeded_count(args.store) if args.top_up else args.scale
    if total <= 0:
        Console().print(f"{args.store} already holds {seeded_count(args.store):,} applications")
        return 0
    seed(
        args.store,
        total,
        batch_size=args.batch,
        jobs=args.jobs,
        postgres=postgres,
        render_archive=args.render_archive,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
