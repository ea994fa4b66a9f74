"""The issuers' review queue, followed from a real SQLite event store into a real Redis, and its HTTP routes.

Families at a Guangdong and a Shandong hospital are driven through the service; the queue shows each
institution only its own applications, oldest submission first, moves them through new → returned →
resubmitted → awaiting dispatch/handover/reissue and drops them when they leave the issuer's hands.
Deadlines are the working-day calendar's; overdue is decided at read time. Rebuilds and re-applied
pages end in the same bytes; nothing personal reaches Redis; the routes scope the queue to the
caller's institution and stream its changes as Server-Sent Events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from backend.auth import TokenIssuer, TokenKeys
from backend.components import APPLICATIONS, FOLLOWERS, REDIS_CLIENT, STORE_EXECUTOR, TOKENS
from backend.errors import problem_middleware
from backend.routes import queue as queue_routes
from backend.routes.queue import QUEUE_CLOSING, QUEUE_FOLLOWER, QUEUE_VIEW, queue_ctx
from domain.errors import InvalidValue
from domain.holiday_schedule import parse_schedule
from domain.policy import SHANGHAI, WorkingCalendar, get_profile, review_deadline
from domain.service import Applications
from domain.values import Actor, CertificateNumber
from projections.review_queue import QUEUE_STATES, ReviewQueueView
from projections.runner import LogFollower
from tests.builders import (
    BORN,
    EMS,
    NOW,
    OTHER_MAN_ID,
    SD_FATHER_ID,
    SD_HOSPITAL,
    SD_MOTHER_ID,
    SECOND_MOTHER_ID,
    TEST_ID_NUMBERS,
    Walk,
    make_id_number,
)
from tests.integration.following import dump, log_page, off_loop, running

TIMEOUT = 10.0
PERSONAL_TEXTS = (
    *TEST_ID_NUMBERS,
    "王芳",
    "张伟",
    "张小花",
    "李梅",
    "陈助产",
    "广东省广州市越秀区中山一路1号",
    "中山一路1号",
    "13812345678",
    "ZY2026001",
    "ZY2026002",
    "openid-mother",
    "openid-second",
    "openid-sd",
    "身份证照片不清晰",
)


class Clock:
    """A settable clock for the view's reads (overdue is decided at read time)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def clock() -> Clock:
    """The view's clock, at the real time until a test moves it."""
    return Clock(datetime.now(SHANGHAI))


@pytest.fixture
def view(
    applications: Applications, executor: ThreadPoolExecutor, client: aioredis.Redis, clock: Clock
) -> ReviewQueueView:
    """The review-queue view."""
    return ReviewQueueView(client, applications, executor, clock=clock)


@pytest.fixture
def make_follower(
    applications: Applications, executor: ThreadPoolExecutor, view: ReviewQueueView
) -> Callable[..., LogFollower]:
    """Followers of the test's store into the view."""

    def make(page_size: int = 500, poll_interval: float = 0.5) -> LogFollower:
        return LogFollower(
            applications,
            view,
            executor=executor,
            page_size=page_size,
            poll_interval=poll_interval,
            name="review-queue",
        )

    return make


@pytest.fixture
def follower(make_follower: Callable[..., LogFollower]) -> LogFollower:
    """A follower of the store into ``view``."""
    return make_follower()


def gd_family(applications: Applications) -> Walk:
    """A family at the Guangdong hospital (delivery recorded)."""
    walk = Walk(applications)
    walk.record_delivery()
    return walk


def gd_second_family(applications: Applications) -> Walk:
    """Another mother at the same Guangdong hospital, with her own mini-program user."""
    walk = Walk(
        applications,
        mother_id=SECOND_MOTHER_ID,
        father_id=OTHER_MAN_ID,
        mother_name="李梅",
        parent=Actor(id="openid-second", role="parent"),
    )
    walk.record_delivery(inpatient_no="ZY2026002")
    return walk


def sd_family(applications: Applications) -> Walk:
    """A family at the Shandong hospital (two working days to review); pickup, so no postage up front."""
    walk = Walk(
        applications,
        inst=SD_HOSPITAL,
        mother_id=SD_MOTHER_ID,
        father_id=SD_FATHER_ID,
        parent=Actor(id="openid-sd", role="parent"),
    )
    walk.record_delivery(province="山东省")
    return walk


async def ids(view: ReviewQueueView, institution: str, **filters: Any) -> list[str]:
    page = await view.list(institution, **filters)
    return [item["application_id"] for item in page["items"]]


def hand_over(walk: Walk) -> None:
    walk.hand_over()


# ---------------------------------------------------------------------------------------------- scope and order


