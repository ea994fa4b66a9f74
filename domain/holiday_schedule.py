"""A year's official 放假/调休 schedule as data: the State Council's notice, one file a year.

The notice (国务院办公厅关于 YYYY 年部分节假日安排的通知) is published each November for the next year.
It lists, per festival, the days off (放假, ranges that include the weekends they join) and the weekend days
worked instead (调休上班). The operator loads it with ``birthcert calendar import FILE``; the format:

.. code-block:: json

    {
      "year": 2027,
      "source": "国务院办公厅关于2027年部分节假日安排的通知（国办发明电〔2026〕N号）",
      "holidays": [{"name": "元旦", "from": "2027-01-01", "to": "2027-01-03"}],
      "workdays": ["2027-02-07"]
    }

``parse_schedule`` refuses a malformed one with every problem listed (``ScheduleError``): a date outside the
year, a range that ends before it starts or overlaps another, a date given twice, a 调休 working day that is
not a Saturday or Sunday or that falls inside a holiday, an unknown field. No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import pairwise
from typing import Any

__all__ = ["FIELDS", "Holiday", "ScheduleError", "YearSchedule", "parse_schedule"]

FIELDS = frozenset({"year", "source", "holidays", "workdays"})
MIN_YEAR, MAX_YEAR = 2000, 2200


class ScheduleError(ValueError):
    """A schedule that cannot be loaded, with each problem found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Holiday:
    """One festival's days off, ``first`` to ``last`` inclusive."""

    name: str
    first: date
    last: date

    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]


@dataclass(frozen=True)
class YearSchedule:
    """The official days off and make-up working days of one year."""

    year: int
    source: str
    holidays: tuple[Holiday, ...]
    workdays: tuple[date, ...]
    _off: frozenset[date] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_off", frozenset(d for h in self.holidays for d in h.days()))

    def is_working_day(self, day: date) -> bool:
        """A weekday that is no holiday, or a 调休 weekend day."""
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self._off

    def to_dict(self) -> dict[str, Any]:
        """The file format (``parse_schedule(s.to_dict()) == s``)."""
        return {
            "year": self.year,
            "source": self.source,
            "holidays": [
                {"name": h.name, "from": h.first.isoformat(), "to": h.last.isoformat()} for h in self.holidays
            ],
            "workdays": [d.isoformat() for d in self.workdays],
        }


def _date(value: object, where: str, problems: list[str]) -> date | None:
    if not isinstance(value, str):
        problems.append(f"{where}: expected a date as YYYY-MM-DD, got {value!r}")
        return None
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or len(value) != 10:
        problems.append(f"{where}: not a date as YYYY-MM-DD: {value!r}")
        return None
    return parsed


def _list(document: Mapping[str, Any], key: str, problems: list[str]) -> list[Any]:
    value = document.get(key, [])
    if not isinstance(value, list):
        problems.append(f"{key}: expected a list")
        return []
    return value


def parse_schedule(document: object) -> YearSchedule:
    """The schedule ``document`` describes (the JSON above, parsed), or ``ScheduleError`` with every problem."""
    if not isinstance(document, Mapping):
        raise ScheduleError(["expected a JSON object with year, source, holidays and workdays"])
    problems: list[str] = []
    unknown = sorted(set(document) - FIELDS)
    if unknown:
        problems.append(f"unknown field(s): {', '.join(map(str, unknown))}")
    year = document.get("year")
    if not isinstance(year, int) or isinstance(year, bool) or not MIN_YEAR <= year <= MAX_YEAR:
        raise ScheduleError([*problems, f"year: expected a year from {MIN_YEAR} to {MAX_YEAR}, got {year!r}"])
    source = document.get("source", "")
    if not isinstance(source, str):
        problems.append("source: expected text (the notice's title and number)")
        source = ""

    def in_year(day: date, where: str) -> bool:
        if day.year != year:
            problems.append(f"{where}: {day.isoformat()} is outside {year}")
            return False
        return True

    holidays: list[Holiday] = []
    for i, entry in enumerate(_list(document, "holidays", problems)):
        where = f"holidays[{i}]"
        if not isinstance(entry, Mapping) or set(entry) != {"name", "from", "to"}:
            problems.append(f"{where}: expected {{name, from, to}}")
            continue
        name, first, last = entry["name"], entry["from"], entry["to"]
        first_day, last_day = _date(first, f"{where}.from", problems), _date(last, f"{where}.to", problems)
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{where}.name: expected the festival's name")
            continue
        if first_day is None or last_day is None:
            continue
        if not (in_year(first_day, f"{where}.from") & in_year(last_day, f"{where}.to")):
            continue
        if last_day < first_day:
            problems.append(f"{where}: ends ({last}) before it starts ({first})")
            continue
        holidays.append(Holiday(name.strip(), first_day, last_day))
    if not holidays and not any(p.startswith("holidays") for p in problems):
        problems.append("holidays: a year's schedule lists its days off")
    holidays.sort(key=lambda h: h.first)
    for before, after in pairwise(holidays):
        if after.first <= before.last:
            problems.append(
                f"holidays: {before.name} ({before.first}–{before.last}) and {after.name} "
                f"({after.first}–{after.last}) overlap"
            )

    workdays: list[date] = []
    for i, value in enumerate(_list(document, "workdays", problems)):
        where = f"workdays[{i}]"
        day = _date(value, where, problems)
        if day is None or not in_year(day, where):
            continue
        if day in workdays:
            problems.append(f"{where}: {day.isoformat()} is listed twice")
            continue
        if day.weekday() < 5:
            problems.append(
                f"{where}: {day.isoformat()} is a weekday; a 调休 working day is a Saturday or Sunday"
            )
        named = next((h.name for h in holidays if h.first <= day <= h.last), None)
        if named is not None:
            problems.append(f"{where}: {day.isoformat()} is inside the {named} holiday")
        workdays.append(day)
    if problems:
        raise ScheduleError(problems)
    return YearSchedule(year, source.strip(), tuple(holidays), tuple(sorted(workdays)))
