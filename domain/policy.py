"""Province policy: profiles as data, the cases kept at the counter, and working-day deadlines.

What differs between provinces lives in ``data/provinces.json`` (one profile each, with notes on its sources),
so a rule is switched on by data, never by an ``if province == ...`` branch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from importlib.resources import files
from types import MappingProxyType
from typing import Any, Literal, NoReturn, get_args
from zoneinfo import ZoneInfo

import chinese_calendar
import holidays

from domain.bundle import BundleOffer
from domain.errors import InvalidValue
from domain.holiday_schedule import YearSchedule
from domain.values import ID_TYPES, PersonName, Residency

__all__ = [
    "CHINESECALENDAR",
    "OFFICIAL",
    "REASON_MESSAGES",
    "SHANGHAI",
    "STATUTORY",
    "CalendarSource",
    "Circumstances",
    "Deadline",
    "Postage",
    "ProvinceProfile",
    "RequestKind",
    "WorkingCalendar",
    "application_window_error",
    "check_eligibility",
    "check_newborn_surname",
    "get_profile",
    "load_profiles",
    "review_deadline",
]

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")

Postage = Literal["prepaid", "collect_on_delivery", "none"]
RequestKind = Literal["first_issue", "replacement", "reissue"]
Parents = Literal["both", "single_mother", "single_father"]

REASON_MESSAGES: Mapping[str, str] = MappingProxyType(
    {
        "foreign_national": "父母一方为外国籍人士的，暂不支持网上申领，请到签发机构现场办理",
        "taiwan_compatriot": "父母一方为台湾同胞的，暂不支持网上申领，请到签发机构现场办理",
        "both_parents_hk_macao_overseas": (
            "父母双方均为港澳同胞或华侨的，暂不支持网上申领，请到签发机构现场办理"
        ),
        "parent_hk_macao_taiwan_overseas_foreign": (
            "父母一方为港澳台同胞、华侨或外国籍人士的，暂不支持网上申领，请到签发机构现场办理"
        ),
        "born_outside_institution": "在医疗保健机构外出生的，暂不支持网上申领，请到签发机构现场办理",
        "single_father": "单父亲申领暂不支持网上办理，请到签发机构现场办理",
        "single_mother": "本省单母亲申领暂不支持网上办理，请到签发机构现场办理",
        "replacement": "换发出生医学证明暂不支持网上申领，请到签发机构现场办理",
        "reissue": "补发出生医学证明暂不支持网上申领，请到签发机构现场办理",
        "third_surname": (
            "新生儿姓氏与父母双方姓氏均不相同（第三姓氏）的，暂不支持网上申领，请到签发机构现场办理"
        ),
        "face_verification_impossible": "无法通过人脸识别认证的，暂不支持网上申领，请到签发机构现场办理",
        "too_early": "新生儿出生未满规定天数，暂不能网上申领，请到期后再申请",
        "too_late": "已超过出生后可网上申领的期限，请到签发机构现场办理",
        # Referrals of an application under way (domain/referral.py, docs/decisions/0033).
        "modification_limit": "退回修改次数已达上限，不能继续网上申领，请到签发机构现场办理",
        "face_verification_failed": "当日刷脸认证多次未通过，不能继续网上申领，请到签发机构现场办理",
        "face_check_unavailable": "持该证件暂不能网上刷脸认证，请到签发机构现场办理",
        # An issued certificate the institution declared void (domain/revocation.py, docs/decisions/0040).
        "certificate_revoked": "出生医学证明已被签发机构宣布作废，不能继续网上办理，请到签发机构现场咨询办理",
    }
)


@dataclass(frozen=True, slots=True)
class ProvinceProfile:
    """One province's rules for online application; snapshotted into ApplicationStarted."""

    code: str
    name: str
    delivery_entry_hours: int | None
    earliest_application_days_after_birth: int | None
    latest_application_working_days_after_birth: int | None
    review_working_days: int | None
    postage: Postage
    postage_fee_fen: int
    father_handheld_id_allowed: bool
    single_mother_online: bool
    newborn_surname_must_be_parents: bool
    modification_limit: int | None
    population_registry_prefill: bool
    counter_only_cases: tuple[str, ...]
    notes: str
    # Whoever collects on site other than the mother brings her signed 授权委托书 (Beijing, Hebei). Snapshots
    # from before this rule existed read False.
    collector_letter_required: bool = False
    # The identity documents (domain.values.ID_TYPES) a parent's face check may be done with online; a parent
    # holding another (a travel permit) is referred to the counter. Profiles stored before it: resident IDs only.
    face_check_documents: tuple[str, ...] = ("resident_id",)
    # A parent's face checks that may fail in one day (Beijing time) before the application goes to the
    # counter (None: never); only failures that say the face is not this person's count (domain/referral.py).
    face_failures_per_day: int | None = None
    # Working days after printing before the electronic certificate is generated (None or 0: at once). Beijing:
    # "打印成功后的2~3天" (seed 000), counted as the end of the 2nd working day after the day of printing.
    elicense_working_days: int | None = None
    # 新生儿出生“一件事一次办” (domain/bundle.py, docs/decisions/0044): None where the province does not offer
    # it. Snapshots from before it read None.
    birth_bundle: BundleOffer | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``from_dict`` accepts exactly this."""
        return {
            "code": self.code,
            "name": self.name,
            "delivery_entry_hours": self.delivery_entry_hours,
            "earliest_application_days_after_birth": self.earliest_application_days_after_birth,
            "latest_application_working_days_after_birth": self.latest_application_working_days_after_birth,
            "review_working_days": self.review_working_days,
            "postage": self.postage,
            "postage_fee_fen": self.postage_fee_fen,
            "father_handheld_id_allowed": self.father_handheld_id_allowed,
            "single_mother_online": self.single_mother_online,
            "newborn_surname_must_be_parents": self.newborn_surname_must_be_parents,
            "modification_limit": self.modification_limit,
            "population_registry_prefill": self.population_registry_prefill,
            "counter_only_cases": list(self.counter_only_cases),
            "notes": self.notes,
            "collector_letter_required": self.collector_letter_required,
            "face_check_documents": list(self.face_check_documents),
            "face_failures_per_day": self.face_failures_per_day,
            "elicense_working_days": self.elicense_working_days,
            "birth_bundle": None if self.birth_bundle is None else self.birth_bundle.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProvinceProfile:
        """Rebuild a profile from ``to_dict`` output, ignoring keys a later version may have added."""
        reader = _ProfileReader(data)
        postage = reader.text("postage")
        if postage not in get_args(Postage):
            reader.fail("postage")
        cases = data.get("counter_only_cases")
        if not isinstance(cases, list | tuple) or not all(isinstance(c, str) for c in cases):
            reader.fail("counter_only_cases")
        documents = data.get("face_check_documents", ["resident_id"])
        if not isinstance(documents, list | tuple) or not all(d in ID_TYPES for d in documents):
            reader.fail("face_check_documents")
        failures = reader.optional_int("face_failures_per_day")
        if failures is not None and failures < 1:
            reader.fail("face_failures_per_day")
        elicense_days = reader.optional_int("elicense_working_days")
        if elicense_days is not None and not 0 <= elicense_days <= 30:
            reader.fail("elicense_working_days")
        return cls(
            code=reader.text("code"),
            name=reader.text("name"),
            delivery_entry_hours=reader.optional_int("delivery_entry_hours"),
            earliest_application_days_after_birth=reader.optional_int(
                "earliest_application_days_after_birth"
            ),
            latest_application_working_days_after_birth=reader.optional_int(
                "latest_application_working_days_after_birth"
            ),
            review_working_days=reader.optional_int("review_working_days"),
            postage=postage,  # type: ignore[arg-type]  # checked against Postage above
            postage_fee_fen=reader.integer("postage_fee_fen"),
            father_handheld_id_allowed=reader.flag("father_handheld_id_allowed"),
            single_mother_online=reader.flag("single_mother_online"),
            newborn_surname_must_be_parents=reader.flag("newborn_surname_must_be_parents"),
            modification_limit=reader.optional_int("modification_limit"),
            population_registry_prefill=reader.flag("population_registry_prefill"),
            counter_only_cases=tuple(cases),
            notes=reader.text("notes"),
            collector_letter_required=reader.flag("collector_letter_required", default=False),
            face_check_documents=tuple(documents),
            face_failures_per_day=failures,
            elicense_working_days=elicense_days,
            birth_bundle=None
            if data.get("birth_bundle") is None
            else BundleOffer.from_dict(data["birth_bundle"]),
        )


class _ProfileReader:
    """Typed access to a profile dict; a malformed snapshot must fail loudly, not half-load."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def fail(self, key: str) -> NoReturn:
        raise InvalidValue("province", "invalid_profile", f"省份政策配置项 {key} 缺失或格式不正确")

    def text(self, key: str) -> str:
        value = self._data.get(key)
        if not isinstance(value, str):
            self.fail(key)
        return value

    def integer(self, key: str) -> int:
        value = self._data.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key)
        return value

    def optional_int(self, key: str) -> int | None:
        return None if self._data.get(key) is None else self.integer(key)

    def flag(self, key: str, *, default: bool | None = None) -> bool:
        if default is not None and key not in self._data:
            return default
        value = self._data.get(key)
        if not isinstance(value, bool):
            self.fail(key)
        return value


