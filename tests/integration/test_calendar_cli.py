"""``birthcert calendar import|show``, and production refusing to count deadlines on an estimate.

The operator loads a year's 放假/调休 schedule into the data directory; a malformed file is refused with
each problem named, exit status 1, and the schedule already loaded stays as it was. A running service's
calendar counts with a schedule imported after it started. Production refuses to start while the next 60
days reach a year that neither a loaded schedule nor chinesecalendar covers; development warns.
"""

from __future__ import annotations

import json
import logging
import stat
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from backend.app import check_calendar_coverage
from backend.cli import main
from backend.config import PRODUCTION, Config, ConfigError
from backend.working_days import (
    LOOK_EVERY_SECONDS,
    coverage_problems,
    schedule_dir,
    today_in_china,
    working_calendar,
)
from domain.policy import WorkingCalendar
from tests.integration.test_production_config import (
    PRODUCTION_CREDENTIALS,
    ROOT,
    STORAGE_KEYS,
    serve_environ,
    serve_until_it_exits,
)

FIXTURE = ROOT / "tests" / "data" / "calendar" / "fixture-2027.json"
FAR = 2091


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BIRTHCERT_DATA_DIR", str(tmp_path / "var"))
    return tmp_path / "var"


def far_schedule(**change: object) -> dict[str, object]:
    return {
        "year": FAR,
        "source": "test",
        "holidays": [{"name": "国庆节", "from": f"{FAR}-10-01", "to": f"{FAR}-10-07"}],
        "workdays": [],
        **change,
    }


def test_import_loads_the_year_and_show_tells_it(
    data_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["calendar", "import", str(FIXTURE)]) == 0
    out = capsys.readouterr().out
    assert "2027: 7 holidays (27 days off), 1 make-up working days (调休)" in out
    stored = schedule_dir(data_dir) / "2027.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    assert main(["calendar", "show", "2027"]) == 0
    shown = capsys.readouterr().out
    assert "2027: official schedule loaded" in shown
    assert "weekend days worked, 调休 (1): 2027-02-13" in shown
    assert main(["calendar", "show"]) == 0
    assert "2027: official schedule loaded" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (far_schedule(workdays=[f"{FAR}-10-08"]), f"{FAR}-10-08 is a weekday"),
        (far_schedule(year=FAR + 1), f"is outside {FAR + 1}"),
        (
            far_schedule(
                holidays=[
                    *far_schedule()["holidays"],
                    {"name": "中秋", "from": f"{FAR}-10-07", "to": f"{FAR}-10-09"},
                ]
            ),  # type: ignore[list-item]
            "overlap",
        ),
        (far_schedule(workdays=[f"{FAR}-10-13", f"{FAR}-10-13"]), "listed twice"),
        (
            far_schedule(holidays=[{"name": "元旦", "from": f"{FAR - 1}-12-31", "to": f"{FAR}-01-01"}]),
            "outside",
        ),
    ],
    ids=["weekday-make-up-day", "wrong-year", "overlapping", "duplicated", "outside-the-year"],
)
def test_a_malformed_schedule_is_refused_and_nothing_changes(
    data_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, document: object, problem: str
) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(far_schedule()), encoding="utf-8")
    assert main(["calendar", "import", str(good)]) == 0
    stored = schedule_dir(data_dir) / f"{FAR}.json"
    before = stored.read_bytes()
    capsys.readouterr()

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document), encoding="utf-8")
    assert main(["calendar", "import", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "refused; nothing was changed" in err and problem in err
    assert stored.read_bytes() == before
    assert sorted(p.name for p in stored.parent.iterdir()) == [f"{FAR}.json"]  # no stray temporary file


def test_a_file_that_is_not_json_is_refused(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "notice.txt"
    bad.write_text("一、元旦：1月1日放假", encoding="utf-8")
    assert main(["calendar", "import", str(bad)]) == 1
    assert "is not JSON" in capsys.readouterr().err
    assert not schedule_dir(data_dir).exists()


def test_a_running_calendar_counts_with_a_schedule_imported_after_it_started(
    data_dir: Path, tmp_path: Path
) -> None:
    calendar = working_calendar(data_dir)  # as the service holds it
    assert calendar.source_of(FAR) == "statutory"
    assert calendar.is_working_day(date(FAR, 6, 4))  # a Monday
    schedule = tmp_path / "far.json"
    schedule.write_text(
        json.dumps(far_schedule(holidays=[{"name": "测试", "from": f"{FAR}-06-04", "to": f"{FAR}-06-04"}])),
        encoding="utf-8",
    )
    assert main(["calendar", "import", str(schedule)]) == 0
    # Another process's import is seen within LOOK_EVERY_SECONDS (the directory is looked at ≤ once a second).
    deadline = time.monotonic() + 5 * LOOK_EVERY_SECONDS
    while calendar.source_of(FAR) != "official" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert calendar.source_of(FAR) == "official"
    assert not calendar.is_working_day(date(FAR, 6, 4))


# ---------------------------------------------------------------- production refuses an estimate


def test_production_refuses_and_development_warns_when_the_next_60_days_are_estimated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    production = Config.from_env(
        {**STORAGE_KEYS, **PRODUCTION_CREDENTIALS}, data_dir=tmp_path, default_environment=PRODUCTION
    )
    development = Config.from_env({}, data_dir=tmp_path)
    december = date(FAR, 12, 1)
    with pytest.raises(ConfigError) as refused:
        check_calendar_coverage(production, WorkingCalendar(), december)
    message = str(refused.value)
    assert message.startswith("refusing to start in production: the working-day calendar does not cover")
    assert f"  - {FAR}: no official" in message and f"  - {FAR + 1}: no official" in message
    assert "birthcert calendar import FILE" in message
    with caplog.at_level(logging.WARNING, logger="backend.app"):
        check_calendar_coverage(development, WorkingCalendar(), december)
    assert any("does not cover the next 60 days" in r.getMessage() for r in caplog.records)
    # Covered: a loaded schedule for each year, or chinesecalendar's data.
    check_calendar_coverage(production, WorkingCalendar(), date(2026, 6, 1))


async def test_birthcert_serve_refuses_production_until_the_next_year_is_loaded(tmp_path: Path) -> None:
    today = today_in_china()
    if not coverage_problems(WorkingCalendar(), today):
        pytest.skip(f"chinesecalendar covers {today} + 60 days: nothing to refuse today")
    returncode, stdout, stderr = await serve_until_it_exits(
        serve_environ(tmp_path / "var", **PRODUCTION_CREDENTIALS)
    )
    assert returncode == 2, stderr
    assert (
        "refusing to start in production: the working-day calendar does not cover the next 60 days" in stderr
    )
    assert f"to {today + timedelta(days=60)}" in stderr
    assert "listening" not in stdout
