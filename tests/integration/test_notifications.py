"""Subscribe messages to the parent, from a real event store (SQLite) through a real Redis outbox and the real
WeChat adapter to the fake WeChat platform over HTTP.

The fake runs on an event loop of its own in a background thread (the adapter is synchronous and runs on
the I/O executor). Tests that need time to pass use an injected clock and call ``deliver_due()``; the one
that runs the retry loop uses a backoff of a few milliseconds and waits on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.auth import ProviderVerifier
from backend.channels import ProvincialApp
from backend.config import WeChatSettings, channel_settings
from backend.dev import channel_environ
from backend.wechat import WeChat
from domain.service import Applications
from domain.values import Actor, CertificateNumber
from miniprogram_stub.fake_messages import value_is_valid
from miniprogram_stub.platform import FakeSettings, start_fake_platform
from projections.leader import fence_key
from projections.notifications import CORRECTION_WORDING, NotificationProcess, fit, message_data
from projections.runner import Fenced, LogFollower
from projections.sql import Database, DurablePosition
from tests.builders import EMS, MOTHER_ID, NOW, TEST_ID_NUMBERS, Walk, facts, hospital
from tests.integration.following import Background, PlatformControl, Term, log_page, off_loop

SUBSCRIBE = "/cgi-bin/message/subscribe/send"
OPENID = "openid-mother"
TEMPLATES = {
    "rejected": "tmpl-rejected",
    "issued": "tmpl-issued",
    "dispatched": "tmpl-dispatched",
    "delivered": "tmpl-delivered",
    "corrected": "tmpl-corrected",
    "referred": "tmpl-referred",
}
TRACKING = "EA123456789CN"
DEADLINE = 10.0


# --- the fake platform, on a loop in a background thread -------------------------------------------------


class Platform(PlatformControl):
    """The fake's base URL and its control API."""

    def messages(self, touser: str = OPENID) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.control("GET", f"/_fake/messages?touser={touser}")["messages"]
        return found

    def calls(self) -> int:
        count: int = self.control("GET", f"/_fake/calls?path={SUBSCRIBE}")["count"]
        return count

    def inject(self, errcode: int, times: int = 1) -> None:
        self.control("POST", "/_fake/errors", {"path": SUBSCRIBE, "errcode": errcode, "times": times})


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    background = Background()
    runner, base_url = background.run(start_fake_platform("127.0.0.1", 0, FakeSettings()))
    fake = Platform(base_url)
    yield fake
    fake.http.close()
    background.run(runner.cleanup())
    background.close()


@pytest.fixture
def fake(platform: Platform) -> Platform:
    """The fake platform, reset for this test."""
    platform.control("POST", "/_fake/reset")
    return platform


# --- the service, Redis, the adapter, the process --------------------------------------------------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_795_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def store() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-store")
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def io() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="io")
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def wechat(fake: Platform, redis_url: str) -> Iterator[WeChat]:
    defaults = FakeSettings()
    settings_ = WeChatSettings(
        appid=defaults.appid,
        secret=defaults.secret,
        api_base=fake.base_url,
        pay_base=fake.base_url,
        mch_id=defaults.mch_id,
        pay_key=defaults.pay_api_key,
        templates=TEMPLATES,
    )
    sync_redis = redis.Redis.from_url(redis_url)
    adapter = WeChat(settings_, sync_redis, "http://127.0.0.1:9/notify")
    yield adapter
    adapter.close()
    sync_redis.close()


@pytest.fixture
def make_process(
    client: aioredis.Redis,
    applications: Applications,
    store: ThreadPoolExecutor,
    io: ThreadPoolExecutor,
    wechat: WeChat,
) -> Callable[..., NotificationProcess]:
    """Processes on the test's store, Redis and adapter; ``start`` defaults to the log's beginning here."""

    def make(**kw: Any) -> NotificationProcess:
        kw.setdefault("start", "beginning")
        templates: Mapping[str, str] = kw.pop("templates", TEMPLATES)
        kw.setdefault("seal_key", b"s" * 32)
        return NotificationProcess(client, applications, store, io, kw.pop("wechat", wechat), templates, **kw)

    return make


def follower_of(
    applications: Applications, process: NotificationProcess, store: ThreadPoolExecutor
) -> LogFollower:
    return LogFollower(applications, process, executor=store, name="notifications")


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = DEADLINE) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def journey(
    walk: Walk,
    reason: str = "身份证照片不清晰",
    tracking: str = TRACKING,
    codes: list[str] | None = None,
) -> None:
    """Submitted, rejected (for ``codes``, or the issuer's words only), resubmitted, issued, dispatched,
    delivered."""
    walk.submitted()
    walk.app.reject(
        walk.issuer, walk.id, reasons=[reason], fields=["documents.mother_id_front"], reason_codes=codes
    )
    walk.submit()
    walk.issue()
    walk.app.dispatch(EMS, walk.id, tracking_number=tracking)
    walk.app.record_delivered(EMS, walk.id)


