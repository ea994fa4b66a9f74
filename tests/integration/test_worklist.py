"""The hospitals' worklist, followed from a real SQLite event store into a real Redis.

Disputes, records reported missing and records entered late appear on their institution's list and leave it
when answered, entered or used; overdue is decided at read time; a rebuild with another page size writes the
same bytes, a page applied twice changes nothing, a parked event retried puts its item back; nothing personal
reaches Redis (docs/decisions/0034-hospital-worklist.md).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
import redis.asyncio as aioredis

from domain.service import Applications
from domain.values import Actor
from projections.runner import LogFollower
from projections.worklist import HospitalWorklistView
from tests.builders import (
    BORN,
    GD_HOSPITAL,
    NOW,
    OTHER_MAN_ID,
    SD_HOSPITAL,
    SD_MOTHER_ID,
    SECOND_MOTHER_ID,
    TEST_ID_NUMBERS,
    Walk,
    hospital,
)
from tests.integration.following import dump, log_page, off_loop

ADMIN = Actor(id="ops", role="admin")
PERSONAL_TEXTS = (
    *TEST_ID_NUMBERS,
    "王芳",
    "李梅",
    "刘红",
    "陈助产",
    "ZY2026001",
    "出生体重应为3350克",
    "2026-11-18",
)


class Clock:
    """A settable clock for the view's reads (overdue is decided at read time)."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def view(
    applications: Applications, executor: ThreadPoolExecutor, client: aioredis.Redis, clock: Clock
) -> HospitalWorklistView:
    return HospitalWorklistView(client, applications, executor, clock=clock)


@pytest.fixture
def make_follower(
    applications: Applications, executor: ThreadPoolExecutor, view: HospitalWorklistView
) -> Callable[..., LogFollower]:
    def make(page_size: int = 500) -> LogFollower:
        return LogFollower(applications, view, executor=executor, page_size=page_size, name="worklist")

    return make


def three_cases(app: Applications) -> tuple[Walk, Walk, Walk]:
    """A disputed record, a record reported missing (Guangdong), a record entered late (Shandong)."""
    for inst in (GD_HOSPITAL, SD_HOSPITAL):
        app.register_institution(ADMIN, code=inst.code, name=inst.name, province=inst.province)
    disputing = Walk(app)
    disputing.record_delivery()
    disputing.start()
    disputing.verify()
    app.dispute_delivery_info(disputing.parent, disputing.id, reason="出生体重应为3350克")
    disputing.details()  # an event the worklist passes over, while her dispute is open
    waiting = Walk(
        app,
        mother_id=SECOND_MOTHER_ID,
        father_id=OTHER_MAN_ID,
        mother_name="李梅",
        parent=Actor(id="openid-second", role="parent"),
    )
    waiting.start()
    waiting.verify()
    app.report_missing_delivery(waiting.parent, waiting.id, institution="GZFY01", born_on=BORN.date())
    late = Walk(app, inst=SD_HOSPITAL, mother_id=SD_MOTHER_ID, mother_name="刘红")
    late.record_delivery(province="山东省")  # born two days before NOW: past Shandong's 24 h
    return disputing, waiting, late


async def kinds(view: HospitalWorklistView, institution: str, **filters: object) -> list[tuple[str, bool]]:
    page = await view.list(institution, **filters)  # type: ignore[arg-type]
    return [(item["kind"], item["overdue"]) for item in page["items"]]


async def test_each_case_is_on_its_institutions_list_until_it_is_dealt_with(
    applications: Applications,
    executor: ThreadPoolExecutor,
    view: HospitalWorklistView,
    make_follower: Callable[..., LogFollower],
    clock: Clock,
) -> None:
    disputing, waiting, late = await off_loop(executor, three_cases, applications)
    follower = make_follower()
    await follower.catch_up()
    # The dispute came first, then the report; the report's deadline (the 18th's end + 72 h) has not passed.
    assert await kinds(view, "GZFY01") == [("dispute", False), ("missing", False)]
    assert await kinds(view, "JNPY01") == [("late_entry", True)]
    clock.now = NOW + timedelta(days=3)
    assert await kinds(view, "GZFY01", overdue=True) == [("missing", True)]
    counts = (await view.list("GZFY01"))["counts"]
    assert counts == {"dispute": 1, "missing": 1, "late_entry": 0, "overdue": 1, "total": 2}

    await off_loop(
        executor,
        lambda: applications.uphold_delivery_record(
            hospital(), disputing.record_id or "", reason="经核对无误"
        ),
    )
    await off_loop(executor, lambda: waiting.record_delivery(inpatient_no="ZY2026002"))
    await follower.catch_up()
    assert await kinds(view, "GZFY01") == []
    await off_loop(executor, late.start)
    await off_loop(executor, late.verify)
    await off_loop(executor, late.confirm)
    await follower.catch_up()
    assert await kinds(view, "JNPY01") == [("late_entry", True)]  # until a certificate is issued against it


async def test_a_rebuild_writes_the_same_bytes_and_a_page_applied_twice_changes_nothing(
    applications: Applications,
    executor: ThreadPoolExecutor,
    client: aioredis.Redis,
    view: HospitalWorklistView,
    make_follower: Callable[..., LogFollower],
) -> None:
    await off_loop(executor, three_cases, applications)
    await make_follower().catch_up()
    before = await dump(client)
    assert len([k for k in before if ":item:" in k]) == 3
    # Most of an application's events are passed over: whatever the pages, the same bytes.
    for page_size in (1, 2, 3, 7):
        await view.reset()
        assert await dump(client) == {}
        await make_follower(page_size=page_size).catch_up()
        assert await dump(client) == before, page_size

    page = await off_loop(executor, log_page, applications)
    assert not await view.apply(page, 0)  # the position moved on: refused, nothing written
    assert await dump(client) == before


async def test_a_retried_event_puts_its_item_back(
    applications: Applications,
    executor: ThreadPoolExecutor,
    client: aioredis.Redis,
    view: HospitalWorklistView,
    make_follower: Callable[..., LogFollower],
) -> None:
    disputing, _, _ = await off_loop(executor, three_cases, applications)
    await make_follower().catch_up()
    member = f"dispute:{disputing.id}"
    item = await view.get(member)
    assert item is not None
    await client.delete(view.item_key(member))
    page = await off_loop(executor, log_page, applications)
    disputed_at = next(p for p, e in page if type(e).__name__ == "DeliveryInfoDisputed")
    await view.redo(disputed_at, dict(page)[disputed_at])
    assert await view.get(member) == item


async def test_nothing_personal_reaches_redis(
    applications: Applications,
    executor: ThreadPoolExecutor,
    client: aioredis.Redis,
    make_follower: Callable[..., LogFollower],
) -> None:
    await off_loop(executor, three_cases, applications)
    await make_follower().catch_up()
    texts = []
    for key, value in (await dump(client)).items():
        texts.append(key)
        texts += [value.decode()] if isinstance(value, bytes) else [m.decode() for m, _ in value]
    leaks = [(text[:60], p) for text in texts for p in PERSONAL_TEXTS if p in text]
    assert leaks == []
    assert (
        any("王*" in t for t in texts) and any("李*" in t for t in texts) and any("刘*" in t for t in texts)
    )
