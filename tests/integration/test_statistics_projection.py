"""The statistics projection's figures equal a count made directly from the events (decision 0043).

Hypothesis generates event histories of several applications (started, named or linked to an institution,
submitted, rejected and resubmitted, issued, delivered or collected, referred, withdrawn, or left open) at
random times, interleaved in time order as the log holds them, and feeds them to the real SQL view in pages of
random sizes. A small function below counts the same figures from the same events, knowing nothing of the view.
A second pass over a fresh database with other page sizes (a rebuild) gives the same figures. Issued Hebei
applications hand 出生一件事 on to departments that answer (done, refused, a refusal reconsidered) or not, on time or
late against the 6 working days from the last submission (decision 0049); some certificates are declared void.
"""

from __future__ import annotations

import math
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.application import BirthCertificateApplication as App
from domain.policy import SHANGHAI, WorkingCalendar, get_profile
from domain.rejection import REJECTION_REASONS
from domain.staff import InstitutionRecord
from domain.statistics import Scope, field_group
from projections.sql import Database
from projections.statistics import StatisticsView

BASE = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday, 08:00 in Beijing
INSTITUTIONS = {"GZA01": ("GD", "440104"), "GZB02": ("GD", "440106"), "SJZ03": ("HE", "130102")}
FIELDS = ["newborn_name", "father.name", "documents.mother_id_front", "signature", "mother.address"]
REASONS = ["face_failed", "modification_limit", "foreign_national"]
CODES = sorted(REJECTION_REASONS)
ACTOR = {"id": "t", "role": "system", "institution": None, "name": None}
CALENDAR = WorkingCalendar()


def _event(cls: type, app_id: UUID, version: int, at: datetime, **fields: Any) -> Any:
    if cls is App.ApplicationStarted:
        fields["originator_topic"] = App.TOPIC
    return cls(originator_id=app_id, originator_version=version, timestamp=at, actor=ACTOR, **fields)


@st.composite
def history(draw: st.DrawFn, bundled: bool = False) -> list[Any]:
    """One application's events, in order, at increasing times; ``bundled``: a Hebei one issued with 出生一件事."""
    app_id = uuid4()
    at = BASE + timedelta(minutes=draw(st.integers(0, 14 * 24 * 60)))
    version = 0
    events: list[Any] = []

    def add(cls: type, **fields: Any) -> None:
        nonlocal at, version
        version += 1
        events.append(_event(cls, app_id, version, at, **fields))
        at += timedelta(minutes=draw(st.integers(1, 9 * 24 * 60)))

    institution = "SJZ03" if bundled else draw(st.sampled_from(sorted(INSTITUTIONS)))
    province = INSTITUTIONS[institution][0]
    started_in = draw(st.sampled_from([province, "GD"]))
    add(
        App.ApplicationStarted,
        applicant_id="p",
        province=started_in,
        policy=get_profile(started_in).to_dict(),
        circumstances={},
        province_chosen=True,
    )
    if draw(st.booleans()):
        add(App.InstitutionNamed, institution=institution)
    if not bundled and draw(st.booleans()):
        add(App.ReferredToCounter, reason=draw(st.sampled_from(REASONS)), message="", counter=None, bring=[])
        return events
    if started_in != province:
        add(App.ProvinceAdopted, province=province, policy=get_profile(province).to_dict())
    add(App.DeliveryRecordLinked, delivery_record_id="r", institution=institution, record={})
    if not bundled and draw(st.booleans()):
        return events  # a draft, never submitted
    submission = 1
    add(App.Submitted, submission=submission, form_sha256="x")
    for _ in range(draw(st.integers(0, 2))):
        fields = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3))
        codes = draw(st.lists(st.sampled_from(CODES), min_size=1, max_size=3))
        add(App.Rejected, reasons=["请修改"], fields=fields, reason_codes=codes)
        if not bundled and draw(st.integers(0, 5)) == 0:
            add(App.ReferredToCounter, reason="modification_limit", message="", counter=None, bring=[])
            return events
        submission += 1
        add(App.Submitted, submission=submission, form_sha256="x")
    end = (
        "issued"
        if bundled
        else draw(st.sampled_from(["open", "issued", "withdrawn", "referred", "corrected"]))
    )
    if end == "withdrawn":
        add(App.Withdrawn, reason="不办了")
    elif end == "referred":
        add(App.ReferredToCounter, reason=draw(st.sampled_from(REASONS)), message="", counter=None, bring=[])
    elif end == "corrected":
        add(App.DeliveryRecordRefreshed, delivery_record_id="r", record={}, reason="更正体重")
    elif end == "issued":
        add(App.Issued, certificate_number="Q440000001", issuer_name="甲", sealer_name="乙")
        if province == "HE":
            _bundle(draw, add)
        how = draw(st.sampled_from(["none", "ems", "pickup", "revoked"]))
        if how == "ems":
            add(App.Dispatched, tracking_number="EMS1234567890", carrier="EMS")
            add(App.Delivered, tracking_number="EMS1234567890")
        elif how == "revoked":
            add(
                App.CertificateRevoked,
                voided_certificate_number="Q440000001",
                reason="issued_in_error",
                note="x",
                counter=None,
                bring=[],
            )
        elif how == "pickup":
            add(
                App.CollectedOnSite,
                recipient_name="x",
                relation="mother",
                recipient_id_number="x",
                face_check_seq_no=None,
                authorization_sha256=None,
            )
    return events


