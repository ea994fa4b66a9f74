"""On-site pickup (现场领取) done properly: the institution's pickup hours and the slots a mother can book
(预约取证), the authorisation letter (授权委托书) she signs for someone else to collect, and the face check
of whoever collects, at the counter, against the ID they show.

Pure rules and values; the aggregate's events and commands use them (docs/decisions/0032-…).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Final

from domain.errors import InvalidValue
from domain.policy import SHANGHAI, WorkingCalendar

JSON = dict[str, Any]

# How far ahead a mother may book, in calendar days (today included).
BOOKING_DAYS: Final = 14
# An issuer opens a collector's face check at the counter; the collector has this long to do it, and the
# handover must follow within the same time of the opening (the person is standing at the desk).
COLLECTOR_CHECK_TTL: Final = timedelta(minutes=30)
MAX_WINDOWS: Final = 12
MAX_CAPACITY: Final = 500
WEEKDAY_NAMES: Final = ("", "周一", "周二", "周三", "周四", "周五", "周六", "周日")

_HHMM: Final = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_SPEC: Final = re.compile(
    r"^\s*([1-7](?:-[1-7])?(?:,[1-7](?:-[1-7])?)*)\s+(\d\d:\d\d)-(\d\d:\d\d)\s+(\d+)\s*$"
)

LETTER_TITLE: Final = "办理《出生医学证明》授权委托书"
LETTER_TEXT: Final = (
    "本人系新生儿母亲（委托人），因故不能亲自到签发机构领取新生儿的《出生医学证明》，特委托受托人"
    "凭其本人有效身份证件原件代为领取。受托人领取时须在签发机构现场完成刷脸认证，与所出示的身份证件一致。"
    "本委托书经委托人在小程序中电子签名确认，与纸质委托书具有同等效力，委托人承担相应法律责任。"
)


def _minutes(text: str, field: str) -> int:
    match = _HHMM.match(text)
    if match is None:
        raise InvalidValue(field, "invalid_time_of_day", "时间格式应为 HH:MM（24小时制）")
    return int(match.group(1)) * 60 + int(match.group(2))


@dataclass(frozen=True, slots=True)
class PickupWindow:
    """Hours on some weekdays during which ``capacity`` certificates can be collected by appointment."""

    weekdays: tuple[int, ...]  # ISO weekdays, 1 = Monday … 7 = Sunday
    start: str  # "HH:MM", Beijing time
    end: str
    capacity: int

    def __post_init__(self) -> None:
        if not self.weekdays or any(not 1 <= d <= 7 for d in self.weekdays):
            raise InvalidValue("weekdays", "invalid_weekdays", "星期应为1（周一）到7（周日）")
        if list(self.weekdays) != sorted(set(self.weekdays)):
            raise InvalidValue("weekdays", "invalid_weekdays", "星期不能重复，应从小到大排列")
        if _minutes(self.start, "start") >= _minutes(self.end, "end"):
            raise InvalidValue("end", "invalid_window", "结束时间须晚于开始时间")
        if isinstance(self.capacity, bool) or not 1 <= self.capacity <= MAX_CAPACITY:
            raise InvalidValue("capacity", "invalid_capacity", f"每个时段可预约人数为1到{MAX_CAPACITY}")

    @classmethod
    def parse(cls, spec: str) -> PickupWindow:
        """``"1-5 08:30-11:30 20"``: weekdays (ranges and lists), the hours, the capacity."""
        match = _SPEC.match(spec)
        if match is None:
            raise InvalidValue(
                "window", "invalid_window", "时段格式应为「星期 开始-结束 人数」，如 1-5 08:30-11:30 20"
            )
        days: set[int] = set()
        for part in match.group(1).split(","):
            low, _, high = part.partition("-")
            days.update(range(int(low), int(high or low) + 1))
        return cls(tuple(sorted(days)), match.group(2), match.group(3), int(match.group(4)))

    def to_dict(self) -> JSON:
        """The event's plain form."""
        return {
            "weekdays": list(self.weekdays),
            "start": self.start,
            "end": self.end,
            "capacity": self.capacity,
        }

    @classmethod
    def from_dict(cls, data: JSON) -> PickupWindow:
        """From ``to_dict``."""
        return cls(tuple(data["weekdays"]), data["start"], data["end"], int(data["capacity"]))

    def spec(self) -> str:
        """As ``parse`` reads it (runs of days as ranges: ``1-5,7``)."""
        runs: list[list[int]] = []
        for day in self.weekdays:
            if runs and day == runs[-1][-1] + 1:
                runs[-1].append(day)
            else:
                runs.append([day])
        days = ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
        return f"{days} {self.start}-{self.end} {self.capacity}"

    def label(self) -> str:
        """As a person reads it: 周一至周五 08:30–11:30（每时段20人）."""
        days = self.weekdays
        if len(days) > 2 and list(days) == list(range(days[0], days[-1] + 1)):
            named = f"{WEEKDAY_NAMES[days[0]]}至{WEEKDAY_NAMES[days[-1]]}"
        else:
            named = "、".join(WEEKDAY_NAMES[d] for d in days)
        return f"{named} {self.start}–{self.end}（每时段{self.capacity}人）"