def values(message: dict[str, Any]) -> dict[str, str]:
    return {key: entry["value"] for key, entry in message["data"].items()}


def times(applications: Applications) -> dict[str, str]:
    """The time of each kind of event in the log, as the messages show it (the store stamps events itself)."""
    events: list[Any] = [event for _, event in log_page(applications)]
    return {type(e).__name__.lower(): fit("time", e.timestamp) for e in events}


def states(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["kind"], e["state"]) for e in entries]


# --- the journey ----------------------------------------------------------------------------------------


async def test_a_journey_to_delivered_sends_four_messages_with_the_right_values(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, make_process: Any
) -> None:
    process = make_process()
    walk = Walk(applications)
    await off_loop(store, lambda: journey(walk, codes=["id_photo_unclear"]))
    await follower_of(applications, process, store).catch_up()

    messages = fake.messages()
    when = await off_loop(store, times, applications)
    assert [m["template_id"] for m in messages] == [
        "tmpl-rejected",
        "tmpl-issued",
        "tmpl-dispatched",
        "tmpl-delivered",
    ]
    assert [values(m) for m in messages] == [
        {
            "thing1": "出生医学证明申领",
            "phrase2": "已退回",
            "thing3": "证件照片不清晰或不完整",  # the code's label, not the issuer's words
            "time4": when["rejected"],
        },
        {
            "character_string1": "X440100001",
            "phrase2": "已签发",
            "thing3": "广州市妇女儿童医疗中心",
            "time4": when["issued"],
        },
        {
            "character_string1": TRACKING,
            "phrase2": "已预约揽收",
            "thing3": "邮政速递",
            "time4": when["dispatched"],
        },
        {"phrase1": "已签收", "thing2": "出生医学证明已送达，请查收", "time3": when["delivered"]},
    ]
    assert {m["page"] for m in messages} == {f"pages/application/status?id={walk.id}"}
    assert {m["miniprogram_state"] for m in messages} == {"formal"}
    assert fake.calls() == 4

    log = await process.list_for(walk.id)
    assert states(log) == [
        ("rejected", "sent"),
        ("issued", "sent"),
        ("dispatched", "sent"),
        ("delivered", "sent"),
    ]
    assert all(e["attempts"] == 1 and e["sent_at"] and e["errcode"] is None for e in log)
    assert await process.backlog() == 0


async def test_a_page_applied_twice_sends_nothing_more(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, make_process: Any
) -> None:
    process = make_process()
    walk = Walk(applications)
    await off_loop(store, journey, walk)
    page = await off_loop(store, log_page, applications)

    assert await process.apply(page, 0)
    assert not await process.apply(page, 0)
    await asyncio.gather(process.apply(page, 0), make_process().apply(page, 0))  # two followers racing

    assert len(fake.messages()) == 4
    assert fake.calls() == 4
    assert await process.position() == page[-1][0]


async def test_a_restarted_process_sends_nothing_again(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, make_process: Any
) -> None:
    walk = Walk(applications)
    await off_loop(store, journey, walk)
    await follower_of(applications, make_process(), store).catch_up()
    assert fake.calls() == 4

    clock = Clock()
    again = make_process(clock=clock)  # a new instance on the same Redis, as after a restart
    await follower_of(applications, again, store).catch_up()
    clock.advance(3 * 24 * 3600)
    assert await again.deliver_due() == 0

    assert fake.calls() == 4
    assert len(fake.messages()) == 4


async def test_a_later_step_is_sent_as_it_happens(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, make_process: Any
) -> None:
    process = make_process()
    follower = follower_of(applications, process, store)
    walk = Walk(applications)
    await off_loop(store, walk.submitted)
    await follower.catch_up()
    assert fake.messages() == []

    await off_loop(store, walk.issue)
    await follower.catch_up()
    [issued] = fake.messages()
    assert values(issued)["character_string1"] == "X440100001"


async def test_a_process_started_late_does_not_send_history(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, make_process: Any
) -> None:
    walk = Walk(applications)
    await off_loop(store, walk.submitted)
    await off_loop(store, walk.issue)
    process = make_process(start="end")
    follower = follower_of(applications, process, store)
    await follower.catch_up()
    assert fake.calls() == 0

    await off_loop(store, lambda: applications.dispatch(EMS, walk.id, tracking_number=TRACKING))
    await follower.catch_up()
    assert [m["template_id"] for m in fake.messages()] == ["tmpl-dispatched"]

    # A reset forgets the outbox and starts again at the log's end: nothing is sent twice.
    await process.reset()
    await follower.catch_up()
    assert fake.calls() == 1


