"""The service starts on its embedded defaults and answers health and readiness over real HTTP."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient

from backend.app import create_app
from backend.config import Config


async def test_healthz_and_readyz_answer_on_the_embedded_store(
    tmp_path: Path, aiohttp_client, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    for name in ("CIPHER_KEY", "BIRTHCERT_INDEX_KEY", "PERSISTENCE_MODULE", "SQLITE_DBNAME"):
        monkeypatch.delenv(name, raising=False)
    config = Config.from_env({}, data_dir=tmp_path / "var")
    client: TestClient = await aiohttp_client(create_app(config))
    health = await client.get("/healthz")
    assert health.status == 200
    assert (await health.json())["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status == 200
    body = await ready.json()
    assert body["status"] == "ready"
    assert body["event_store"]["position"] == 0
    assert (tmp_path / "var" / "events.sqlite").exists()
