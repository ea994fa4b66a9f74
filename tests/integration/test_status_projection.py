"""The parents' status view, followed from a real event store (SQLite, and PostgreSQL once) into a real Redis.

A journey is driven through the service on the store's executor, the follower catches up, and the
view is read back: states, next steps, rejection reasons, numbers. Rebuilding, re-applying a page
and racing two followers all end in the same bytes; nothing personal reaches Redis in clear.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from domain.errors import InvalidValue
from domain.rejection import REJECTION_REASONS
from domain.service import Applications
from domain.values import Actor, CertificateNumber
from projections.runner import LogFollower, Page
from projections.status import StatusView, derive_pseudonym_key, document_version, father_status_of, status_of
from tests.builders import (
    EMS,
    MOTHER_ID,
    NOW,
    OTHER_MAN_ID,
    SECOND_MOTHER_ID,
    TEST_ID_NUMBERS,
    Walk,
    facts,
    hospital,
    sha,
)
from tests.integration.following import dump, log_page, off_loop, projections_cli, running

PSEUDONYM_KEY = b"k" * 32
SEAL_KEY = b"s" * 32
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
    "openid-mother",
    "openid-second",
)


@pytest.fixture
def make_view(
    applications: Applications, executor: ThreadPoolExecutor, client: aioredis.Redis
) -> Callable[..., StatusView]:
    """Status views on the test's store and Redis (another client may be given)."""

    def make(redis_client: aioredis.Redis | None = None) -> StatusView:
        return StatusView(
            redis_client or client, applications, executor, pseudonym_key=PSEUDONYM_KEY, seal_key=SEAL_KEY
        )

    return make


@pytest.fixture
def make_follower(
    applications: Applications, executor: ThreadPoolExecutor, make_view: Callable[..., StatusView]
) -> Callable[..., LogFollower]:
    """Followers of the test's store into a status view."""

    def make(view: StatusView | None = None, page_size: int = 500, poll_interval: float = 0.5) -> LogFollower:
        return LogFollower(
            applications,
            view or make_view(),
            executor=executor,
            page_size=page_size,
            poll_interval=poll_interval,
        )

    return make


@pytest.fixture
def view(make_view: Callable[..., StatusView]) -> StatusView:
    """The status view."""
    return make_view()


@pytest.fixture
def follower(make_follower: Callable[..., LogFollower], view: StatusView) -> LogFollower:
    """A follower of the store into ``view``."""
    return make_follower(view)


def second_family(applications: Applications) -> Walk:
    """Another mother, at the same hospital, with her own mini-program user."""
    walk = Walk(
        applications,
        mother_id=SECOND_MOTHER_ID,
        father_id=OTHER_MAN_ID,
        mother_name="李梅",
        parent=Actor(id="openid-second", role="parent"),
    )
    walk.record_delivery(inpatient_no="ZY2026002")
    return walk


def whole_journey(walk: Walk) -> None:
    """Submitted, rejected, resubmitted, issued, dispatched, delivered."""
    walk.submitted()
    walk.reject()
    walk.submit()
    walk.issue()
    walk.app.dispatch(EMS, walk.id, tracking_number="EA123456789CN")
    walk.app.record_delivered(EMS, walk.id)


# ---------------------------------------------------------------------------------------------- journey


