"""Referrals to the counter (转现场办理): why, where to go and what to bring, said alike everywhere.

A referral is what a family is told when its case cannot go (on) online: at the start (a case the province
keeps at the counter), at a step (a parent whose document cannot be face-checked online, a closed application
window), or when the application itself is sent there (``ReferredToCounter``: the modification limit, a
parent's face checks failing again and again in one day). It names the institution's counter — its code and
name, and the address, telephone and opening hours from its ``InstitutionRecord`` (``birthcert institutions
counter``) — and the materials to bring for the reason (``data/referrals.json``: a common list and one per
reason, each with the seed it comes from). Nothing in it is about a person (docs/decisions/0033).

Also here: which failed face checks count towards a referral, and the day they count in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from types import MappingProxyType
from typing import Any, Final

from domain.delivery import Institution
from domain.policy import REASON_MESSAGES, SHANGHAI

JSON = dict[str, Any]

DEFAULT_MESSAGE: Final = "该申请不能继续网上申领，请到签发机构现场办理"
DEFAULT_LABEL: Final = "无法继续网上办理"
# Where to go when no institution is known (she named none at the start and no delivery record is linked).
NO_COUNTER: Final = "请到分娩所在医疗机构的出生医学证明签发窗口现场办理，前往前可先致电该机构确认办公时间。"

# A failed face check counts towards the day's limit (ProvinceProfile.face_failures_per_day) only when the
# verdict says the face is not this person's (WeChat 10004), or gives no reason (our ``face_failed``). A typo
# in the name or number (10003), no face found (10002: light, angle), a cancelled or interrupted check on
# the phone (9xxxx) and WeChat's own pending or permission states are not the person failing.
COUNTED_FACE_FAILURES: Final = frozenset({"face_mismatch", "face_failed"})


@dataclass(frozen=True)
class ReasonMaterials:
    """A referral reason's short label (≤ 20 characters: a WeChat message's ``thing``), what to bring for it
    besides the common list, and the seed that says so."""

    label: str
    bring: tuple[str, ...]
    source: str


def _load() -> tuple[tuple[str, ...], Mapping[str, ReasonMaterials]]:
    data = json.loads(files("domain").joinpath("data", "referrals.json").read_text(encoding="utf-8"))
    reasons = {
        code: ReasonMaterials(entry["label"], tuple(entry["bring"]), entry["source"])
        for code, entry in data["reasons"].items()
    }
    too_long = [code for code, entry in reasons.items() if len(entry.label) > 20]
    if too_long:
        raise ValueError(f"referrals.json: labels longer than 20 characters: {too_long}")
    return tuple(data["common"]["bring"]), MappingProxyType(reasons)


COMMON_BRING, REASONS = _load()


def label_of(reason: str) -> str:
    """The reason in a few words (a subscribe message's ``thing``)."""
    entry = REASONS.get(reason)
    return entry.label if entry is not None else DEFAULT_LABEL


def message_of(reason: str) -> str:
    """What the parent is told about the reason, in a sentence."""
    return REASON_MESSAGES.get(reason, DEFAULT_MESSAGE)


def bring_for(reason: str) -> tuple[str, ...]:
    """The materials to bring to the counter for ``reason``: the common list, then the reason's own."""
    entry = REASONS.get(reason)
    return COMMON_BRING + (entry.bring if entry is not None else ())


def counter_of(institution: Institution | None) -> JSON | None:
    """The institution's counter as a referral names it (None when no institution is known); its address,
    telephone and hours are None until the operator has set them."""
    if institution is None:
        return None
    details = institution.counter
    return {
        "institution_code": institution.code,
        "institution_name": institution.name,
        "address": None if details is None else details.address,
        "phone": None if details is None else details.phone,
        "hours": None if details is None else details.hours,
    }


@dataclass(frozen=True)
class Referral:
    """One referral to the counter, as the parent is told it (status view, problem answer, event)."""

    reason: str
    message: str
    counter: JSON | None
    bring: tuple[str, ...]

    @classmethod
    def to(cls, reason: str, institution: Institution | None, message: str | None = None) -> Referral:
        """The referral for ``reason`` to ``institution``'s counter (``message`` says the case in words)."""
        return cls(reason, message or message_of(reason), counter_of(institution), bring_for(reason))

    @classmethod
    def from_event(cls, reason: str, message: str, counter: JSON | None, bring: Sequence[str]) -> Referral:
        """The referral a ``ReferredToCounter`` recorded; one recorded before it said more (v1: only the
        reason) is told with today's words and materials and no counter."""
        return cls(reason, message or message_of(reason), counter, tuple(bring) or bring_for(reason))

    def where(self) -> str:
        """Where to go, in a sentence: the institution and its counter's address, telephone and hours."""
        counter = self.counter
        if counter is None:
            return NO_COUNTER
        parts = [f"办理地点：{counter['institution_name']}"]
        if counter.get("address"):
            parts.append(f"地址：{counter['address']}")
        if counter.get("phone"):
            parts.append(f"咨询电话：{counter['phone']}")
        if counter.get("hours"):
            parts.append(f"办公时间：{counter['hours']}")
        if len(parts) == 1:
            parts.append("地址、电话和办公时间请向该机构咨询")
        return "；".join(parts) + "。"

    def explanation(self) -> str:
        """The whole referral as one Chinese text: why, where, what to bring."""
        items = "；".join(f"{i}. {item}" for i, item in enumerate(self.bring, start=1))
        return f"{self.message}。{self.where()}请携带：{items}。"

    def to_dict(self) -> JSON:
        """The referral in a status document or a problem answer (no personal data)."""
        return {
            "reason": self.reason,
            "label": label_of(self.reason),
            "message": self.message,
            "counter": None if self.counter is None else dict(self.counter),
            "where": self.where(),
            "bring": list(self.bring),
        }


def tally_face_failure(tally: JSON | None, role: str, code: str, at: datetime) -> JSON | None:
    """The day's count of ``role``'s counted face-check failures after one with ``code`` at ``at``.

    ``tally`` is ``{"day": "YYYY-MM-DD", role: n, …}`` for the day (Beijing time) of the last counted
    failure; a failure on a later day starts a new count. A failure that does not count changes nothing.
    """
    if code not in COUNTED_FACE_FAILURES:
        return tally
    day = at.astimezone(SHANGHAI).date().isoformat()
    counts: JSON = dict(tally) if tally is not None and tally.get("day") == day else {"day": day}
    counts[role] = int(counts.get(role, 0)) + 1
    return counts


def face_failures_exhausted(tally: JSON | None, role: str, limit: int | None) -> bool:
    """Whether ``role`` reached the profile's limit of counted failures in the tally's day."""
    return limit is not None and tally is not None and int(tally.get(role, 0)) >= limit