DEPARTMENTS = {
    "disease_control": "vaccination_certificate",
    "police": "household_registration",
    "medical_insurance": "resident_medical_insurance",
    "social_security": "social_security_card",
}


def _bundle(draw: st.DrawFn, add: Any) -> None:
    """Some departments take the hand-off and answer, or not yet (their answers interleave in time)."""
    for department in draw(st.lists(st.sampled_from(sorted(DEPARTMENTS)), unique=True, max_size=4)):
        common = {
            "service": DEPARTMENTS[department],
            "department": department,
            "message_id": f"m-{department}",
        }
        add(App.BundleServiceUpdated, state="sent", result_id=None, reason=None, result={}, **common)
        for n, state in enumerate(
            draw(st.lists(st.sampled_from(["accepted", "refused", "done"]), max_size=3))
        ):
            reason = "原因" if state == "refused" else None
            add(App.BundleServiceUpdated, state=state, result_id=f"r{n}", reason=reason, result={}, **common)
            if state == "done":
                break


def _institution_events() -> list[Any]:
    events = []
    for code, (province, district) in INSTITUTIONS.items():
        record = uuid4()
        events.append(
            InstitutionRecord.InstitutionRegistered(
                originator_id=record,
                originator_version=1,
                timestamp=BASE - timedelta(days=30),
                originator_topic="birthcert:Institution",
                actor=ACTOR,
                code=code,
                name=f"{code}医院",
                province=province,
            )
        )
        events.append(
            InstitutionRecord.DistrictSet(
                originator_id=record,
                originator_version=2,
                timestamp=BASE - timedelta(days=30),
                actor=ACTOR,
                district=district,
            )
        )
    return events


# ---------------------------------------------------------------------- the count made by hand


def _day(at: datetime) -> str:
    return at.astimezone(SHANGHAI).date().isoformat()


def _rank(values: list[int], p: float) -> int | None:
    values = sorted(values)
    return values[math.ceil(p * len(values)) - 1] if values else None


