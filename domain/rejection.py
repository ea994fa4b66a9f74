"""Why an issuer sends an application back (驳回): a closed catalogue of reason codes, said alike everywhere.

The issuer picks one or more codes from ``data/rejection_reasons.json`` (the console's picklist shows their
``label``) and may add her own words. The mother reads each code's ``message`` (what is wrong and how to fix
it) above those words; a subscribe message names the codes' labels and never the issuer's words, which may
name a person; managers' statistics count rejections by code (docs/decisions/0045). ``other`` stands for "the
issuer's words say it", so it needs them; a request that names no code at all (the API's first body,
``{reasons, fields}``) is ``other``, and so is every rejection recorded before codes existed.

Pure: no I/O besides reading the catalogue once at import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from types import MappingProxyType
from typing import Final

from domain.errors import InvalidValue

OTHER: Final = "other"
# A label is a subscribe message's ``thing`` (at most 20 characters) and a chart's legend.
LABEL_MAX: Final = 20


@dataclass(frozen=True)
class RejectionReason:
    """One code of the catalogue: the issuer's label, the mother's sentence, the fields it usually concerns."""

    code: str
    label: str
    message: str
    fields: tuple[str, ...]


def _load() -> Mapping[str, RejectionReason]:
    data = json.loads(files("domain").joinpath("data", "rejection_reasons.json").read_text(encoding="utf-8"))
    reasons = {
        code: RejectionReason(code, entry["label"], entry["message"], tuple(entry["fields"]))
        for code, entry in data["reasons"].items()
    }
    too_long = [code for code, r in reasons.items() if not 0 < len(r.label) <= LABEL_MAX or not r.message]
    if too_long or OTHER not in reasons:
        raise ValueError(
            f"rejection_reasons.json: a label of 1–{LABEL_MAX} characters, a message, and 'other'"
        )
    return MappingProxyType(reasons)


REJECTION_REASONS: Final = _load()


def check_reason_codes(codes: object, reasons: Sequence[str]) -> list[str]:
    """The codes an issuer named, checked against the catalogue, each once in the order given.

    ``None`` (a request without codes) is ``[other]``. At least one code; ``other`` only with a free-text
    reason (``reasons``, already cleaned). ``InvalidValue`` otherwise, with a stable code."""
    if codes is None:
        if not reasons:
            raise InvalidValue("reasons", "reasons_required", "请选择驳回原因或填写驳回原因说明")
        codes = [OTHER]
    if not isinstance(codes, list | tuple) or not codes:
        raise InvalidValue("reason_codes", "reason_codes_required", "请选择驳回原因")
    for i, code in enumerate(codes):
        if not isinstance(code, str) or code not in REJECTION_REASONS:
            allowed = "、".join(f"{r.label}（{r.code}）" for r in REJECTION_REASONS.values())
            raise InvalidValue(
                f"reason_codes[{i}]", "unknown_reason_code", f"无法识别的驳回原因：{code}。可选：{allowed}"
            )
    if OTHER in codes and not reasons:
        raise InvalidValue("reasons", "reasons_required", "选择“其他问题”时，请填写驳回原因说明")
    return list(dict.fromkeys(codes))


def label_of(code: str) -> str:
    """A code's label (the code itself for one the catalogue no longer has)."""
    reason = REJECTION_REASONS.get(code)
    return reason.label if reason is not None else code


def message_of(code: str) -> str:
    """What the mother is told for a code (the ``other`` sentence for one the catalogue no longer has)."""
    return (REJECTION_REASONS.get(code) or REJECTION_REASONS[OTHER]).message


def labels_in_a_thing(codes: Sequence[str]) -> str:
    """The codes' labels as one short phrase for a subscribe message: all of them when they fit in a
    ``thing`` (20 characters), else the first one's with how many there are (证件照片不清晰或不完整等3项)."""
    labels = [label_of(code) for code in codes] or [label_of(OTHER)]
    joined = "、".join(labels)
    if len(joined) <= LABEL_MAX or len(labels) == 1:
        return joined
    return f"{labels[0]}等{len(labels)}项"


__all__ = [
    "LABEL_MAX",
    "OTHER",
    "REJECTION_REASONS",
    "RejectionReason",
    "check_reason_codes",
    "label_of",
    "labels_in_a_thing",
    "message_of",
]