@cache
def load_profiles() -> Mapping[str, ProvinceProfile]:
    """Every shipped province profile, keyed by code (read once)."""
    text = files("domain").joinpath("data", "provinces.json").read_text(encoding="utf-8")
    profiles = {p.code: p for p in map(ProvinceProfile.from_dict, json.loads(text))}
    known = set(_PREDICATES) | {"third_surname"}
    for profile in profiles.values():
        unknown = set(profile.counter_only_cases) - known
        if unknown:
            # A typo here would silently let a counter-only case through online.
            raise ValueError(f"provinces.json: {profile.code} lists unknown cases {sorted(unknown)}")
    return MappingProxyType(profiles)


def get_profile(code: str) -> ProvinceProfile:
    """The profile of one province by its two-letter code (GD, SD, BJ, HE)."""
    profile = load_profiles().get(code.strip().upper() if isinstance(code, str) else "")
    if profile is None:
        raise InvalidValue("province", "unknown_province", "所选省份暂未开通出生医学证明网上申领")
    return profile


@dataclass(frozen=True, slots=True)
class Circumstances:
    """The facts of a request that decide whether it may be made online.

    ``face_verification_failed`` records a parent who tried and could not pass face verification
    (the seeds' 其他特殊无法刷脸认证的情形). ``father_residency`` is ignored for a single mother.
    """

    request_kind: RequestKind
    born_in_institution: bool
    parents: Parents
    mother_residency: Residency
    father_residency: Residency | None
    face_verification_failed: bool = False

    def __post_init__(self) -> None:
        if self.request_kind not in get_args(RequestKind):
            raise InvalidValue("request_kind", "invalid_request_kind", "申领类型不正确")
        if self.parents not in get_args(Parents):
            raise InvalidValue("parents", "invalid_parents", "申领人情形不正确")
        if self.mother_residency not in get_args(Residency):
            raise InvalidValue("mother.residency", "invalid_residency", "母亲身份类别不正确")
        if self.father_residency is not None and self.father_residency not in get_args(Residency):
            raise InvalidValue("father.residency", "invalid_residency", "父亲身份类别不正确")
        if self.parents == "both" and self.father_residency is None:
            raise InvalidValue("father.residency", "father_required", "父母双亲申领须填写父亲身份类别")

    @property
    def residencies(self) -> tuple[Residency, ...]:
        """The residency of each parent who will be on the certificate."""
        if self.parents == "single_mother" or self.father_residency is None:
            return (self.mother_residency,)
        return (self.mother_residency, self.father_residency)


