"""EMS: the process that books pickups and records waybills, and the parcel-event webhook.

Everything real: the fake EMS over HTTP (its routes in an aiohttp app on a free port), the event
store on SQLite, Redis. The process books exactly once per issue whatever is replayed or restarted,
waits out an EMS outage without skipping anything, and a lost parcel's reissue gets a new pickup.
The webhook is verified, recorded once however often EMS repeats it, and refused when forged.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from backend.app import create_app
from backend.components import APPLICATIONS, STORE_EXECUTOR, TOKENS
from backend.config import Config
from backend.ems import (
    EmsRejected,
    EmsSettings,
    EmsUnavailable,
    HttpEms,
    InvalidSignature,
    PickupRecipient,
    Sender,
    application_of,
    order_id_for,
    sign_webhook,
    verify_webhook,
)
from backend.routes import ems as ems_routes
from domain.application import BirthCertificateApplication
from domain.service import Applications
from domain.values import Actor, CertificateNumber
from miniprogram_stub.fake_ems import FakeEmsSettings, create_fake_ems
from projections.ems_process import EmsProcess
from projections.leader import fence_key
from projections.runner import Fenced, LogFollower
from tests.builders import (
    EMS,
    OTHER_MAN_ID,
    SD_FATHER_ID,
    SD_HOSPITAL,
    SD_MOTHER_ID,
    SECOND_MOTHER_ID,
    SYSTEM,
    Walk,
    issuer,
)
from tests.integration.following import Term

T = TypeVar("T")
SHANGHAI = ZoneInfo("Asia/Shanghai")
TIMEOUT = 15.0
FAKE = FakeEmsSettings()
SECRET = FAKE.webhook_secret
Dispatched = BirthCertificateApplication.Dispatched


# ---------------------------------------------------------------- the fake EMS


@dataclass
class FakeEms:
    """The fake EMS on a free port, and its control API."""

    server: TestServer
    session: aiohttp.ClientSession

    @property
    def base(self) -> str:
        """What ``EMS_API_BASE`` would be."""
        return str(self.server.make_url("/ems"))

    async def control(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        url = self.server.make_url(f"/_fake/ems/{path}")
        if body is None:
            async with self.session.get(url) as r:
                return r.status, await r.json()
        async with self.session.post(url, json=body) as r:
            return r.status, await r.json()

    async def pickups(self) -> list[dict[str, Any]]:
        _, body = await self.control("pickups")
        pickups: list[dict[str, Any]] = body["pickups"]
        return pickups

    async def requests(self) -> int:
        _, body = await self.control("pickups")
        return int(body["requests"])


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def fake_ems(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]], http: aiohttp.ClientSession
) -> FakeEms:
    """A fresh fake EMS."""
    return FakeEms(await aiohttp_server(create_fake_ems(FAKE)), http)


# ---------------------------------------------------------------- the process on its own


@dataclass
class Harness:
    """The service, Redis and the fake EMS; processes and followers made on demand."""

    applications: Applications
    executor: ThreadPoolExecutor
    redis: aioredis.Redis
    fake: FakeEms

    def http_ems(self) -> HttpEms:
        return HttpEms(self.fake.base, FAKE.api_key, self.fake.session)

    def process(self, ems: Any = None, fence: Any = None) -> EmsProcess:
        return EmsProcess(
            self.redis,
            self.applications,
            self.executor,
            ems or self.http_ems(),
            callback_url="http://127.0.0.1:9/api/v1/ems/events",
            fence=fence,
        )

    def follower(self, process: EmsProcess, poll_interval: float = 0.5) -> LogFollower:
        return LogFollower(
            self.applications, process, executor=self.executor, poll_interval=poll_interval, name="ems"
        )

    async def store(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn)

    async def app(self, walk: Walk) -> BirthCertificateApplication:
        return await self.store(lambda: self.applications.get_application(SYSTEM, walk.id))

    async def events(self, walk: Walk, cls: type) -> list[Any]:
        return await self.store(
            lambda: [e for e in self.applications.events.get(walk.id) if isinstance(e, cls)]
        )


@pytest.fixture
def harness(
    applications: Applications, executor: ThreadPoolExecutor, client: aioredis.Redis, fake_ems: FakeEms
) -> Harness:
    """Everything the process tests need."""
    return Harness(applications, executor, client, fake_ems)


def gd_family(app: Applications) -> Walk:
    return Walk(app)


def second_gd_family(app: Applications) -> Walk:
    return Walk(
        app,
        mother_id=SECOND_MOTHER_ID,
        father_id=OTHER_MAN_ID,
        mother_name="李梅",
        parent=Actor(id="openid-second", role="parent"),
    )


def sd_family(app: Applications) -> Walk:
    return Walk(
        app,
        inst=SD_HOSPITAL,
        mother_id=SD_MOTHER_ID,
        father_id=SD_FATHER_ID,
        mother_name="赵敏",
        parent=Actor(id="openid-sd", role="parent"),
    )


def issue(walk: Walk, number: str, method: str = "ems", born_at: datetime | None = None) -> None:
    """On the store thread: a family's application, submitted (postage paid where prepaid) and issued."""
    facts: dict[str, Any] = {"inpatient_no": f"ZY{number[-7:]}"}  # one record per family in an institution
    if born_at is not None:
        facts["born_at"] = born_at
    walk.record_delivery(**facts)
    walk.ready_to_submit(method)
    app = walk.app.get_application(walk.parent, walk.id)
    if app.postage_required:
        order = f"BC{walk.id.hex[:16]}"
        out = walk.app.place_postage_order(walk.parent, walk.id, out_trade_no=order)
        walk.app.record_postage_paid(
            SYSTEM,
            walk.id,
            out_trade_no=order,
            amount_fen=int(out.detail or 0),
            transaction_id="42" + "0" * 26,
        )
    walk.submit()
    walk.issue(number)