async def test_journey_shows_submitted_returned_issued(
    applications: Applications, executor: ThreadPoolExecutor, view: StatusView, follower: LogFollower
) -> None:
    walk = Walk(applications)
    submitted = await off_loop(executor, walk.submitted)
    assert await follower.catch_up() == submitted.position

    status = await view.get(walk.id)
    assert status is not None
    assert status["id"] == str(walk.id)
    assert status["state"] == "submitted"
    assert status["version"] == submitted.version
    assert status["province"] == "GD"
    assert [s["code"] for s in status["next_steps"]] == ["await_review"]
    assert not [s for s in status["next_steps"] if s["by"] == "parent"]  # nothing left for the parent
    assert {"form_signed", "documents_uploaded", "submitted"} <= {s["code"] for s in status["done_steps"]}
    assert status["rejection"] is None
    assert status["signature_valid"] is True
    assert status["delivery_method"] == "ems"
    assert status["delivery_record"]["institution_name"] == "广州市妇女儿童医疗中心"
    assert status["delivery_record"]["mother_name_masked"] == "王*"
    assert status["mother_name_masked"] == "王*"
    assert status["started_at"].endswith("+08:00") and status["updated_at"].endswith("+08:00")
    assert status["started_at"] <= status["submitted_at"] <= status["updated_at"]

    rejected = await off_loop(executor, lambda: walk.reject(codes=["id_photo_unclear", "id_expired"]))
    await follower.catch_up()
    status = await view.get(walk.id)
    assert status is not None
    assert status["state"] == "returned"
    assert status["version"] == rejected.version
    assert status["rejection"] == {
        "reasons": ["身份证照片不清晰"],
        # Each code with what she is told to do, from the catalogue (domain/data/rejection_reasons.json).
        "reason_codes": ["id_photo_unclear", "id_expired"],
        "reason_messages": [
            {
                "code": "id_photo_unclear",
                "label": "证件照片不清晰或不完整",
                "message": REJECTION_REASONS["id_photo_unclear"].message,
            },
            {
                "code": "id_expired",
                "label": "身份证件已过有效期",
                "message": REJECTION_REASONS["id_expired"].message,
            },
        ],
        "fields": ["documents.mother_id_front"],
        "field_labels": ["母亲身份证人像面照片"],
        "resign_required": False,  # a photo is not on the signed form: no new signature
    }
    assert [s["code"] for s in status["next_steps"]] == ["fix_returned_items", "submit"]
    assert "母亲身份证人像面照片" in status["next_steps"][0]["label"]

    await off_loop(executor, walk.submit)
    issued = await off_loop(executor, walk.issue)
    await follower.catch_up()
    status = await view.get(walk.id)
    assert status is not None
    assert status["state"] == "issued"
    assert status["version"] == issued.version
    assert status["certificate_number"] == "X440100001"
    assert status["rejection"] is None
    assert status["next_steps"] == [{"code": "await_dispatch", "label": "等待邮寄", "by": "issuer"}]

    await off_loop(executor, lambda: applications.dispatch(EMS, walk.id, tracking_number="EA123456789CN"))
    await follower.catch_up()
    status = await view.get(walk.id)
    assert status is not None
    assert (status["state"], status["tracking_number"]) == ("dispatched", "EA123456789CN")
    assert [s["code"] for s in status["next_steps"]] == ["await_delivery"]
    # EMS has booked the pickup and given a waybill: nobody has posted anything yet.
    assert status["state_label"] == "已预约邮政揽收"
    assert "寄出" not in status["state_label"]
    assert "揽收" in status["next_steps"][0]["label"] and "揽收" in status["done_steps"][-1]["label"]


async def test_a_withdrawn_application_shows_what_was_done_and_that_it_was_withdrawn(
    applications: Applications, executor: ThreadPoolExecutor, view: StatusView, follower: LogFollower
) -> None:
    walk = Walk(applications)
    await off_loop(executor, walk.record_delivery)
    await off_loop(executor, walk.start)
    await off_loop(executor, walk.verify)
    await off_loop(executor, lambda: applications.withdraw(walk.parent, walk.id))
    await follower.catch_up()
    status = await view.get(walk.id)
    assert status is not None
    assert (status["state"], status["state_label"]) == ("withdrawn", "已撤回")
    # Only her face check (and the record it linked) was done: no signature, photos or submission.
    assert [s["code"] for s in status["done_steps"]] == [
        "mother_verified",
        "delivery_record_linked",
        "withdrawn",
    ]
    assert status["next_steps"] == []


async def test_a_rejection_says_whether_the_form_must_be_signed_again(
    applications: Applications, executor: ThreadPoolExecutor, view: StatusView, follower: LogFollower
) -> None:
    walk = Walk(applications)
    await off_loop(executor, walk.submitted)
    await off_loop(executor, lambda: walk.reject(["newborn_name", "documents.mother_id_back"]))
    await follower.catch_up()
    status = await view.get(walk.id)
    assert status is not None
    assert status["rejection"]["resign_required"] is True  # the name is printed on the signed form