def _foreign_national(c: Circumstances) -> bool:
    return "foreign" in c.residencies


def _taiwan_compatriot(c: Circumstances) -> bool:
    return "taiwan" in c.residencies


def _both_parents_hk_macao_overseas(c: Circumstances) -> bool:
    # No parent holds a mainland ID to verify the face against; a lone HK mother is in the same position.
    return all(r in ("hk_macao", "overseas_chinese") for r in c.residencies)


def _parent_hk_macao_taiwan_overseas_foreign(c: Circumstances) -> bool:
    return any(r != "mainland" for r in c.residencies)


def _born_outside_institution(c: Circumstances) -> bool:
    return not c.born_in_institution


def _single_father(c: Circumstances) -> bool:
    return c.parents == "single_father"


def _single_mother(c: Circumstances) -> bool:
    return c.parents == "single_mother"


def _replacement(c: Circumstances) -> bool:
    return c.request_kind == "replacement"


def _reissue(c: Circumstances) -> bool:
    return c.request_kind == "reissue"


def _face_verification_impossible(c: Circumstances) -> bool:
    return c.face_verification_failed


# third_surname is absent: it needs the names, see check_newborn_surname.
_PREDICATES: Mapping[str, Callable[[Circumstances], bool]] = MappingProxyType(
    {
        "foreign_national": _foreign_national,
        "taiwan_compatriot": _taiwan_compatriot,
        "both_parents_hk_macao_overseas": _both_parents_hk_macao_overseas,
        "parent_hk_macao_taiwan_overseas_foreign": _parent_hk_macao_taiwan_overseas_foreign,
        "born_outside_institution": _born_outside_institution,
        "single_father": _single_father,
        "single_mother": _single_mother,
        "replacement": _replacement,
        "reissue": _reissue,
        "face_verification_impossible": _face_verification_impossible,
    }
)


