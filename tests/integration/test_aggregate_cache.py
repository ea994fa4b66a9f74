"""The per-process aggregate cache (domain/aggregate_cache.py, decision 0027): whatever it holds and however
a page of the log is cut, a view sees exactly what a replay from the store gives, and a command acts on the
latest stored state even when another process wrote after this one cached it."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.aggregate_cache import AggregateCache
from domain.application import BirthCertificateApplication
from domain.errors import Conflict
from domain.service import Applications
from projections.status import status_of
from tests.builders import NOW, Walk


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Applications, UUID, list[object]]]:
    """A family walked to submission on a SQLite file; its application's stored events in order."""
    from tests.conftest import _fresh_store_env

    env = _fresh_store_env(tmp_path_factory.mktemp("cache"), {})
    service = Applications(env, clock=lambda: NOW)
    walk = Walk(service)
    walk.submitted()
    events = list(service.repository.event_store.get(originator_id=walk.id))
    yield service, walk.id, events
    service.close()


def _same(a: object, b: object) -> bool:
    return type(a) is type(b) and vars(a) == vars(b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_view_sees_what_a_replay_gives_whatever_the_cache_holds_and_the_page(
    walked: tuple[Applications, UUID, list[object]], data: st.DataObject
) -> None:
    service, app_id, events = walked
    last = len(events)
    version = data.draw(st.integers(1, last), label="version the page leaves it at")
    first = data.draw(st.integers(1, version), label="first version in the page")
    cached = data.draw(st.none() | st.integers(1, last), label="version the cache holds")
    service.aggregate_cache.clear()
    if cached is not None:
        service.aggregate_cache.put(service.repository.get(app_id, version=cached))
    page_events = [e for e in events if first <= e.originator_version <= version]  # type: ignore[attr-defined]

    seen = service.get_as_stored(app_id, version, page_events)

    replayed = service.repository.get(app_id, version=version)
    assert _same(seen, replayed)
    assert isinstance(seen, BirthCertificateApplication) and isinstance(replayed, BirthCertificateApplication)
    assert status_of(seen) == status_of(replayed)
    # The cache now holds the newer of the two, and a copy of it: changing what we got changes nothing there.
    assert service.aggregate_cache.version(app_id) == max(version, cached or 0)
    seen.state = "tampered"
    again = service.get_as_stored(app_id, version, [])
    assert _same(again, replayed)


def test_a_command_acts_on_what_another_process_stored_after_this_one_cached(
    sqlite_env: dict[str, str],
) -> None:
    here = Applications(sqlite_env, clock=lambda: NOW)
    there = Applications(sqlite_env, clock=lambda: NOW)
    try:
        walk = Walk(here)
        walk.record_delivery()
        walk.start()
        walk.verify("mother")
        here.get_as_stored(walk.id, None)  # cached here at this version
        cached_at = here.aggregate_cache.version(walk.id)
        Walk(there, app_id=walk.id, parent=walk.parent).confirm()  # another process moves it on
        out = walk.details()  # here: no 409, the confirmation is there
        assert out.version == (cached_at or 0) + 2
        assert _same(here.repository.get(walk.id), there.repository.get(walk.id))
    finally:
        here.close()
        there.close()


def test_a_lost_race_evicts_and_the_next_command_loads_afresh(sqlite_env: dict[str, str]) -> None:
    here = Applications(sqlite_env, clock=lambda: NOW)
    there = Applications(sqlite_env, clock=lambda: NOW)
    try:
        walk = Walk(here)
        walk.record_delivery()
        walk.start()
        walk.verify("mother")
        walk.confirm()
        mine = here._get(BirthCertificateApplication, walk.id)  # loaded, about to act
        Walk(there, app_id=walk.id, parent=walk.parent).details()
        mine.withdraw(walk.parent, reason="申办人撤回")
        with pytest.raises(Conflict):
            here._commit(mine)
        assert here.aggregate_cache.version(walk.id) is None
        assert walk.details(newborn="张小明").version == mine.version + 1  # on top of the other process's
    finally:
        here.close()
        there.close()


def test_the_cache_keeps_the_newest_and_the_most_recently_used() -> None:
    cache = AggregateCache(maxsize=2)
    a, b, c = (BirthCertificateApplication.__new__(BirthCertificateApplication) for _ in range(3))
    for n, agg in enumerate((a, b, c)):
        agg.__dict__.update(_id=UUID(int=n + 1), _version=5)
    cache.put(a)
    cache.put(b)
    older = BirthCertificateApplication.__new__(BirthCertificateApplication)
    older.__dict__.update(_id=a.id, _version=4)
    cache.put(older)  # not newer: ignored, but a is not touched either
    assert cache.get(a.id) is not None  # a used: b is now the least recent
    cache.put(c)
    assert cache.version(a.id) == 5 and cache.version(b.id) is None and cache.version(c.id) == 5
    assert AggregateCache(maxsize=0).get(a.id) is None
