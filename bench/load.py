"""Virtual users over HTTP: parents taking whole journeys, an issuer working the queue, lag observers.

Each virtual parent takes one family after another through the whole journey as the mini-program does
(``miniprogram_stub.client.MiniProgram``: login, start, both face checks with the fake WeChat platform,
confirm, details, four ID photos, sign, EMS, submit), reading its status between steps and thinking
``think`` seconds (uniform in 0.5–1.5 × think) before each step. One issuer (``issuer1``) reads the queue
and issues what was submitted. Every request to the service is timed (send to body read) and labelled
by its route; a command is a POST or PUT that changes an application (logins are not commands).

Projection lag: for a sample of commands (``lag_sample``) a checker reads the parent's status until it
shows the command's version (from the command's answer to the status view showing it); the issuer's
Server-Sent Events stream (``/api/v1/review/queue/events``) gives the moment the queue showed a
submission or an issue (from the answer to the queue's event).

The families' delivery records are entered beforehand (``enter_deliveries``) by the fast path of
``bench.seed``: in-memory domain service with the store's keys, one batch insert.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import percentile
from miniprogram_stub.client import ApiProblem, MiniProgram, StaffClient
from miniprogram_stub.people import Family, Person, make_id_number

LOAD_FILE = "load.json"  # in the store: the next family number, so that every run has fresh mothers
MOTHER_REGION = "440111"
FATHER_REGION = "440112"
ISSUER = ("issuer1", "issuer", "GZFY01")
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SEQ = re.compile(r"/face-verifications/[^/]+/result")


# Events per transaction when the load enters its families' delivery records.
INSERT_CHUNK = 3_000


def family(n: int) -> Family:
    """The n-th load family: ID numbers no seeded or demo family uses."""
    born = (date(1984, 1, 1) + timedelta(days=n // 499)).strftime("%Y%m%d")
    seq = 2 * (n % 499) + 2
    return Family(
        openid=f"oLoad{n:09d}",
        mother=Person("王芳", make_id_number(MOTHER_REGION, born, f"{seq:03d}")),
        father=Person("张伟", make_id_number(FATHER_REGION, born, f"{seq + 1:03d}")),
        newborn_name="张小花",
        inpatient_no=f"ZYL{n:09d}",
    )


def reserve_families(store: Path, count: int) -> range:
    """``count`` family numbers never used on this store before."""
    path = store / LOAD_FILE
    state = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"next_family": 0}
    first = int(state["next_family"])
    state["next_family"] = first + count
    path.write_text(json.dumps(state) + "\n", encoding="utf-8")
    return range(first, first + count)


def enter_staff(store_env: dict[str, str]) -> None:
    """The demo institutions and staff accounts (issuer1, auditor1, …) if missing."""
    from backend.dev import seed_demo_staff
    from domain.service import Applications

    store = Applications(store_env)
    try:
        seed_demo_staff(store)
    finally:
        store.close()


def enter_deliveries(store_env: dict[str, str], numbers: range) -> int:
    """The demo hospital's delivery records of these families (born 20 hours ago), and the demo staff
    accounts are ``enter_staff``'s: in one batch insert. Returns the events written."""
    from backend.dev import DEMO_INSTITUTION
    from bench.seed import memory_env, stored_events
    from domain.delivery import DeliveryFacts
    from domain.service import Applications
    from domain.values import Actor, BirthData, Birthplace, IdNumber, PersonName

    store = Applications(store_env)
    try:
        memory = Applications(memory_env(store_env))
        hospital = Actor(id="his1", role="hospital", institution=DEMO_INSTITUTION.code, name="陈录入")
        born = datetime.now().astimezone() - timedelta(hours=20)
        for n in numbers:
            f = family(n)
            facts = DeliveryFacts(
                inpatient_no=f.inpatient_no,
                mother_name=PersonName(f.mother.name),
                mother_id_number=IdNumber(f.mother.id_number),
                birth=BirthData(sex="F", born_at=born, gestational_weeks=39, weight_g=3250, length_cm=50),
                birthplace=Birthplace("广东省", "广州市", "越秀区"),
                attendant=PersonName("陈助产"),
            )
            memory.record_delivery(hospital, institution=DEMO_INSTITUTION, facts=facts)
        events = stored_events(memory)
        memory.close()
        # In transactions of a few thousand: one of 13,632 events hung in psycopg's pipeline on PostgreSQL
        # (the server waiting for the client, the client for the server's results).
        for start in range(0, len(events), INSERT_CHUNK):
            store.recorder.insert_events(events[start : start + INSERT_CHUNK])
        return len(events)
    finally:
        store.close()