def check_eligibility(profile: ProvinceProfile, circumstances: Circumstances) -> list[str]:
    """Every reason the profile keeps this request at the counter; empty means it may go online."""
    return [
        code
        for code, applies in _PREDICATES.items()
        if code in profile.counter_only_cases and applies(circumstances)
    ]


def check_newborn_surname(
    profile: ProvinceProfile, newborn: PersonName, mother: PersonName, father: PersonName | None
) -> list[str]:
    """``["third_surname"]`` when the profile requires a parent's surname and the newborn has neither."""
    if not profile.newborn_surname_must_be_parents or "third_surname" not in profile.counter_only_cases:
        return []
    # Only Han-style names have a surname to compare; a transliterated name is left to the issuer's review.
    parents = [p for p in (mother, father) if p is not None and p.is_han]
    if not newborn.is_han or not parents:
        return []
    # A listed compound surname may be a single one plus a given name (单于军 may be 单 + 于军): accept both.
    prefixes = {p.surname for p in parents} | {p.value[0] for p in parents}
    if any(newborn.value.startswith(prefix) and len(newborn.value) > len(prefix) for prefix in prefixes):
        return []
    return ["third_surname"]


CalendarSource = Literal["official", "chinesecalendar", "statutory"]
OFFICIAL: CalendarSource = "official"
CHINESECALENDAR: CalendarSource = "chinesecalendar"
STATUTORY: CalendarSource = "statutory"
Schedules = Callable[[], Mapping[int, YearSchedule]]


