"""The official 放假/调休 schedule as data, and which calendar each working-day count used.

A schedule that is well formed loads and says the same when written back; every kind of malformed one is
refused with the problem named (Hypothesis builds both). The calendar counts with a loaded schedule first,
chinesecalendar for the years it has, and the statutory holidays alone elsewhere, and each deadline says
which (``Deadline.source``), the least certain when a count crosses into an estimated year.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.working_days import coverage_problems
from domain.holiday_schedule import ScheduleError, parse_schedule
from domain.policy import SHANGHAI, WorkingCalendar

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "calendar" / "fixture-2027.json"
# A year far beyond any published data: chinesecalendar will not have it, nobody loads it.
FAR = 2091


def fixture() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return document


def weekend_days(year: int) -> list[date]:
    first = date(year, 1, 1)
    return [first + timedelta(days=i) for i in range(365) if (first + timedelta(days=i)).weekday() >= 5]


@st.composite
def schedules(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed schedule: disjoint ranges in the year, 调休 on weekend days outside them."""
    year = draw(st.integers(2000, 2200))
    starts = sorted(draw(st.sets(st.integers(0, 330), min_size=1, max_size=7)))
    holidays, taken = [], set()
    for i, start in enumerate(starts):
        limit = (starts[i + 1] - start) if i + 1 < len(starts) else 9
        length = draw(st.integers(1, max(1, min(9, limit))))
        first = date(year, 1, 1) + timedelta(days=start)
        last = first + timedelta(days=length - 1)
        if last.year != year or any(d in taken for d in range(start, start + length)):
            continue
        taken.update(range(start, start + length))
        holidays.append({"name": f"节日{i}", "from": first.isoformat(), "to": last.isoformat()})
    free = [d for d in weekend_days(year) if (d - date(year, 1, 1)).days not in taken and d.year == year]
    workdays = draw(st.lists(st.sampled_from(free), unique=True, max_size=4))
    return {
        "year": year,
        "source": "test",
        "holidays": holidays,
        "workdays": [d.isoformat() for d in workdays],
    }


@given(schedules())
def test_a_well_formed_schedule_loads_and_writes_back_the_same(document: dict[str, Any]) -> None:
    schedule = parse_schedule(document)
    assert parse_schedule(schedule.to_dict()) == schedule
    for workday in schedule.workdays:
        assert schedule.is_working_day(workday)
    for holiday in schedule.holidays:
        assert not any(schedule.is_working_day(d) for d in holiday.days())


def refused(document: object) -> list[str]:
    with pytest.raises(ScheduleError) as error:
        parse_schedule(document)
    return error.value.problems


@given(schedules(), st.data())
def test_a_make_up_day_on_a_weekday_is_refused(document: dict[str, Any], data: st.DataObject) -> None:
    year = document["year"]
    day = data.draw(st.dates(date(year, 1, 1), date(year, 12, 31)).filter(lambda d: d.weekday() < 5))
    document["workdays"] = [*document["workdays"], day.isoformat()]
    assert any(f"{day.isoformat()} is a weekday" in p for p in refused(document))


@given(schedules(), st.data())
def test_a_date_outside_the_year_is_refused(document: dict[str, Any], data: st.DataObject) -> None:
    year = document["year"]
    day = data.draw(st.dates(date(1990, 1, 1), date(2210, 12, 31)).filter(lambda d: d.year != year))
    where = data.draw(st.sampled_from(["workday", "from", "to"]))
    if where == "workday":
        document["workdays"] = [*document["workdays"], day.isoformat()]
    else:
        document["holidays"][0][where] = day.isoformat()
    assert any(f"is outside {year}" in p for p in refused(document))


@given(schedules())
def test_a_date_given_twice_or_overlapping_is_refused(document: dict[str, Any]) -> None:
    first = document["holidays"][0]
    document["holidays"].append({"name": "重复", "from": first["to"], "to": first["to"]})
    assert any("overlap" in p for p in refused(document))