@dataclass
class Call:
    """One request: when it started (seconds since the run began), its route, how long, whether it worked."""

    t: float
    route: str
    ms: float
    ok: bool
    command: bool


@dataclass
class Record:
    """Everything one load level measured."""

    calls: list[Call] = field(default_factory=list)
    status_lag_ms: list[float] = field(default_factory=list)
    queue_lag_ms: list[float] = field(default_factory=list)
    answered: dict[tuple[str, int], float] = field(default_factory=dict)  # (app id, version) → answer time
    queue_seen: dict[tuple[str, int], float] = field(default_factory=dict)
    journeys: int = 0
    issued: int = 0
    errors: list[str] = field(default_factory=list)
    began: float = field(default_factory=time.perf_counter)
    client_cpu: float = 0.0  # CPU seconds per second of this process (1.00 = one core busy)
    log_start: int | None = None  # the store's last notification id when the level began and ended
    log_end: int | None = None

    def now(self) -> float:
        return time.perf_counter() - self.began

    def error(self, text: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(text)


def route_of(method: str, path: str) -> str:
    """``POST /api/v1/applications/{id}/face-verifications/{seq}/result`` from a concrete path."""
    path = path.split("?", 1)[0]
    path = _SEQ.sub("/face-verifications/{seq}/result", path)
    return f"{method} {_ID.sub('{id}', path)}"


def is_command(method: str, path: str) -> bool:
    return method in ("POST", "PUT") and "/auth/" not in path


@dataclass
class TimedMiniProgram(MiniProgram):
    """The scripted mini-program, every call to the service timed into ``record``."""

    record: Record | None = None
    on_command: Callable[[str, int], None] | None = None

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        idempotency_key: str | None = None,
        if_match: int | None = None,
        expect: tuple[int, ...] = (200, 201),
    ) -> dict[str, Any]:
        assert self.record is not None
        started = time.perf_counter()
        ok = False
        try:
            body = await super().call(
                method,
                path,
                json=json,
                data=data,
                idempotency_key=idempotency_key,
                if_match=if_match,
                expect=expect,
            )
            ok = True
            return body
        finally:
            ended = time.perf_counter()
            command = is_command(method, path)
            self.record.calls.append(
                Call(
                    started - self.record.began, route_of(method, path), (ended - started) * 1000, ok, command
                )
            )
            if ok and command and self.app_id and self.version is not None:
                self.record.answered[(self.app_id, self.version)] = ended - self.record.began
                if self.on_command is not None:
                    self.on_command(self.app_id, self.version)


@dataclass
class Plan:
    """One load level."""

    users: int
    seconds: float  # measured, after the ramp
    ramp: float
    think: float
    issuer_think: float
    lag_sample: float


async def _think(mean: float) -> None:
    if mean > 0:
        await asyncio.sleep(random.uniform(0.5, 1.5) * mean)


async def parent(
    session: aiohttp.ClientSession,
    api: str,
    platform: str,
    families: Any,
    plan: Plan,
    record: Record,
    stop_at: float,
    status_checker: Callable[[TimedMiniProgram, int], None],
) -> None:
    """One virtual parent: journeys until the level ends (or the families run out)."""
    while time.perf_counter() < stop_at:
        n = next(families, None)
        if n is None:
            return
        mp = TimedMiniProgram(session, api, platform, family(n), record=record)
        mp.on_command = lambda _app, version, mp=mp: status_checker(mp, version)
        steps = journey_steps(mp)
        try:
            for i, step in enumerate(steps):
                await _think(plan.think)
                if time.perf_counter() >= stop_at:
                    return
                await step()
                if i > 0:
                    await mp.status()  # what the parent sees after each step
            record.journeys += 1
        except (ApiProblem, aiohttp.ClientError, TimeoutError, KeyError) as e:
            record.error(f"journey: {type(e).__name__}: {e}")
            await asyncio.sleep(1.0)


_PHOTOS = ("mother_id_front", "mother_id_back", "father_id_front", "father_id_back")


def journey_steps(mp: MiniProgram) -> list[Callable[[], Awaitable[Any]]]:
    """The mini-program's whole journey, one step (one or two requests) at a time."""
    return [
        mp.login,
        mp.start,
        partial(mp.verify_face, "mother"),
        mp.confirm_delivery,
        mp.provide_details,
        partial(mp.verify_face, "father"),
        *(partial(mp.upload, kind) for kind in _PHOTOS),
        mp.sign,
        mp.choose_ems,
        mp.submit,
    ]