async def test_an_outbox_lost_with_redis_goes_on_from_its_position_beside_the_events(
    fake: Platform,
    applications: Applications,
    store: ThreadPoolExecutor,
    make_process: Any,
    client: aioredis.Redis,
    sqlite_env: dict[str, str],
) -> None:
    db = await off_loop(store, Database.open, sqlite_env)
    floor = DurablePosition(db, store, "notifications")
    process = make_process(start="end", floor=floor)
    follower = follower_of(applications, process, store)
    walk = Walk(applications)
    await off_loop(store, walk.submitted)
    await follower.catch_up()

    # Redis is flushed (or replaced by an empty one); meanwhile the issuer issues the certificate.
    await client.flushdb()
    await off_loop(store, walk.issue)
    await follower.catch_up()
    # Not from the log's end (which would skip it): the parent is told her certificate was issued.
    assert [m["template_id"] for m in fake.messages()] == ["tmpl-issued"]
    await off_loop(store, db.close)


# --- refusals, failures, retries ------------------------------------------------------------------------


async def test_a_refusal_is_recorded_and_never_retried(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, make_process: Any
) -> None:
    fake.control("POST", "/_fake/subscriptions/refuse", {"touser": OPENID, "template_id": "tmpl-rejected"})
    clock = Clock()
    process = make_process(clock=clock)
    walk = Walk(applications)
    await off_loop(store, walk.submitted)
    await off_loop(store, walk.reject)
    await follower_of(applications, process, store).catch_up()
    assert fake.calls() == 1

    for _ in range(3):
        clock.advance(3600)
        assert await process.deliver_due() == 0
    assert fake.calls() == 1
    assert fake.messages() == []
    [entry] = await process.list_for(walk.id)
    assert (entry["kind"], entry["state"], entry["attempts"], entry["errcode"]) == (
        "rejected",
        "refused",
        1,
        43101,
    )
    assert entry["sent_at"] is None

    # Later steps with other templates still go out.
    await off_loop(store, walk.submit)
    await off_loop(store, walk.issue)
    await follower_of(applications, process, store).catch_up()
    assert [m["template_id"] for m in fake.messages()] == ["tmpl-issued"]


async def test_transient_errors_are_retried_with_backoff_until_delivered(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, make_process: Any
) -> None:
    fake.inject(-1)
    fake.inject(45011)
    process = make_process(backoff=(0.02, 0.1))
    walk = Walk(applications)
    await off_loop(store, walk.submitted)
    await off_loop(store, walk.issue)
    task = asyncio.create_task(process.run())
    try:
        await follower_of(applications, process, store).catch_up()
        [entry] = await process.list_for(walk.id)
        assert (entry["state"], entry["attempts"], entry["errcode"]) == ("pending", 1, -1)
        assert entry["next_attempt_at"] is not None

        async def delivered() -> bool:
            return [e["state"] for e in await process.list_for(walk.id)] == ["sent"]

        await eventually(delivered)
    finally:
        process.stop()
        await asyncio.wait_for(task, DEADLINE)

    [entry] = await process.list_for(walk.id)
    assert entry["attempts"] == 3
    assert fake.calls() == 3
    assert len(fake.messages()) == 1
    assert await process.backlog() == 0


async def test_the_backoff_doubles_to_ten_minutes_and_gives_up(
    fake: Platform,
    client: aioredis.Redis,
    applications: Applications,
    store: ThreadPoolExecutor,
    make_process: Any,
) -> None:
    fake.inject(-1, times=1000)
    clock = Clock()
    process = make_process(clock=clock, give_up_after=3600.0)
    walk = Walk(applications)
    await off_loop(store, walk.submitted)
    await off_loop(store, walk.issue)
    await follower_of(applications, process, store).catch_up()

    delays = []
    while True:
        [entry] = await process.list_for(walk.id)
        if entry["state"] != "pending":
            break
        due = float(await client.hget(process.message_key(entry["position"]), "next_attempt_at"))  # type: ignore[misc]
        delays.append(round(due - clock.now, 3))
        assert await process.deliver_due() == 0  # not due yet
        clock.now = due
        assert await process.deliver_due() == 1

    assert delays[:12] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]
    assert (entry["state"], entry["errcode"]) == ("failed", -1)
    assert entry["attempts"] == fake.calls() == len(delays) + 1
    assert await process.backlog() == 0