@dataclass(frozen=True)
class Deadline:
    """The end of the n-th working day, and which calendar decided it.

    ``source`` is the least certain calendar among the years counted through: ``statutory`` (weekends and
    the statutory holidays the ``holidays`` package computes, without the year's 调休) when any was, else the
    calendar of ``year``, the deadline's year (``official``: a schedule the operator loaded;
    ``chinesecalendar``: that package's data). ``year`` is then the (first) year that was estimated.
    """

    at: datetime
    source: CalendarSource
    year: int


class WorkingCalendar:
    """Chinese working days: the official holidays and make-up days (调休) where known, estimated elsewhere.

    For each year, in order: a schedule loaded by the operator (``schedules``: a mapping, or a callable
    asked once per count so a running service sees a new import), chinesecalendar's data for the years it
    covers (asked at run time), else the statutory holidays computed by ``holidays`` (weekends off, no
    调休), with a warning once per year.
    """

    def __init__(self, schedules: Schedules | Mapping[int, YearSchedule] | None = None) -> None:
        if schedules is None:
            none: Mapping[int, YearSchedule] = MappingProxyType({})
            self._schedules: Schedules = lambda: none
        elif callable(schedules):
            self._schedules = schedules
        else:
            fixed = dict(schedules)
            self._schedules = lambda: fixed
        self._warned_years: set[int] = set()
        self._chinesecalendar_years: dict[int, bool] = {}
        self._statutory: dict[int, tuple[frozenset[date], frozenset[date]]] = {}
        # (the schedules, each day's answer under them), replaced as one: a new import is a new mapping, so the
        # answers are forgotten, and a thread never mixes two imports.
        self._days: tuple[Mapping[int, YearSchedule] | None, dict[date, tuple[bool, CalendarSource]]] = (
            None,
            {},
        )

    def schedules(self) -> Mapping[int, YearSchedule]:
        """The official schedules loaded now, by year."""
        return self._schedules()

    def source_of(self, year: int, schedules: Mapping[int, YearSchedule] | None = None) -> CalendarSource:
        """Which calendar decides the days of ``year``."""
        if year in (self._schedules() if schedules is None else schedules):
            return OFFICIAL
        if self._chinesecalendar_covers(year):
            return CHINESECALENDAR
        return STATUTORY

    def _chinesecalendar_covers(self, year: int) -> bool:
        covered = self._chinesecalendar_years.get(year)
        if covered is None:
            try:
                chinese_calendar.is_workday(date(year, 1, 1))
                chinese_calendar.is_workday(date(year, 12, 31))
                covered = True
            except NotImplementedError:
                covered = False
            self._chinesecalendar_years[year] = covered
        return covered

    def _statutory_days(self, year: int) -> tuple[frozenset[date], frozenset[date]]:
        """(days off, weekend days worked) that ``holidays`` computes for China in ``year``."""
        days = self._statutory.get(year)
        if days is None:
            computed = holidays.country_holidays("CN", years=year)
            worked: set[date] = getattr(computed, "weekend_workdays", set())
            days = (frozenset(computed), frozenset(d for d in worked if d.year == year))
            self._statutory[year] = days
        if year not in self._warned_years:
            self._warned_years.add(year)
            log.warning(
                "no official holiday schedule for %d (none loaded, and chinesecalendar has no data for it): "
                "counting weekends and the statutory holidays only; load the State Council's notice with "
                "`birthcert calendar import FILE`",
                year,
            )
        return days

    def _day(self, day: date, schedules: Mapping[int, YearSchedule]) -> tuple[bool, CalendarSource]:
        under, days = self._days
        if under is not schedules:
            days = {}
            self._days = (schedules, days)
        known = days.get(day)
        if known is None:
            known = days[day] = self._compute_day(day, schedules)
        return known

    def _compute_day(self, day: date, schedules: Mapping[int, YearSchedule]) -> tuple[bool, CalendarSource]:
        source = self.source_of(day.year, schedules)
        if source == OFFICIAL:
            return schedules[day.year].is_working_day(day), source
        if source == CHINESECALENDAR:
            return bool(chinese_calendar.is_workday(day)), source
        off, worked = self._statutory_days(day.year)
        return (day in worked or (day.weekday() < 5 and day not in off)), source

    def is_working_day(self, day: date) -> bool:
        """True if ``day`` is a working day in mainland China."""
        day = day.date() if isinstance(day, datetime) else day
        return self._day(day, self._schedules())[0]

    def deadline(self, start: datetime, n: int) -> Deadline:
        """The end (23:59:59 Asia/Shanghai) of the n-th working day after the day of ``start``, and its source.

        The start day itself never counts, so a start on a holiday counts from the next working day.
        n = 0 gives the end of the start day, or of the next working day if the start day is not one.
        """
        if start.tzinfo is None or start.utcoffset() is None:
            raise InvalidValue("start", "invalid_time", "时间须包含时区")
        if n < 0:
            raise ValueError(f"cannot add a negative number of working days: {n}")
        schedules = self._schedules()
        day = start.astimezone(SHANGHAI).date()
        estimated: list[int] = []

        def working(d: date) -> bool:
            is_working, source = self._day(d, schedules)
            if source == STATUTORY and d.year not in estimated:
                estimated.append(d.year)
            return is_working

        if n == 0:
            while not working(day):
                day += timedelta(days=1)
        counted = 0
        while counted < n:
            day += timedelta(days=1)
            counted += working(day)
        at = datetime.combine(day, time(23, 59, 59), tzinfo=SHANGHAI)
        if estimated:
            return Deadline(at, STATUTORY, estimated[0])
        return Deadline(at, self.source_of(day.year, schedules), day.year)

    def add_working_days(self, start: datetime, n: int) -> datetime:
        """The end (23:59:59 Asia/Shanghai) of the n-th working day after the day of ``start`` (``deadline``)."""
        return self.deadline(start, n).at

    def working_days_between(self, a: date, b: date) -> int:
        """Working days after ``a`` up to and including ``b``; negative when ``b`` is before ``a``."""
        if b < a:
            return -self.working_days_between(b, a)
        schedules = self._schedules()
        return sum(self._day(a + timedelta(days=i), schedules)[0] for i in range(1, (b - a).days + 1))

    def estimated_years(self, first: date, last: date) -> list[int]:
        """The years from ``first`` to ``last`` that neither a loaded schedule nor chinesecalendar covers."""
        schedules = self._schedules()
        return [y for y in range(first.year, last.year + 1) if self.source_of(y, schedules) == STATUTORY]