async def issuer(
    session: aiohttp.ClientSession, api: str, plan: Plan, record: Record, stop_at: float, password: str
) -> None:
    """The issuer: read the queue, issue the oldest submitted application, think, again."""
    staff = StaffClient(session, api)
    await staff.login(ISSUER[0], password)
    number = itertools.count(random.randrange(10**8, 9 * 10**8))
    while time.perf_counter() < stop_at:
        started = time.perf_counter()
        try:
            page = await staff.call("GET", "/api/v1/review/queue?limit=20")
            record.calls.append(
                Call(
                    started - record.began,
                    "GET /api/v1/review/queue",
                    (time.perf_counter() - started) * 1000,
                    True,
                    False,
                )
            )
        except (ApiProblem, aiohttp.ClientError) as e:
            record.error(f"queue: {e}")
            await asyncio.sleep(1.0)
            continue
        items = [
            i for i in page.get("items", []) if i.get("state", i.get("queue_state")) in ("submitted", None)
        ]
        if not items:
            await asyncio.sleep(max(plan.issuer_think, 0.2))
            continue
        for item in items[:5]:
            if time.perf_counter() >= stop_at:
                return
            app_id = item["application_id"] if "application_id" in item else item["id"]
            certificate = f"B{next(number):09d}"  # each attempt its own number, and so its own key
            started = time.perf_counter()
            ok = False
            try:
                body = await staff.call(
                    "POST",
                    f"/api/v1/review/applications/{app_id}/issue",
                    json={"certificate_number": certificate, "sealer": "赵盖章"},
                    idempotency_key=f"bench-{app_id}-{certificate}",
                    if_match=item.get("version"),
                )
                ok = True
                record.issued += 1
                if isinstance(body.get("version"), int):
                    record.answered[(str(app_id), body["version"])] = time.perf_counter() - record.began
            except (ApiProblem, aiohttp.ClientError) as e:
                record.error(f"issue: {e}")
            record.calls.append(
                Call(
                    started - record.began,
                    "POST /api/v1/review/applications/{id}/issue",
                    (time.perf_counter() - started) * 1000,
                    ok,
                    True,
                )
            )
            await _think(plan.issuer_think)