async def test_each_institution_sees_only_its_own_in_submission_order(
    applications: Applications, executor: ThreadPoolExecutor, view: ReviewQueueView, follower: LogFollower
) -> None:
    second = await off_loop(executor, gd_second_family, applications)
    first = await off_loop(executor, gd_family, applications)
    shandong = await off_loop(executor, sd_family, applications)
    draft = Walk(applications, parent=Actor(id="openid-draft", role="parent"))
    # Submitted in this order: the second GD family first, then Shandong, then the first GD family.
    await off_loop(executor, second.submitted)
    await off_loop(executor, shandong.submitted, "pickup")
    await off_loop(executor, first.submitted)
    await off_loop(executor, draft.start)  # a draft is nobody's work yet
    await follower.catch_up()

    gd = await view.list("GZFY01")
    assert [i["application_id"] for i in gd["items"]] == [str(second.id), str(first.id)]
    assert all(i["institution"] == "GZFY01" and i["province"] == "GD" for i in gd["items"])
    sd = await view.list("JNPY01")
    assert [i["application_id"] for i in sd["items"]] == [str(shandong.id)]
    assert sd["items"][0]["province"] == "SD" and sd["items"][0]["delivery_method"] == "pickup"
    assert gd["counts"]["new"] == 2 and gd["counts"]["total"] == 2
    assert sd["counts"]["new"] == 1 and sd["counts"]["total"] == 1
    assert (await view.list("BJFY01"))["items"] == []
    assert await view.get(draft.id) is None
    assert await view.count() == 3

    item = gd["items"][1]
    submitted = await off_loop(executor, lambda: applications.get_application(first.parent, first.id))
    assert item["state"] == "submitted" and item["queue_state"] == "new"
    assert item["submissions"] == 1 and item["rejection_count"] == 0
    assert item["version"] == submitted.version
    assert item["submitted_at"] == item["last_submitted_at"]
    assert item["submitted_at"].endswith("+08:00")
    first_submitted = datetime.fromisoformat(submitted.first_submitted_at or "")
    assert abs(datetime.fromisoformat(item["submitted_at"]) - first_submitted) < timedelta(milliseconds=1)
    assert (item["mother_name_masked"], item["newborn_name_masked"]) == ("王*", "张**")
    assert gd["items"][0]["mother_name_masked"] == "李*"
    assert item["overdue"] is False and item["due_basis"] == "default"


async def test_pages_through_the_queue_oldest_first(
    applications: Applications, executor: ThreadPoolExecutor, view: ReviewQueueView, follower: LogFollower
) -> None:
    walks = []
    for n in range(5):
        walk = Walk(
            applications,
            mother_id=make_id_number("440106", f"1990010{n + 1}", f"0{n}2"),
            parent=Actor(id=f"openid-{n}", role="parent"),
        )
        await off_loop(executor, lambda w=walk, n=n: w.record_delivery(inpatient_no=f"ZY20260{n + 10}"))
        await off_loop(executor, walk.ready_to_submit)
        walks.append(walk)
    for walk in reversed(walks):
        await off_loop(executor, walk.submit)
    await follower.catch_up()

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await view.list("GZFY01", cursor=cursor, limit=2)
        pages += 1
        seen += [item["application_id"] for item in page["items"]]
        assert page["counts"]["total"] == 5
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(w.id) for w in reversed(walks)]
    assert pages == 3
    with pytest.raises(InvalidValue):
        await view.list("GZFY01", cursor="not-a-cursor")
    with pytest.raises(InvalidValue):
        await view.list("GZFY01", state="draft")
    with pytest.raises(InvalidValue):
        await view.list("../*")


# ---------------------------------------------------------------------------------------------- lifecycle


async def test_rejection_returns_and_resubmission_resubmits(
    applications: Applications, executor: ThreadPoolExecutor, view: ReviewQueueView, follower: LogFollower
) -> None:
    walk = await off_loop(executor, gd_family, applications)
    await off_loop(executor, walk.submitted)
    await follower.catch_up()
    first = await view.get(walk.id)
    assert first is not None and first["queue_state"] == "new"

    rejected = await off_loop(executor, walk.reject)
    await follower.catch_up()
    item = await view.get(walk.id)
    assert item is not None
    assert (item["state"], item["queue_state"], item["rejection_count"]) == ("returned", "returned", 1)
    assert item["returned_fields"] == ["documents.mother_id_front"]
    assert (item["due_at"], item["due_basis"], item["overdue"]) == (None, None, False)
    assert item["version"] == rejected.version
    counts = (await view.list("GZFY01"))["counts"]
    assert (counts["new"], counts["returned"], counts["total"]) == (0, 1, 1)
    assert await ids(view, "GZFY01", state="returned") == [str(walk.id)]
    assert await ids(view, "GZFY01", state="new") == []

    await off_loop(executor, walk.submit)
    await follower.catch_up()
    item = await view.get(walk.id)
    assert item is not None
    assert (item["state"], item["queue_state"], item["submissions"]) == ("submitted", "resubmitted", 2)
    assert item["rejection_count"] == 1 and item["returned_fields"] is None
    assert item["bundle_refused"] == []  # no 出生一件事: no refusal to flag
    assert item["submitted_at"] == first["submitted_at"]  # the queue order keeps the first submission
    assert item["last_submitted_at"] > first["last_submitted_at"]
    assert item["due_at"] is not None and item["due_at"] >= first["due_at"]
    counts = (await view.list("GZFY01"))["counts"]
    assert (counts["resubmitted"], counts["returned"], counts["total"]) == (1, 0, 1)