async def test_a_later_message_waits_for_an_earlier_one(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, make_process: Any
) -> None:
    fake.inject(-1)
    clock = Clock()
    process = make_process(clock=clock)
    walk = Walk(applications)
    await off_loop(store, walk.submitted)
    await off_loop(store, walk.issue)
    await off_loop(store, lambda: applications.dispatch(EMS, walk.id, tracking_number=TRACKING))
    await follower_of(applications, process, store).catch_up()
    assert fake.messages() == []
    assert states(await process.list_for(walk.id)) == [("issued", "pending"), ("dispatched", "pending")]

    clock.advance(1)
    await process.deliver_due()
    assert [m["template_id"] for m in fake.messages()] == ["tmpl-issued", "tmpl-dispatched"]


async def test_template_data_refused_is_failed_and_not_retried(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, make_process: Any
) -> None:
    fake.inject(47003)
    clock = Clock()
    process = make_process(clock=clock)
    walk = Walk(applications)
    await off_loop(store, walk.submitted)
    await off_loop(store, walk.issue)
    await follower_of(applications, process, store).catch_up()
    clock.advance(3600)
    await process.deliver_due()
    [entry] = await process.list_for(walk.id)
    assert (entry["state"], entry["errcode"], entry["attempts"]) == ("failed", 47003, 1)
    assert fake.calls() == 1


class DiesAfterSending:
    """An adapter whose process dies right after WeChat said ok, before the outbox hears of it."""

    def __init__(self, wechat: WeChat) -> None:
        self.wechat = wechat

    def send_subscribe_message(self, **kw: Any) -> None:
        self.wechat.send_subscribe_message(**kw)
        raise asyncio.CancelledError()


async def test_a_send_cut_short_by_a_crash_is_sent_once_more_after_the_lease(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, wechat: WeChat, make_process: Any
) -> None:
    clock = Clock()
    dying = make_process(clock=clock, wechat=DiesAfterSending(wechat), lease=60.0)
    walk = Walk(applications)
    await off_loop(store, walk.submitted)
    await off_loop(store, walk.issue)
    with pytest.raises(asyncio.CancelledError):
        await follower_of(applications, dying, store).catch_up()
    assert len(fake.messages()) == 1
    assert states(await dying.list_for(walk.id)) == [("issued", "sending")]

    restarted = make_process(clock=clock)
    await follower_of(applications, restarted, store).catch_up()
    assert len(fake.messages()) == 1  # the lease still holds
    clock.advance(61)
    assert await restarted.deliver_due() == 1
    # WeChat has no idempotency key: the window between its "ok" and our mark costs one duplicate.
    assert len(fake.messages()) == 2
    [entry] = await restarted.list_for(walk.id)
    assert (entry["state"], entry["attempts"]) == ("sent", 2)


# --- what is sent, and to whom --------------------------------------------------------------------------


async def test_a_long_reason_and_odd_numbers_are_fitted_and_accepted(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, wechat: WeChat, make_process: Any
) -> None:
    reason = (
        f"母亲身份证（{MOTHER_ID}）照片反光看不清，\n请在光线充足处重新拍摄人像面和国徽面，确保四角完整、文字清楚，"
        * 2
    )
    tracking = "ea12345678901234567890123456789z"  # 32 characters, lower case as typed
    process = make_process()
    walk = Walk(applications)
    await off_loop(store, lambda: journey(walk, reason=reason, tracking=tracking))
    await follower_of(applications, process, store).catch_up()

    rejected, _, dispatched, _ = (values(m) for m in fake.messages())
    # The issuer's words (here with an ID number) never go out: a request without codes is told as 其他问题.
    assert rejected["thing3"] == "其他问题"
    assert MOTHER_ID not in str(fake.messages()) and "反光" not in str(fake.messages())
    assert dispatched["character_string1"] == tracking.upper()

    # Values the domain would never let through, fitted and accepted all the same.
    odd = message_data(
        "dispatched",
        datetime(2026, 11, 22, 2, 30, tzinfo=UTC),
        number="ＥＥ 1234-5678\t9 CN（邮政）",
        carrier="顺丰速运 标快\n次日达特快专递服务加急件",
    )
    assert odd == {
        "character_string1": "EE1234-56789CN()",
        "phrase2": "已预约揽收",
        "thing3": "顺丰速运 标快 次日达特快专递服务加急件",
        "time4": "2026年11月22日 10:30",
    }
    await off_loop(
        store,
        lambda: wechat.send_subscribe_message(touser="openid-odd", template_id="tmpl-dispatched", data=odd),
    )
    assert len(fake.messages("openid-odd")) == 1


