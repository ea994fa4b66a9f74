"""``birthcert calendar import FILE`` and ``birthcert calendar show [YEAR]``: the official 放假/调休 schedules.

The State Council publishes next year's schedule each November; until it is loaded (and chinesecalendar has
no data for the year) review deadlines are estimated from the statutory holidays alone, and production
refuses to start within 60 days of such a year (``backend.working_days``, decision 0017).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from backend.config import data_dir_from_env
from backend.working_days import (
    HORIZON_DAYS,
    ScheduleError,
    coverage_message,
    coverage_problems,
    import_schedule,
    today_in_china,
    working_calendar,
)
from domain.policy import CHINESECALENDAR, OFFICIAL, WorkingCalendar

SOURCE_LABELS = {
    OFFICIAL: "official schedule loaded (按国务院放假安排计算)",
    CHINESECALENDAR: "chinesecalendar's data (按国务院放假安排计算)",
    "statutory": "ESTIMATED: statutory holidays only, no 调休 (未载入调休安排)",
}


def import_file(args: argparse.Namespace) -> int:
    """Check a year's schedule and store it under the data directory; refuse a malformed one."""
    path = Path(args.file)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        print(f"birthcert: cannot read {path}: {error.strerror or error}", file=sys.stderr)
        return 1
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        print(f"birthcert: {path} is not JSON: {error}; nothing was changed", file=sys.stderr)
        return 1
    data_dir = data_dir_from_env()
    try:
        schedule, stored = import_schedule(data_dir, document)
    except ScheduleError as error:
        print(f"birthcert: {path} refused; nothing was changed:", file=sys.stderr)
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    days_off = sum(len(h.days()) for h in schedule.holidays)
    print(
        f"{schedule.year}: {len(schedule.holidays)} holidays ({days_off} days off), "
        f"{len(schedule.workdays)} make-up working days (调休); stored in {stored}"
    )
    print(
        "deadlines counted from now on use it; to recount the deadlines already in the review queue: "
        "birthcert projections rebuild --view queue"
    )
    return 0


def _year_detail(calendar: WorkingCalendar, year: int) -> list[str]:
    source = calendar.source_of(year)
    lines = [f"{year}: {SOURCE_LABELS[source]}"]
    schedule = calendar.schedules().get(year)
    if schedule is not None and schedule.source:
        lines.append(f"  source: {schedule.source}")
    days = [
        date(year, 1, 1) + timedelta(days=i) for i in range((date(year + 1, 1, 1) - date(year, 1, 1)).days)
    ]
    off = [d for d in days if d.weekday() < 5 and not calendar.is_working_day(d)]
    worked = [d for d in days if d.weekday() >= 5 and calendar.is_working_day(d)]
    lines.append(f"  weekdays off ({len(off)}): " + (", ".join(d.isoformat() for d in off) or "none"))
    lines.append(
        f"  weekend days worked, 调休 ({len(worked)}): "
        + (", ".join(d.isoformat() for d in worked) or "none")
    )
    return lines


def show(args: argparse.Namespace) -> int:
    """Which calendar each year uses, and whether the next 60 days are covered."""
    calendar = working_calendar(data_dir_from_env())
    today = today_in_china()
    if args.year is not None:
        print("\n".join(_year_detail(calendar, args.year)))
        return 0
    for year in range(today.year - 1, today.year + 3):
        print(f"{year}: {SOURCE_LABELS[calendar.source_of(year)]}")
    problems = coverage_problems(calendar, today)
    if problems:
        print(coverage_message(problems, today))
    else:
        print(f"the next {HORIZON_DAYS} days (to {today + timedelta(days=HORIZON_DAYS)}) are covered")
    return 0


def register_calendar(subparsers: Any) -> None:
    """Add ``calendar``."""
    calendar = subparsers.add_parser(
        "calendar", help="the official 放假/调休 schedules that working-day deadlines are counted with"
    ).add_subparsers(dest="calendar_command", required=True, metavar="COMMAND")
    i = calendar.add_parser("import", help="check a year's schedule (JSON, see README) and load it")
    i.add_argument(
        "file", help="the year's schedule: {year, source, holidays: [{name, from, to}], workdays: [...]}"
    )
    i.set_defaults(handler=import_file)
    s = calendar.add_parser("show", help="which calendar each year uses; with YEAR, its days off and 调休")
    s.add_argument("year", nargs="?", type=int)
    s.set_defaults(handler=show)
