"""The shared log reader (projections/log_reader.py, decision 0027): whatever followers ask, in whatever order,
while commands keep adding to the log, each gets exactly the page the store itself would give."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from hypothesis import example, given, settings
from hypothesis import strategies as st

from domain.service import Applications
from projections.log_reader import LogReader
from projections.runner import LogFollower, Page
from tests.builders import Walk, in_memory, make_id_number


def _direct(reader: LogReader, after: int, limit: int) -> list[tuple[int, object, int]]:
    app = reader.applications
    return [
        (n.id, n.originator_id, n.originator_version)
        for n in app.recorder.select_notifications(start=after + 1, limit=limit)
    ]


def _shape(page: list[tuple[int, object]]) -> list[tuple[int, object, int]]:
    return [(i, e.originator_id, e.originator_version) for i, e in page]  # type: ignore[attr-defined]


def _submitted(families: int, *, ward: str = "9") -> tuple[Applications, int]:
    """An in-memory store of ``families`` submitted applications, and its last notification id."""
    service = in_memory()
    for n in range(families):
        walk = Walk(service, mother_id=make_id_number("440104", f"199{n}0101", "026"))
        walk.record_delivery(inpatient_no=f"ZY2026{ward}{n:02d}")
        walk.submitted()
    return service, service.recorder.max_notification_id() or 0


class _Counting(LogReader):
    """A reader that lists every notification id it decodes."""

    def __init__(self, applications: Applications, *, keep: int) -> None:
        super().__init__(applications, keep=keep)
        self.decoded: list[int] = []

    def _select(self, after: int, limit: int) -> list[tuple[int, object]]:
        page = super()._select(after, limit)
        self.decoded.extend(n for n, _ in page)
        return page


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("read"), st.integers(0, 60), st.integers(1, 25)),
            st.tuples(st.just("write"), st.integers(1, 3), st.just(0)),
        ),
        min_size=1,
        max_size=30,
    ),
    keep=st.integers(3, 40),
)
# A page that runs past the range kept, whose first items the trimming to ``keep`` would drop (found by CI).
@example(steps=[("write", 1, 0), ("read", 0, 1), ("write", 1, 0), ("read", 0, 4)], keep=3)
def test_every_page_is_the_stores_own(steps: list[tuple[str, int, int]], keep: int) -> None:
    service = in_memory()
    reader = LogReader(service, keep=keep)
    families = 0
    for kind, a, b in steps:
        if kind == "write":
            for _ in range(a):
                families += 1
                mother = make_id_number("440106", "19920315", f"{2 * families:03d}")
                Walk(service, mother_id=mother).record_delivery(inpatient_no=f"ZY{families:06d}")
            continue
        end = service.recorder.max_notification_id() or 0
        after = min(a, end)
        assert _shape(reader.read(after, b)) == _direct(reader, after, b)
    assert reader.kept <= keep


def test_followers_at_the_end_share_one_query() -> None:
    service = in_memory()
    reader = LogReader.of(service)
    assert LogReader.of(service) is reader
    Walk(service).record_delivery()
    end = service.recorder.max_notification_id() or 0
    reader.read(0, 100)  # the first follower reads and decodes
    queries = reader.queries
    for _ in range(5):  # the others, at the same place, are served from memory after one look each
        assert _shape(reader.read(0, 1)) == _direct(reader, 0, 1)
    assert reader.queries == queries
    assert reader.read(end, 100) == []


def test_followers_catching_up_a_few_pages_apart_decode_each_notification_once() -> None:
    """A first start of a large store: every follower far behind the log's end, a few pages apart. The one ahead
    has the gap read too, so the range stays unbroken and the ones behind are served from it (before, each read
    and decoded the store itself: ≈2,500 events/s for 11 followers at 1 M applications, 2026-12-05)."""
    service, end = _submitted(4)
    assert end > 60
    reader = _Counting(service, keep=40)
    positions = [0, 15, 30]  # three followers far behind, three pages apart, reading five at a time
    while min(positions) < end:
        for i, at in enumerate(positions):
            page = reader.read(at, 5)
            assert _shape(page) == _direct(reader, at, 5)
            if page:
                positions[i] = page[-1][0]
    assert sorted(reader.decoded) == list(range(1, end + 1))  # each once, for the three of them


def test_a_fast_follower_keeps_pace_with_the_convoy_so_each_page_is_decoded_once() -> None:
    """A first start: one cheap follower would race ahead and the range would follow it, the others falling out
    and each decoding the store again (at 1 M: followers spread over 30–45 k events). A convoy member that is
    told to wait (``must_wait``) lets the others read first, and every notification is decoded once."""
    service, end = _submitted(4)

    def decodings(pace: bool) -> list[int]:
        reader = _Counting(service, keep=20)
        positions = {"fast": 0, "slow": 0, "slower": 0}
        pages_per_turn = {"fast": 4, "slow": 1, "slower": 1}
        turn = 0
        while min(positions.values()) < end:
            turn += 1
            for name, pages in pages_per_turn.items():
                if name == "slower" and turn % 2:
                    continue  # the slowest reads every other turn
                for _ in range(pages):
                    at = positions[name]
                    if at >= end:
                        break
                    reader.join(name, at, now=0.0)
                    if pace and reader.must_wait(name, at, 5, now=0.0):
                        break
                    page = reader.read(at, 5)
                    assert _shape(page) == _direct(reader, at, 5)
                    positions[name] = page[-1][0]
        return sorted(reader.decoded)

    assert decodings(pace=True) == list(range(1, end + 1))
    assert len(decodings(pace=False)) > end  # without the convoy the range follows the fast one


def test_a_stale_or_distant_follower_holds_nobody() -> None:
    service, _ = _submitted(3, ward="8")
    reader = LogReader(service, keep=20)
    first = reader.read(0, 20)
    end = first[-1][0]
    reader.join("behind", 0, now=100.0)
    assert reader.must_wait("ahead", end, 5, now=101.0)  # reading on would trim what "behind" still needs
    assert not reader.must_wait("ahead", end, 5, now=100.0 + 3.5)  # not read for 3.5 s: not waited for
    reader.leave("behind")
    assert not reader.must_wait("ahead", end, 5, now=101.0)
    reader.join("rebuilding", 0, now=100.0)
    reader.read(end, 10)  # the range moves on; the rebuild from 0 is outside it
    assert not reader.must_wait("ahead", reader._end, 5, now=101.0)


async def test_followers_catching_up_at_different_speeds_decode_the_log_once() -> None:
    """The runner's side of the convoy: three followers of one process, one cheap and two slow, catch up through
    the whole log; the cheap one waits for the others instead of dragging the range away from them."""
    service, end = _submitted(6, ward="7")
    reader = _Counting(service, keep=60)
    LogReader._readers[service] = reader  # this process's reader of the store

    class Timed:
        def __init__(self, seconds_per_page: float) -> None:
            self.at, self.seconds = 0, seconds_per_page

        async def position(self) -> int:
            return self.at

        async def apply(self, page: Page, start: int, end: int | None = None) -> bool:
            await asyncio.sleep(self.seconds)
            if start != self.at:
                return False
            self.at = page[-1][0] if end is None else end
            return True

        async def reset(self) -> None:
            self.at = 0

    views = {"cheap": Timed(0.0), "slow": Timed(0.01), "slower": Timed(0.02)}
    executor = ThreadPoolExecutor(max_workers=1)
    followers = [
        LogFollower(service, view, executor=executor, page_size=10, poll_interval=0.01, name=name)
        for name, view in views.items()
    ]
    tasks = [asyncio.create_task(f.run()) for f in followers]
    try:
        deadline = time.monotonic() + 30
        while any(view.at < end for view in views.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        for follower in followers:
            follower.stop()
        await asyncio.gather(*tasks)
        executor.shutdown()
    assert {name: view.at for name, view in views.items()} == dict.fromkeys(views, end)
    assert sorted(reader.decoded) == list(range(1, end + 1))


def test_a_follower_at_the_logs_end_does_not_take_the_range_from_followers_catching_up() -> None:
    """At a first start the notifications process starts at the log's end: its reads there must not start the
    range again under the followers catching up (measured: the last 8,000 events of a 10 k store decoded 6 times)."""
    service, end = _submitted(3, ward="6")
    reader = _Counting(service, keep=40)
    first = reader.read(0, 10)
    reader.join("status", first[-1][0])
    near_end = end - 3
    assert _shape(reader.read(near_end, 10)) == _direct(reader, near_end, 10)  # far ahead, a partial page
    assert _shape(reader.read(end - 25, 10)) == _direct(
        reader, end - 25, 10
    )  # near the end, the gap not read
    queries = reader.queries
    assert _shape(reader.read(first[-1][0], 5)) == _direct(reader, first[-1][0], 5)
    assert reader.queries == queries + 1  # the convoy's next page: one query, and the range goes on with it
    assert (reader._start, reader._end) == (0, first[-1][0] + 5)
    reader.leave("status")
    reader.read(near_end, 10)
    assert reader._start == near_end  # nobody catching up: the range starts again at the log's end