def count_by_hand(log: list[Any], scope: Scope, now: datetime) -> dict[str, Any]:
    """Per Beijing day: the figures of the applications in ``scope``, walking each application's events."""
    in_scope = {
        "institution": lambda province, inst: inst == scope.code,
        "district": lambda province, inst: INSTITUTIONS.get(inst, ("", ""))[1] == scope.code,
        "province": lambda province, inst: province == scope.code,
    }[scope.kind]
    per_app: dict[UUID, list[Any]] = defaultdict(list)
    for event in log:
        if isinstance(event, App.Event):
            per_app[event.originator_id].append(event)
    days: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    overdue_open = 0
    bundle_overdue: dict[str, int] = defaultdict(int)
    for events in per_app.values():
        start = events[0]
        province, inst = start.province, ""
        days_allowed = get_profile(start.province).review_working_days
        first_submitted = last_submitted = None
        due = None
        handed = False
        sent: dict[str, datetime] = {}  # the departments' open parts: when handed off
        for e in events:
            day = days[_day(e.timestamp)]
            if isinstance(e, App.ProvinceAdopted):
                province, days_allowed = e.province, get_profile(e.province).review_working_days
            if isinstance(e, App.InstitutionNamed | App.DeliveryRecordLinked):
                inst = e.institution
            here = in_scope(province, inst)
            decided = isinstance(e, App.Issued | App.Rejected | App.ReferredToCounter | App.Withdrawn)
            if decided and due is not None and here:
                day["decided"] += 1
                day["decided_late"] += int(e.timestamp > due)
            if decided or isinstance(e, App.DeliveryRecordRefreshed):
                due = None
            if isinstance(e, App.Submitted):
                last_submitted = e.timestamp
                if first_submitted is None:
                    first_submitted = e.timestamp
                    day["submitted"] += here
                else:
                    day["resubmitted"] += here
                due = CALENDAR.deadline(e.timestamp, 5 if days_allowed is None else days_allowed).at
            if not here:
                continue
            if isinstance(e, App.CertificateRevoked):
                day["revoked"] += 1
                sent.clear()
            if isinstance(e, App.BundleServiceUpdated):
                parts = day.setdefault("bundle", defaultdict(lambda: defaultdict(int)))
                bundle_due = CALENDAR.deadline(last_submitted, 6).at  # Hebei: 6 working days in all
                if e.state == "sent":
                    parts[e.department]["sent"] += 1
                    sent[e.department] = e.timestamp
                elif e.state in ("done", "refused"):
                    parts[e.department][e.state] += 1
                    if e.department in sent:
                        parts[e.department]["late" if e.timestamp > bundle_due else "on_time"] += 1
                        seconds = round((e.timestamp - sent.pop(e.department)).total_seconds())
                        parts[e.department].setdefault("turnaround", []).append(seconds)
            if isinstance(e, App.Issued):
                day["issued"] += 1
                day.setdefault("issue", []).append(round((e.timestamp - first_submitted).total_seconds()))
            if isinstance(e, App.Delivered | App.CollectedOnSite) and not handed:
                handed = True
                day["delivered" if isinstance(e, App.Delivered) else "collected"] += 1
                day.setdefault("delivery", []).append(round((e.timestamp - first_submitted).total_seconds()))
            if isinstance(e, App.ReferredToCounter):
                day["referred"] += 1
                day.setdefault("referrals", defaultdict(int))[e.reason] += 1
            if isinstance(e, App.Withdrawn):
                day["withdrawn"] += 1
            if isinstance(e, App.Rejected):
                day["rejected"] += 1
                for name in set(e.fields):
                    day.setdefault("fields", defaultdict(int))[name] += 1
                for group in {field_group(name) for name in e.fields}:
                    day.setdefault("groups", defaultdict(int))[group] += 1
                for code in set(e.reason_codes):
                    day.setdefault("codes", defaultdict(int))[code] += 1
        # Started: on the day of the start, where the application is counted in the end.
        if in_scope(province, inst):
            days[_day(start.timestamp)]["started"] += 1
            overdue_open += int(due is not None and due < now)
            for department in sent:
                bundle_overdue[department] += int(CALENDAR.deadline(last_submitted, 6).at < now)  # type: ignore[arg-type]
    return {
        "days": days,
        "overdue_open": overdue_open,
        "bundle_overdue": {d: n for d, n in bundle_overdue.items() if n},
    }


def _expected_period(day: dict[str, Any]) -> dict[str, Any]:
    names = (
        "started",
        "submitted",
        "resubmitted",
        "issued",
        "delivered",
        "collected",
        "withdrawn",
        "revoked",
    )
    expected = {
        name: day.get(name, 0) for name in (*names, "referred", "rejected", "decided", "decided_late")
    }
    ended = expected["issued"] + expected["referred"]
    expected["online_share"] = None if ended == 0 else round(expected["issued"] / ended, 4)
    expected["referrals_by_reason"] = dict(sorted(day.get("referrals", {}).items()))
    expected["rejections_by_field"] = dict(sorted(day.get("fields", {}).items()))
    expected["rejections_by_reason"] = dict(sorted(day.get("codes", {}).items()))
    expected["rejections_by_field_group"] = dict(sorted(day.get("groups", {}).items()))
    expected["bundle"] = {
        department: {
            **{key: part.get(key, 0) for key in ("sent", "done", "refused", "on_time", "late")},
            "turnaround_seconds": {
                "count": len(part.get("turnaround", [])),
                "median": _rank(part.get("turnaround", []), 0.5),
                "p90": _rank(part.get("turnaround", []), 0.9),
            },
        }
        for department, part in sorted(day.get("bundle", {}).items())
    }
    for kind in ("issue", "delivery"):
        values = day.get(kind, [])
        expected[f"{kind}_seconds"] = {
            "count": len(values),
            "median": _rank(values, 0.5),
            "p90": _rank(values, 0.9),
        }
    return expected


# ---------------------------------------------------------------------- the view


