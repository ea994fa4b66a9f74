"""The leader's lease (projections.leader) on SQLite and PostgreSQL: taken, renewed, run out, taken over, given
up; a stale term's writes refused in SQL and in Redis; the leadership runs its duties on one process at a time
and steps down when a write is refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis.asyncio as aioredis

from projections.leader import FENCE_LUA, LeaderLease, Leadership, fence_key, fenced_args, refused
from projections.runner import Fenced
from projections.sql import Database, DurablePosition
from tests.integration.following import Term
from tests.waiting import eventually


@pytest.fixture
def leases(store_env: dict[str, str]) -> Iterator[list[LeaderLease]]:
    """Three contenders on one database, each on a connection of its own, with a short lease."""
    made = [LeaderLease.open(store_env, f"p{n}", ttl=0.6) for n in range(3)]
    yield made
    for lease in made:
        lease.db.close()


async def test_one_holder_renews_and_another_takes_over_only_once_it_ran_out(
    leases: list[LeaderLease],
) -> None:
    a, b, c = leases
    first = a.acquire()
    assert first is not None and (first.holder, first.term) == ("p0", 1)
    assert b.acquire() is None and c.acquire() is None, "held: nobody else takes it"
    renewed = a.acquire(1)
    assert renewed is not None and renewed.term == 1 and renewed.since == first.since
    assert renewed.expires_at >= first.expires_at
    current = b.current()
    assert current is not None and (current.holder, current.term, current.live) == ("p0", 1, True)

    taken = await eventually(b.acquire, "b takes the lease once a stopped renewing", timeout=5)
    assert (taken.holder, taken.term) == ("p1", 2), "taking an expired lease starts the next term"
    assert a.acquire(1) is None, "the old holder cannot renew a term it lost"
    assert a.acquire() is None and c.acquire() is None


async def test_a_lease_given_up_is_taken_at_once(leases: list[LeaderLease]) -> None:
    a, b, _ = leases
    held = a.acquire()
    assert held is not None
    b.release(held.term)  # not b's to give up: nothing changes
    assert b.acquire() is None
    a.release(held.term)
    taken = b.acquire()
    assert taken is not None and (taken.holder, taken.term) == ("p1", held.term + 1)


async def test_a_stale_term_writes_nothing_in_sql(
    leases: list[LeaderLease], store_env: dict[str, str]
) -> None:
    a, b, _ = leases
    old = a.acquire()
    assert old is not None
    db = Database.open(store_env)
    try:
        db.fence = Term(old.term)
        with db.transaction():
            assert db.move("archive", 0, 5)
        a.release(old.term)
        new = b.acquire()
        assert new is not None and new.term == old.term + 1
        with pytest.raises(Fenced), db.transaction():
            db.move("archive", 5, 9)
        assert db.position("archive") == 5, "the refused move wrote nothing"
        db.fence = Term(None)
        with pytest.raises(Fenced), db.transaction():
            db.advance("archive", 9)
        db.fence = Term(new.term)
        with db.transaction():
            assert db.move("archive", 5, 9)
        floor = DurablePosition(db, ThreadPoolExecutor(1), "notifications", fence=Term(old.term))
        with pytest.raises(Fenced):
            await floor.set(7)
        assert await floor.get() is None
    finally:
        db.close()


async def test_a_stale_term_writes_nothing_in_redis(client: aioredis.Redis) -> None:
    script = client.register_script(FENCE_LUA + "redis.call('INCR', KEYS[1]) return 1")

    async def write(term: int | None) -> object:
        key, arg = fenced_args(Term(term))
        return await script(keys=["bc:counter", key], args=[arg])

    assert await write(3) == 1, "a lost fence key is set again by the leader's first write"
    assert int(await client.get(fence_key()) or 0) == 3
    assert await write(4) == 1
    assert refused(await write(3)), "term 3 is older than the newest seen"
    with pytest.raises(Fenced):
        await write(None)
    unfenced = await script(keys=["bc:counter", fence_key()], args=[""])
    assert unfenced == 1, "an unfenced writer (the CLI, tests) is not checked"
    assert int(await client.get("bc:counter") or 0) == 3


@pytest.fixture
def executors() -> Iterator[list[ThreadPoolExecutor]]:
    made = [ThreadPoolExecutor(1) for _ in range(2)]
    yield made
    for pool in made:
        pool.shutdown(wait=True)


async def test_duties_run_on_one_process_and_move_when_it_stops_or_is_refused(
    leases: list[LeaderLease], executors: list[ThreadPoolExecutor], client: aioredis.Redis
) -> None:
    running: dict[str, int] = {}
    refuse = asyncio.Event()

    def duty(name: str, leadership: Leadership) -> tuple[object, object]:
        stop = asyncio.Event()

        async def run() -> None:
            running[name] = leadership.check()
            try:
                while not stop.is_set():
                    if refuse.is_set() and name == "p0":
                        raise Fenced("refused")
                    await asyncio.sleep(0.01)
            finally:
                running.pop(name, None)
                stop.clear()

        return run, stop.set

    one = Leadership(leases[0], executors[0], redis=client, grace=1.0)
    two = Leadership(leases[1], executors[1], redis=client, grace=1.0)
    for leadership in (one, two):
        run, stop = duty(leadership.holder, leadership)
        leadership.lead("work", run, stop)  # type: ignore[arg-type]
    await one.start()
    await two.start()
    try:
        await eventually(lambda: running == {"p0": 1}, "the first to contend runs the duty")
        assert one.leading and not two.leading
        assert int(await client.get(fence_key()) or 0) == 1, "the new term is told to Redis first"
        assert two.info()["holder"] == "p0" and two.info()["this_process"] is False

        refuse.set()  # p0's writes are refused: it steps down (again, if it retakes it); p1 takes over
        await eventually(lambda: "p0" not in running, "p0 stops at once")
        await eventually(lambda: list(running) == ["p1"], "p1 leads once the lease ran out", timeout=5)
        assert not one.leading and one.term is None
        taken = running["p1"]
        assert taken >= 2

        refuse.clear()
        await two.close()  # a clean stop gives the lease up: p0 takes it in its next round
        await eventually(lambda: running == {"p0": taken + 1}, "p0 leads again, in the next term", timeout=5)
    finally:
        await one.close()
        await two.close()
    assert running == {}