async def queue_watcher(session: aiohttp.ClientSession, api: str, record: Record, password: str) -> None:
    """The issuer's SSE stream: when each (application, version) showed in the queue."""
    staff = StaffClient(session, api)
    await staff.login(ISSUER[0], password)
    headers = {"Authorization": f"Bearer {staff.token}", "Accept": "text/event-stream"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with session.get(f"{api}/api/v1/review/queue/events", headers=headers, timeout=timeout) as r:
        async for raw in r.content:
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            seen = record.now()
            with contextlib.suppress(ValueError, KeyError, TypeError):
                data = json.loads(line[5:])
                key = (str(data["application_id"]), int(data["version"]))
                record.queue_seen.setdefault(key, seen)


async def run_level(
    apis: Sequence[str],
    platform: str,
    numbers: range,
    plan: Plan,
    *,
    password: str,
    say: Callable[[str], None],
) -> Record:
    """``plan.users`` parents (spread over ``apis`` round robin, one process each) and one issuer."""
    record = Record()
    stop_at = time.perf_counter() + plan.ramp + plan.seconds
    families = iter(numbers)
    checks: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        def check_status(mp: TimedMiniProgram, version: int) -> None:
            if random.random() >= plan.lag_sample:
                return
            task = asyncio.create_task(_status_lag(session, mp, version, record))
            checks.add(task)
            task.add_done_callback(checks.discard)

        record.log_start = await _log_position(session, apis[0])
        watcher = asyncio.create_task(queue_watcher(session, apis[0], record, password))
        workers = [asyncio.create_task(issuer(session, apis[0], plan, record, stop_at, password))]
        for i in range(plan.users):
            await asyncio.sleep(plan.ramp / max(1, plan.users))
            workers.append(
                asyncio.create_task(
                    parent(
                        session, apis[i % len(apis)], platform, families, plan, record, stop_at, check_status
                    )
                )
            )
        say(f"load: {plan.users} users started, measuring {plan.seconds:.0f} s")
        cpu_before = time.process_time()
        wall_before = time.perf_counter()
        done, pending = await asyncio.wait(workers, timeout=plan.ramp + plan.seconds + 5)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                record.error(f"worker: {type(task.exception()).__name__}: {task.exception()}")
        record.log_end = await _log_position(session, apis[0])
        await asyncio.sleep(0.5)  # the last events on the stream
        watcher.cancel()
        for task in list(checks):
            task.cancel()
        await asyncio.gather(watcher, *checks, return_exceptions=True)
        record.client_cpu = (time.process_time() - cpu_before) / max(1e-9, time.perf_counter() - wall_before)
    for key, answered_at in record.answered.items():
        seen = record.queue_seen.get(key)
        if seen is not None:
            record.queue_lag_ms.append(max(0.0, seen - answered_at) * 1000)
    return record


async def _log_position(session: aiohttp.ClientSession, api: str) -> int | None:
    """The store's last notification id, as ``/readyz`` reports it."""
    with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
        async with session.get(f"{api}/readyz") as r:
            body = await r.json(content_type=None)
        return int(body["event_store"]["position"])
    return None


async def _status_lag(
    session: aiohttp.ClientSession, mp: TimedMiniProgram, version: int, record: Record
) -> None:
    """Read the status (untimed as a call) until it shows ``version``; the time from the answer."""
    answered = record.answered.get((mp.app_id or "", version))
    headers = {"Authorization": f"Bearer {mp.token}"}
    deadline = time.perf_counter() + 5.0
    while time.perf_counter() < deadline:
        with contextlib.suppress(aiohttp.ClientError, ValueError):
            async with session.get(mp.api + mp.base, headers=headers) as r:
                body = await r.json(content_type=None)
            if isinstance(body, dict) and int(body.get("version", -1)) >= version:
                if answered is not None:
                    record.status_lag_ms.append(max(0.0, record.now() - answered) * 1000)
                return
        await asyncio.sleep(0.005)


def summarise(record: Record, plan: Plan) -> dict[str, Any]:
    """Rates in the measured window (after the ramp), latency per route, lag percentiles, a timeline."""
    window = [c for c in record.calls if plan.ramp <= c.t < plan.ramp + plan.seconds]
    routes: dict[str, list[Call]] = {}
    for c in window:
        routes.setdefault(c.route, []).append(c)
    per_route = {}
    for route, calls in sorted(routes.items()):
        ms = sorted(c.ms for c in calls if c.ok)
        per_route[route] = {
            "count": len(calls),
            "errors": sum(1 for c in calls if not c.ok),
            "per_second": round(len(calls) / plan.seconds, 2),
            "p50_ms": round(percentile(ms, 0.5), 2),
            "p99_ms": round(percentile(ms, 0.99), 2),
            "command": calls[0].command,
        }
    commands = sorted(c.ms for c in window if c.command and c.ok)
    reads = sorted(c.ms for c in window if not c.command and c.ok)
    status_reads = sorted(c.ms for c in window if c.ok and c.route == "GET /api/v1/applications/{id}")
    timeline: dict[int, dict[str, list[float]]] = {}
    for c in record.calls:
        if c.ok:
            timeline.setdefault(int(c.t), {"command": [], "read": []})[
                "command" if c.command else "read"
            ].append(c.ms)
    return {
        "users": plan.users,
        "seconds": plan.seconds,
        "ramp_seconds": plan.ramp,
        "think_seconds": plan.think,
        "commands_per_second": round(len(commands) / plan.seconds, 2),
        "reads_per_second": round(len(reads) / plan.seconds, 2),
        "command_p50_ms": round(percentile(commands, 0.5), 2),
        "command_p99_ms": round(percentile(commands, 0.99), 2),
        "status_read_p50_ms": round(percentile(status_reads, 0.5), 2),
        "status_read_p99_ms": round(percentile(status_reads, 0.99), 2),
        "errors": sum(1 for c in window if not c.ok),
        # Events written per second over the whole level (ramp included): the rate the followers had to keep up with.
        "events_per_second": None
        if record.log_start is None or record.log_end is None
        else round((record.log_end - record.log_start) / (plan.ramp + plan.seconds), 1),
        "journeys_completed": record.journeys,
        "issued": record.issued,
        "status_lag": _lag(record.status_lag_ms),
        "queue_lag": _lag(record.queue_lag_ms),
        "client_cpu": round(record.client_cpu, 2),
        "routes": per_route,
        "timeline": {
            str(second): {
                kind: {
                    "n": len(v),
                    "p50_ms": round(percentile(sorted(v), 0.5), 2),
                    "p99_ms": round(percentile(sorted(v), 0.99), 2),
                }
                for kind, v in kinds.items()
                if v
            }
            for second, kinds in sorted(timeline.items())
        },
        "error_samples": record.errors[:10],
    }


def _lag(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "samples": len(ordered),
        "p50_ms": round(percentile(ordered, 0.5), 2) if ordered else None,
        "p99_ms": round(percentile(ordered, 0.99), 2) if ordered else None,
    }