async def test_a_draft_lists_what_is_missing_in_order(
    applications: Applications, executor: ThreadPoolExecutor, view: StatusView, follower: LogFollower
) -> None:
    walk = Walk(applications)
    await off_loop(executor, walk.record_delivery)
    await off_loop(executor, walk.start)
    await follower.catch_up()
    status = await view.get(walk.id)
    assert status is not None
    assert status["state"] == "draft"
    assert status["next_steps"][0] == {"code": "mother_verified", "label": "母亲刷脸认证", "by": "parent"}
    assert "submit" not in [s["code"] for s in status["next_steps"]]
    assert status["done_steps"] == []
    assert status["delivery_record"] is None and status["mother_name_masked"] is None

    await off_loop(executor, walk.verify)
    await follower.catch_up()
    status = await view.get(walk.id)
    assert status is not None
    assert [s["code"] for s in status["done_steps"]] == ["mother_verified", "delivery_record_linked"]
    assert status["next_steps"][0]["code"] == "delivery_info_confirmed"


async def test_a_hospital_correction_returns_a_submitted_application(
    applications: Applications, executor: ThreadPoolExecutor, view: StatusView, follower: LogFollower
) -> None:
    walk = Walk(applications)
    await off_loop(executor, walk.submitted)
    await off_loop(
        executor,
        lambda: applications.correct_delivery(
            hospital(), walk.record_id or "", facts=facts(weight_g=3300), reason="新生儿体重录入错误"
        ),
    )
    await follower.catch_up()
    status = await view.get(walk.id)
    assert status is not None
    assert status["state"] == "returned"
    assert status["rejection"]["fields"] == ["delivery_record"]
    assert status["rejection"]["reasons"] == ["医院已更正分娩信息：新生儿体重录入错误"]
    assert status["signature_valid"] is False
    codes = [s["code"] for s in status["next_steps"]]
    assert codes == ["fix_returned_items", "delivery_info_confirmed", "form_signed"]


# ---------------------------------------------------------------------------------------------- following


async def test_wait_for_returns_once_the_view_shows_the_command(
    applications: Applications, executor: ThreadPoolExecutor, view: StatusView, make_follower: Any
) -> None:
    # A long poll interval: only wake() can make the follower see the commands in time.
    follower: LogFollower = make_follower(view, poll_interval=60)
    walk = Walk(applications)
    async with running(follower):
        await off_loop(executor, walk.ready_to_submit)
        outcome = await off_loop(executor, walk.submit)
        follower.wake()
        assert await follower.wait_for(outcome.position, timeout=TIMEOUT)
        status = await view.get(walk.id)
        assert status is not None and status["state"] == "submitted"
        assert await view.position() >= (outcome.position or 0)

        outcome = await off_loop(executor, walk.reject)
        follower.wake()
        assert await follower.wait_for(outcome.position, timeout=TIMEOUT)
        status = await view.get(walk.id)
        assert status is not None and status["state"] == "returned"

        # A position the log has not reached: wait_for gives up after its timeout.
        assert not await follower.wait_for((outcome.position or 0) + 1000, timeout=0.05)
        assert await follower.wait_for(None, timeout=0)


