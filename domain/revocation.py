"""An issuing institution's revocation of a certificate it issued (宣布作废): the grounds and what the family is told.

A certificate obtained by deception (以欺骗等不正当手段取得: a false parentage, a stolen identity — what the face
checks exist to stop), issued in error, or voided by a court is declared void by the institution that issued it,
after its own review (docs/decisions/0040-issuer-revocation.md). The aggregate records it as ``CertificateRevoked``:
the number, one ground from a closed set, the issuer's note, and the counter the family is sent to. Nothing
follows online: the e-licence's bit is set with reason ``revoked_by_issuer``, and whatever comes next (a
certificate issued anew, an objection) happens at the counter, which is named as a referral names it.

Pure: no I/O. The note is the issuer's account and may name people; only the institution's issuers and auditors
read it (the event log, encrypted at rest). What the family, the status view, the outbox and verifiers get is
the ground's label and the counter, never the note.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from domain.delivery import Institution
from domain.errors import InvalidValue
from domain.referral import Referral

JSON = dict[str, Any]

# The grounds an issuer may name, and how the family and a verifier read them.
REVOCATION_REASONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "obtained_by_deception": "以欺骗等不正当手段取得",
        "issued_in_error": "签发机构工作差错，依规不应签发",
        "court_order": "依人民法院生效法律文书",
    }
)
# The referral reason (data/referrals.json) whose materials the family is told to bring.
REFERRAL_REASON: Final = "certificate_revoked"
# What a verifier (and the status list's bit) is told the credential's invalidity comes from.
STATUS_REASON: Final = "revoked_by_issuer"
NOTE_LOW: Final = 2
NOTE_HIGH: Final = 500
REMEDY: Final = "如对作废决定有异议，可依法申请行政复议或者提起行政诉讼。"


def check_reason(reason: object) -> str:
    """One of ``REVOCATION_REASONS``, else ``InvalidValue`` (``invalid_reason``) listing them."""
    if not isinstance(reason, str) or reason not in REVOCATION_REASONS:
        allowed = "、".join(f"{label}（{code}）" for code, label in REVOCATION_REASONS.items())
        raise InvalidValue("reason", "invalid_reason", f"作废原因只能是：{allowed}")
    return reason


def label_of(reason: str) -> str:
    """The ground in words (a verifier's ``reason_label``, a subscribe message's ``thing``)."""
    return REVOCATION_REASONS.get(reason, "签发机构宣布作废")


def message_of(reason: str, certificate_number: str) -> str:
    """What the family is told, in a sentence or two."""
    return (
        f"您的《出生医学证明》（编号 {certificate_number}）经签发机构审核，已宣布作废（{label_of(reason)}），"
        f"原证件及其电子证照不得再使用。{REMEDY}"
    )


def referral_for(reason: str, certificate_number: str, institution: Institution | None) -> Referral:
    """Where the family goes now and what to bring: the institution's counter, as a referral names it."""
    return Referral.to(REFERRAL_REASON, institution, message_of(reason, certificate_number))


def told(revocation: JSON) -> JSON:
    """A revocation as the family reads it (status view): the number, the ground, the message, the counter and
    the materials, when; never the issuer's note."""
    referral = Referral.from_event(
        REFERRAL_REASON,
        message_of(revocation["reason"], revocation["certificate_number"]),
        revocation.get("counter"),
        revocation.get("bring") or (),
    ).to_dict()
    return {
        "certificate_number": revocation["certificate_number"],
        "reason": revocation["reason"],
        "reason_label": label_of(revocation["reason"]),
        "message": referral["message"],
        "counter": referral["counter"],
        "where": referral["where"],
        "bring": referral["bring"],
        "at": revocation["at"],
    }


__all__ = [
    "NOTE_HIGH",
    "NOTE_LOW",
    "REFERRAL_REASON",
    "REVOCATION_REASONS",
    "STATUS_REASON",
    "check_reason",
    "label_of",
    "message_of",
    "referral_for",
    "told",
]