async def test_issue_with_ems_awaits_dispatch_and_dispatch_leaves(
    applications: Applications, executor: ThreadPoolExecutor, view: ReviewQueueView, follower: LogFollower
) -> None:
    walk = await off_loop(executor, gd_family, applications)
    await off_loop(executor, walk.submitted)
    await off_loop(executor, walk.issue)
    await follower.catch_up()
    item = await view.get(walk.id)
    assert item is not None
    assert (item["state"], item["queue_state"], item["delivery_method"]) == (
        "issued",
        "awaiting_dispatch",
        "ems",
    )
    assert item["due_at"] is None and item["overdue"] is False
    assert await ids(view, "GZFY01", state="awaiting_dispatch") == [str(walk.id)]

    await off_loop(executor, lambda: applications.dispatch(EMS, walk.id, tracking_number="EA123456789CN"))
    await follower.catch_up()
    assert await view.get(walk.id) is None
    page = await view.list("GZFY01")
    assert page["items"] == [] and page["counts"]["total"] == 0
    assert await view.redis.exists(view.institution_key("GZFY01")) == 0

    # Lost in the post: back in the queue (same place), to be reissued; the reissue awaits dispatch again.
    await off_loop(executor, lambda: applications.report_loss(EMS, walk.id, reason="邮件破损"))
    await follower.catch_up()
    item = await view.get(walk.id)
    assert item is not None and (item["state"], item["queue_state"]) == ("lost", "awaiting_reissue")
    await off_loop(
        executor,
        lambda: applications.reissue(
            walk.issuer, walk.id, certificate_number=CertificateNumber("X440100002"), sealer_name="赵盖章"
        ),
    )
    await follower.catch_up()
    item = await view.get(walk.id)
    assert item is not None and (item["state"], item["queue_state"]) == ("issued", "awaiting_dispatch")


async def test_pickup_awaits_handover_and_withdrawn_leave(
    applications: Applications, executor: ThreadPoolExecutor, view: ReviewQueueView, follower: LogFollower
) -> None:
    pickup = await off_loop(executor, sd_family, applications)
    await off_loop(executor, pickup.submitted, "pickup")
    await off_loop(executor, pickup.issue, "X370100001")
    withdrawing = await off_loop(executor, gd_family, applications)
    await off_loop(executor, withdrawing.submitted)
    await off_loop(executor, withdrawing.reject)
    await follower.catch_up()
    item = await view.get(pickup.id)
    assert item is not None and item["queue_state"] == "awaiting_handover"
    assert (await view.list("JNPY01"))["counts"]["awaiting_handover"] == 1
    assert await ids(view, "GZFY01") == [str(withdrawing.id)]

    await off_loop(executor, hand_over, pickup)
    await off_loop(executor, lambda: applications.withdraw(withdrawing.parent, withdrawing.id))
    await follower.catch_up()
    assert await view.get(pickup.id) is None and await view.get(withdrawing.id) is None
    assert (await view.list("JNPY01"))["counts"]["total"] == 0
    assert (await view.list("GZFY01"))["counts"]["total"] == 0


# ---------------------------------------------------------------------------------------------- deadlines


def test_shandong_deadline_counts_chinese_working_days() -> None:
    calendar = WorkingCalendar()
    shandong = get_profile("SD")
    assert shandong.review_working_days == 2
    # Submitted the evening before National Day: the holiday (1–7 Oct 2026) does not count.
    before_holiday = datetime(2026, 9, 30, 21, 30, tzinfo=SHANGHAI)
    assert review_deadline(shandong, before_holiday, calendar) == datetime(
        2026, 10, 9, 23, 59, 59, tzinfo=SHANGHAI
    )
    # Submitted on Friday 9 Oct: Saturday 10 Oct is a make-up working day (调休), Sunday is not.
    friday = datetime(2026, 10, 9, 9, 0, tzinfo=SHANGHAI)
    assert review_deadline(shandong, friday, calendar) == datetime(2026, 10, 12, 23, 59, 59, tzinfo=SHANGHAI)
    # A submission at 23:30 UTC on 29 Sep is already 30 Sep in Shanghai.
    late_utc = datetime(2026, 9, 29, 23, 30, tzinfo=UTC)
    assert review_deadline(shandong, late_utc, calendar) == datetime(2026, 10, 9, 23, 59, 59, tzinfo=SHANGHAI)
    # Guangdong sets no review deadline: the queue falls back to its default.
    assert review_deadline(get_profile("GD"), friday, calendar) is None


