"""End-to-end harness: the fake WeChat platform and the service, each a real HTTP server on loopback.

The service's WeChat adapter is pointed at the fake's base URL; nothing of ours is patched. Every
response the scripted mini-program receives is validated against the served OpenAPI document.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from backend.app import create_app
from backend.components import APPLICATIONS, STORE_EXECUTOR
from backend.config import Config
from backend.dev import channel_environ
from domain.delivery import DeliveryFacts, Institution
from domain.service import Applications, Outcome
from domain.values import Actor, BirthData, Birthplace, IdNumber, PersonName
from miniprogram_stub.client import MiniProgram
from miniprogram_stub.fake_departments import department_environ
from miniprogram_stub.people import Family, demo_family
from miniprogram_stub.platform import start_fake_platform
from tests.e2e.openapi_check import OpenApiCheck

HOSPITALS = {
    "GD": Institution("GZFY01", "广州市妇女儿童医疗中心", "GD"),
    "SD": Institution("JNPY01", "平阴县人民医院", "SD"),
    "BJ": Institution("BJFC01", "北京妇产医院", "BJ"),
    "HE": Institution("SJZFY01", "石家庄市妇产医院", "HE"),
}
PROVINCE_NAMES = {
    "GD": ("广东省", "广州市", "越秀区"),
    "SD": ("山东省", "济南市", "平阴县"),
    "BJ": ("北京市", "北京市", "朝阳区"),
    "HE": ("河北省", "石家庄市", "长安区"),
}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """The running service, the fake platform and a client session."""

    api: str
    platform: str
    app: web.Application
    session: aiohttp.ClientSession
    check: OpenApiCheck

    @property
    def service(self) -> Applications:
        """The service's Applications (for arranging data, e.g. a hospital's delivery record)."""
        return self.app[APPLICATIONS]

    async def in_store(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a service call on the service's own store executor."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.app[STORE_EXECUTOR], lambda: fn(*args, **kwargs))

    async def record_delivery(self, family: Family, province: str = "GD", born_at: Any = None) -> Outcome:
        """The hospital enters the family's delivery (the HIS endpoint belongs to the next issue)."""
        inst = HOSPITALS[province]
        names = PROVINCE_NAMES[province]
        facts = DeliveryFacts(
            inpatient_no=family.inpatient_no,
            mother_name=PersonName(family.mother.name),
            mother_id_number=IdNumber(family.mother.id_number),
            birth=BirthData(
                sex="F",
                born_at=born_at or datetime.now(timezone(timedelta(hours=8))) - timedelta(hours=20),
                gestational_weeks=39,
                weight_g=3250,
                length_cm=50,
            ),
            birthplace=Birthplace(*names),
            attendant=PersonName("陈助产"),
        )
        hospital = Actor(id=f"his-{inst.code}", role="hospital", institution=inst.code)
        result: Outcome = await self.in_store(
            self.service.record_delivery, hospital, institution=inst, facts=facts
        )
        return result

    def mini_program(self, family: Family) -> MiniProgram:
        """A parent's scripted mini-program whose every answer is checked against the OpenAPI document."""
        return MiniProgram(self.session, self.api, self.platform, family, check=self.check)


@contextlib.asynccontextmanager
async def running_stack(
    data_dir: Path, redis_url: str, environ: dict[str, str] | None = None, *, platform: str | None = None
) -> AsyncIterator[Stack]:
    """Fake WeChat + the service on loopback, on fresh SQLite and Redis; ``environ`` adds to the configuration.
    ``platform``: a fake platform already running (a service restarted while the fakes live on)."""
    fake_runner = None
    if platform is None:
        fake_runner, platform = await start_fake_platform("127.0.0.1", 0)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    config = Config.from_env(
        {
            "REDIS_URL": redis_url,
            "WECHAT_API_BASE": platform,
            "WECHAT_PAY_BASE": platform,
            "BIRTHCERT_PUBLIC_URL": api,
            **channel_environ(platform),
            "POPULATION_REGISTRY_URL": f"{platform}/registry",
            "EMS_API_BASE": f"{platform}/ems",
            **department_environ(platform),
            **(environ or {}),
        },
        data_dir=data_dir,
    )
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{api}/api/v1/openapi.json") as r:
                check = OpenApiCheck(await r.json())
            yield Stack(api=api, platform=platform, app=app, session=session, check=check)
    finally:
        await runner.cleanup()
        if fake_runner is not None:
            await fake_runner.cleanup()


@pytest.fixture
async def stack(tmp_path: Path, redis_url: str) -> AsyncIterator[Stack]:
    """Fake WeChat + the service on loopback, on fresh SQLite and Redis."""
    async with running_stack(tmp_path / "var", redis_url) as running:
        yield running


@pytest.fixture
def family() -> Family:
    """The demo family."""
    return demo_family(1)