def check_windows(windows: list[PickupWindow]) -> list[PickupWindow]:
    """At most a dozen windows, none overlapping another on a common weekday; sorted."""
    if len(windows) > MAX_WINDOWS:
        raise InvalidValue("windows", "too_many_windows", f"领取时段最多{MAX_WINDOWS}个")
    ordered = sorted(windows, key=lambda w: (w.start, w.weekdays))
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            common = set(a.weekdays) & set(b.weekdays)
            if common and _minutes(b.start, "start") < _minutes(a.end, "end"):
                raise InvalidValue("windows", "overlapping_windows", "同一天的领取时段不能重叠")
    return ordered


@dataclass(frozen=True, slots=True)
class Slot:
    """One bookable window on one day."""

    day: date
    start: str
    end: str
    capacity: int

    @property
    def key(self) -> str:
        """``YYYY-MM-DD HH:MM``: which slot, within an institution."""
        return f"{self.day.isoformat()} {self.start}"

    @property
    def starts_at(self) -> datetime:
        """When the slot begins, Beijing time."""
        return datetime.combine(self.day, time.fromisoformat(self.start), tzinfo=SHANGHAI)

    @property
    def ends_at(self) -> datetime:
        """When the slot ends, Beijing time."""
        return datetime.combine(self.day, time.fromisoformat(self.end), tzinfo=SHANGHAI)

    def label(self) -> str:
        """12月8日（周二）08:30–11:30."""
        return f"{self.day.month}月{self.day.day}日（{WEEKDAY_NAMES[self.day.isoweekday()]}）{self.start}–{self.end}"

    def to_dict(self) -> JSON:
        """The event's (and the answer's) plain form."""
        return {"date": self.day.isoformat(), "start": self.start, "end": self.end}


def _open_windows(windows: list[PickupWindow], day: date, calendar: WorkingCalendar) -> list[PickupWindow]:
    """The windows open on ``day``: only on working days of the official calendar (holidays closed); a
    make-up working weekend day (调休) keeps the hours of a weekday, i.e. every window naming Monday–Friday."""
    if not calendar.is_working_day(day):
        return []
    weekday = day.isoweekday()
    if weekday <= 5:
        return [w for w in windows if weekday in w.weekdays]
    return [w for w in windows if weekday in w.weekdays or any(d <= 5 for d in w.weekdays)]


def bookable_slots(
    windows: list[PickupWindow], now: datetime, calendar: WorkingCalendar, days: int = BOOKING_DAYS
) -> list[Slot]:
    """The slots from ``now`` on (those not started yet), for ``days`` calendar days, in time order."""
    today = now.astimezone(SHANGHAI).date()
    slots = []
    for offset in range(days):
        day = today + timedelta(days=offset)
        for w in _open_windows(windows, day, calendar):
            slot = Slot(day, w.start, w.end, w.capacity)
            if slot.starts_at > now:
                slots.append(slot)
    return sorted(slots, key=lambda s: s.starts_at)


def find_slot(
    windows: list[PickupWindow], day: date, start: str, now: datetime, calendar: WorkingCalendar
) -> Slot:
    """The bookable slot starting at ``start`` on ``day``, or why there is none."""
    _minutes(start, "start")
    for slot in bookable_slots(windows, now, calendar):
        if slot.day == day and slot.start == start:
            return slot
    raise InvalidValue("start", "no_such_slot", "该时段不可预约（不在领取时间内、已开始或超出可预约的日期）")


def slot_ref(slot_key: str, app_id: str) -> str:
    """What a day's index of bookings holds for one booking: the slot's start time and the application."""
    return f"{slot_key.split(' ')[1]}|{app_id}"


def parse_slot_ref(ref: str) -> tuple[str, str]:
    """(start, application id) of ``slot_ref``."""
    start, _, app_id = ref.partition("|")
    return start, app_id


def collector_letter(
    *,
    application_id: str,
    mother: JSON,
    collector_name: str,
    collector_id_number: str,
    newborn_name: str,
    born_at: str,
    institution_name: str,
) -> JSON:
    """The authorisation letter the mother signs, as canonical data (its RFC 8785 hash is what she signs)."""
    return {
        "title": LETTER_TITLE,
        "application_id": application_id,
        "principal": {"name": mother["name"], "id_number": mother["id_number"], "relation": "母亲"},
        "agent": {"name": collector_name, "id_number": collector_id_number},
        "newborn": {"name": newborn_name, "born_at": born_at},
        "institution_name": institution_name,
        "text": LETTER_TEXT,
    }


def who_may_collect(letter_required: bool, agent: str | None) -> list[str]:
    """Who may collect the certificate at the counter, in Chinese, as the handover's rules have it (``agent``:
    the masked name of the collector her letter names, if she signed one)."""
    who = ["新生儿母亲本人"]
    if agent is not None:
        who.append(f"受托人{agent}（母亲已签署授权委托书）")
    if letter_required:
        if agent is None:
            who.append("他人代领（含父亲）须先由母亲在小程序中签署授权委托书")
    else:
        who.append("登记表上的新生儿父亲")
        if agent is None:
            who.append("母亲委托的其他人")
    return who


def what_to_bring(agent: str | None) -> list[str]:
    """What whoever collects brings to the counter: the ID they will be face-checked against; the letter is
    e-signed (LETTER_TEXT), so the counter reads it from the application and nobody prints it."""
    bring = ["领取人本人有效身份证件原件（现场用微信扫码刷脸，与所出示的证件核对）"]
    if agent is not None:
        bring.append("受托人领取：母亲已在小程序中电子签署的授权委托书，签发机构现场查验，无需纸质件")
    return bring