async def test_a_provincial_app_applicant_is_skipped_where_the_app_is_not_configured(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, make_process: Any
) -> None:
    process = make_process()
    walk = Walk(applications, parent=Actor(id="yss:4f1c2a", role="parent"))
    await off_loop(store, journey, walk)
    await follower_of(applications, process, store).catch_up()

    assert fake.calls() == 0
    log = await process.list_for(walk.id)
    assert states(log) == [
        ("rejected", "skipped"),
        ("issued", "skipped"),
        ("dispatched", "skipped"),
        ("delivered", "skipped"),
    ]
    assert {e["note"] for e in log} == {"no_channel"}
    assert await process.backlog() == 0


async def test_a_provincial_app_applicant_is_told_through_the_apps_push_once_each(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, make_process: Any
) -> None:
    environ = channel_environ(fake.base_url)
    settings = channel_settings(environ, "http://127.0.0.1:1", development=True)["yueshengshi"]
    app = ProvincialApp(settings, ProviderVerifier(settings), b"k" * 32)
    process = make_process(pushes={"yueshengshi": app})
    walk = Walk(applications, parent=Actor(id="yss:4f1c2a", role="parent"))
    await off_loop(store, journey, walk)
    follower = follower_of(applications, process, store)
    await follower.catch_up()
    await follower.catch_up()  # a page read again sends nothing again

    assert fake.calls() == 0  # nothing through WeChat
    pushed = fake.control("GET", "/_fake/oidc/yueshengshi/pushes?touser=4f1c2a")["pushes"]
    assert [m["template"] for m in pushed] == ["rejected", "issued", "dispatched", "delivered"]
    assert pushed[1]["data"]["phrase2"] == "已签发" and pushed[1]["page"].endswith(f"?id={walk.id}")
    log = await process.list_for(walk.id)
    assert states(log) == [
        ("rejected", "sent"),
        ("issued", "sent"),
        ("dispatched", "sent"),
        ("delivered", "sent"),
    ]

    app.close()


async def test_a_kind_without_a_template_is_skipped(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, make_process: Any
) -> None:
    process = make_process(templates={"issued": "tmpl-issued"})
    walk = Walk(applications)
    await off_loop(store, journey, walk)
    await follower_of(applications, process, store).catch_up()
    assert [m["template_id"] for m in fake.messages()] == ["tmpl-issued"]
    assert [e["note"] for e in await process.list_for(walk.id)] == [
        "no_template",
        None,
        "no_template",
        "no_template",
    ]


async def test_finished_records_keep_thirty_days_and_no_openid(
    fake: Platform,
    client: aioredis.Redis,
    applications: Applications,
    store: ThreadPoolExecutor,
    make_process: Any,
) -> None:
    process = make_process()
    walk = Walk(applications)
    await off_loop(store, journey, walk)
    await follower_of(applications, process, store).catch_up()

    dumped = []
    async for key in client.scan_iter(match="bc:notify:*"):
        kind = (await client.type(key)).decode()
        if kind == "hash":
            ttl = await client.ttl(key)
            assert 29 * 86400 < ttl <= 30 * 86400
            dumped.append(str(await client.hgetall(key)))  # type: ignore[misc]
        elif kind == "zset":
            dumped.append(str(await client.zrange(key, 0, -1)))
    text = "\n".join(dumped)
    assert len(dumped) == 4 + 1  # four records and the application's index (the queue is empty)
    for personal in (OPENID, "王芳", "张伟", "张小花", *TEST_ID_NUMBERS, "X440100001", "'data'"):
        assert personal not in text


async def test_a_pending_message_holds_its_data_sealed(
    fake: Platform,
    client: aioredis.Redis,
    applications: Applications,
    store: ThreadPoolExecutor,
    make_process: Any,
) -> None:
    fake.inject(-1, times=1)  # WeChat away for the first attempt: the message waits in Redis
    clock = Clock()
    process = make_process(clock=clock)
    walk = Walk(applications)
    await off_loop(store, walk.submitted)
    await off_loop(store, walk.issue)
    await follower_of(applications, process, store).catch_up()
    [entry] = await process.list_for(walk.id)
    assert entry["state"] == "pending"
    key = process.message_key(entry["position"])
    record = await client.hgetall(key)  # type: ignore[misc]
    assert record[b"data"] and b"X440100001" not in b"".join([*record, *record.values()])

    clock.now = float(record[b"next_attempt_at"])
    assert await process.deliver_due() == 1
    [message] = fake.messages()
    assert values(message)["character_string1"] == "X440100001"  # sent as it was recorded
    assert b"data" not in await client.hgetall(key)  # type: ignore[misc]


