"""``birthcert projections rebuild | parked | retry``: views rebuilt blue/green; parked events.

Add ``register_projections`` to ``backend.cli.COMMANDS``. A rebuild may run while the service
serves: it fills a NEW generation of the view beside the live one (the service keeps reading and
writing the live one), and once the new one has caught up with the live one it switches the live
pointer to it in one atomic step, then drops the old generation after a grace period
(``projections.redis_view``). Parked events (``projections.runner``) are listed with ``parked`` and
handed back to the running service's followers with ``retry``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from backend.config import Config
from backend.redis_server import open_redis
from backend.storage import at_rest_key
from backend.working_days import working_calendar
from domain.service import Applications
from projections.redis_view import sleep_grace
from projections.review_queue import ReviewQueueView
from projections.runner import LogFollower
from projections.sql import Database, SqlParkingLot
from projections.status import StatusView, derive_pseudonym_key
from projections.worklist import HospitalWorklistView

VIEWS = ("status", "queue", "worklist")
REBUILD_PAGE_SIZE = 500
# Catch-ups with the live generation before giving up on switching (the service keeps writing it).
SWITCH_ATTEMPTS = 50


def register_projections(subparsers: Any) -> None:
    """Add ``projections rebuild [--view status]`` to the ``birthcert`` command line."""
    p = subparsers.add_parser("projections", help="manage the read models that follow the event log")
    commands = p.add_subparsers(dest="projections_command", required=True, metavar="COMMAND")
    rebuild = commands.add_parser("rebuild", help="empty a view and rebuild it from the whole event log")
    rebuild.add_argument(
        "--view",
        choices=VIEWS,
        default="status",
        help="which view: status (parents), queue (issuers) or worklist (hospitals); default status",
    )
    rebuild.set_defaults(handler=rebuild_view)
    parked = commands.add_parser(
        "parked", help="list the events followers have parked (set aside after failing)"
    )
    parked.set_defaults(handler=list_parked)
    retry = commands.add_parser("retry", help="ask the running service to apply parked events again")
    retry.add_argument(
        "--follower", help="only this follower's (status, review-queue, worklist, archive, archive_pdf, …)"
    )
    retry.add_argument("--position", type=int, help="only the event at this position")
    retry.set_defaults(handler=retry_parked)


def _parking_lot(config: Config, executor: ThreadPoolExecutor) -> SqlParkingLot:
    return SqlParkingLot(Database.open(config.event_store_env()), executor)


def list_parked(args: argparse.Namespace) -> int:
    """Print the parked events: follower, position, error class, attempts, when, retry asked."""
    config = Config.from_env()
    console = Console()
    executor = ThreadPoolExecutor(max_workers=1)
    lot = _parking_lot(config, executor)
    try:
        rows = lot.list_now()
    finally:
        lot.db.close()
        executor.shutdown()
    if not rows:
        console.print("no parked events")
        return 0
    # One line per event (follower, position, error class, attempts, when, retry asked): whole, greppable.
    print("follower\tposition\terror\tattempts\tparked_at\tretry_requested")
    for row in rows:
        print(
            f"{row.follower}\t{row.position}\t{row.error}\t{row.attempts}\t{row.parked_at}\t"
            f"{'yes' if row.retry_requested else 'no'}"
        )
    return 0


def retry_parked(args: argparse.Namespace) -> int:
    """Mark parked events for a retry; the running followers apply them within seconds."""
    config = Config.from_env()
    executor = ThreadPoolExecutor(max_workers=1)
    lot = _parking_lot(config, executor)
    try:
        n = lot.request_retry(args.follower, args.position)
    finally:
        lot.db.close()
        executor.shutdown()
    Console().print(
        f"{n} parked event(s) marked for a retry: the running service applies them within seconds; "
        "`birthcert projections parked` shows what is still parked"
    )
    return 0 if n else 1


def rebuild_view(args: argparse.Namespace) -> int:
    """Reset the view and catch up from zero, with a progress bar; print the final position."""
    config = Config.from_env()
    console = Console()
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projections-rebuild")
    applications = Applications(config.event_store_env())
    handle = open_redis(config.redis_url, config.redis_dir)
    try:
        position, count = asyncio.run(
            _rebuild(config, applications, handle.url, executor, console, args.view)
        )
    finally:
        applications.close()
        handle.close()
        executor.shutdown(wait=True)
    what = "items" if args.view == "worklist" else "applications"
    console.print(f"view {args.view}: rebuilt to position {position}, {count} {what}")
    return 0


async def _rebuild(
    config: Config,
    applications: Applications,
    redis_url: str,
    executor: ThreadPoolExecutor,
    console: Console,
    name: str = "status",
    generation: str | None = None,
) -> tuple[int, int]:
    """Build a new generation from zero, switch the live pointer to it, drop the old one."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    generation = generation or f"g{time.time_ns() // 1_000_000}"
    try:
        view: StatusView | ReviewQueueView | HospitalWorklistView
        if name == "worklist":
            view = HospitalWorklistView(redis, applications, executor, generation=generation)
        elif name == "queue":
            view = ReviewQueueView(
                redis,
                applications,
                executor,
                generation=generation,
                calendar=working_calendar(config.data_dir),
            )
        else:
            view = StatusView(
                redis,
                applications,
                executor,
                pseudonym_key=derive_pseudonym_key(config.index_key),
                seal_key=at_rest_key(config.cipher_key, config.index_key),
                generation=generation,
            )
        follower = LogFollower(applications, view, executor=executor, page_size=REBUILD_PAGE_SIZE)
        loop = asyncio.get_running_loop()
        total = await loop.run_in_executor(executor, applications.recorder.max_notification_id) or 0
        await view.reset()
        columns = (
            TextColumn(f"[bold]rebuilding {name} view"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("events", total=total)
            # Events written during the rebuild are caught up too: the bar may end past its total.
            position = await follower.catch_up(
                on_page=lambda p: progress.update(task, completed=p, total=max(total, p))
            )
        for _ in range(SWITCH_ATTEMPTS):
            old = await view.generations.switch()
            if old is not None:
                break
            # The service's follower moved the live generation on meanwhile: catch up with it, then switch.
            position = await follower.catch_up()
        else:
            await view.reset()
            msg = f"the {name} view could not catch up with the live one; nothing was switched"
            raise RuntimeError(msg)
        if old != generation:
            # Readers of this or another process may still hold the old name for a moment.
            await sleep_grace()
            await view.generations.drop(old)
        await view.generations.drop_strays(keep=(generation,))
        return position, await view.count()
    finally:
        await redis.aclose()
