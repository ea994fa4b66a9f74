"""出生一件事's time limit (办理时限): N working days for the whole bundle, watched per department.

Pure: no I/O, no clock (docs/decisions/0049-bundle-clock.md). Hebei's notice gives the five services one time limit,
6 working days "in all" (seed 004), counted — like the certificate's own review (``review_working_days``, the
issuers' queue's deadline) — from the submission the institution accepted (受理). The certificate is the
institution's part (its review deadline); each department's part runs on the same clock, to the end of the N-th
working day after that submission, unless ``bundle_departments.json`` gives the department a ``working_days`` of
its own (counted from the same start). A department's part is *finished* by its answer ``done`` or ``refused``
(a refusal is an answer within the limit: the family takes it up with the department); ``on_time`` when that
answer came by the deadline, ``late`` after it; unfinished, ``open`` until the deadline passes and ``overdue``
after — which depends on the time of reading, so views store the deadline and compute it when read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from domain.bundle import CERTIFICATE, BundleOffer, Handoff
from domain.policy import WorkingCalendar

ClockState = Literal["on_time", "late", "open", "overdue"]
CLOCK_STATES: Final = ("on_time", "late", "open", "overdue")
CLOCK_LABELS: Final = {"on_time": "按时办结", "late": "超时办结", "open": "办理中", "overdue": "已超时"}
# The answers that finish a department's part (``BundleServiceUpdated.state``).
FINISHING: Final = ("done", "refused")


def working_days(offer: BundleOffer, handoff: Handoff | None) -> int | None:
    """The working days a department has: its own (``bundle_departments.json``), else the bundle's; None: no limit."""
    if handoff is not None and handoff.working_days is not None:
        return handoff.working_days
    return offer.working_days


@dataclass(frozen=True, slots=True)
class ServiceClock:
    """One department's part of one application against the time limit."""

    service: str
    department: str
    working_days: int
    due_at: datetime
    finished_at: datetime | None

    def state(self, now: datetime) -> ClockState:
        """``on_time``/``late`` once answered, else ``open`` or (past the deadline at ``now``) ``overdue``."""
        if self.finished_at is not None:
            return "on_time" if self.finished_at <= self.due_at else "late"
        return "overdue" if now > self.due_at else "open"


def clocks(
    offer: BundleOffer,
    services: Iterable[str],
    start: datetime,
    parts: Mapping[str, Mapping[str, Any]],
    handoffs: Mapping[str, Handoff],
    calendar: WorkingCalendar,
) -> list[ServiceClock]:
    """The clock of each chosen service a department takes over (the certificate is the review's), in the offer's
    order. ``start``: the submission the institution accepted; ``parts``: the application's
    ``bundle_services`` (each department's last state and when it came)."""
    chosen = set(services)
    out: list[ServiceClock] = []
    for service in offer.services:
        handoff = handoffs.get(service.code)
        days = working_days(offer, handoff)
        if service.code == CERTIFICATE or service.code not in chosen or handoff is None or days is None:
            continue
        part = parts.get(service.code) or {}
        finished = part.get("at") if part.get("state") in FINISHING else None
        out.append(
            ServiceClock(
                service=service.code,
                department=handoff.department,
                working_days=days,
                due_at=calendar.deadline(start, days).at,
                finished_at=None if finished is None else datetime.fromisoformat(str(finished)),
            )
        )
    return out


def next_due(found: Iterable[ServiceClock]) -> datetime | None:
    """The earliest deadline among the parts not finished yet (past it, the bundle is overdue), or None when
    every department has answered."""
    due = [c.due_at for c in found if c.finished_at is None]
    return min(due) if due else None


__all__ = [
    "CLOCK_LABELS",
    "CLOCK_STATES",
    "FINISHING",
    "ClockState",
    "ServiceClock",
    "clocks",
    "next_due",
    "working_days",
]
