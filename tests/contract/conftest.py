"""The live service for the contract tests: one per module, on a fresh SQLite file and an emptied Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.redis_server import RedisHandle
from tests.contract.live import LiveService


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, redis_handle: RedisHandle) -> Iterator[LiveService]:
    """The service and the fake platforms, running for the whole module (its Redis emptied first)."""
    client = redis_handle.sync_client()
    client.flushdb()
    client.close()
    data_dir: Path = tmp_path_factory.mktemp("live") / "var"
    service = LiveService(data_dir, redis_handle.url).start()
    yield service
    service.stop()
