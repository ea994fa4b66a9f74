"""The service and the fake platforms on loopback, run on an event loop of their own in a thread.

For tests whose driver is synchronous (schemathesis sends its requests with ``requests``): the service
is as real as in ``tests/e2e``, and the parents and staff who use it are logged in the usual way.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from backend.app import create_app
from backend.components import APPLICATIONS, STORE_EXECUTOR
from backend.config import Config
from backend.dev import DEMO_PASSWORD, channel_environ, seed_demo_staff
from miniprogram_stub.client import MiniProgram, StaffClient
from miniprogram_stub.people import Family
from miniprogram_stub.platform import start_fake_platform
from tests.e2e.conftest import HOSPITALS, Stack, free_port
from tests.e2e.openapi_check import OpenApiCheck

T = TypeVar("T")
STEP_SECONDS = 60.0


@dataclass
class LiveService:
    """A running service (``api``) and fake platform (``platform``) on a loop in a daemon thread."""

    data_dir: Path
    redis_url: str
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    api: str = ""
    platform: str = ""
    stack: Stack | None = None
    _closers: list[Any] = field(default_factory=list)

    def run(self, work: Coroutine[Any, Any, T], timeout: float = STEP_SECONDS) -> T:
        """Run ``work`` on the service's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def start(self) -> LiveService:
        threading.Thread(target=self.loop.run_forever, name="live-service", daemon=True).start()
        self.run(self._start())
        return self

    async def _start(self) -> None:
        fake_runner, self.platform = await start_fake_platform("127.0.0.1", 0)
        port = free_port()
        self.api = f"http://127.0.0.1:{port}"
        config = Config.from_env(
            {
                "REDIS_URL": self.redis_url,
                "WECHAT_API_BASE": self.platform,
                "WECHAT_PAY_BASE": self.platform,
                "BIRTHCERT_PUBLIC_URL": self.api,
                **channel_environ(self.platform),
                "POPULATION_REGISTRY_URL": f"{self.platform}/registry",
                "EMS_API_BASE": f"{self.platform}/ems",
            },
            data_dir=self.data_dir,
        )
        app = create_app(config)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        session = aiohttp.ClientSession()
        async with session.get(f"{self.api}/api/v1/openapi.json") as r:
            check = OpenApiCheck(await r.json())
        self.stack = Stack(api=self.api, platform=self.platform, app=app, session=session, check=check)
        await self.in_store(seed_demo_staff, app[APPLICATIONS])
        self._closers = [session.close, runner.cleanup, fake_runner.cleanup]

    async def in_store(self, fn: Any, *args: Any) -> Any:
        assert self.stack is not None
        return await asyncio.get_running_loop().run_in_executor(
            self.stack.app[STORE_EXECUTOR], lambda: fn(*args)
        )

    def parent(self, family: Family, *, until: str = "details") -> MiniProgram:
        """A mother logged in with an application of her own, taken up to ``until`` (``start``, ``details``)."""
        assert self.stack is not None
        stack = self.stack

        async def walk() -> MiniProgram:
            await stack.record_delivery(family)
            mp = stack.mini_program(family)
            await mp.login()
            await mp.start()
            if until == "details":
                await mp.verify_face("mother")
                await mp.confirm_delivery()
                await mp.provide_details()
            return mp

        return self.run(walk())

    def staff(self, username: str) -> StaffClient:
        """A demo staff account (``issuer1``, ``his1``, ``auditor1``…) logged in."""
        assert self.stack is not None
        client = StaffClient(self.stack.session, self.api)
        self.run(client.login(username, DEMO_PASSWORD))
        return client

    def stop(self) -> None:
        async def close() -> None:
            for closer in self._closers:
                await closer()

        try:
            self.run(close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)


__all__ = ["HOSPITALS", "LiveService"]