@cache
def _default_calendar() -> WorkingCalendar:
    return WorkingCalendar()


def review_deadline(
    profile: ProvinceProfile, submitted_at: datetime, calendar: WorkingCalendar | None = None
) -> datetime | None:
    """When the issuer must have decided, or None where the province sets no deadline."""
    if profile.review_working_days is None:
        return None
    return (calendar or _default_calendar()).add_working_days(submitted_at, profile.review_working_days)


def application_window_error(
    profile: ProvinceProfile, born_at: datetime, now: datetime, calendar: WorkingCalendar | None = None
) -> str | None:
    """``too_early`` or ``too_late`` when ``now`` is outside the province's application window, else None."""
    for moment, name in ((born_at, "born_at"), (now, "now")):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise InvalidValue(name, "invalid_time", "时间须包含时区")
    earliest = profile.earliest_application_days_after_birth
    # Counted on the Beijing calendar: 出生一周后 opens on the 7th calendar day after the birth date.
    if earliest is not None:
        born_day = born_at.astimezone(SHANGHAI).date()
        if now.astimezone(SHANGHAI).date() < born_day + timedelta(days=earliest):
            return "too_early"
    latest = profile.latest_application_working_days_after_birth
    if latest is not None and now > (calendar or _default_calendar()).add_working_days(born_at, latest):
        return "too_late"
    return None
