"""The embedded Redis (``REDIS_URL`` unset, as ``make run`` uses it) keeps what it acknowledged.

The notifications outbox lives in Redis and is not rebuildable from the event log (decision 0010), so
the embedded server logs every write (AOF, fsync each second) instead of snapshotting every few
minutes: a killed server — a power cut, an OOM kill — comes back with the outbox it had.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import pytest

from backend.redis_server import open_redis, warn_unless_durable


def test_the_embedded_redis_survives_a_kill_with_what_it_acknowledged(tmp_path: Path) -> None:
    handle = open_redis(None, tmp_path)
    client = handle.sync_client()
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    client.hset("bc:notify:msg:42", mapping={"state": "pending", "template": "rejected"})
    # Redis writes the AOF before it answers; the OS keeps the write when the process dies.
    pid = int(client.info("server")["process_id"])
    client.close()
    os.kill(pid, signal.SIGKILL)  # no shutdown save: only the append-only file can bring it back
    handle.embedded.running = False
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, "the server did not die"
        time.sleep(0.01)

    again = open_redis(None, tmp_path)
    try:
        revived = again.sync_client()
        assert revived.hgetall("bc:notify:msg:42") == {b"state": b"pending", b"template": b"rejected"}
        revived.close()
    finally:
        again.close()


async def test_a_redis_without_an_append_only_file_is_named_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    handle = open_redis(None, tmp_path)
    client = handle.async_client()
    try:
        assert await warn_unless_durable(client)
        assert not caplog.records
        await client.config_set("appendonly", "no")  # what a default Redis server runs with
        with caplog.at_level(logging.WARNING, logger="backend.redis_server"):
            assert not await warn_unless_durable(client)
        assert "without AOF" in caplog.text
    finally:
        await client.aclose()
        handle.close()