async def test_failures_are_retried_and_no_event_is_skipped(
    applications: Applications,
    executor: ThreadPoolExecutor,
    view: StatusView,
    make_follower: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Flaky:
        """The status view, failing its first three pages."""

        failures = 3

        async def position(self) -> int:
            return await view.position()

        async def apply(self, page: Page, start: int, end: int | None = None) -> bool:
            if self.failures:
                self.failures -= 1
                raise ConnectionError("redis went away at 王芳 110101")
            return await view.apply(page, start, end)

        async def reset(self) -> None:
            await view.reset()

    flaky = Flaky()
    follower = LogFollower(applications, flaky, executor=executor, page_size=4, poll_interval=0.01)
    walk = Walk(applications)
    outcome = await off_loop(executor, walk.submitted)
    with caplog.at_level(logging.WARNING, logger="projections.runner"):
        async with running(follower):
            assert await follower.wait_for(outcome.position, timeout=TIMEOUT)
    assert flaky.failures == 0
    status = await view.get(walk.id)
    assert status is not None and status["state"] == "submitted"
    assert await view.position() == outcome.position
    warnings = [r.getMessage() for r in caplog.records if r.name == "projections.runner"]
    assert len(warnings) == 3 and all("ConnectionError" in w for w in warnings)
    assert not [w for w in warnings if "王芳" in w or "110101" in w]  # the message itself is not logged


async def test_catch_up_follows_a_view_that_was_reset(
    applications: Applications, executor: ThreadPoolExecutor, view: StatusView, follower: LogFollower
) -> None:
    walk = Walk(applications)
    outcome = await off_loop(executor, walk.submitted)
    await follower.catch_up()
    await view.reset()
    assert await view.position() == 0 and await view.get(walk.id) is None
    assert await follower.catch_up() == outcome.position
    status = await view.get(walk.id)
    assert status is not None and status["state"] == "submitted"


async def test_a_page_read_ahead_is_dropped_when_the_view_was_flushed_meanwhile(
    applications: Applications,
    executor: ThreadPoolExecutor,
    client: aioredis.Redis,
    view: StatusView,
    make_follower: Any,
) -> None:
    """Catching up, the next page is read while one is applied; a flush in between must send the follower
    back to 0, never apply the page read ahead on top of the emptied view."""
    await off_loop(executor, whole_journey, Walk(applications))
    first_end = await make_follower(view).catch_up()
    other = await off_loop(executor, second_family, applications)
    await off_loop(executor, other.submitted)
    end = await make_follower(view).catch_up()
    clean = await dump(client)
    await view.reset()

    class FlushedOnce:
        """The status view, flushed (as by FLUSHDB) after a page of the second family: the page read ahead
        meanwhile holds none of the first family's events."""

        flushed = False

        async def position(self) -> int:
            return await view.position()

        async def apply(self, page: Page, start: int, end: int | None = None) -> bool:
            applied = await view.apply(page, start, end)
            if start > first_end and not self.flushed:
                self.flushed = True
                await client.flushdb()
            return applied

        async def reset(self) -> None:
            await view.reset()

    flushed = FlushedOnce()
    follower = LogFollower(applications, flushed, executor=executor, page_size=3)
    assert await follower.catch_up() == end
    assert flushed.flushed
    assert await dump(client) == clean


# ---------------------------------------------------------------------------------------------- determinism


async def test_a_rebuild_from_zero_gives_byte_identical_views(
    applications: Applications,
    executor: ThreadPoolExecutor,
    client: aioredis.Redis,
    view: StatusView,
    make_follower: Any,
) -> None:
    await off_loop(executor, whole_journey, Walk(applications))
    other = await off_loop(executor, second_family, applications)
    await off_loop(executor, other.submitted)

    await make_follower(view).catch_up()
    before = await dump(client)
    assert len([k for k in before if ":app:" in k]) == 2

    await view.reset()
    assert await dump(client) == {}
    # Another page size: documents depend on the log, not on how it was paged.
    await make_follower(view, page_size=3).catch_up()
    assert await dump(client) == before


async def test_applying_a_page_twice_changes_nothing(
    applications: Applications, executor: ThreadPoolExecutor, client: aioredis.Redis, view: StatusView
) -> None:
    walk = Walk(applications)
    await off_loop(executor, walk.submitted)
    await off_loop(executor, walk.reject)
    page = await off_loop(executor, log_page, applications)
    half = page[: len(page) // 2]

    assert await view.apply(half, 0)
    assert await view.position() == half[-1][0]
    assert await view.apply(page[len(half) :], half[-1][0])
    after = await dump(client)
    assert await view.position() == page[-1][0]

    assert not await view.apply(page[len(half) :], half[-1][0])  # the same page again
    assert await dump(client) == after
    assert not await view.apply(half, 0)  # an older page: refused, the view does not go back
    assert await dump(client) == after
    status = await view.get(walk.id)
    assert status is not None and status["state"] == "returned"


async def test_two_followers_racing_end_like_one(
    applications: Applications,
    executor: ThreadPoolExecutor,
    client: aioredis.Redis,
    redis_url: str,
    make_view: Any,
    make_follower: Any,
) -> None:
    other_client = aioredis.Redis.from_url(redis_url)
    try:
        # Different page sizes make the two interleave at different boundaries.
        first = make_follower(make_view(), page_size=2, poll_interval=0.01)
        second = make_follower(make_view(other_client), page_size=5, poll_interval=0.01)
        walks = [Walk(applications), await off_loop(executor, second_family, applications)]
        last = None
        async with running(first, second):
            for walk in walks:
                await off_loop(executor, walk.ready_to_submit)
                first.wake()
                last = await off_loop(executor, walk.submit)
                second.wake()
            last = await off_loop(executor, walks[0].reject)
            assert last.position is not None
            assert await first.wait_for(last.position, timeout=TIMEOUT)
            assert await second.wait_for(last.position, timeout=TIMEOUT)
        raced = await dump(client)

        view = make_view()
        await view.reset()
        await make_follower(view).catch_up()
        assert await dump(client) == raced
        assert int(raced["bc:status:g0:position"]) == last.position
    finally:
        await other_client.aclose()


# ---------------------------------------------------------------------------------------------- privacy


def texts_of(everything: dict[str, Any]) -> list[str]:
    """Every key, value and sorted-set member of a Redis dump, as text."""
    texts = list(everything)
    for value in everything.values():
        texts += [value.decode()] if isinstance(value, bytes) else [m.decode() for m, _ in value]
    return texts


async def test_nothing_personal_reaches_redis(
    applications: Applications, executor: ThreadPoolExecutor, client: aioredis.Redis, follower: LogFollower
) -> None:
    await off_loop(executor, whole_journey, Walk(applications))
    other = await off_loop(executor, second_family, applications)
    await off_loop(executor, other.submitted)
    await off_loop(
        executor,
        lambda: applications.correct_delivery(
            hospital(),
            other.record_id or "",
            facts=facts(SECOND_MOTHER_ID, mother_name="李梅", inpatient_no="ZY2026002", weight_g=3400),
            reason="体重录入错误",
        ),
    )
    await follower.catch_up()

    everything = await dump(client)
    assert len(everything) == 5  # two documents, two user lists, the position
    texts = texts_of(everything)
    # Nor a certificate number: it names a child (decision 0042).
    leaks = [(text[:60], p) for text in texts for p in (*PERSONAL_TEXTS, "X440100001") if p in text]
    assert leaks == []
    assert any("王*" in t for t in texts) and any("李*" in t for t in texts)


def printed_twice_with_e_licences(walk: Walk) -> list[str]:
    """Issued with its e-licence, then replaced for a misprint and given a new one; the father joined before.
    Returns the licence ids."""
    father_joins(walk)
    walk.verify("father")  # on her device: she still may (decision 0011)
    walk.upload_all()
    walk.sign()
    walk.choose_ems()
    walk.submit()
    licences = []
    for n, number in enumerate(("X440100001", "X440100002")):
        if n == 0:
            walk.issue(number)
        else:
            walk.app.replace_certificate(
                walk.issuer,
                walk.id,
                certificate_number=CertificateNumber(number),
                cause="misprinted",
                old_certificate="destroyed",
                sealer_name="赵盖章",
            )
        licence = f"1.2.156.3005.2.C0134.GZFY01.{n}A2B3C4D5E6F7G8H9J0K.001.X"
        walk.app.issue_elicense(
            Actor(id="elicense-process", role="system"),
            walk.id,
            licence_id=licence,
            certificate_number=number,
            key_id="key-one-thumbprint",
            status_list="1",
            status_index=7 + n,
        )
        licences.append(licence)
    return licences


async def test_certificate_numbers_and_licence_ids_are_sealed_in_redis_and_answered_in_clear(
    applications: Applications,
    executor: ThreadPoolExecutor,
    client: aioredis.Redis,
    view: StatusView,
    follower: LogFollower,
) -> None:
    walk = Walk(applications)
    licences = await off_loop(executor, printed_twice_with_e_licences, walk)
    await follower.catch_up()
    app = await off_loop(executor, lambda: applications.get_application(walk.parent, walk.id))
    hers, his = status_of(app), father_status_of(app)
    assert hers["certificate_number"] == "X440100002" and hers["voided_certificate_numbers"] == ["X440100001"]
    assert "X440100001" in hers["replacement"]["message"]
    assert hers["elicense"] == his["elicense"] == {"state": "issued", "licence_id": licences[1]}

    # Neither number nor either licence id is anywhere in Redis in clear…
    everything = await dump(client)
    texts = texts_of(everything)
    secrets = ("X440100001", "X440100002", *licences)
    assert [(t[:60], s) for t in texts for s in secrets if s in t] == []
    stored = everything[f"bc:status:g0:app:{walk.id}"]
    assert orjson.loads(stored)["certificate_number"] is None  # its place kept, its value sealed

    # …and every read answers them as the contract says, in the bytes the unsealed document would have had.
    assert await view.get_bytes_for("openid-mother", walk.id) == orjson.dumps(hers)
    assert await view.get_bytes_for("openid-father", walk.id) == orjson.dumps(his)
    assert await view.get_for("openid-mother", walk.id) == hers
    assert await view.get(walk.id) == hers and await view.get_father(walk.id) == his
    assert (await view.list_for("openid-mother"))[0] == [hers]
    assert (await view.list_for("openid-father"))[0] == [his]
    assert document_version(orjson.dumps(hers)) == hers["version"]

    # A document whose clear part was changed in Redis no longer opens: the read goes to the store, and her
    # list still names the application, without the numbers.
    altered = stored.replace(b'"state":"issued"', b'"state":"draft"')
    assert altered != stored
    await client.set(f"bc:status:g0:app:{walk.id}", altered)
    assert await view.get_bytes_for("openid-mother", walk.id) is None
    [listed] = (await view.list_for("openid-mother"))[0]
    assert (listed["id"], listed["certificate_number"]) == (str(walk.id), None)
    # Nor does one sealed under another key.
    await client.set(f"bc:status:g0:app:{walk.id}", stored)
    other_key = StatusView(client, applications, executor, pseudonym_key=PSEUDONYM_KEY, seal_key=b"o" * 32)
    assert await other_key.get_bytes_for("openid-mother", walk.id) is None
    assert await view.get_bytes_for("openid-mother", walk.id) == orjson.dumps(hers)

    # Sealing is deterministic: a rebuild in other pages writes the same bytes.
    await view.reset()
    await follower.catch_up()
    assert await dump(client) == everything


async def test_what_staff_wrote_in_their_own_words_is_sealed_in_redis_and_answered_in_clear(
    applications: Applications,
    executor: ThreadPoolExecutor,
    client: aioredis.Redis,
    view: StatusView,
    follower: LogFollower,
) -> None:
    """An issuer's rejection in her own words may quote what identifies the family (here the mother's ID
    number and the "quotes" a JSON string escapes): Redis keeps it sealed, the parents read it as written."""
    walk = Walk(applications)
    await off_loop(executor, walk.submitted)
    words = f'身份证号码{MOTHER_ID}与照片不符，请重新上传"正面"照片'
    await off_loop(
        executor,
        lambda: applications.reject(
            walk.issuer, walk.id, reasons=[words], fields=["documents.mother_id_front"], reason_codes=None
        ),
    )
    await follower.catch_up()
    everything = await dump(client)
    texts = texts_of(everything)
    assert [t[:60] for t in texts if "与照片不符" in t or MOTHER_ID in t] == []
    stored = orjson.loads(everything[f"bc:status:g0:app:{walk.id}"])
    assert stored["rejection"] is None and stored["state"] == "returned"  # the rest stays in clear
    status = await view.get_for("openid-mother", walk.id)
    assert status is not None and status["rejection"]["reasons"] == [words]


# ---------------------------------------------------------------------------------------------- lists


async def test_list_for_pages_newest_first(
    applications: Applications, executor: ThreadPoolExecutor, view: StatusView, follower: LogFollower
) -> None:
    mother = Actor(id="openid-mother", role="parent")
    started = []
    for _ in range(5):
        walk = Walk(applications, parent=mother)
        await off_loop(executor, walk.start)
        started.append(str(walk.id))
    stranger = Walk(applications, parent=Actor(id="openid-second", role="parent"))
    await off_loop(executor, stranger.start)
    await follower.catch_up()

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        items, cursor = await view.list_for("openid-mother", cursor, limit=2)
        pages += 1
        seen += [item["id"] for item in items]
        assert all(item["state"] == "draft" for item in items)
        if cursor is None:
            break
    assert seen == list(reversed(started))
    assert pages == 3
    assert [i["id"] for i in (await view.list_for("openid-second"))[0]] == [str(stranger.id)]
    assert await view.list_for("openid-nobody") == ([], None)
    with pytest.raises(InvalidValue):
        await view.list_for("openid-mother", "not-a-cursor")


async def test_get_of_an_unknown_or_malformed_id_is_none(view: StatusView) -> None:
    assert await view.get("00000000-0000-0000-0000-000000000000") is None
    assert await view.get("../../etc") is None


# ---------------------------------------------------------------------------------------------- the father


FATHER = Actor(id="openid-father", role="parent")


def father_joins(walk: Walk, father: Actor = FATHER) -> str:
    """Up to the details, then the mother's invitation, accepted by the father on his own account."""
    if walk.record_id is None:
        walk.record_delivery()
    walk.start()
    walk.verify("mother")
    walk.confirm()
    walk.details()
    code = str(walk.app.invite_father(walk.parent, walk.id).detail)
    walk.app.accept_father_invitation(father, code)
    return code


async def test_a_father_who_joined_has_his_own_reduced_view(
    applications: Applications,
    executor: ThreadPoolExecutor,
    client: aioredis.Redis,
    view: StatusView,
    make_follower: Any,
) -> None:
    walk = Walk(applications)
    code = await off_loop(executor, father_joins, walk)
    await make_follower(view).catch_up()

    mine = await view.get(walk.id)
    assert mine is not None and mine["father_invitation"] == {"status": "joined", "expires_at": None}
    his = await view.get_father(walk.id)
    assert his is not None
    assert (his["role"], his["state"], his["version"]) == ("father", "draft", mine["version"])
    assert [s["code"] for s in his["next_steps"]] == ["father_verified", "father_documents_uploaded"]
    assert await view.get_for("openid-father", walk.id) == his
    assert await view.get_for("openid-mother", walk.id) == mine
    assert await view.get_for("openid-stranger", walk.id) is None
    # The HTTP read answers the stored bytes as they are, its ETag read from them without decoding.
    prefix = await view.prefix()
    for user, suffix, document in (("openid-mother", "app:", mine), ("openid-father", "father:", his)):
        stored = await view.get_bytes_for(user, walk.id)
        assert stored == await client.get(f"{prefix}{suffix}{walk.id}")
        assert stored is not None and document_version(stored) == document["version"]
    assert await view.get_bytes_for("openid-stranger", walk.id) is None
    assert await view.get_bytes_for("openid-mother", "not-a-uuid") is None
    assert (await view.list_for("openid-father"))[0] == [his]
    assert (await view.list_for("openid-mother"))[0] == [mine]

    # His own check on his own account, then his photos: his part is done, the rest is hers.
    his_walk = Walk(applications, parent=FATHER, app_id=walk.id, _seq=100)
    await off_loop(executor, his_walk.verify, "father")
    for kind in ("father_id_front", "father_id_back"):
        await off_loop(
            executor,
            lambda kind=kind: applications.upload_document(
                FATHER,
                walk.id,
                kind=kind,
                document_id=sha(kind),
                sha256=sha(kind),
                content_type="image/jpeg",
                size=9,
            ),
        )
    await make_follower(view).catch_up()
    his = await view.get_father(walk.id)
    assert his is not None
    assert [s["code"] for s in his["next_steps"]] == ["await_applicant"]
    assert his["father"] == {"verified": True, "documents": ["father_id_back", "father_id_front"]}

    # Nothing personal in Redis: not the mother's or the newborn's data, not his openid, not the code.
    everything = await dump(client)
    texts = [key for key in everything]
    for value in everything.values():
        texts += [value.decode()] if isinstance(value, bytes) else [m.decode() for m, _ in value]
    leaks = [(t[:60], p) for t in texts for p in (*PERSONAL_TEXTS, "openid-father", code) if p in t]
    assert leaks == []
    his_bytes = everything[f"bc:status:g0:father:{walk.id}"]
    assert isinstance(his_bytes, bytes)
    assert "王*" not in his_bytes.decode()  # not even the mother's masked name in his view

    # A rebuild from zero, in other pages, gives the same bytes, the father's keys included.
    before = await dump(client)
    assert len([k for k in before if ":father:" in k]) == 1
    await view.reset()
    await make_follower(view, page_size=2).catch_up()
    assert await dump(client) == before


async def test_a_fathers_list_pages_through_the_applications_he_joined(
    applications: Applications, executor: ThreadPoolExecutor, view: StatusView, follower: LogFollower
) -> None:
    first = Walk(applications)
    await off_loop(executor, father_joins, first)
    second = await off_loop(executor, second_family, applications)
    await off_loop(executor, father_joins, second)
    await follower.catch_up()
    page, cursor = await view.list_for("openid-father", limit=1)
    assert [item["id"] for item in page] == [str(second.id)] and cursor is not None
    assert cursor.split(":", 1)[1].startswith("father:")
    rest, end = await view.list_for("openid-father", cursor, limit=1)
    assert [item["id"] for item in rest] == [str(first.id)] and end is None
    assert all(item["role"] == "father" for item in page + rest)


# ---------------------------------------------------------------------------------------------- stores


async def test_journey_on_each_store(store_env: dict[str, str], redis_url: str) -> None:
    pool = ThreadPoolExecutor(max_workers=2)
    loop = asyncio.get_running_loop()
    applications = await loop.run_in_executor(pool, lambda: Applications(env=store_env, clock=lambda: NOW))
    r = aioredis.Redis.from_url(redis_url)
    try:
        view = StatusView(r, applications, pool, pseudonym_key=PSEUDONYM_KEY, seal_key=SEAL_KEY)
        follower = LogFollower(applications, view, executor=pool, page_size=7)
        walk = Walk(applications)
        await off_loop(pool, walk.submitted)
        await off_loop(pool, walk.issue)
        last = await off_loop(
            pool, lambda: applications.dispatch(EMS, walk.id, tracking_number="EA123456789CN")
        )
        assert await follower.catch_up() == last.position
        status = await view.get(walk.id)
        assert status is not None
        assert (status["state"], status["certificate_number"], status["tracking_number"]) == (
            "dispatched",
            "X440100001",
            "EA123456789CN",
        )
        assert status["version"] == last.version
    finally:
        await r.aclose()
        await loop.run_in_executor(pool, applications.close)
        pool.shutdown(wait=True)


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_rebuild(
    sqlite_env: dict[str, str],
    redis_url: str,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    applications = Applications(env=sqlite_env, clock=lambda: NOW)
    try:
        walk = Walk(applications)
        walk.submitted()
        Walk(applications, parent=Actor(id="openid-second", role="parent")).start()
        end = applications.recorder.max_notification_id()
    finally:
        applications.close()
    sync = redis.Redis.from_url(redis_url)
    sync.set("bc:status:app:00000000-0000-0000-0000-000000000001", b"stale")

    assert projections_cli(monkeypatch, sqlite_env, tmp_path, "rebuild", "--view", "status") == 0

    out = capsys.readouterr().out
    assert f"rebuilt to position {end}, 2 applications" in out
    # The rebuild went into a new generation, now the live one; the stale key of an old layout is gone.
    assert sync.get("bc:status:app:00000000-0000-0000-0000-000000000001") is None
    live = sync.get("bc:status:live")
    assert isinstance(live, bytes) and live.startswith(b"g") and live != b"g0"
    prefix = f"bc:status:{live.decode()}:"
    document = sync.get(f"{prefix}app:{walk.id}")
    assert isinstance(document, bytes) and b'"state":"submitted"' in document
    # The HTTP layer finds the same user list with the key derived the same way.
    pseudonym_key = derive_pseudonym_key(base64.b64decode(sqlite_env["BIRTHCERT_INDEX_KEY"]))
    digest = hmac.new(pseudonym_key, b"openid-mother", hashlib.sha256).hexdigest()
    assert sync.zrange(f"{prefix}user:{digest}", 0, -1) == [str(walk.id).encode()]
    sync.close()