async def test_list_for_an_unknown_or_malformed_id_is_empty(make_process: Any) -> None:
    process = make_process()
    assert await process.list_for("not-a-uuid") == []
    assert await process.list_for("00000000-0000-0000-0000-000000000001") == []


# --- fit ------------------------------------------------------------------------------------------------

ANY_TEXT = st.text(alphabet=st.characters(codec=None, categories=None), max_size=80)


@settings(max_examples=400, deadline=None)
@given(key=st.sampled_from(["thing3", "phrase2", "character_string1"]), value=ANY_TEXT)
def test_fit_makes_any_string_a_value_the_fake_accepts(key: str, value: str) -> None:
    fitted = fit(key, value)
    assert value_is_valid(key, fitted), (key, value, fitted)
    assert fitted.encode("utf-8")  # no lone surrogates
    assert fit(key, fitted) == fitted


@settings(max_examples=200, deadline=None)
@given(moment=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2999, 12, 31)))
def test_fit_makes_any_datetime_a_time_and_date_the_fake_accepts(moment: datetime) -> None:
    for key in ("time4", "date2"):
        fitted = fit(key, moment)
        assert value_is_valid(key, fitted), (key, moment, fitted)
        assert fit(key, fitted) == fitted


def test_fit_examples() -> None:
    assert (
        fit("thing3", "一二三四五六七八九十一二三四五六七八九十")
        == "一二三四五六七八九十一二三四五六七八九十"
    )
    assert (
        fit("thing3", "一二三四五六七八九十一二三四五六七八九十一")
        == "一二三四五六七八九十一二三四五六七八九…"
    )
    assert fit("thing1", "第一行\r\n第二行\u200b\x00") == "第一行 第二行"
    assert fit("thing1", " \n\t") == "—"
    assert fit("phrase2", "审核通过OK!") == "审核通过"
    assert fit("phrase2", "已经全部审核通过") == "已经全部审"
    assert fit("phrase2", "ok") == "有更新"
    assert fit("character_string1", "X 440100001") == "X440100001"
    assert fit("character_string1", "Ａ" * 40) == "A" * 32
    assert fit("character_string1", "邮政") == "-"
    assert fit("time4", datetime(2026, 11, 22, 2, 30)) == "2026年11月22日 10:30"
    assert fit("time4", "2026-11-22T10:30:00+08:00") == "2026年11月22日 10:30"
    assert fit("time4", "10:30") == "10:30"
    assert fit("date2", datetime(2026, 11, 22, 2, 30, tzinfo=UTC) + timedelta(hours=20)) == "2026年11月23日"
    with pytest.raises(ValueError):
        fit("time4", "tomorrow")
    with pytest.raises(ValueError):
        fit("amount1", "¥22.00")


def test_the_certificate_number_of_a_reissue_is_announced_as_reissued() -> None:
    data = message_data(
        "reissued", NOW, number=CertificateNumber("X440100002").value, institution="广州市妇女儿童医疗中心"
    )
    assert data == {
        "character_string1": "X440100002",
        "phrase2": "已补发",
        "thing3": "广州市妇女儿童医疗中心",
        "time4": "2026年11月20日 10:00",
    }


# --- the hospital's corrections and the referral to the counter ----------------------------------------

CORRECTION = "产妇提出异议，核对后更正出生体重"


def correct(walk: Walk, weight_g: int, reason: str = CORRECTION) -> None:
    """The hospital corrects the newborn's weight on the family's delivery record."""
    walk.app.correct_delivery(
        hospital(walk.inst),
        walk.record_id or "",
        facts=facts(walk.mother_id, weight_g=weight_g),
        reason=reason,
    )


def all_valid(messages: list[dict[str, Any]]) -> bool:
    """Every value of every message fits its key's type (thing ≤ 20, phrase ≤ 5 Chinese characters …)."""
    return all(value_is_valid(key, value) for m in messages for key, value in values(m).items())