async def test_due_dates_follow_the_province_or_the_default(
    applications: Applications, executor: ThreadPoolExecutor, view: ReviewQueueView, follower: LogFollower
) -> None:
    shandong = await off_loop(executor, sd_family, applications)
    guangdong = await off_loop(executor, gd_family, applications)
    await off_loop(executor, shandong.submitted, "pickup")
    await off_loop(executor, guangdong.submitted)
    await follower.catch_up()

    calendar = WorkingCalendar()
    sd_app = await off_loop(executor, lambda: applications.get_application(shandong.parent, shandong.id))
    sd_item = await view.get(shandong.id)
    assert sd_item is not None and sd_item["due_basis"] == "province" and sd_item["due_working_days"] == 2
    expected = review_deadline(sd_app.profile, datetime.fromisoformat(sd_app.submitted_at or ""), calendar)
    assert expected is not None
    assert datetime.fromisoformat(sd_item["due_at"]) == expected
    assert sd_item["due_at"].endswith("+08:00")

    gd_app = await off_loop(executor, lambda: applications.get_application(guangdong.parent, guangdong.id))
    gd_item = await view.get(guangdong.id)
    assert gd_item is not None and gd_item["due_basis"] == "default" and gd_item["due_working_days"] == 5
    submitted = datetime.fromisoformat(gd_app.submitted_at or "")
    assert datetime.fromisoformat(gd_item["due_at"]) == calendar.add_working_days(submitted, 5)
    counted = calendar.deadline(submitted, 5)
    assert (gd_item["calendar_source"], gd_item["calendar_year"]) == (counted.source, counted.year)


async def test_a_deadline_says_it_was_counted_with_the_loaded_official_schedule(
    applications: Applications, executor: ThreadPoolExecutor, client: aioredis.Redis, clock: Clock
) -> None:
    """A schedule loaded for this year wins over chinesecalendar: ten days off from today move the deadline."""
    today = datetime.now(SHANGHAI).date()
    last = min(today + timedelta(days=10), date(today.year, 12, 31))
    loaded = {
        year: parse_schedule({"year": year, "holidays": [{"name": "测试假期", "from": first, "to": to}]})
        for year, first, to in (
            (today.year, today.isoformat(), last.isoformat()),
            (today.year + 1, f"{today.year + 1}-01-01", f"{today.year + 1}-01-01"),
        )
    }
    calendar = WorkingCalendar(loaded)
    view = ReviewQueueView(client, applications, executor, clock=clock, calendar=calendar)
    follower = LogFollower(applications, view, executor=executor, name="review-queue")
    walk = await off_loop(executor, gd_family, applications)
    await off_loop(executor, walk.submitted)
    await follower.catch_up()

    item = await view.get(walk.id)
    assert item is not None
    assert (item["calendar_source"], item["calendar_year"]) == (
        "official",
        datetime.fromisoformat(item["due_at"]).year,
    )
    due = datetime.fromisoformat(item["due_at"]).date()
    assert due > last and calendar.working_days_between(last, due) == 5


async def test_overdue_is_decided_when_reading(
    applications: Applications,
    executor: ThreadPoolExecutor,
    view: ReviewQueueView,
    follower: LogFollower,
    client: aioredis.Redis,
    clock: Clock,
) -> None:
    late = await off_loop(executor, sd_family, applications)
    await off_loop(executor, late.submitted, "pickup")
    returned = Walk(
        applications,
        inst=SD_HOSPITAL,
        mother_id=SD_MOTHER_ID,
        father_id=SD_FATHER_ID,
        parent=Actor(id="openid-sd-2", role="parent"),
    )
    await off_loop(executor, lambda: returned.record_delivery(province="山东省", inpatient_no="ZY2026009"))
    await off_loop(executor, returned.submitted, "pickup")
    await off_loop(executor, returned.reject)
    await follower.catch_up()
    item = await view.get(late.id)
    assert item is not None
    due = datetime.fromisoformat(item["due_at"])
    stored = await dump(client)

    clock.now = due
    assert (await view.list("JNPY01"))["counts"]["overdue"] == 0
    assert await ids(view, "JNPY01", overdue=True) == []

    clock.now = due + timedelta(seconds=1)
    page = await view.list("JNPY01")
    assert page["counts"]["overdue"] == 1
    by_id = {i["application_id"]: i for i in page["items"]}
    assert by_id[str(late.id)]["overdue"] is True
    assert by_id[str(returned.id)]["overdue"] is False  # with the parent: no deadline runs
    assert await ids(view, "JNPY01", overdue=True) == [str(late.id)]
    assert await ids(view, "JNPY01", overdue=True, state="new") == [str(late.id)]
    assert await ids(view, "JNPY01", overdue=True, state="returned") == []
    assert await ids(view, "JNPY01", overdue=False) == [str(returned.id)]
    assert page["as_of"] == (due + timedelta(seconds=1)).isoformat(timespec="milliseconds")
    # Reading changed nothing: overdue is never stored.
    assert await dump(client) == stored


