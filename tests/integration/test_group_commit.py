"""Group commit (``Applications.run_batch``, backend/group_commit.py; decision 0027): commands stored together
answer as if each ran alone — each only once its own events are stored, a conflict failing only its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

import pytest

from backend.group_commit import GroupCommit
from domain.errors import Conflict, RuleViolated
from domain.idempotency import IdempotentRequest
from domain.service import Applications, Outcome
from domain.values import PersonName
from tests.builders import NOW, Walk, make_id_number, mother_details


def _ready(service: Applications, n: int) -> Walk:
    """A single mother's application ready for her details (the n-th, with her own ID number)."""
    walk = Walk(service, mother_id=make_id_number("440106", "19920315", f"{2 * n + 2:03d}"), father_id=None)
    walk.record_delivery(inpatient_no=f"ZYG{n:06d}")
    walk.start()
    walk.verify("mother")
    walk.confirm()
    return walk


def _details(service: Applications, walk: Walk, name: str = "张小花") -> Outcome:
    return service.provide_details(
        walk.parent, walk.id, newborn_name=PersonName(name), mother=mother_details(), father=None
    )


def _stored_version(service: Applications, app_id: UUID) -> int:
    return service.repository.get(app_id).version


@pytest.fixture
def pair(store_env: dict[str, str]) -> Iterator[tuple[Applications, Applications]]:
    """This process's service, and another process's on the same store (SQLite, and PostgreSQL when reachable)."""
    here, there = Applications(store_env, clock=lambda: NOW), Applications(store_env, clock=lambda: NOW)
    yield here, there
    here.close()
    there.close()


def test_a_batch_is_stored_together_and_each_command_gets_its_own_position(
    pair: tuple[Applications, Applications],
) -> None:
    here, _ = pair
    walks = [_ready(here, n) for n in range(4)]
    before = here.recorder.max_notification_id() or 0

    results = here.run_batch([lambda w=w: _details(here, w) for w in walks])  # type: ignore[misc]

    assert all(isinstance(r, Outcome) for r in results)
    outcomes = [r for r in results if isinstance(r, Outcome)]
    positions = [o.position for o in outcomes]
    assert positions == sorted(positions) and len(set(positions)) == 4
    assert all(p is not None and p > before for p in positions)
    for walk, outcome in zip(walks, outcomes, strict=True):
        assert outcome.id == walk.id and _stored_version(here, walk.id) == outcome.version


def test_two_commands_on_one_application_in_a_batch_both_succeed_one_after_the_other(
    pair: tuple[Applications, Applications],
) -> None:
    here, _ = pair
    walk = _ready(here, 0)
    first, second = here.run_batch(
        [lambda: _details(here, walk, "张小花"), lambda: _details(here, walk, "张小明")]
    )
    assert isinstance(first, Outcome) and isinstance(second, Outcome)
    assert second.version == first.version + 1 == _stored_version(here, walk.id)
    assert (first.position or 0) < (second.position or 0)


def test_a_conflict_fails_only_its_own_command_and_a_refusal_only_its_own(
    pair: tuple[Applications, Applications],
) -> None:
    here, there = pair
    raced, other = (_ready(here, n) for n in range(2))

    def refuse() -> Outcome:
        raise RuleViolated("不可", code="not_allowed")

    results = here.run_batch(
        [
            lambda: _details(here, raced),  # loaded here, stored with the batch...
            lambda: _details(there, raced, "张小明"),  # ...but another process stores first
            lambda: _details(here, other),
            refuse,
        ]
    )

    assert isinstance(results[0], Conflict) and results[0].code == "concurrent_modification"
    assert isinstance(results[1], Outcome) and isinstance(results[2], Outcome)
    assert isinstance(results[3], RuleViolated)
    assert _stored_version(here, raced.id) == results[1].version
    assert _stored_version(here, other.id) == results[2].version
    assert here.aggregate_cache.version(raced.id) in (None, results[1].version)
    # The next command on the raced application acts on what the other process stored.
    assert _details(here, raced).version == results[1].version + 1


def test_an_answer_under_an_idempotency_key_is_stored_with_its_command_in_the_batch(
    pair: tuple[Applications, Applications],
) -> None:
    here, _ = pair
    walks = [_ready(here, n) for n in range(2)]
    record_id = UUID(int=42)
    once = IdempotentRequest(record_id, "digest", lambda outcome: {"version": outcome.version})
    results = here.run_batch(
        [
            lambda: here.run_once(once, lambda: _details(here, walks[0])),
            lambda: _details(here, walks[1]),
        ]
    )
    first = results[0]
    assert isinstance(first, Outcome) and first.recorded
    recorded = here.get_recorded_answer(record_id)
    assert recorded is not None


async def test_commands_arriving_together_are_answered_each_with_its_own_outcome(
    pair: tuple[Applications, Applications],
) -> None:
    here, _ = pair
    walks = [_ready(here, n) for n in range(6)]
    with ThreadPoolExecutor(max_workers=1) as store:
        group = GroupCommit(here, store, max_batch=4)
        outcomes = await asyncio.gather(
            *(group.run(lambda w=w: _details(here, w)) for w in walks),  # type: ignore[misc]
            group.run(lambda: _details(here, walks[0], "张小明")),
            return_exceptions=True,
        )
    assert all(isinstance(o, Outcome) for o in outcomes)
    assert [o.id for o in outcomes if isinstance(o, Outcome)] == [w.id for w in walks] + [walks[0].id]
    assert group.batches < len(outcomes)  # stored together, not one by one


async def test_a_command_whose_request_gave_up_while_queued_is_not_run(
    pair: tuple[Applications, Applications],
) -> None:
    here, _ = pair
    walk = _ready(here, 0)
    started, busy, ran = threading.Event(), threading.Event(), []

    def blocker() -> Outcome:
        started.set()
        busy.wait(5)
        return _details(here, walk)

    def late() -> Outcome:
        ran.append(True)
        return _details(here, walk, "张小明")

    with ThreadPoolExecutor(max_workers=1) as store:
        group = GroupCommit(here, store, max_batch=8)
        first = asyncio.ensure_future(group.run(blocker))
        await asyncio.to_thread(started.wait, 5)  # the first batch (the blocker alone) is on the store thread
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(group.run(late), 0.05)  # queued behind it, then given up
        busy.set()
        assert isinstance(await first, Outcome)
    assert ran == []
