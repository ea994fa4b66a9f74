"""``birthcert serve --workers N``: N worker processes on one port, supervised by the parent (decision 0024).

Each worker is a whole service — its own event loop, store connections, Redis clients and followers — and
binds the port with ``SO_REUSEPORT``, so the kernel spreads connections among them. The parent serves nothing:
before it starts the workers it does, once, what they must not race for (the tables, the development key
files, the embedded Redis when ``REDIS_URL`` is unset, which the workers then share); then it restarts a worker
that dies, passes SIGTERM / SIGINT on, and exits once they have stopped. Among the workers (and any other
process on the same store) one leader runs the followers that must run once (``projections.leader``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

from backend.config import PRODUCTION, Config

log = logging.getLogger(__name__)

# A worker that dies sooner than this after its start is started again only after a pause (a crash loop
# must not spin), doubling up to RESTART_PAUSE_MOST.
STEADY_SECONDS = 10.0
RESTART_PAUSE_MOST = 30.0
# How long the workers have to finish their requests and give the lease up after SIGTERM.
STOP_SECONDS = 30.0


def prepare_shared(config: Config) -> None:
    """What the workers would otherwise race for, done once: the data directory, the tables where the process
    creates them (SQLite; on PostgreSQL with ``CREATE_TABLE=n`` only checked: ``birthcert db migrate``'s job,
    a ``SchemaError`` before any worker starts), the development key files."""
    from backend.auth import TokenKeys
    from backend.config import secure_local_store
    from backend.routes.audit import log_signing_keys
    from domain.service import Applications
    from projections.sql import Database

    secure_local_store(config)
    Applications(config.event_store_env()).close()
    Database.open(config.event_store_env()).close()
    TokenKeys.load_or_create(config.jwt_key_dir)
    log_signing_keys(config)


def _worker(host: str, port: int, number: int, parent: int) -> None:
    """One worker: the service, on the shared port (runs in a process of its own); ``parent``: the supervisor."""
    from aiohttp import web

    from backend.app import create_app
    from backend.logs import configure_logging

    configure_logging()
    _die_with_parent(parent)
    config = Config.from_env(default_environment=PRODUCTION)
    app = create_app(config)
    log.info("worker %d (pid %d) serving", number, os.getpid())
    web.run_app(app, host=host, port=port, reuse_port=True, print=None, access_log=None)


def _die_with_parent(parent: int) -> None:
    """On Linux: SIGTERM for this worker when its parent dies, even by SIGKILL (no worker outlives its
    supervisor, holding the port); elsewhere the parent's SIGTERM is what stops it. ``parent`` is the pid the
    supervisor passed: a parent that died while this worker was starting is no longer its parent (read here, it
    would be init's, and the check below would pass)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the call above
        raise SystemExit(0)


class Supervisor:
    """Starts the workers, starts again one that died, stops them all on SIGTERM or SIGINT."""

    def __init__(self, host: str, port: int, workers: int, *, on_tick: Callable[[], None] | None = None):
        self.host, self.port, self.count = host, port, workers
        self.on_tick = on_tick
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, BaseProcess] = {}
        self.started_at: dict[int, float] = {}
        self.pauses: dict[int, float] = {}
        self.stopping = False

    def _start(self, number: int) -> None:
        process = self.context.Process(
            target=_worker,
            args=(self.host, self.port, number, os.getpid()),
            name=f"birthcert-worker-{number}",
        )
        process.start()
        self.workers[number], self.started_at[number] = process, time.monotonic()

    def _stop(self, signum: int, _frame: Any) -> None:
        self.stopping = True

    def run(self) -> int:
        """Until SIGTERM or SIGINT: keep ``count`` workers alive. Then stop them, and return 0."""
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for number in range(self.count):
                self._start(number)
            due: dict[int, float] = {}
            while not self.stopping:
                sentinels = [p.sentinel for p in self.workers.values() if p.is_alive()]
                multiprocessing.connection.wait(sentinels, timeout=0.5)
                if self.on_tick is not None:
                    self.on_tick()
                now = time.monotonic()
                for number, process in list(self.workers.items()):
                    if self.stopping or process.is_alive() or number in due:
                        continue
                    lived = now - self.started_at[number]
                    pause = (
                        0.0
                        if lived >= STEADY_SECONDS
                        else min(2 * self.pauses.get(number, 0.5), RESTART_PAUSE_MOST)
                    )
                    self.pauses[number] = pause
                    log.error(
                        "worker %d (pid %s) exited with %s after %.0f s; starting it again%s",
                        number,
                        process.pid,
                        process.exitcode,
                        lived,
                        f" in {pause:.0f} s" if pause else "",
                    )
                    due[number] = now + pause
                for number, at in list(due.items()):
                    if not self.stopping and now >= at:
                        del due[number]
                        self._start(number)
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _stop_all(self) -> None:
        for process in self.workers.values():
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for process in self.workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker pid %s did not stop within %.0f s; killed", process.pid, STOP_SECONDS)
                process.kill()
                process.join(5)


def serve_workers(config: Config, host: str, port: int, workers: int, announce: Callable[[], None]) -> int:
    """Prepare what the workers share, run ``workers`` of them on ``host:port`` until stopped."""
    from backend.redis_server import open_redis

    prepare_shared(config)
    handle = None
    if not config.redis_url:
        # One embedded Redis for every worker: the parent owns it (and starts it again if it dies).
        handle = open_redis(None, config.redis_dir)
        os.environ["REDIS_URL"] = handle.url
    supervised = handle

    def keep_redis() -> None:
        if supervised is not None and not supervised.embedded_alive():
            log.error("the embedded Redis stopped; starting it again")
            with contextlib.suppress(Exception):
                supervised.restart()

    try:
        announce()
        return Supervisor(host, port, workers, on_tick=keep_redis).run()
    finally:
        if handle is not None:
            os.environ.pop("REDIS_URL", None)
            handle.close()
