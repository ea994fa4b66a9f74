"""``kill -9`` under concurrent journeys: nothing acknowledged is lost, nothing retried is doubled, and the views
equal a fresh rebuild.

Families walk whole journeys (login to submission) at once against ``birthcert serve`` in a process of its own,
as the mini-program does: every command with an Idempotency-Key kept for that command and sent again, after a
lost connection or a 5xx, until it is answered. Meanwhile the service is killed with SIGKILL several times,
each time the moment some more commands have been acknowledged (so others are cut mid-way), and started again
on the same data and Redis. Then, as the parents and the issuers would notice: every application is submitted,
every acknowledged command's effect is in the event store, none is there twice, each mother lists her one
application, the issuers' queue holds them all, and ``birthcert projections rebuild`` changes nothing they see.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from backend.dev import DEMO_PASSWORD, seed_delivery, seed_demo_staff
from domain.application import BirthCertificateApplication as App
from domain.service import Applications
from miniprogram_stub.client import MiniProgram
from miniprogram_stub.people import Family, demo_family
from miniprogram_stub.platform import start_fake_platform
from tests.e2e.conftest import free_port
from tests.e2e.serving import (
    BIRTHCERT,
    Answer,
    killed,
    photo_form,
    send,
    service_env,
    signature_form,
    started_service,
    store_of,
)

# A command (or read) not answered within this long, retries included, fails the test.
PATIENCE = 60.0
# The counted limits, raised: a retry of a command that never committed counts again (as it would in life).
GENEROUS = {
    f"BIRTHCERT_RATE_{name}": "10000 per minute"
    for name in ("LOGIN_SOURCE", "LOGIN_ACCOUNT", "FACE_USER", "FACE_ID_NUMBER", "UPLOAD")
}
# The commands of a whole journey: start, 2 face checks (begun, verdict), confirm, details, 4 photos, sign, EMS, submit.
COMMANDS = 14
PHOTOS = ("mother_id_front", "mother_id_back", "father_id_front", "father_id_back")


@dataclass
class Tally:
    """What the clients and the killer saw: acknowledged commands (per application, in order), retries, kills."""

    acknowledged: int = 0
    retries: int = 0  # requests sent again (while the service is down, every 50 ms)
    cut: int = 0  # commands whose first sending went unanswered
    replayed: int = 0  # commands answered from the store's record of their first answer (Idempotent-Replayed)
    kills: int = 0  # faults: kills here, failovers of PostgreSQL in test_postgres_failover
    unavailable: int = 0  # 503 answers with Retry-After (a dependency away for a moment)
    errors: list[str] = field(default_factory=list)  # any other 5xx: a fault of ours
    journeys_done: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def note(self, **more: int) -> None:
        async with self.changed:
            for name, n in more.items():
                setattr(self, name, getattr(self, name) + n)
            self.changed.notify_all()


@dataclass
class Journey:
    """One family's mini-program: every request sent again, with the same key, until it is answered."""

    session: aiohttp.ClientSession
    api: str
    platform: str
    family: Family
    tally: Tally
    # (the event the command records, the version its acknowledgement named), in the order acknowledged
    acks: list[tuple[type[App.Event], int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mp = MiniProgram(self.session, self.api, self.platform, self.family)
        self.resent = 0  # this client's requests sent again

    async def answered(self, method: str, path: str, **request: Any) -> Answer:
        """The first answer that is not a lost connection or a 5xx."""
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                answer = await send(self.session, self.api, self.mp, method, path, **request)
                if answer.status < 500:
                    return answer
                if answer.status == 503 and "Retry-After" in answer.headers:
                    await self.tally.note(unavailable=1)
                else:
                    self.tally.errors.append(f"{method} {path}: {answer.status} {answer.body[:200]!r}")
            except (TimeoutError, aiohttp.ClientError):
                pass  # the service died under the request, or is not up again yet
            assert time.monotonic() < deadline, f"{method} {path} not answered within {PATIENCE} s"
            self.resent += 1
            await self.tally.note(retries=1)
            await asyncio.sleep(0.05)

    async def read(self, path: str) -> Any:
        answer = await self.answered("GET", path, key=None)
        assert answer.status == 200, (path, answer.status, answer.body)
        return answer.json()

    async def command(
        self,
        records: type[App.Event],
        method: str,
        path: str,
        *,
        json: Any = None,
        form: Callable[[], aiohttp.FormData] | None = None,
    ) -> Any:
        """One logical command under one Idempotency-Key, however many times it must be sent."""
        key, resent = uuid.uuid4().hex, self.resent
        answer = await self.answered(method, path, key=key, json=json, form=form)
        assert answer.status in (200, 201), (method, path, answer.status, answer.body)
        self.acks.append((records, answer.version))
        await self.tally.note(acknowledged=1, cut=int(self.resent > resent), replayed=int(answer.replayed))
        return answer.json()

    async def login(self) -> None:
        """wx.login and our login: a fresh code for each attempt, as the mini-program would."""
        deadline = time.monotonic() + PATIENCE
        while True:
            code = f"dev:{self.family.openid}:{uuid.uuid4().hex[:8]}"
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                answer = await send(
                    self.session,
                    self.api,
                    self.mp,
                    "POST",
                    "/api/v1/auth/wechat",
                    key=None,
                    json={"code": code},
                )
                if answer.status < 500:
                    assert answer.status == 200, answer.body
                    self.mp.token = answer.json()["token"]
                    return
            assert time.monotonic() < deadline, f"no login within {PATIENCE} s"
            await self.tally.note(retries=1)
            await asyncio.sleep(0.05)

    async def face_check(self, role: str) -> None:
        person = self.family.mother if role == "mother" else self.family.father
        assert person is not None
        checks = f"{self.mp.base}/face-verifications"
        claim = {"role": role, "name": person.name, "id_number": person.id_number}
        begun = await self.command(App.FaceVerificationRequested, "POST", checks, json=claim)
        await self.mp.fake(
            "/_fake/face/verify", {"verify_id": begun["verify_id"], "openid": self.family.openid}
        )
        verdict = await self.command(App.FaceVerified, "POST", f"{checks}/{begun['out_seq_no']}/result")
        assert verdict["verified"] is True

    async def walk(self) -> dict[str, Any]:
        """Login to submission, as ``MiniProgram.whole_journey``; the final status document."""
        await self.login()
        started = await self.command(App.ApplicationStarted, "POST", "/api/v1/applications", json={})
        self.mp.app_id = started["id"]
        base = self.mp.base
        await self.face_check("mother")
        await self.read(f"{base}/delivery-record")
        await self.command(App.DeliveryInfoConfirmed, "POST", f"{base}/delivery-record/confirm")
        details = self.mp.details_body(prefill=await self.read(f"{base}/details/prefill"))
        await self.command(App.DetailsProvided, "PUT", f"{base}/details", json=details)
        await self.face_check("father")
        for kind in PHOTOS:
            await self.command(App.DocumentUploaded, "POST", f"{base}/documents", form=photo_form(kind))
        sha = (await self.read(f"{base}/form"))["sha256"]
        await self.command(App.FormSigned, "POST", f"{base}/signature", form=signature_form(sha))
        mother = self.family.mother
        ems = {
            "method": "ems",
            "recipient": {"name": mother.name, "phone": "13800138000", "address": mother.address},
        }
        await self.command(App.DeliveryMethodChosen, "PUT", f"{base}/delivery-method", json=ems)
        submitted = await self.command(App.Submitted, "POST", f"{base}/submit")
        assert submitted["state"] == "submitted"
        await self.tally.note(journeys_done=1)
        status: dict[str, Any] = await self.read(base)
        return status


@dataclass
class Service:
    """``birthcert serve``, killed and started again on the same data and Redis."""

    env: dict[str, str]
    api: str
    process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = await started_service(self.env, self.api)

    async def kill(self) -> None:
        if self.process is not None:
            await killed(self.process)
            self.process = None


Fault = Callable[[Service], Awaitable[None]]


async def kill_and_restart(service: Service) -> None:
    """SIGKILL the service, then start it again on the same data and Redis."""
    await service.kill()
    await service.start()


async def killer(
    service: Service, tally: Tally, *, kills: int, every: int, journeys: int, fault: Fault = kill_and_restart
) -> None:
    """Do ``fault`` each time ``every`` more commands have been acknowledged."""
    for n in range(1, kills + 1):
        target = n * every
        async with tally.changed:
            await tally.changed.wait_for(
                lambda: tally.acknowledged >= target or tally.journeys_done == journeys  # noqa: B023
            )
        if tally.journeys_done == journeys:
            return
        await fault(service)
        await tally.note(kills=1)


def event_of(store: Applications, stored: Any) -> App.Event:
    """A stored event (or notification) of an application, as the domain event."""
    event = store.mapper.to_domain_event(stored)
    assert isinstance(event, App.Event)
    return event


def events_of(store: Applications, app_id: str) -> list[App.Event]:
    """The application's events, in order."""
    return [event_of(store, stored) for stored in store.recorder.select_events(uuid.UUID(app_id))]


async def rebuilt(env: dict[str, str], view: str) -> None:
    """``birthcert projections rebuild --view VIEW`` in a process of its own, the service serving meanwhile."""
    process = await asyncio.create_subprocess_exec(
        *BIRTHCERT,
        "projections",
        "rebuild",
        "--view",
        view,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), PATIENCE)
    assert process.returncode == 0, output.decode()


async def run_kill_nine(
    tmp_path: Path,
    redis_url: str,
    *,
    families: int,
    kills: int,
    fault: Fault = kill_and_restart,
    store: Mapping[str, str] | None = None,
) -> str:
    """Families' journeys under ``kills`` faults (SIGKILL and restart unless told), on the SQLite store in
    ``tmp_path`` or the store ``store`` names; what the parents and issuers then see is checked."""
    began = time.monotonic()
    fake, platform = await start_fake_platform("127.0.0.1", 0)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = service_env(
        os.environ,
        platform=platform,
        port=port,
        redis_url=redis_url,
        data_dir=tmp_path / "var",
        **GENEROUS,
        **(store or {}),
    )
    everyone = [demo_family(n) for n in range(1, families + 1)]
    with store_of(env) as store:  # the hospital entered each delivery before the mothers apply
        seed_demo_staff(store)
        for family in everyone:
            seed_delivery(store, family)
    service = Service(env, api)
    tally = Tally()
    try:
        async with aiohttp.ClientSession() as session:
            await service.start()
            journeys = [Journey(session, api, platform, family, tally) for family in everyone]
            commands = COMMANDS * families
            kill = asyncio.create_task(
                killer(
                    service, tally, kills=kills, every=commands // (kills + 1), journeys=families, fault=fault
                )
            )
            finals = await asyncio.gather(*(j.walk() for j in journeys))
            await kill
            figures = (
                f"{families} families, {tally.acknowledged} acknowledged commands, {tally.kills} faults, "
                f"{tally.cut} commands cut and sent again with their keys ({tally.retries} sends), "
                f"{tally.replayed} of them answered from the first answer recorded, "
                f"{tally.unavailable} answered 503 with Retry-After"
            )
            assert tally.kills == kills, figures
            assert not tally.errors, f"5xx other than 503 with Retry-After: {tally.errors[:5]}"
            assert all(final["state"] == "submitted" for final in finals), figures

            # In the store: each acknowledged command's event, at or before the version it was acknowledged
            # with, and after the one before it; and none twice.
            with store_of(env) as store:
                starts = Counter(
                    event_of(store, n).actor["id"]
                    for n in store.recorder.select_notifications(
                        start=1, limit=100_000, topics=("birthcert:ApplicationStarted",)
                    )
                )
                assert starts == Counter(f.openid for f in everyone), f"one application per mother; {figures}"
                for journey in journeys:
                    events = events_of(store, journey.mp.app_id or "")
                    before = 0
                    for records, version in journey.acks:
                        assert any(
                            isinstance(e, records) for e in events if before < e.originator_version <= version
                        ), f"{records.__name__} acknowledged at version {version} is not in the store"
                        before = version
                    kinds = Counter(type(e).__name__ for e in events)
                    once = ("DetailsProvided", "FormSigned", "DeliveryInfoConfirmed", "Submitted")
                    assert all(kinds[k] == 1 for k in once), kinds
                    assert kinds["FaceVerified"] == 2, kinds
                    uploads = Counter(e.kind for e in events if isinstance(e, App.DocumentUploaded))
                    assert uploads == Counter(PHOTOS), uploads

            await every_follower_caught_up(session, api)
            seen = await views(session, api, journeys)
            assert sorted(seen["queue"]) == sorted(str(j.mp.app_id) for j in journeys), "queue holds them all"
            for journey in journeys:
                listed = seen[f"list:{journey.family.openid}"]
                assert [item["id"] for item in listed] == [journey.mp.app_id], "her one application"
            for view in ("status", "queue"):
                await rebuilt(env, view)
            assert await views(session, api, journeys) == seen, "the views equal a fresh rebuild"
    finally:
        await service.kill()
        await fake.cleanup()
    return f"{figures}, in {time.monotonic() - began:.1f} s"


async def every_follower_caught_up(session: aiohttp.ClientSession, api: str) -> None:
    """/readyz answers ready with every follower (views, audit log, archive, processes) at the log's end."""
    deadline = time.monotonic() + PATIENCE
    while True:
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            async with session.get(f"{api}/readyz") as r:
                ready = await r.json()
                if r.status == 200 and all(f["lag"] == 0 for f in ready["followers"]):
                    return
        assert time.monotonic() < deadline, f"followers not caught up within {PATIENCE} s: {ready}"
        await asyncio.sleep(0.1)


async def views(session: aiohttp.ClientSession, api: str, journeys: list[Journey]) -> dict[str, Any]:
    """What the mothers and the issuer see, once the views hold every application's last version."""
    issuer = Journey(session, api, "", demo_family(1), Tally())  # a client that sends again, with her token
    answer = await issuer.answered(
        "POST", "/api/v1/auth/staff", key=None, json={"username": "issuer1", "password": DEMO_PASSWORD}
    )
    issuer.mp.token = answer.json()["token"]
    deadline = time.monotonic() + PATIENCE
    while True:
        seen: dict[str, Any] = {}
        caught_up = True
        for journey in journeys:
            status = await journey.read(journey.mp.base)
            mine = await journey.answered("GET", "/api/v1/applications", key=None)
            listed = mine.json()["items"] if mine.status == 200 else []
            seen[f"status:{journey.mp.app_id}"] = status
            seen[f"list:{journey.family.openid}"] = listed
            caught_up &= [(i["id"], i["version"]) for i in listed] == [(journey.mp.app_id, status["version"])]
        queue = await issuer.answered("GET", "/api/v1/review/queue?limit=200", key=None)
        items = queue.json()["items"] if queue.status == 200 else []
        seen["queue"] = {item["application_id"]: item for item in items}
        caught_up &= len(items) == len(journeys)
        if caught_up:
            return seen
        assert time.monotonic() < deadline, f"the views did not catch up within {PATIENCE} s: {seen}"
        await asyncio.sleep(0.1)


async def test_kill_9_under_concurrent_journeys_loses_nothing_doubles_nothing(
    tmp_path: Path, redis_url: str
) -> None:
    print(await run_kill_nine(tmp_path, redis_url, families=8, kills=4))


@pytest.mark.long
async def test_kill_9_many_times_under_many_journeys(tmp_path: Path, redis_url: str) -> None:
    print(await run_kill_nine(tmp_path, redis_url, families=40, kills=10))