@given(schedules())
def test_a_make_up_day_inside_a_holiday_or_listed_twice_is_refused(document: dict[str, Any]) -> None:
    holiday = parse_schedule(document).holidays[0]
    inside = [d for d in holiday.days() if d.weekday() >= 5]
    if inside:
        problems = refused({**document, "workdays": [*document["workdays"], inside[0].isoformat()]})
        assert any(f"inside the {holiday.name} holiday" in p for p in problems)
    if document["workdays"]:
        twice = {**document, "workdays": [*document["workdays"], document["workdays"][0]]}
        assert any("listed twice" in p for p in refused(twice))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"year": 2026}, "is outside 2026"),  # the wrong year: every date refused
        ({"year": "2027"}, "year: expected a year"),
        ({"year": True}, "year: expected a year"),
        ({"holidays": []}, "a year's schedule lists its days off"),
        (
            {"holidays": [{"name": "元旦", "from": "2027-1-1", "to": "2027-01-01"}]},
            "not a date as YYYY-MM-DD",
        ),
        (
            {"holidays": [{"name": "", "from": "2027-01-01", "to": "2027-01-01"}]},
            "expected the festival's name",
        ),
        (
            {"holidays": [{"name": "春节", "from": "2027-02-11", "to": "2027-02-05"}]},
            "ends (2027-02-05) before",
        ),
        ({"workdays": "2027-02-13"}, "workdays: expected a list"),
        ({"notes": "x"}, "unknown field(s): notes"),
    ],
)
def test_malformed_schedules_are_refused_naming_the_problem(change: dict[str, Any], problem: str) -> None:
    assert any(problem in p for p in refused({**fixture(), **change}))


def test_not_an_object_is_refused() -> None:
    assert refused([1, 2]) == ["expected a JSON object with year, source, holidays and workdays"]


# ---------------------------------------------------------------------------------------------- calendar


def at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 10, tzinfo=SHANGHAI)


def test_each_deadline_says_which_calendar_counted_it() -> None:
    loaded = parse_schedule(fixture())
    calendar = WorkingCalendar({2027: loaded})
    # 2026: chinesecalendar's data (the official notice): 10 Oct 2026 is a make-up Saturday.
    assert calendar.deadline(at(2026, 10, 9), 1).source == "chinesecalendar"
    assert calendar.deadline(at(2026, 10, 9), 1).at.date() == date(2026, 10, 10)
    # Across the new year into the loaded 2027 schedule: 1–3 Jan off.
    crossing = calendar.deadline(at(2026, 12, 30), 2)
    assert (crossing.source, crossing.year, crossing.at.date()) == ("official", 2027, date(2027, 1, 4))
    # The loaded 调休 Saturday counts; the loaded 春节 does not.
    assert calendar.deadline(at(2027, 2, 4), 1).at.date() == date(2027, 2, 12)
    assert calendar.deadline(at(2027, 2, 11), 2).at.date() == date(2027, 2, 13)
    # Without the schedule, 2027 is estimated from the statutory holidays, and the deadline says so.
    estimated = WorkingCalendar().deadline(at(2026, 12, 30), 2)
    assert (estimated.source, estimated.year) == ("statutory", 2027)
    # A loaded schedule wins over chinesecalendar for its year.
    own_2026 = parse_schedule(
        {"year": 2026, "holidays": [{"name": "测试", "from": "2026-06-01", "to": "2026-06-05"}]}
    )
    mine = WorkingCalendar({2026: own_2026}).deadline(at(2026, 5, 29), 1)
    assert (mine.source, mine.at.date()) == ("official", date(2026, 6, 8))


@given(st.dates(date(FAR, 1, 1), date(FAR, 12, 20)), st.integers(0, 5))
def test_statutory_estimate_counts_weekends_and_statutory_holidays_off(start: date, n: int) -> None:
    calendar = WorkingCalendar()
    deadline = calendar.deadline(datetime(start.year, start.month, start.day, 9, tzinfo=SHANGHAI), n)
    assert deadline.source == "statutory"
    assert deadline.at.weekday() < 5  # no 调休 in an estimate: a deadline never lands on a weekend
    assert calendar.is_working_day(deadline.at.date())
    assert not calendar.is_working_day(date(FAR, 10, 1))  # National Day


def test_coverage_of_the_next_60_days() -> None:
    loaded = parse_schedule(fixture())
    assert coverage_problems(WorkingCalendar({2027: loaded}), date(2026, 12, 4)) == []
    assert (
        coverage_problems(WorkingCalendar({2027: loaded}), date(2026, 6, 1)) == []
    )  # chinesecalendar's 2026
    problems = coverage_problems(WorkingCalendar(), date(FAR, 12, 1))
    assert (
        len(problems) == 2 and problems[0].startswith(f"{FAR}: no official") and str(FAR + 1) in problems[1]
    )