# ---------------------------------------------------------------------------------------------- determinism


def whole_journey(walk: Walk) -> None:
    walk.submitted()
    walk.reject()
    walk.submit()
    walk.issue()


async def test_a_rebuild_from_zero_gives_byte_identical_items(
    applications: Applications,
    executor: ThreadPoolExecutor,
    client: aioredis.Redis,
    view: ReviewQueueView,
    make_follower: Callable[..., LogFollower],
) -> None:
    await off_loop(executor, whole_journey, await off_loop(executor, gd_family, applications))
    second = await off_loop(executor, gd_second_family, applications)
    await off_loop(executor, second.submitted)
    shandong = await off_loop(executor, sd_family, applications)
    await off_loop(executor, shandong.submitted, "pickup")
    await off_loop(executor, shandong.reject)

    await make_follower().catch_up()
    before = await dump(client)
    assert len([k for k in before if ":item:" in k]) == 3

    await view.reset()
    assert await dump(client) == {}
    await make_follower(page_size=3).catch_up()
    assert await dump(client) == before


async def test_applying_a_page_twice_changes_and_announces_nothing(
    applications: Applications, executor: ThreadPoolExecutor, client: aioredis.Redis, view: ReviewQueueView
) -> None:
    walk = await off_loop(executor, gd_family, applications)
    await off_loop(executor, walk.submitted)
    page = await off_loop(executor, log_page, applications)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(view.channel("GZFY01"))
    try:
        assert await view.apply(page, 0)
        first = await next_message(pubsub)
        assert orjson.loads(first) == {
            "application_id": str(walk.id),
            "queue_state": "new",
            "version": page[-1][1].originator_version,
        }
        applied = await dump(client)

        assert not await view.apply(page, 0)
        assert not await view.apply(page[:-1], 0)  # an older position is refused too
        assert await dump(client) == applied
        await client.publish(view.channel("GZFY01"), b"sentinel")
        assert await next_message(pubsub) == b"sentinel"  # nothing was published in between
    finally:
        await pubsub.aclose()


async def next_message(pubsub: Any) -> bytes:
    """The next Pub/Sub message's data, within the deadline."""

    async def wait() -> bytes:
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] in ("message", "pmessage"):
                data: bytes = message["data"]
                return data

    return await asyncio.wait_for(wait(), TIMEOUT)


# ---------------------------------------------------------------------------------------------- privacy


async def test_nothing_personal_reaches_redis(
    applications: Applications,
    executor: ThreadPoolExecutor,
    client: aioredis.Redis,
    view: ReviewQueueView,
    follower: LogFollower,
) -> None:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.psubscribe("bc:queue:events:*")
    try:
        await off_loop(executor, whole_journey, await off_loop(executor, gd_family, applications))
        second = await off_loop(executor, gd_second_family, applications)
        await off_loop(executor, second.submitted)
        await off_loop(executor, second.reject)
        shandong = await off_loop(executor, sd_family, applications)
        await off_loop(executor, shandong.submitted, "pickup")
        await follower.catch_up()

        everything = await dump(client)
        texts = []
        for key, value in everything.items():
            texts.append(key)
            if isinstance(value, bytes):
                texts.append(value.decode())
            else:
                texts += [member.decode() for member, _ in value]
        # Everything published before the sentinel has arrived once the sentinel has.
        await client.publish("bc:queue:events:SENTINEL", b"sentinel")
        messages = []
        while (data := await next_message(pubsub)) != b"sentinel":
            messages.append(data.decode())
        assert messages and all(
            set(orjson.loads(m)) == {"application_id", "queue_state", "version"} for m in messages
        )
        texts += messages
        leaks = [(text[:60], p) for text in texts for p in PERSONAL_TEXTS if p in text]
        assert leaks == []
        assert any("王*" in t for t in texts) and any("李*" in t for t in texts)
        assert any("张**" in t for t in texts)
        assert {k for k in everything if k.startswith("bc:queue:g0:inst:")} == {
            "bc:queue:g0:inst:GZFY01",
            "bc:queue:g0:inst:JNPY01",
        }
    finally:
        await pubsub.aclose()


# ---------------------------------------------------------------------------------------------- HTTP


class Http:
    """A small aiohttp app with the queue routes, and tokens for each kind of caller."""

    def __init__(self, client: TestClient[web.Request, web.Application], tokens: TokenIssuer) -> None:
        self.client = client
        self.tokens = tokens

    def auth(self, actor: Actor) -> dict[str, str]:
        token, _ = self.tokens.issue(actor)
        return {"Authorization": f"Bearer {token}"}

    async def get(self, path: str, actor: Actor, **params: str) -> ClientResponse:
        return await self.client.get(path, headers=self.auth(actor), params=params)


