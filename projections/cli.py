"""``birthcert projections rebuild``: a view from zero, following the whole event log once.

Add ``register_projections`` to ``backend.cli.COMMANDS``. A rebuild may run while the service
serves: the view is emptied, then refilled; a running follower that races it only writes pages
the rebuild would write identically (the view refuses a position that does not increase).
"""

from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from backend.config import Config
from backend.redis_server import open_redis
from backend.working_days import working_calendar
from domain.service import Applications
from projections.review_queue import ReviewQueueView
from projections.runner import LogFollower
from projections.status import StatusView, derive_pseudonym_key

VIEWS = ("status", "queue")
REBUILD_PAGE_SIZE = 500


def register_projections(subparsers: Any) -> None:
    """Add ``projections rebuild [--view status]`` to the ``birthcert`` command line."""
    p = subparsers.add_parser("projections", help="manage the read models that follow the event log")
    commands = p.add_subparsers(dest="projections_command", required=True, metavar="COMMAND")
    rebuild = commands.add_parser("rebuild", help="empty a view and rebuild it from the whole event log")
    rebuild.add_argument(
        "--view",
        choices=VIEWS,
        default="status",
        help="which view: status (parents) or queue (issuers); default status",
    )
    rebuild.set_defaults(handler=rebuild_view)


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
    console.print(f"view {args.view}: rebuilt to position {position}, {count} applications")
    return 0


async def _rebuild(
    config: Config,
    applications: Applications,
    redis_url: str,
    executor: ThreadPoolExecutor,
    console: Console,
    name: str = "status",
) -> tuple[int, int]:
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    try:
        view: StatusView | ReviewQueueView
        if name == "queue":
            view = ReviewQueueView(redis, applications, executor, calendar=working_calendar(config.data_dir))
        else:
            view = StatusView(
                redis, applications, executor, pseudonym_key=derive_pseudonym_key(config.index_key)
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
        return position, await view.count()
    finally:
        await redis.aclose()