async def test_books_once_per_issue_even_when_pages_are_applied_again(harness: Harness) -> None:
    walk = gd_family(harness.applications)
    await harness.store(lambda: issue(walk, "X440100001"))
    process = harness.process()
    await harness.follower(process).catch_up()

    app = await harness.app(walk)
    pickups = await harness.fake.pickups()
    assert app.state == "dispatched"
    assert [p["waybill_no"] for p in pickups] == [app.tracking_number]
    issued_version = (await harness.events(walk, BirthCertificateApplication.Issued))[0].originator_version
    assert pickups[0]["order_id"] == order_id_for(walk.id, issued_version)
    assert pickups[0]["sender"] == {
        "institution_code": "GZFY01",
        "institution_name": "广州市妇女儿童医疗中心",
    }
    assert pickups[0]["recipient"] == {
        "name": "王芳",
        "phone": "13812345678",
        "address": "广东省广州市越秀区中山一路1号",
    }
    assert pickups[0]["item"] == "出生医学证明"
    [dispatched] = await harness.events(walk, Dispatched)
    assert dispatched.actor == {"id": "ems-process", "role": "system", "institution": None, "name": None}

    # The same page again, then the whole log from zero (a lost position, a second follower): no new booking.
    page = await harness.store(
        lambda: LogFollower(harness.applications, process, executor=harness.executor)._read_page(0)
    )
    assert not await process.apply(page, 0)
    await harness.redis.delete(process.position_key)
    await harness.follower(process).catch_up()
    await harness.follower(harness.process()).catch_up()
    assert await harness.fake.requests() == 1
    assert len(await harness.events(walk, Dispatched)) == 1


async def test_an_old_leader_books_nothing_and_its_position_is_refused(harness: Harness) -> None:
    walk = gd_family(harness.applications)
    await harness.store(lambda: issue(walk, "X440100001"))
    await harness.redis.set(fence_key(), 2)  # a new leader took over and told Redis its term
    with pytest.raises(Fenced):  # one that knows it lost the lease: no booking
        await harness.follower(harness.process(fence=Term(None))).catch_up()
    assert await harness.fake.requests() == 0
    old = harness.process(fence=Term(1))  # one paused before it knew: its position's move is refused
    page = await harness.store(
        lambda: LogFollower(harness.applications, old, executor=harness.executor)._read_page(0)
    )
    with pytest.raises(Fenced):
        await old.apply([(n, e) for n, e in page if not isinstance(e, BirthCertificateApplication.Issued)], 0)
    assert await old.position() == 0
    new = harness.process(fence=Term(2))
    await harness.follower(new).catch_up()
    assert await harness.fake.requests() == 1 and len(await harness.events(walk, Dispatched)) == 1