GD_ISSUER = Actor(id="issuer-GZFY01", role="issuer", institution="GZFY01", name="李签发")
SD_ISSUER = Actor(id="issuer-JNPY01", role="issuer", institution="JNPY01", name="孙签发")
AUDITOR = Actor(id="auditor-1", role="auditor")
PARENT = Actor(id="openid-mother", role="parent")


@pytest.fixture
async def http(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]],
    view: ReviewQueueView,
) -> Http:
    app = web.Application(middlewares=[problem_middleware])
    tokens = TokenIssuer(TokenKeys.generate(), "birthcert", "birthcert-api")
    app[TOKENS] = tokens
    app[QUEUE_VIEW] = view
    app[QUEUE_CLOSING] = asyncio.Event()
    app.router.add_routes(queue_routes.routes)
    return Http(await aiohttp_client(app), tokens)


async def test_http_queue_is_scoped_to_the_callers_institution(
    applications: Applications, executor: ThreadPoolExecutor, follower: LogFollower, http: Http
) -> None:
    gd = await off_loop(executor, gd_family, applications)
    sd = await off_loop(executor, sd_family, applications)
    await off_loop(executor, gd.submitted)
    await off_loop(executor, sd.submitted, "pickup")
    await follower.catch_up()

    response = await http.get("/api/v1/review/queue", GD_ISSUER)
    assert response.status == 200 and response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    assert [i["application_id"] for i in body["items"]] == [str(gd.id)]
    minimum = {"application_id", "state", "submitted_at", "due_at", "overdue"}
    assert minimum <= set(body["items"][0])
    assert body["counts"]["new"] == 1 and set(QUEUE_STATES) <= set(body["counts"])

    body = await (await http.get("/api/v1/review/queue", SD_ISSUER)).json()
    assert [i["application_id"] for i in body["items"]] == [str(sd.id)]
    other = Actor(id="issuer-X", role="issuer", institution="BJFY01")
    body = await (await http.get("/api/v1/review/queue", other)).json()
    assert body["items"] == [] and body["counts"]["total"] == 0
    # An issuer cannot name another institution.
    response = await http.get("/api/v1/review/queue", SD_ISSUER, institution="GZFY01")
    assert response.status == 403

    body = await (await http.get("/api/v1/review/queue", AUDITOR, institution="JNPY01")).json()
    assert [i["application_id"] for i in body["items"]] == [str(sd.id)]
    response = await http.get("/api/v1/review/queue", AUDITOR)
    assert response.status == 400 and (await response.json())["code"] == "institution_required"

    response = await http.get("/api/v1/review/queue", PARENT)
    assert response.status == 403
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert (await http.client.get("/api/v1/review/queue")).status == 401
    assert (await http.client.get("/api/v1/review/queue/events")).status == 401
    assert (await http.get("/api/v1/review/queue/events", PARENT)).status == 403


async def test_http_filters_and_bad_queries(
    applications: Applications, executor: ThreadPoolExecutor, follower: LogFollower, http: Http
) -> None:
    walk = await off_loop(executor, gd_family, applications)
    await off_loop(executor, walk.submitted)
    await off_loop(executor, walk.reject)
    await follower.catch_up()
    body = await (await http.get("/api/v1/review/queue", GD_ISSUER, state="returned")).json()
    assert [i["queue_state"] for i in body["items"]] == ["returned"]
    body = await (await http.get("/api/v1/review/queue", GD_ISSUER, state="new")).json()
    assert body["items"] == [] and body["counts"]["returned"] == 1
    body = await (await http.get("/api/v1/review/queue", GD_ISSUER, overdue="false", limit="1")).json()
    assert len(body["items"]) == 1 and body["next_cursor"] is None
    for params, code in (
        ({"state": "draft"}, "invalid_state_filter"),
        ({"overdue": "yes"}, "invalid_overdue_filter"),
        ({"limit": "many"}, "invalid_limit"),
    ):
        response = await http.get("/api/v1/review/queue", GD_ISSUER, **params)
        assert response.status == 400 and (await response.json())["code"] == code
    response = await http.get("/api/v1/review/queue", GD_ISSUER, cursor="nope")
    assert response.status == 422 and (await response.json())["code"] == "invalid_cursor"


async def read_block(response: ClientResponse) -> str:
    """The next Server-Sent Events block (up to a blank line), within the deadline."""
    raw = await asyncio.wait_for(response.content.readuntil(b"\n\n"), TIMEOUT)
    return raw.decode()


async def next_event(response: ClientResponse) -> tuple[str, dict[str, Any]]:
    """The next ``event:`` block's name and JSON data, skipping comments (heartbeats)."""
    while True:
        block = await read_block(response)
        fields = dict(line.split(": ", 1) for line in block.strip().splitlines() if not line.startswith(":"))
        if "event" in fields:
            return fields["event"], orjson.loads(fields["data"])