async def test_a_correction_under_review_tells_the_parent_once_to_check_and_sign_again(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, make_process: Any
) -> None:
    walk = Walk(applications)
    await off_loop(store, walk.submitted)
    await off_loop(store, correct, walk, 3350)
    assert await off_loop(store, walk.state) == "returned"
    await follower_of(applications, make_process(), store).catch_up()

    when = await off_loop(store, times, applications)
    [message] = fake.messages()
    assert message["template_id"] == "tmpl-corrected"
    assert values(message) == {
        "thing1": "出生医学证明申领",
        "phrase2": "已退回",
        "thing3": "产妇提出异议，核对后更正出生体重",
        "thing4": "请核对分娩信息，重新签名后提交",
        "time5": when["deliveryrecordrefreshed"],
    }
    assert message["page"] == f"pages/application/status?id={walk.id}"
    assert all_valid([message])

    # A restarted process sends it no second time, however long it runs.
    clock = Clock()
    again = make_process(clock=clock)
    await follower_of(applications, again, store).catch_up()
    clock.advance(3 * 24 * 3600)
    assert await again.deliver_due() == 0
    assert fake.calls() == 1

    # She confirms the corrected record, signs again and resubmits; the issue is the next message.
    def resubmit() -> None:
        walk.confirm()
        walk.sign()
        walk.submit()
        walk.issue()

    await off_loop(store, resubmit)
    await follower_of(applications, again, store).catch_up()
    assert [m["template_id"] for m in fake.messages()] == ["tmpl-corrected", "tmpl-issued"]
    assert states(await again.list_for(walk.id)) == [("corrected", "sent"), ("issued", "sent")]
    assert fake.calls() == 2


async def test_a_correction_before_she_signed_is_told_only_when_it_answers_her_dispute(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, make_process: Any
) -> None:
    process = make_process()
    follower = follower_of(applications, process, store)
    walk = Walk(applications)

    def linked() -> None:
        walk.record_delivery()
        walk.start()
        walk.verify("mother")

    await off_loop(store, linked)
    await off_loop(store, correct, walk, 3300)  # nothing confirmed, signed or disputed: no message
    await follower.catch_up()
    assert fake.calls() == 0

    await off_loop(
        store, lambda: applications.dispute_delivery_info(walk.parent, walk.id, reason="出生体重应为3350克")
    )
    await off_loop(store, correct, walk, 3350)  # answers her dispute
    await follower.catch_up()
    [answered] = fake.messages()
    assert (values(answered)["phrase2"], values(answered)["thing4"]) == (
        "待确认",
        "请核对更正后的分娩信息并确认",
    )

    def signed() -> None:
        walk.confirm()
        walk.details()
        walk.verify("father")
        walk.upload_all()
        walk.sign()

    await off_loop(store, signed)
    await off_loop(store, correct, walk, 3360)  # voids the signature she gave, before she submitted
    await follower.catch_up()
    _, resign = fake.messages()
    assert (values(resign)["phrase2"], values(resign)["thing4"]) == (
        "待重新签名",
        "请核对分娩信息，重新签名后提交",
    )
    assert all_valid(fake.messages())
    assert states(await process.list_for(walk.id)) == [("corrected", "sent"), ("corrected", "sent")]


async def test_a_correction_waits_for_the_rejection_before_it(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, make_process: Any
) -> None:
    fake.inject(-1)
    clock = Clock()
    process = make_process(clock=clock)
    walk = Walk(applications)
    await off_loop(store, walk.submitted)
    await off_loop(store, walk.reject)
    await off_loop(store, walk.submit)
    await off_loop(store, correct, walk, 3350)
    await follower_of(applications, process, store).catch_up()
    assert fake.messages() == []
    assert states(await process.list_for(walk.id)) == [("rejected", "pending"), ("corrected", "pending")]

    clock.advance(1)
    await process.deliver_due()
    assert [m["template_id"] for m in fake.messages()] == ["tmpl-rejected", "tmpl-corrected"]


async def test_the_rejection_past_the_limit_becomes_one_message_to_go_to_the_counter(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, make_process: Any
) -> None:
    walk = Walk(applications)

    def to_the_limit() -> None:
        walk.submitted()
        for _ in range(5):  # Guangdong allows 5 resubmissions; the sixth rejection refers it to the counter
            walk.reject()
            walk.submit()
        walk.reject()

    await off_loop(store, to_the_limit)
    assert await off_loop(store, walk.state) == "counter_only"
    page = await off_loop(store, log_page, applications)
    kinds = [type(event).__name__ for _, event in page]
    referral = kinds.index("ReferredToCounter")
    assert kinds[referral - 1] == "Rejected"

    # The rejection and the referral on two pages: the rejection is still not sent.
    process = make_process()
    assert await process.apply(page[:referral], 0)
    assert await process.apply(page[referral:], page[referral - 1][0])

    when = await off_loop(store, times, applications)
    messages = fake.messages()
    assert [m["template_id"] for m in messages] == ["tmpl-rejected"] * 5 + ["tmpl-referred"]
    assert values(messages[-1]) == {
        "thing1": "出生医学证明申领",
        "phrase2": "转现场办理",
        "thing3": "退回修改次数已达上限",
        "thing4": "请携带相关材料到签发机构现场办理",
        "time5": when["referredtocounter"],
    }
    assert all_valid(messages)
    log = await process.list_for(walk.id)
    assert states(log[-3:]) == [("rejected", "sent"), ("rejected", "skipped"), ("referred", "sent")]
    assert log[-2]["note"] == "referred"

    # Once, across a restart and a replay of the whole log.
    again = make_process()
    assert not await again.apply(page, 0)
    await follower_of(applications, again, store).catch_up()
    assert fake.calls() == 6


