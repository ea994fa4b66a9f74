"""The service as a client meets it over HTTP, for the fault tests: ``birthcert serve`` in a process of its own
(to ``kill -9``), its environment, and one request with its Idempotency-Key and the answer received."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import redis
from multidict import CIMultiDict

from backend.config import Config
from backend.dev import dev_environ
from domain.service import Applications
from miniprogram_stub.client import MiniProgram, id_photo, signature_png


@dataclass(frozen=True)
class Answer:
    """What the client received: status, headers and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def replayed(self) -> bool:
        return self.headers.get("Idempotent-Replayed") == "true"

    @property
    def version(self) -> int:
        """The version the ETag names (every command's success carries it)."""
        return int(self.headers["ETag"].strip('"'))

    def same_as(self, first: Answer) -> bool:
        """The same answer: status, body and the headers a client acts on."""
        kept = ("ETag", "Location", "Content-Type")
        assert "ETag" in first.headers or first.status >= 400, "every command's success carries its version"
        return (self.status, self.body, [self.headers.get(h) for h in kept]) == (
            first.status,
            first.body,
            [first.headers.get(h) for h in kept],
        )


async def send(
    session: aiohttp.ClientSession,
    api: str,
    mp: MiniProgram,
    method: str,
    path: str,
    *,
    key: str | None,
    json: Any = None,
    form: Callable[[], aiohttp.FormData] | None = None,
    if_match: int | None = None,
) -> Answer:
    """One request as the mini-program sends it, with ``key`` as its Idempotency-Key (a multipart body is
    built anew by ``form`` for each send)."""
    headers = {"Authorization": f"Bearer {mp.token}"} if mp.token else {}
    if key is not None:
        headers["Idempotency-Key"] = key
    if if_match is not None:
        headers["If-Match"] = f'"{if_match}"'
    data = form() if form is not None else None
    async with session.request(method, api + path, json=json, data=data, headers=headers) as r:
        return Answer(r.status, CIMultiDict(r.headers), await r.read())


def signature_form(sha256: str) -> Callable[[], aiohttp.FormData]:
    """The signature's multipart body, built anew for each send."""

    def build() -> aiohttp.FormData:
        form = aiohttp.FormData()
        form.add_field("form_sha256", sha256)
        form.add_field("file", signature_png(), filename="signature.png", content_type="image/png")
        return form

    return build


def photo_form(kind: str) -> Callable[[], aiohttp.FormData]:
    """An ID photo's multipart body, built anew for each send."""
    content = id_photo(kind)

    def build() -> aiohttp.FormData:
        form = aiohttp.FormData()
        form.add_field("kind", kind)
        form.add_field("file", content, filename="photo.jpg", content_type="image/jpeg")
        return form

    return build


def flush(redis_url: str) -> None:
    """Empty Redis, as an operator's FLUSHDB or a Redis that lost its data."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()


def service_env(
    environ: Mapping[str, str], *, platform: str, port: int, redis_url: str, data_dir: Path, **more: str
) -> dict[str, str]:
    """``birthcert serve``'s environment in development: on ``port``, the data in ``data_dir``, the given
    Redis, every outside platform the fake at ``platform``; ``more`` adds to it."""
    api = f"http://127.0.0.1:{port}"
    env = dev_environ(environ, platform, api)
    env.update(
        {"BIRTHCERT_DATA_DIR": str(data_dir), "BIRTHCERT_PORT": str(port), "REDIS_URL": redis_url, **more}
    )
    return env


@contextlib.contextmanager
def store_of(env: Mapping[str, str]) -> Iterator[Applications]:
    """The event store a service with ``env`` writes, opened in this process (e.g. to arrange or count)."""
    config = Config.from_env(
        {k: v for k, v in env.items() if k != "BIRTHCERT_ENV"}, data_dir=Path(env["BIRTHCERT_DATA_DIR"])
    )
    service = Applications(env=config.event_store_env())
    try:
        yield service
    finally:
        service.close()


BIRTHCERT = [sys.executable, "-c", "import sys; from backend.cli import main; sys.exit(main(sys.argv[1:]))"]


async def started_service(
    env: dict[str, str], api: str, *, options: tuple[str, ...] = (), log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``birthcert serve [options]`` in a process of its own, once it answers /healthz (within 30 s); its log
    (stderr) appended to ``log`` when given."""
    stderr = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            [*BIRTHCERT, "serve", *options], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
    finally:
        if log is not None:
            stderr.close()  # type: ignore[union-attr]
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{api}/healthz") as r:
                    if r.status == 200:
                        return process
            await asyncio.sleep(0.1)
    process.kill()
    raise AssertionError("the service did not start within 30 s")


async def killed(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL, and reaped."""
    process.kill()
    await asyncio.to_thread(process.wait, 10)