async def test_sse_streams_the_institutions_changes(
    applications: Applications,
    executor: ThreadPoolExecutor,
    make_follower: Callable[..., LogFollower],
    http: Http,
) -> None:
    gd = await off_loop(executor, gd_family, applications)
    sd = await off_loop(executor, sd_family, applications)
    await off_loop(executor, gd.submitted)
    await off_loop(executor, sd.submitted, "pickup")
    # A long poll interval: only wake() makes the follower see the commands in time.
    follower = make_follower(poll_interval=60)
    async with running(follower):
        gd_stream = await http.get("/api/v1/review/queue/events", GD_ISSUER)
        sd_stream = await http.get("/api/v1/review/queue/events", AUDITOR, institution="JNPY01")
        try:
            for stream in (gd_stream, sd_stream):
                assert stream.status == 200
                assert stream.headers["Content-Type"].startswith("text/event-stream")
                assert stream.headers["Cache-Control"] == "no-cache"
                assert ": subscribed" in await read_block(stream)  # subscribed before this first block

            issued = await off_loop(executor, gd.issue)
            follower.wake()
            assert await follower.wait_for(issued.position, TIMEOUT)
            rejected = await off_loop(executor, sd.reject)
            follower.wake()
            assert await follower.wait_for(rejected.position, TIMEOUT)

            # The position may have moved in one or more pages: the first GD event may be an earlier one.
            name, data = await next_event(gd_stream)
            while data["version"] != issued.version:
                name, data = await next_event(gd_stream)
            assert name == "queue"
            assert data == {
                "application_id": str(gd.id),
                "queue_state": "awaiting_dispatch",
                "version": issued.version,
            }
            # Shandong's stream never carried the Guangdong change: its next event is its own.
            name, data = await next_event(sd_stream)
            while data["version"] != rejected.version:
                assert data["application_id"] == str(sd.id)
                name, data = await next_event(sd_stream)
            assert data == {
                "application_id": str(sd.id),
                "queue_state": "returned",
                "version": rejected.version,
            }
        finally:
            gd_stream.close()
            sd_stream.close()


async def test_sse_heartbeats_and_ends_quietly_when_the_client_leaves(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]],
    view: ReviewQueueView,
    client: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(queue_routes, "HEARTBEAT_SECONDS", 0.05)
    finished = asyncio.Event()

    @web.middleware
    async def note_end(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        finally:
            finished.set()

    app = web.Application(middlewares=[note_end, problem_middleware])
    tokens = TokenIssuer(TokenKeys.generate(), "birthcert", "birthcert-api")
    app[TOKENS] = tokens
    app[QUEUE_VIEW] = view
    app[QUEUE_CLOSING] = asyncio.Event()
    app.router.add_routes(queue_routes.routes)
    http = Http(await aiohttp_client(app), tokens)

    with caplog.at_level(logging.DEBUG):
        stream = await http.get("/api/v1/review/queue/events", GD_ISSUER)
        assert ": subscribed" in await read_block(stream)
        assert await read_block(stream) == ": heartbeat\n\n"
        channel = view.channel("GZFY01")
        assert dict(await client.pubsub_numsub(channel))[channel.encode()] == 1
        stream.close()  # the console's tab is closed
        await asyncio.wait_for(finished.wait(), TIMEOUT)
        assert dict(await client.pubsub_numsub(channel))[channel.encode()] == 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


async def test_sse_ends_when_the_server_shuts_down(
    view: ReviewQueueView,
    http: Http,
) -> None:
    stream = await http.get("/api/v1/review/queue/events", GD_ISSUER)
    assert ": subscribed" in await read_block(stream)
    await queue_routes.queue_shutdown(http.client.app)
    assert await asyncio.wait_for(stream.content.read(), TIMEOUT) == b""  # the stream ended


async def test_queue_ctx_runs_the_follower_for_the_apps_lifetime(
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]],
    applications: Applications,
    executor: ThreadPoolExecutor,
    client: aioredis.Redis,
) -> None:
    app = web.Application(middlewares=[problem_middleware])
    tokens = TokenIssuer(TokenKeys.generate(), "birthcert", "birthcert-api")
    app[TOKENS] = tokens
    app[APPLICATIONS] = applications
    app[STORE_EXECUTOR] = executor
    app[REDIS_CLIENT] = client
    app[FOLLOWERS] = []
    app.cleanup_ctx.append(queue_ctx)
    app.router.add_routes(queue_routes.routes)
    http = Http(await aiohttp_client(app), tokens)
    assert app[FOLLOWERS] == [app[QUEUE_FOLLOWER]]  # woken by every command, as caught_up() does

    walk = await off_loop(executor, gd_family, applications)
    outcome = await off_loop(executor, walk.submitted)
    for follower in app[FOLLOWERS]:
        follower.wake()
    assert await app[QUEUE_FOLLOWER].wait_for(outcome.position, TIMEOUT)
    body = await (await http.get("/api/v1/review/queue", GD_ISSUER)).json()
    assert [i["application_id"] for i in body["items"]] == [str(walk.id)]

    await http.client.close()  # cleanup: the follower stops and the streams are told to end
    assert app[QUEUE_CLOSING].is_set()