def _project(log: list[Any], pages: list[int]) -> StatisticsView:
    executor = ThreadPoolExecutor(max_workers=1)
    db = Database.open({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": ":memory:"})
    view = StatisticsView(db, executor, calendar=CALENDAR)
    numbered = list(enumerate(log, start=1))
    at, sizes = 0, iter(pages * (len(numbered) + 1))
    while at < len(numbered):
        size = next(sizes)
        page = numbered[at : at + size]
        assert view.apply_now(page, at, page[-1][0])
        at += size
    # The same page again, from where it was read: refused, nothing counted twice.
    assert not view.apply_now(numbered[:1], 0, 1)
    return view


SCOPES = [
    Scope("institution", "GZA01"),
    Scope("district", "440106"),
    Scope("province", "GD"),
    Scope("province", "HE"),
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    histories=st.lists(history(), min_size=1, max_size=12),
    bundled=st.lists(history(bundled=True), max_size=5),
    pages=st.lists(st.integers(1, 7), min_size=1, max_size=4),
    rebuild_pages=st.lists(st.integers(1, 40), min_size=1, max_size=3),
)
def test_the_figures_equal_a_count_made_from_the_events(
    histories: list[list[Any]], bundled: list[list[Any]], pages: list[int], rebuild_pages: list[int]
) -> None:
    everything = [*histories, *bundled]
    log = _institution_events() + sorted((e for h in everything for e in h), key=lambda e: e.timestamp)
    now = BASE + timedelta(days=30)
    first, last = date(2026, 3, 1), date(2026, 5, 31)
    view = _project(log, pages)
    rebuilt = _project(log, rebuild_pages)
    for scope in SCOPES:
        expected = count_by_hand(log, scope, now)
        got = view.figures(scope, first, last, "day", now)
        assert got["overdue_open"] == expected["overdue_open"], scope
        assert got["bundle_overdue_open"] == expected["bundle_overdue"], scope
        for period in got["periods"]:
            want = _expected_period(expected["days"].get(period["period"], {}))
            assert {k: period[k] for k in want} == want, (scope, period["period"])
        again = rebuilt.figures(scope, first, last, "day", now)
        assert {**again, "position": 0} == {**got, "position": 0}
        weekly = view.figures(scope, first, last, "week", now)
        assert weekly["total"] == got["total"]
        assert sum(p["issued"] for p in weekly["periods"]) == got["total"]["issued"]


def test_weeks_start_on_monday_and_a_day_ends_at_midnight_in_beijing() -> None:
    app_id = uuid4()
    # 2026-03-08 16:30 UTC is Monday 2026-03-09 00:30 in Beijing: that Monday's, and a new week's.
    late = datetime(2026, 3, 8, 16, 30, tzinfo=UTC)
    log = [
        *_institution_events(),
        _event(
            App.ApplicationStarted,
            app_id,
            1,
            late,
            applicant_id="p",
            province="GD",
            policy=get_profile("GD").to_dict(),
            circumstances={},
            province_chosen=True,
        ),
        _event(App.InstitutionNamed, app_id, 2, late, institution="GZA01"),
    ]
    view = _project(log, [3])
    scope = Scope("institution", "GZA01")
    days = view.figures(scope, date(2026, 3, 8), date(2026, 3, 9), "day", late)["periods"]
    assert [(p["period"], p["started"]) for p in days] == [("2026-03-08", 0), ("2026-03-09", 1)]
    weeks = view.figures(scope, date(2026, 3, 2), date(2026, 3, 15), "week", late)["periods"]
    assert [(p["period"], p["started"]) for p in weeks] == [("2026-03-02", 0), ("2026-03-09", 1)]


@pytest.mark.parametrize(
    ("outer", "inner", "allowed"),
    [
        ("province:GD", "district:440104", True),
        ("province:GD", "district:130102", False),
        ("province:GD", "institution:GZB02", True),
        ("province:HE", "institution:GZB02", False),
        ("district:440104", "institution:GZA01", True),
        ("district:440104", "institution:GZB02", False),
        ("district:440104", "province:GD", False),
        ("institution:GZA01", "institution:GZB02", False),
        ("institution:GZA01", "institution:GZA01", True),
    ],
)
def test_a_manager_sees_their_scope_and_its_parts_only(outer: str, inner: str, allowed: bool) -> None:
    view = _project(_institution_events(), [2])
    assert view.contains(Scope.parse(outer), Scope.parse(inner)) is allowed