class CrashAfterBooking:
    """EMS books the pickup, then the process dies before it hears the answer."""

    def __init__(self, inner: HttpEms) -> None:
        self.inner = inner

    async def book_pickup(self, **kwargs: Any) -> str:
        await self.inner.book_pickup(**kwargs)
        raise RuntimeError("the process died")


async def test_a_restart_after_booking_reuses_the_booking(harness: Harness) -> None:
    walk = gd_family(harness.applications)
    await harness.store(lambda: issue(walk, "X440100001"))
    with pytest.raises(RuntimeError):
        await harness.follower(harness.process(CrashAfterBooking(harness.http_ems()))).catch_up()
    [booked] = await harness.fake.pickups()
    assert (await harness.app(walk)).state == "issued"

    restarted = harness.process()
    await harness.follower(restarted).catch_up()
    app = await harness.app(walk)
    assert app.state == "dispatched"
    assert app.tracking_number == booked["waybill_no"]
    assert len(await harness.fake.pickups()) == 1  # asked again, same order id: the same waybill
    assert len(await harness.events(walk, Dispatched)) == 1
    await harness.follower(restarted).catch_up()  # past its own Dispatched event too
    assert await restarted.position() == await harness.store(
        harness.applications.recorder.max_notification_id
    )


async def test_a_restart_between_booking_and_recording_does_not_ask_ems_again(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    walk = gd_family(harness.applications)
    await harness.store(lambda: issue(walk, "X440100001"))

    def dies(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the process died before recording")

    monkeypatch.setattr(harness.applications, "dispatch", dies)
    process = harness.process()
    with pytest.raises(RuntimeError):
        await harness.follower(process).catch_up()
    monkeypatch.undo()
    [booked] = await harness.fake.pickups()
    issued_version = (await harness.events(walk, BirthCertificateApplication.Issued))[0].originator_version
    assert (await harness.redis.get(process.booked_key(walk.id, issued_version))) == booked[
        "waybill_no"
    ].encode()

    await harness.follower(harness.process()).catch_up()
    assert (await harness.app(walk)).tracking_number == booked["waybill_no"]
    assert await harness.fake.requests() == 1


async def test_an_ems_outage_is_waited_out_and_nothing_is_skipped(harness: Harness) -> None:
    first, second = gd_family(harness.applications), second_gd_family(harness.applications)
    await harness.store(lambda: issue(first, "X440100001"))
    await harness.store(lambda: issue(second, "X440100002"))
    status, _ = await harness.fake.control("errors", {"times": 3})
    assert status == 200
    follower = harness.follower(harness.process(), poll_interval=0.01)
    task = asyncio.create_task(follower.run())
    try:
        async with asyncio.timeout(TIMEOUT):
            while (await harness.app(second)).state != "dispatched":
                await asyncio.sleep(0.05)
    finally:
        follower.stop()
        await task
    apps = [await harness.app(first), await harness.app(second)]
    assert [a.state for a in apps] == ["dispatched", "dispatched"]
    pickups = await harness.fake.pickups()
    assert sorted(p["waybill_no"] for p in pickups) == sorted(str(a.tracking_number) for a in apps)
    assert await harness.fake.requests() == 3 + 2  # three 503s, then one booking each


async def test_a_reissue_after_a_loss_books_a_new_pickup(harness: Harness) -> None:
    walk = gd_family(harness.applications)
    await harness.store(lambda: issue(walk, "X440100001"))
    await harness.follower(harness.process()).catch_up()
    first = (await harness.app(walk)).tracking_number
    await harness.store(lambda: harness.applications.report_loss(EMS, walk.id, reason="邮件破损"))
    await harness.store(
        lambda: harness.applications.reissue(
            issuer(), walk.id, certificate_number=CertificateNumber("X440100009"), sealer_name="赵盖章"
        )
    )
    await harness.follower(harness.process()).catch_up()
    app = await harness.app(walk)
    assert app.state == "dispatched"
    assert app.tracking_number not in (None, first)
    pickups = await harness.fake.pickups()
    assert [p["waybill_no"] for p in pickups] == [first, app.tracking_number]
    assert len({p["order_id"] for p in pickups}) == 2
    assert {application_of(p["order_id"]) for p in pickups} == {walk.id}


async def test_nothing_is_booked_for_pickup_on_site_or_after_a_dispatch_by_hand(harness: Harness) -> None:
    on_site, by_hand = gd_family(harness.applications), second_gd_family(harness.applications)
    await harness.store(lambda: issue(on_site, "X440100001", method="pickup"))
    await harness.store(lambda: issue(by_hand, "X440100002"))
    await harness.store(
        lambda: harness.applications.dispatch(by_hand.issuer, by_hand.id, tracking_number="EA123456785CN")
    )
    process = harness.process()
    await harness.follower(process).catch_up()
    assert await harness.fake.requests() == 0
    assert (await harness.app(on_site)).state == "issued"
    assert (await harness.app(by_hand)).tracking_number == "EA123456785CN"
    # A dispatch by hand is on the day's pickup list all the same.
    [event] = await harness.events(by_hand, Dispatched)
    day = event.timestamp.astimezone(SHANGHAI).date()
    assert await process.index.dispatched_on("GZFY01", day) == [(by_hand.id, event.originator_version)]


class Refusing:
    """EMS refuses every booking (say, an address it does not serve)."""

    async def book_pickup(self, **kwargs: Any) -> str:
        raise EmsRejected("超出揽收范围", code="ems_rejected")


async def test_a_refused_booking_is_recorded_and_the_process_goes_on(harness: Harness) -> None:
    walk = gd_family(harness.applications)
    await harness.store(lambda: issue(walk, "X440100001"))
    process = harness.process(Refusing())
    await harness.follower(process).catch_up()
    assert (await harness.app(walk)).state == "issued"
    issued_version = (await harness.events(walk, BirthCertificateApplication.Issued))[0].originator_version
    refusal = orjson.loads(await harness.redis.get(process.rejected_key(walk.id, issued_version)))
    assert refusal["code"] == "ems_rejected"
    assert await process.position() == await harness.store(harness.applications.recorder.max_notification_id)


async def test_the_fake_books_idempotently_per_order_and_checks_the_key(fake_ems: FakeEms) -> None:
    ems = HttpEms(fake_ems.base, FAKE.api_key, fake_ems.session)
    sender = Sender("GZFY01", "广州市妇女儿童医疗中心")
    recipient = PickupRecipient("王芳", "13812345678", "广东省广州市越秀区中山一路1号")
    order = order_id_for(uuid.uuid4(), 17)
    kwargs: dict[str, Any] = {
        "sender": sender,
        "recipient": recipient,
        "callback_url": "http://127.0.0.1:9/cb",
    }
    first = await ems.book_pickup(order_id=order, **kwargs)
    assert first == await ems.book_pickup(order_id=order, **kwargs)
    assert len(first) == 13 and first.startswith("11")
    assert first != await ems.book_pickup(order_id=order_id_for(uuid.uuid4(), 3), **kwargs)
    waybill = await ems.waybill(first)
    assert waybill["status"] == "booked" and waybill["order_id"] == order
    assert waybill["recipient"] == {"name": "王*", "phone": "138****5678"}
    with pytest.raises(EmsRejected):
        await HttpEms(fake_ems.base, FAKE.api_key, fake_ems.session).book_pickup(
            order_id=order,
            sender=sender,
            recipient=PickupRecipient("李梅", "13812345678", "别处的地址123号"),
            callback_url="http://127.0.0.1:9/cb",
        )
    with pytest.raises(EmsUnavailable):
        await HttpEms(fake_ems.base, "wrong-key", fake_ems.session).book_pickup(order_id=order, **kwargs)


def test_verify_webhook() -> None:
    body = b'{"waybill_no":"1100123456789","status":"delivered"}'
    assert verify_webhook(body, sign_webhook(body, SECRET), SECRET)["status"] == "delivered"
    assert verify_webhook(body, sign_webhook(body, SECRET).upper(), SECRET)["status"] == "delivered"
    for signature in (None, "", "00" * 32, sign_webhook(body + b" ", SECRET), sign_webhook(body, b"other")):
        with pytest.raises(InvalidSignature) as caught:
            verify_webhook(body, signature, SECRET)
        assert caught.value.http_status == 401 and caught.value.code == "invalid_signature"


def test_settings_from_env_default_to_the_fake() -> None:
    settings = EmsSettings.from_env({})
    assert settings.api_base == "http://127.0.0.1:8765/ems"
    assert (settings.api_key, settings.webhook_secret) == (FAKE.api_key, FAKE.webhook_secret)
    custom = EmsSettings.from_env(
        {
            "EMS_API_BASE": "https://ems.example.cn/api/",
            "EMS_API_KEY": "key-1234",
            "EMS_WEBHOOK_SECRET": "secret-5678",
        }
    )
    assert (custom.api_base, custom.api_key, custom.webhook_secret) == (
        "https://ems.example.cn/api",
        "key-1234",
        b"secret-5678",
    )
    assert "1234" not in repr(custom) and "5678" not in repr(custom)


# ---------------------------------------------------------------- the service over HTTP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """The service on a free port with the EMS routes and process wired as the wiring notes say."""

    api: str
    app: web.Application
    fake: FakeEms
    session: aiohttp.ClientSession

    @property
    def service(self) -> Applications:
        return self.app[APPLICATIONS]

    async def store(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.app[STORE_EXECUTOR], fn)

    async def issue(self, walk: Walk, number: str) -> None:
        born = datetime.now(SHANGHAI) - timedelta(hours=20)
        await self.store(lambda: issue(walk, number, born_at=born))

    async def app_of(self, walk: Walk) -> BirthCertificateApplication:
        return await self.store(lambda: self.service.get_application(SYSTEM, walk.id))

    async def events(self, walk: Walk, cls: type) -> list[Any]:
        return await self.store(lambda: [e for e in self.service.events.get(walk.id) if isinstance(e, cls)])

    async def dispatched(self, walk: Walk, other_than: str | None = None) -> BirthCertificateApplication:
        """The application once the EMS process has dispatched it (with a waybill other than ``other_than``)."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                app = await self.app_of(walk)
                if app.state == "dispatched" and app.tracking_number != other_than:
                    return app
                await asyncio.sleep(0.1)

    def token(self, actor: Actor) -> str:
        return self.app[TOKENS].issue(actor)[0]

    async def post_event(self, body: bytes, signature: str | None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["X-Ems-Signature"] = signature
        async with self.session.post(f"{self.api}/api/v1/ems/events", data=body, headers=headers) as r:
            return r.status, await r.json()


@pytest.fixture
async def stack(
    tmp_path: Path, redis_url: str, fake_ems: FakeEms, http: aiohttp.ClientSession
) -> AsyncIterator[Stack]:
    """The service with the EMS routes, ``ems_ctx`` and the fake EMS, on real SQLite and Redis."""
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    config = Config.from_env({"REDIS_URL": redis_url, "BIRTHCERT_PUBLIC_URL": api}, data_dir=tmp_path / "var")
    app = create_app(config)
    # The wiring asked of backend/app.py:
    app.router.add_routes(ems_routes.routes)
    app.cleanup_ctx.append(ems_routes.ems_ctx)
    app[ems_routes.EMS_SETTINGS] = EmsSettings(
        api_base=fake_ems.base, api_key=FAKE.api_key, webhook_secret=SECRET
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Stack(api=api, app=app, fake=fake_ems, session=http)
    finally:
        await runner.cleanup()


async def test_the_webhook_records_a_delivery_once_and_refuses_forgeries(stack: Stack) -> None:
    walk = Walk(stack.service)
    await stack.issue(walk, "X440100001")
    app = await stack.dispatched(walk)
    [pickup] = await stack.fake.pickups()
    assert pickup["callback_url"] == f"{stack.api}/api/v1/ems/events"

    status, answer = await stack.fake.control("deliver", {"waybill_no": app.tracking_number, "forge": True})
    assert (status, answer["status"], answer["body"]["code"]) == (200, 401, "invalid_signature")
    status, _ = await stack.post_event(orjson.dumps({"waybill_no": app.tracking_number}), None)
    assert status == 401
    assert (await stack.app_of(walk)).state == "dispatched"

    status, answer = await stack.fake.control("deliver", {"waybill_no": app.tracking_number})
    assert status == 200
    assert answer == {"status": 200, "body": {"received": True, "recorded": True, "state": "delivered"}}
    status, answer = await stack.fake.control("deliver", {"waybill_no": app.tracking_number})
    assert answer == {"status": 200, "body": {"received": True, "recorded": False, "state": "delivered"}}
    [delivered] = await stack.events(walk, BirthCertificateApplication.Delivered)
    assert delivered.tracking_number == app.tracking_number
    assert delivered.actor["role"] == "ems"


async def test_the_webhook_records_a_loss_once_and_the_reissue_is_picked_up_again(stack: Stack) -> None:
    walk = Walk(stack.service)
    await stack.issue(walk, "X440100001")
    first = (await stack.dispatched(walk)).tracking_number
    for recorded in (True, False):
        status, answer = await stack.fake.control(
            "lose", {"waybill_no": first, "reason": "邮件在运输途中破损"}
        )
        assert (status, answer["status"]) == (200, 200)
        assert answer["body"] == {"received": True, "recorded": recorded, "state": "lost"}
    [loss] = await stack.events(walk, BirthCertificateApplication.LossReported)
    assert (loss.reason, loss.tracking_number) == ("邮件在运输途中破损", first)

    await stack.store(
        lambda: stack.service.reissue(
            walk.issuer, walk.id, certificate_number=CertificateNumber("X440100002"), sealer_name="赵盖章"
        )
    )
    second = (await stack.dispatched(walk, other_than=first)).tracking_number
    assert second != first
    assert [p["waybill_no"] for p in await stack.fake.pickups()] == [first, second]
    status, answer = await stack.fake.control("deliver", {"waybill_no": second})
    assert answer["body"]["state"] == "delivered"


async def test_the_webhook_answers_unknown_orders_and_bad_bodies(stack: Stack) -> None:
    unknown = orjson.dumps(
        {"waybill_no": "1100000000001", "order_id": order_id_for(uuid.uuid4(), 9), "status": "delivered"}
    )
    status, body = await stack.post_event(unknown, sign_webhook(unknown, SECRET))
    assert (status, body["code"]) == (404, "not_found")
    no_order = orjson.dumps({"waybill_no": "1100000000001", "order_id": "nonsense", "status": "lost"})
    status, _ = await stack.post_event(no_order, sign_webhook(no_order, SECRET))
    assert status == 404
    not_json = b"not json"
    status, body = await stack.post_event(not_json, sign_webhook(not_json, SECRET))
    assert (status, body["code"]) == (400, "invalid_webhook")
    bad_order = orjson.dumps(
        {"waybill_no": "1100000000001", "order_id": order_id_for(uuid.uuid4(), 9), "status": "delivered"}
    )
    status, body = await stack.post_event(bad_order, sign_webhook(bad_order, b"another secret"))
    assert (status, body["code"]) == (401, "invalid_signature")


def test_order_ids() -> None:
    app_id = uuid.uuid4()
    assert application_of(order_id_for(app_id, 12)) == app_id
    assert application_of(str(app_id)) == app_id
    assert application_of(order_id_for(app_id, 12).upper()) == app_id
    for bad in (None, 12, "", "nonsense", f"{app_id}-v0", f"{app_id}-12", f"{app_id}-v1-v2"):
        assert application_of(bad) is None
