"""The hospital's side of the rules: the entry limit per province, a dispute answered (upheld or corrected), a
record reported missing and then entered (docs/decisions/0034-hospital-worklist.md)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import uuid4

import pytest
from eventsourcing.domain import Snapshot
from hypothesis import given
from hypothesis import strategies as st

from domain.application import BirthCertificateApplication
from domain.delivery import DeliveryRecord, entry_deadline, latest_birth_on
from domain.errors import InvalidValue, NotFound, RuleViolated
from domain.policy import SHANGHAI, get_profile
from domain.service import Applications
from domain.values import Actor
from tests.builders import (
    BORN,
    GD_HOSPITAL,
    NOW,
    SD_HOSPITAL,
    Walk,
    facts,
    hospital,
    in_memory,
    issuer,
    refused,
)

ADMIN = Actor(id="ops", role="admin")


@pytest.fixture
def app() -> Applications:
    service = in_memory()
    for inst in (GD_HOSPITAL, SD_HOSPITAL):
        service.register_institution(ADMIN, code=inst.code, name=inst.name, province=inst.province)
    return service


def disputed(app: Applications, reason: str = "出生体重应为3350克") -> Walk:
    w = Walk(app)
    w.record_delivery()
    w.start()
    w.verify()
    app.dispute_delivery_info(w.parent, w.id, reason=reason)
    return w


def application(w: Walk) -> BirthCertificateApplication:
    return w.app.get_application(w.parent, w.id)


# ---------------------------------------------------------------- the entry limit


@given(
    province=st.sampled_from(["GD", "SD", "BJ", "HE"]),
    minutes=st.integers(min_value=0, max_value=200 * 60),
)
def test_a_record_is_late_exactly_past_the_provinces_limit_in_hours(province: str, minutes: int) -> None:
    """Guangdong 72 h (3日), Shandong 24 h, counted on the clock; Beijing and Hebei set none."""
    profile = get_profile(province)
    now = BORN + timedelta(minutes=minutes)
    record = DeliveryRecord.record(
        id=uuid4(), actor=hospital(), institution=GD_HOSPITAL, profile=profile, facts=facts(), now=now
    )
    limit = {"GD": 72, "SD": 24}.get(province)
    assert record.entered_late is (limit is not None and minutes > limit * 60)
    due = entry_deadline(profile, BORN)
    assert due == (None if limit is None else BORN + timedelta(hours=limit))


def test_a_birth_day_is_given_the_most_lenient_deadline() -> None:
    """A mother gives the day, not the minute: the limit counts from the end of that day."""
    end = latest_birth_on(date(2026, 11, 18))
    assert end == datetime(2026, 11, 19, 0, 0, tzinfo=SHANGHAI)
    assert entry_deadline(get_profile("SD"), end) == datetime(2026, 11, 20, 0, 0, tzinfo=SHANGHAI)


# ---------------------------------------------------------------- a dispute answered


def test_the_hospital_upholds_a_disputed_record_and_she_can_confirm_it(app: Applications) -> None:
    w = disputed(app)
    assert application(w).dispute_open
    outcome = app.uphold_delivery_record(
        hospital(), w.record_id or "", reason="  经核对，出生体重 3250 克无误 "
    )
    assert isinstance(outcome.aggregate, DeliveryRecord)
    agg = application(w)
    assert not agg.dispute_open and agg.delivery_confirmed is None
    assert agg.dispute_answer is not None
    assert (agg.dispute_answer["outcome"], agg.dispute_answer["reason"]) == (
        "upheld",
        "经核对，出生体重 3250 克无误",
    )
    assert app.get_delivery_record(w.record_id or "").open_dispute is None
    events = [type(e).__name__ for e in app.events.get(w.id)]
    assert events[-1] == "DeliveryRecordUpheld"
    with refused(app, RuleViolated, "no_open_dispute"):
        app.uphold_delivery_record(hospital(), w.record_id or "", reason="再次答复")
    w.confirm()
    assert application(w).delivery_confirmed is True


def test_only_the_records_own_hospital_answers(app: Applications) -> None:
    w = disputed(app)
    with refused(app, NotFound, "not_found"):
        app.uphold_delivery_record(hospital(SD_HOSPITAL), w.record_id or "", reason="维持原记录")
    with refused(app, NotFound, "not_found"):
        app.uphold_delivery_record(issuer(), w.record_id or "", reason="维持原记录")
    with refused(app, InvalidValue, "invalid_text"):
        app.uphold_delivery_record(hospital(), w.record_id or "", reason="无")


def test_nothing_to_answer_once_she_confirmed_or_withdrew(app: Applications) -> None:
    w = disputed(app)
    w.confirm()
    with refused(app, RuleViolated, "no_open_dispute"):
        app.uphold_delivery_record(hospital(), w.record_id or "", reason="维持原记录")
    app.dispute_delivery_info(w.parent, w.id, reason="还是不对")
    app.withdraw(w.parent, w.id)
    with refused(app, RuleViolated, "no_open_dispute"):
        app.uphold_delivery_record(hospital(), w.record_id or "", reason="维持原记录")


def test_a_correction_answers_her_dispute_and_a_new_dispute_opens_again(app: Applications) -> None:
    w = disputed(app)
    app.correct_delivery(
        hospital(), w.record_id or "", facts=facts(weight_g=3350), reason="按产妇异议更正体重"
    )
    agg = application(w)
    assert agg.dispute_answer is not None
    assert (agg.dispute_answer["outcome"], agg.dispute_answer["reason"]) == (
        "corrected",
        "按产妇异议更正体重",
    )
    assert not agg.dispute_open
    app.dispute_delivery_info(w.parent, w.id, reason="身长也不对")
    agg = application(w)
    assert agg.dispute_open and agg.dispute_answer is None


def test_a_snapshot_from_before_the_hospital_side_loads_with_nothing_open(app: Applications) -> None:
    w = disputed(app)
    snapshot = Snapshot.take(application(w))
    state = {
        k: v
        for k, v in snapshot.state.items()
        if k not in ("disputed_at", "dispute_answer", "delivery_awaited")
    }
    old = Snapshot(
        originator_id=snapshot.originator_id,
        originator_version=snapshot.originator_version,
        timestamp=snapshot.timestamp,
        topic=snapshot.topic,
        state=state,
    )
    loaded = old.mutate(None)
    assert isinstance(loaded, BirthCertificateApplication)
    assert (loaded.disputed_at, loaded.dispute_answer, loaded.delivery_awaited) == (None, None, None)
    assert loaded.dispute_open  # what the dispute itself recorded still stands


# ---------------------------------------------------------------- a record reported missing


def verified_without_record(app: Applications) -> Walk:
    w = Walk(app)
    w.start()
    w.verify()
    assert application(w).record is None
    return w


def test_a_missing_record_is_reported_then_entered_and_she_finds_it(app: Applications) -> None:
    w = verified_without_record(app)
    app.report_missing_delivery(w.parent, w.id, institution="gzfy01", born_on=BORN.date())
    awaited = application(w).delivery_awaited
    assert awaited is not None and application(w).awaiting_delivery_record
    assert (awaited["institution"], awaited["born_on"]) == ("GZFY01", "2026-11-18")
    assert awaited["entry_due_at"] == "2026-11-22T00:00:00+08:00"  # end of the 18th + 72 h
    again = app.report_missing_delivery(w.parent, w.id, institution="GZFY01", born_on=BORN.date())
    assert again.position is None  # the same report again records nothing

    entered = w.record_delivery()
    assert application(w).delivery_awaited is None
    told = list(app.events.get(w.id))[-1]
    assert isinstance(told, BirthCertificateApplication.AwaitedDeliveryRecorded)
    assert (told.delivery_record_id, told.entered_late) == (str(entered.id), False)
    app.link_delivery_record(w.parent, w.id)
    assert application(w).delivery_record_id == str(entered.id)


def test_a_report_names_a_known_institution_and_a_plausible_day(app: Applications) -> None:
    w = verified_without_record(app)
    with refused(app, InvalidValue, "unknown_institution"):
        app.report_missing_delivery(w.parent, w.id, institution="NOPE01", born_on=BORN.date())
    with refused(app, InvalidValue, "birth_in_future"):
        app.report_missing_delivery(
            w.parent, w.id, institution="GZFY01", born_on=NOW.date() + timedelta(days=1)
        )
    with refused(app, InvalidValue, "birth_too_long_ago"):
        app.report_missing_delivery(w.parent, w.id, institution="GZFY01", born_on=date(2025, 1, 1))
    with refused(app, NotFound, "not_found"):  # a stranger learns nothing of the application
        app.report_missing_delivery(
            Actor(id="someone", role="parent"), w.id, institution="GZFY01", born_on=BORN.date()
        )


def test_no_report_while_a_record_of_hers_is_there(app: Applications) -> None:
    w = verified_without_record(app)
    w.record_delivery()  # entered after her face check, not linked yet
    with refused(app, RuleViolated, "delivery_record_entered"):
        app.report_missing_delivery(w.parent, w.id, institution="GZFY01", born_on=BORN.date())
    app.link_delivery_record(w.parent, w.id)
    with refused(app, RuleViolated, "already_linked"):
        app.report_missing_delivery(w.parent, w.id, institution="GZFY01", born_on=BORN.date())


def test_a_later_report_replaces_the_first_and_a_withdrawal_ends_it(app: Applications) -> None:
    w = verified_without_record(app)
    app.report_missing_delivery(w.parent, w.id, institution="GZFY01", born_on=BORN.date())
    app.report_missing_delivery(w.parent, w.id, institution="JNPY01", born_on=BORN.date())
    awaited = application(w).delivery_awaited
    assert awaited is not None
    assert (awaited["institution"], awaited["entry_due_at"]) == (
        "JNPY01",
        "2026-11-20T00:00:00+08:00",
    )  # 24 h
    app.withdraw(w.parent, w.id)
    assert not application(w).awaiting_delivery_record
    w.record_delivery()  # nothing to tell a withdrawn application
    assert not isinstance(list(app.events.get(w.id))[-1], BirthCertificateApplication.AwaitedDeliveryRecorded)
