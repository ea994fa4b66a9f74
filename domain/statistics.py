"""What a manager (统计管理人员) may see figures of, and how the figures name things (docs/decisions/0043).

A manager's scope is one institution, one district (a county-level GB/T 2260 code, 区/县) or one province
profile. A scope holds another when it is the same, when a province holds the district or institution in it, or
when a district holds an institution in it. Figures carry only codes: institutions', districts', provinces', the
reasons of referrals (domain/data/referrals.json), the reason codes of rejections (domain/data/
rejection_reasons.json, decision 0045), the form's fields a rejection named and their groups (``FIELD_GROUPS``,
the groups the issuers' console shows when rejecting). The issuer's own words in a rejection are free text for the
family (they may name a person): the figures never read them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from stdnum import numdb

from domain.application import FIXABLE_FIELDS
from domain.errors import InvalidValue
from domain.policy import get_profile

ScopeKind = Literal["institution", "district", "province"]
SCOPE_KINDS: Final[tuple[ScopeKind, ...]] = ("institution", "district", "province")
SCOPE_LABELS: Final = {"institution": "机构", "district": "区县", "province": "省"}
_DISTRICT_RE: Final = re.compile(r"^[0-9]{6}$")
_INSTITUTION_RE: Final = re.compile(r"^[A-Z0-9]{4,16}$")

# The groups of the fields a rejection names (as the issuers' console groups them when rejecting).
FIELD_GROUPS: Final = {
    "delivery_newborn": "新生儿及分娩信息",
    "mother": "母亲信息",
    "father": "父亲信息",
    "documents": "证件照片",
    "signature_delivery": "签名及领取方式",
}


def field_group(field: str) -> str:
    """The group of one fixable field (``documents.mother_id_front`` → ``documents``)."""
    if field in ("delivery_record", "newborn_name"):
        return "delivery_newborn"
    head = field.split(".", 1)[0]
    if head in ("mother", "father", "documents"):
        return head
    return "signature_delivery"


_unnamed = [f for f in FIXABLE_FIELDS if field_group(f) not in FIELD_GROUPS]
if _unnamed:  # pragma: no cover - a new fixable field needs its reason group
    raise RuntimeError(f"no field group for: {', '.join(_unnamed)}")


def district_province_name(code: str) -> str | None:
    """The province a county-level GB/T 2260 code lies in, by name (``440104`` → 广东省), or None when the code
    never named a county (stdnum's table of region codes)."""
    found = numdb.get("cn/loc").info(code)
    if not any(props.get("county") for _, props in found):
        return None
    return next((str(props["province"]) for _, props in found if props.get("province")), None)


def check_district(code: str, province: str | None = None) -> str:
    """A county-level code (6 digits that once named a county); in ``province`` (a profile code) when given."""
    value = code.strip() if isinstance(code, str) else ""
    where = district_province_name(value) if _DISTRICT_RE.match(value) else None
    if where is None:
        raise InvalidValue("district", "invalid_district", "区县代码应为6位行政区划代码（如 440104）")
    if province is not None and get_profile(province).name != where:
        raise InvalidValue("district", "district_outside_province", "该区县不在机构所在省份")
    return value


@dataclass(frozen=True, slots=True)
class Scope:
    """What a manager sees: ``kind`` and its ``code`` (an institution's code, a county code, a province code)."""

    kind: ScopeKind
    code: str

    @classmethod
    def parse(cls, text: str) -> Scope:
        """``institution:GZ001``, ``district:440104`` or ``province:GD`` (checked; ``InvalidValue`` otherwise)."""
        kind, _, code = (text or "").strip().partition(":")
        kind = kind.strip().lower()
        code = code.strip().upper()
        if kind == "institution" and _INSTITUTION_RE.match(code):
            return cls("institution", code)
        if kind == "district":
            return cls("district", check_district(code))
        if kind == "province":
            return cls("province", get_profile(code).code)
        raise InvalidValue(
            "scope",
            "invalid_scope",
            "统计范围应为 institution:机构代码、district:6位区县代码 或 province:省份代码（如 province:GD）",
        )

    def __str__(self) -> str:
        return f"{self.kind}:{self.code}"

    def district_province(self) -> str | None:
        """A district's province name (None for other kinds)."""
        return district_province_name(self.code) if self.kind == "district" else None


__all__ = [
    "FIELD_GROUPS",
    "SCOPE_KINDS",
    "SCOPE_LABELS",
    "Scope",
    "ScopeKind",
    "check_district",
    "district_province_name",
    "field_group",
]