# ---------------------------------------------------------------------------------------------- 出生一件事's clock


def hebei_bundle_issued(applications: Applications) -> Walk:
    """A Hebei family with all five services of 出生一件事, submitted for pickup and issued (decision 0049)."""
    from tests.unit.test_birth_bundle import HE_FATHER, HE_HOSPITAL, HE_MOTHER, _details, _opt_in

    walk = Walk(
        applications,
        inst=HE_HOSPITAL,
        mother_id=HE_MOTHER,
        father_id=HE_FATHER,
        mother_name="李娜",
        parent=Actor(id="openid-he", role="parent"),
    )
    walk.record_delivery(province="河北省", born_at=BORN)
    walk.start()
    walk.verify("mother")
    walk.confirm()
    _details(walk)
    walk.verify("father")
    _opt_in(walk)
    walk.upload_all()
    walk.upload_materials()
    walk.sign()
    walk.choose_pickup()
    walk.submit()
    walk.issue("R130100001")
    return walk


DEPARTMENTS = {
    "vaccination_certificate": "disease_control",
    "household_registration": "police",
    "resident_medical_insurance": "medical_insurance",
    "social_security_card": "social_security",
}


def answered(walk: Walk, service: str, state: str = "done", **more: Any) -> None:
    department = Actor(id=f"department:{DEPARTMENTS[service]}", role="system")
    message = f"{walk.id}-v1-{DEPARTMENTS[service]}"
    common = {"service": service, "department": DEPARTMENTS[service], "message_id": message}
    walk.app.record_bundle_service(department, walk.id, state="sent", **common)
    walk.app.record_bundle_service(
        department, walk.id, state=state, result_id=f"{service}-{state}", **common, **more
    )


async def test_the_bundle_waits_for_its_departments_against_its_time_limit(
    applications: Applications,
    executor: ThreadPoolExecutor,
    view: ReviewQueueView,
    follower: LogFollower,
    client: aioredis.Redis,
    clock: Clock,
) -> None:
    clock.now = NOW  # the service's time: the deadline is counted from its submission
    walk = await off_loop(executor, hebei_bundle_issued, applications)
    vaccination = {"vaccination_certificate_number": "1301022026"}
    await off_loop(executor, lambda: answered(walk, "vaccination_certificate", result=vaccination))
    await follower.catch_up()
    item = await view.get(walk.id)
    assert item is not None and item["queue_state"] == "awaiting_handover"
    submitted = await off_loop(executor, lambda: walk.app.get_application(walk.issuer, walk.id).submitted_at)
    due = WorkingCalendar().deadline(datetime.fromisoformat(submitted), 6).at  # Hebei: 6 working days in all
    assert datetime.fromisoformat(item["bundle_due_at"]) == due
    # 疾控 answered; the other three are still open.
    assert item["bundle_open"] == ["户口登记", "城乡居民参保登记", "社会保障卡申领"]
    assert item["bundle_overdue"] is False

    # The certificate is collected: it has left the issuer's hands, the bundle has not.
    await off_loop(executor, walk.hand_over)
    await follower.catch_up()
    page = await view.list("SJZFY01")
    assert [i["queue_state"] for i in page["items"]] == ["awaiting_departments"]
    assert page["counts"]["awaiting_departments"] == 1 and page["counts"]["bundle_overdue"] == 0
    stored = await dump(client)

    clock.now = due + timedelta(seconds=1)
    page = await view.list("SJZFY01")
    assert page["counts"]["bundle_overdue"] == 1 and page["counts"]["overdue"] == 0
    assert page["items"][0]["bundle_overdue"] is True and page["items"][0]["overdue"] is False
    assert await ids(view, "SJZFY01", second_overdue=True) == [str(walk.id)]
    assert await ids(view, "SJZFY01", second_overdue=False) == []
    assert await ids(view, "SJZFY01", second_overdue=True, state="awaiting_handover") == []
    assert await dump(client) == stored  # reading stores nothing

    # A refusal is an answer too; once all have answered, the application leaves the queue.
    await off_loop(executor, lambda: answered(walk, "household_registration", "refused", reason="户籍地不符"))
    await off_loop(
        executor, lambda: answered(walk, "resident_medical_insurance", result={"voucher": "已激活"})
    )
    await follower.catch_up()
    item = await view.get(walk.id)
    assert item is not None and item["bundle_open"] == ["社会保障卡申领"]
    await off_loop(
        executor,
        lambda: answered(walk, "social_security_card", result={"pickup_place": "石家庄市社保卡服务中心"}),
    )
    await follower.catch_up()
    assert await view.get(walk.id) is None
    assert (await view.list("SJZFY01"))["counts"]["bundle_overdue"] == 0
