"""出生一件事's time limit (domain/bundle_clock.py, decision 0049), as rules: each department's part is due at the end of
the N-th working day after the accepted submission (its own N where the deployment gives one), answered on time or
late, open or overdue by the time of reading; the certificate is the review's, never the bundle clock's."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain.bundle import CERTIFICATE, handoffs
from domain.bundle_clock import ServiceClock, clocks, next_due, working_days
from domain.policy import SHANGHAI, WorkingCalendar, get_profile

CALENDAR = WorkingCalendar()
OFFER = get_profile("HE").birth_bundle
assert OFFER is not None
SERVICES = [s.code for s in OFFER.services]
DEPARTMENT_SERVICES = [s for s in SERVICES if s != CERTIFICATE]
starts = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 20), timezones=st.just(SHANGHAI)
)
chosen = st.sets(st.sampled_from(DEPARTMENT_SERVICES), min_size=1)
seconds = st.integers(min_value=0, max_value=30 * 86400)


@given(start=starts, services=chosen)
def test_each_chosen_department_is_due_six_working_days_after_the_submission(
    start: datetime, services: set[str]
) -> None:
    found = clocks(OFFER, {CERTIFICATE, *services}, start, {}, handoffs(), CALENDAR)
    assert [c.service for c in found] == [
        s for s in SERVICES if s in services
    ]  # the certificate: the review's
    for clock in found:
        assert clock.working_days == 6 == OFFER.working_days
        assert clock.due_at == CALENDAR.deadline(start, 6).at
        assert clock.due_at > start and clock.finished_at is None
    assert next_due(found) == CALENDAR.deadline(start, 6).at


@given(start=starts, answered_after=seconds, read_after=seconds, state=st.sampled_from(["done", "refused"]))
def test_an_answer_finishes_the_part_on_time_or_late_and_only_an_open_part_is_overdue(
    start: datetime, answered_after: int, read_after: int, state: str
) -> None:
    answered = start + timedelta(seconds=answered_after)
    parts = {"household_registration": {"state": state, "at": answered.isoformat()}}
    [clock] = clocks(OFFER, ["household_registration"], start, parts, handoffs(), CALENDAR)
    now = start + timedelta(seconds=read_after)
    assert clock.state(now) == ("on_time" if answered <= clock.due_at else "late")  # whenever it is read
    assert next_due([clock]) is None
    still = clocks(
        OFFER,
        ["household_registration"],
        start,
        {"household_registration": {"state": "accepted"}},
        handoffs(),
        CALENDAR,
    )
    assert still[0].state(now) == ("overdue" if now > clock.due_at else "open")


@given(start=starts, days=st.integers(min_value=1, max_value=20))
def test_a_department_of_its_own_limit_counts_its_own_days_from_the_same_start(
    start: datetime, days: int
) -> None:
    own = {
        **handoffs(),
        "social_security_card": dataclasses.replace(handoffs()["social_security_card"], working_days=days),
    }
    assert working_days(OFFER, own["social_security_card"]) == days
    found = {
        c.service: c
        for c in clocks(OFFER, ["social_security_card", "household_registration"], start, {}, own, CALENDAR)
    }
    assert found["social_security_card"].due_at == CALENDAR.deadline(start, days).at
    assert found["household_registration"].due_at == CALENDAR.deadline(start, 6).at
    assert next_due(list(found.values())) == min(c.due_at for c in found.values())


@given(
    start=starts, fewer=st.integers(min_value=1, max_value=10), more=st.integers(min_value=0, max_value=10)
)
def test_more_working_days_never_make_a_deadline_earlier(start: datetime, fewer: int, more: int) -> None:
    assert CALENDAR.deadline(start, fewer).at <= CALENDAR.deadline(start, fewer + more).at


def test_a_part_answered_exactly_at_its_deadline_is_on_time() -> None:
    due = CALENDAR.deadline(datetime(2026, 11, 20, 10, 0, tzinfo=SHANGHAI), 6).at
    clock = ServiceClock("household_registration", "police", 6, due, due)
    assert clock.state(due + timedelta(days=30)) == "on_time"
    assert dataclasses.replace(clock, finished_at=due + timedelta(seconds=1)).state(due) == "late"
