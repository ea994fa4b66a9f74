"""What parents and issuers see survives faults: a Redis flushed under load, and a rebuild while serving.

Families walk their whole journey over HTTP at the same time; meanwhile Redis is flushed (the views'
positions vanish mid-page) or a blue/green rebuild runs beside the service. Afterwards every mother
finds her application in her list and by id, the issuers' queue holds every submitted application,
and both views equal a fresh rebuild from the log. At no moment does a mother get a 404 or a 5xx.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis.asyncio as aioredis
from rich.console import Console

from backend.components import CONFIG, FOLLOWERS, REDIS, STATUS_VIEW
from backend.routes.queue import QUEUE_VIEW
from backend.storage import at_rest_key
from domain.service import Applications
from miniprogram_stub.client import MiniProgram
from miniprogram_stub.people import Family, demo_family
from projections.cli import _rebuild
from projections.review_queue import ReviewQueueView
from projections.runner import LogFollower
from projections.status import StatusView, derive_pseudonym_key
from tests.e2e.conftest import Stack
from tests.waiting import eventually

pytestmark = pytest.mark.e2e
DEADLINE = 60.0
FAMILIES = 6


async def journey(stack: Stack, family: Family, between: Callable[[], Awaitable[None]]) -> MiniProgram:
    """A whole parent journey to submission, with ``between()`` after each step (the fault)."""
    mother = stack.mini_program(family)
    steps: list[Callable[[], Awaitable[Any]]] = [
        mother.login,
        mother.start,
        lambda: mother.verify_face("mother"),
        mother.confirm_delivery,
        mother.provide_details,
        lambda: mother.verify_face("father"),
        mother.upload_all,
        mother.sign,
        mother.choose_ems,
        mother.submit,
    ]
    for step in steps:
        await step()
        await between()
        if mother.app_id:
            # The mother looks at her application after every step: never a 404, never a 5xx.
            document = await mother.status()
            assert document["id"] == mother.app_id
    return mother


async def caught_up(stack: Stack) -> bool:
    end = await stack.in_store(stack.service.recorder.max_notification_id)
    return all(f.position >= end and not f.recovering for f in stack.app[FOLLOWERS] if f.name != "audit-log")


async def assert_everyone_sees_everything(stack: Stack, mothers: list[MiniProgram]) -> None:
    """Lists, documents and the queue hold every application; the views equal a fresh rebuild."""
    await eventually(lambda: caught_up(stack), "the views caught up with the log", DEADLINE)
    ids = set()
    for mother in mothers:
        listed = await mother.call("GET", "/api/v1/applications")
        assert [item["id"] for item in listed["items"]] == [mother.app_id]
        assert listed["items"][0]["state"] == "submitted"
        ids.add(mother.app_id)
    issuer = stack.app[QUEUE_VIEW]
    queue = await issuer.list("GZFY01", limit=200)
    assert {item["application_id"] for item in queue["items"]} == ids

    # A fresh rebuild, beside the live views, writes the same documents and items.
    redis = aioredis.Redis.from_url(stack.app[REDIS].url)
    executor = ThreadPoolExecutor(max_workers=1)
    try:
        config = stack.app[CONFIG]
        status = StatusView(
            redis,
            stack.service,
            executor,
            pseudonym_key=derive_pseudonym_key(config.index_key),
            seal_key=at_rest_key(config.cipher_key, config.index_key),
            generation="gcheck",
        )
        queue_view = ReviewQueueView(redis, stack.service, executor, generation="gcheck")
        for view in (status, queue_view):
            await LogFollower(stack.service, view, executor=executor).catch_up()
        live = stack.app[STATUS_VIEW]
        for app_id in ids:
            assert await status.get(app_id) == await live.get(app_id)
            fresh, served = await queue_view.get(app_id), await issuer.get(app_id)
            assert fresh is not None and served is not None
            assert {k: v for k, v in fresh.items() if k != "overdue"} == {
                k: v for k, v in served.items() if k != "overdue"
            }
        assert await status.count() == await live.count()
        assert await queue_view.count() == await issuer.count()
        for view in (status, queue_view):
            await view.generations.drop("gcheck")
    finally:
        await redis.aclose()
        executor.shutdown()


# Bounded in `make test`; `make test-long` walks five times as many families through the same faults.
SIZES = [FAMILIES, pytest.param(FAMILIES * 5, marks=pytest.mark.long, id="long")]


@pytest.mark.parametrize("n", SIZES)
async def test_redis_flushed_under_load_loses_no_entry(stack: Stack, n: int) -> None:
    families = [demo_family(i) for i in range(1, n + 1)]
    for family in families:
        await stack.record_delivery(family)
    redis = aioredis.Redis.from_url(stack.app[REDIS].url)
    flushes = 0

    async def flush_now_and_then() -> None:
        nonlocal flushes
        flushes += 1
        if flushes % 7 == 0:  # several times per journey, at different steps for each family
            await redis.flushdb()

    try:
        mothers = await asyncio.gather(*(journey(stack, f, flush_now_and_then) for f in families))
        assert flushes >= n * 10
        await assert_everyone_sees_everything(stack, list(mothers))
    finally:
        await redis.aclose()


@pytest.mark.parametrize("n", SIZES)
async def test_a_rebuild_while_serving_loses_no_entry(stack: Stack, n: int) -> None:
    families = [demo_family(i) for i in range(1, n + 1)]
    for family in families:
        await stack.record_delivery(family)
    config = stack.app[CONFIG]
    executor = ThreadPoolExecutor(max_workers=1)
    loop = asyncio.get_running_loop()
    # As `birthcert projections rebuild` would, from another process: its own store connection.
    other = await loop.run_in_executor(executor, Applications, config.event_store_env())
    rebuilds: list[tuple[int, int]] = []

    async def rebuild_both() -> None:
        for name in ("status", "queue", "status"):
            rebuilds.append(
                await _rebuild(config, other, stack.app[REDIS].url, executor, Console(quiet=True), name)
            )

    async def nothing() -> None:
        await asyncio.sleep(0)

    try:
        first = await asyncio.gather(*(journey(stack, f, nothing) for f in families[:2]))
        results = await asyncio.gather(
            rebuild_both(), *(journey(stack, f, nothing) for f in families[2:]), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        mothers = [*first, *(r for r in results[1:] if isinstance(r, MiniProgram))]
        assert len(rebuilds) == 3
        live = await stack.app[STATUS_VIEW].generations.current()
        assert live not in ("g0", "gcheck")
        await assert_everyone_sees_everything(stack, mothers)
    finally:
        await loop.run_in_executor(executor, other.close)
        executor.shutdown()


async def test_readyz_and_metrics_report_every_follower(stack: Stack) -> None:
    family = demo_family(1)
    await stack.record_delivery(family)
    mother = stack.mini_program(family)
    await mother.login()
    await mother.start()
    await eventually(lambda: caught_up(stack), "the views caught up with the log", DEADLINE)
    async with stack.session.get(f"{stack.api}/readyz") as r:
        assert r.status == 200
        body = await r.json()
    assert body["status"] == "ready" and body["reasons"] == [] and body["degraded"] == []
    assert body["object_store"] == {"configured": False, "up": None}, "blobs in the local directory"
    followers = {f["name"]: f for f in body["followers"]}
    assert set(followers) == {
        "status",
        "review-queue",
        "worklist",
        "notifications",
        "audit-log",
        "archive",
        "archive_pdf",
        "ems",
        "elicense",
        "elicense-status",
        "statistics",
        "bundle_handoff",
    }
    end = body["event_store"]["position"]
    for name, follower in followers.items():
        if name != "audit-log":  # it may sign a checkpoint meanwhile; it follows too
            assert (follower["position"], follower["lag"], follower["parked"]) == (end, 0, 0), name
        assert follower["stuck"] is False
    async with stack.session.get(f"{stack.api}/metrics") as r:
        text = await r.text()
    assert 'birthcert_follower_lag_events{follower="archive"} 0.0' in text
    assert 'birthcert_follower_parked_events{follower="status"} 0.0' in text
    assert "birthcert_redis_up 1.0" in text
    assert "birthcert_object_store_up" not in text, (
        "no object store configured: no gauge (a 0 reads as an outage)"
    )