async def test_a_revocation_tells_the_mother_once_that_the_certificate_is_void_never_the_note(
    fake: Platform, applications: Applications, store: ThreadPoolExecutor, make_process: Any
) -> None:
    walk = Walk(applications)
    note = f"经公安机关核查，申办人所持身份证（{MOTHER_ID}）系冒用"

    def issued_then_revoked() -> None:
        walk.submitted()
        walk.issue()
        walk.app.dispatch(EMS, walk.id, tracking_number=TRACKING)
        walk.app.revoke_certificate(walk.issuer, walk.id, reason="obtained_by_deception", note=note)
        # The parcel arrives all the same: nothing recorded, nothing sent.
        walk.app.record_delivered(EMS, walk.id)

    await off_loop(store, issued_then_revoked)
    process = make_process()
    await follower_of(applications, process, store).catch_up()
    when = await off_loop(store, times, applications)
    messages = fake.messages()
    assert [m["template_id"] for m in messages] == ["tmpl-issued", "tmpl-dispatched", "tmpl-referred"]
    assert values(messages[-1]) == {
        "thing1": "出生医学证明申领",
        "phrase2": "已作废",
        "thing3": "以欺骗等不正当手段取得",
        "thing4": "原证件停止使用，详询签发机构",
        "time5": when["certificaterevoked"],
    }
    assert all_valid(messages) and MOTHER_ID not in str(messages) and "冒用" not in str(messages)
    assert states(await process.list_for(walk.id))[-1] == ("revoked", "sent")

    # Once, across a restart and a replay of the whole log.
    again = make_process()
    await follower_of(applications, again, store).catch_up()
    assert fake.calls() == 3


def test_correction_and_referral_values_fit_their_keys() -> None:
    reason = f"产妇（{MOTHER_ID}，电话13800138000）对出生时间提出异议，\n经核对病历，出生时间更正为08:35"
    for step in CORRECTION_WORDING:
        data = message_data("corrected", NOW, reason=reason, step=step)
        assert all(value_is_valid(key, value) for key, value in data.items()), data
        assert MOTHER_ID not in str(data) and "13800138000" not in str(data)
        assert data["thing3"].startswith("产妇（***，电话***）") and data["thing3"].endswith("…")
    assert message_data("corrected", NOW, reason=" ")["thing3"] == "医院更正了分娩信息"
    unknown = message_data("referred", NOW, reason="some_future_reason")
    assert (unknown["phrase2"], unknown["thing3"]) == ("转现场办理", "无法继续网上办理")
    assert all(value_is_valid(key, value) for key, value in unknown.items())


# --- one leader at a time (decision 0024) -----------------------------------------------------------------


async def test_an_old_leaders_pages_and_claims_are_refused_and_send_nothing(
    fake: Platform,
    client: aioredis.Redis,
    applications: Applications,
    store: ThreadPoolExecutor,
    make_process: Any,
) -> None:
    clock = Clock()
    old = make_process(fence=Term(1), clock=clock)
    new = make_process(fence=Term(2), clock=clock)
    walk = Walk(applications)
    await off_loop(store, walk.submitted)
    await off_loop(store, walk.issue)
    await client.set(fence_key(), 2)  # a new leader took over and told Redis its term
    with pytest.raises(Fenced):
        await follower_of(applications, old, store).catch_up()
    assert await old.stored_position() == 0 and fake.calls() == 0, "the old leader recorded and sent nothing"

    fake.inject(-1)  # the new leader's first send fails: the message waits, pending, for its retry
    await follower_of(applications, new, store).catch_up()
    [entry] = await new.list_for(walk.id)
    assert entry["state"] == "pending"
    clock.advance(60)
    with pytest.raises(Fenced):
        await old.deliver_due()  # the old leader, paused until now, would claim it: refused
    assert [e["state"] for e in await new.list_for(walk.id)] == ["pending"]
    with pytest.raises(Fenced):
        await make_process(fence=Term(None), clock=clock).deliver_due()  # one that knows it lost: nothing
    assert await new.deliver_due() == 1
    assert len(fake.messages()) == 1 and fake.calls() == 2, "sent once (after the one failed try)"
