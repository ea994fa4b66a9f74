"""The official 放假/调休 schedules the operator loaded, as files under the data directory, and the check
that the next 60 days are covered (docs/decisions/0017-holiday-schedules.md).

``<data dir>/calendar/<year>.json`` holds one year's schedule in the format of
``domain.holiday_schedule`` (written by ``birthcert calendar import``, 0600 in a 0700 directory, replaced
atomically). ``ScheduleDirectory`` is the ``WorkingCalendar``'s source of schedules: it re-reads the
directory when it changed, so a running service counts with a schedule imported after its start.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Final

from domain.holiday_schedule import ScheduleError, YearSchedule, parse_schedule
from domain.policy import SHANGHAI, WorkingCalendar

log = logging.getLogger(__name__)

HORIZON_DAYS: Final = 60
SUBDIRECTORY: Final = "calendar"
# How often the directory is looked at for a new import (another process's ``calendar import``).
LOOK_EVERY_SECONDS: Final = 1.0


def schedule_dir(data_dir: Path) -> Path:
    return data_dir / SUBDIRECTORY


class ScheduleDirectory:
    """The schedules stored in ``path``, by year; re-read when the directory's contents change (looked at no more
    than once every ``LOOK_EVERY_SECONDS``: another process's import counts within a second)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: int | None = None
        self._loaded: Mapping[int, YearSchedule] = {}
        self._looked_at = -LOOK_EVERY_SECONDS

    def __call__(self) -> Mapping[int, YearSchedule]:
        # Asked per deadline (thousands a second in a catch-up): the directory is looked at at most once a second.
        now = time.monotonic()
        if now - self._looked_at < LOOK_EVERY_SECONDS:
            return self._loaded
        try:
            stamp: int | None = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        with self._lock:
            self._looked_at = now
            if stamp != self._stamp:
                self._loaded = self._read() if stamp is not None else {}
                self._stamp = stamp
            return self._loaded

    def _read(self) -> dict[int, YearSchedule]:
        found: dict[int, YearSchedule] = {}
        for path in sorted(self.path.glob("[0-9][0-9][0-9][0-9].json")):
            try:
                schedule = parse_schedule(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError) as error:  # ScheduleError and JSONDecodeError are ValueErrors
                log.error("ignoring the holiday schedule %s: %s", path, error)
                continue
            if path.stem != str(schedule.year):
                log.error("ignoring the holiday schedule %s: it is the schedule of %d", path, schedule.year)
                continue
            found[schedule.year] = schedule
        return found

    def store(self, schedule: YearSchedule) -> Path:
        """Write ``schedule`` as ``<year>.json`` (replacing that year's, atomically); returns the path."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = self.path / f"{schedule.year}.json"
        temporary = self.path / f".{schedule.year}.json.{os.getpid()}.tmp"
        text = json.dumps(schedule.to_dict(), ensure_ascii=False, indent=2) + "\n"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        self._looked_at = -LOOK_EVERY_SECONDS  # this process sees its own import at once
        return target


def working_calendar(data_dir: Path) -> WorkingCalendar:
    """The deployment's calendar: the schedules under ``data_dir``, then chinesecalendar, then statutory."""
    return WorkingCalendar(ScheduleDirectory(schedule_dir(data_dir)))


def import_schedule(data_dir: Path, document: object) -> tuple[YearSchedule, Path]:
    """Check ``document`` and store it; ``ScheduleError`` (nothing written) when it is malformed."""
    schedule = parse_schedule(document)
    return schedule, ScheduleDirectory(schedule_dir(data_dir)).store(schedule)


def today_in_china() -> date:
    return datetime.now(SHANGHAI).date()


def coverage_problems(calendar: WorkingCalendar, today: date, days: int = HORIZON_DAYS) -> list[str]:
    """One line per year of the next ``days`` days that only the statutory estimate covers (empty: covered)."""
    last = today + timedelta(days=days)
    return [
        f"{year}: no official 放假/调休 schedule loaded and chinesecalendar has no data for it; review "
        "deadlines would be estimated from the statutory holidays alone"
        for year in calendar.estimated_years(today, last)
    ]


def coverage_message(problems: list[str], today: date, days: int = HORIZON_DAYS) -> str:
    """What to tell the operator when ``coverage_problems`` found some."""
    return (
        f"the working-day calendar does not cover the next {days} days (to {today + timedelta(days=days)}):\n"
        + "".join(f"  - {problem}\n" for problem in problems)
        + "load the State Council's notice for that year: birthcert calendar import FILE (README: Working days)"
    )


__all__ = [
    "HORIZON_DAYS",
    "ScheduleDirectory",
    "ScheduleError",
    "coverage_message",
    "coverage_problems",
    "import_schedule",
    "schedule_dir",
    "today_in_china",
    "working_calendar",
]
