"""Revocation of e-licences: the Token Status List bits, their signed tokens, the verifications' record (0039).

Two halves on the elected leader (decision 0024), both writing under its term (``db.fence``):

- **Following** — a ``View`` for ``LogFollower`` named ``elicense-status``. A ``Reissued`` (after a loss), a
  ``CertificateReplaced`` or a ``CertificateRevoked`` (the issuer's declaration, 0040) voids a certificate
  number: every credential stored for that application and number gets its bit set in
  ``elicense_status_bits`` (reason ``reissued``, ``replaced`` or ``revoked_by_issuer``; an ``ELicenseAmended``
  sets the bit of the version it supersedes, reason ``amended``, 0048; the replacement number,
  or the revocation's ground, sealed and kept for the authenticated verifier). A ``VerificationRecorded`` becomes a row of ``elicense_verifications``,
  what the auditor lists. Rows and position move in one compare-and-set transaction, so a page applied twice
  sets nothing twice; a bit is never unset (the table is append-only).
- **Signing** — ``run()``, a loop (``leadership.lead("elicense-status-signing", …)``) woken after each page
  that set a bit and every ``poll_seconds``: each list whose count of set bits differs from its last token's,
  or whose token is a day old, is signed again (backend.status_list) and stored in ``elicense_status_tokens``.
  A change is thus served within a minute, and every list at least daily.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeVar

from backend.credentials import KeyRing
from backend.status_list import sign_token
from domain.application import BirthCertificateApplication
from domain.revocation import STATUS_REASON
from domain.verification import VerificationRecord
from projections.elicense import AMENDED, STATUS_LIST_SIZE, ElicenseStore, status_uri
from projections.leader_loop import SqlFollowerLoop
from projections.runner import DomainEvent, Page

log = logging.getLogger(__name__)

NAME: Final = "elicense-status"
DAILY_SECONDS: Final = 24 * 3600
POLL_SECONDS: Final = 30.0
T = TypeVar("T")


@dataclass(frozen=True)
class Invalidated:
    """Why a credential's bit is set: ``reissued`` (after a loss) or ``replaced`` (a misprint, damage), and
    the number that replaced it; or ``revoked_by_issuer`` and the revocation's ground (``grounds``:
    ``obtained_by_deception``, …; domain/revocation.py)."""

    licence_id: str
    reason: str
    replaced_by: str | None
    set_at: str
    grounds: str | None = None


@dataclass(frozen=True)
class VerificationRow:
    """A verification as the auditor lists it (digests and hashes only)."""

    id: str
    position: int
    recorded_at: str
    kind: str
    digest: str
    result: str
    licence_id: str | None
    source: str
    verifier: str | None
    institution: str | None
    archived: bool


class ElicenseStatus(SqlFollowerLoop):
    """The status lists: a ``View`` for ``LogFollower``, the signing loop ``run`` and what the routes read."""

    NAME = NAME
    ROUND = "status list signing"

    def __init__(
        self,
        store: ElicenseStore,
        keys: KeyRing,
        executor: Executor,
        *,
        public_url: str,
        clock: Callable[[], datetime],
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        super().__init__(store.db, executor, poll_seconds)
        self.store = store
        self.keys = keys
        self.public_url = public_url.rstrip("/")
        self.clock = clock

    # ------------------------------------------------------------------ View

    async def reset(self) -> None:
        """Bits are never unset: nothing to rebuild in place."""
        raise RuntimeError("the status lists are kept permanently and cannot be rebuilt in place")

    def _page(self, page: Page, start: int, end: int) -> tuple[bool, int]:
        changed = 0
        with self.db.transaction():
            if not self.db.move(NAME, start, end):
                return False, 0
            for position, event in page:
                if position > start:
                    changed += self._take(position, event)
        return True, changed

    def _take(self, position: int, event: DomainEvent) -> int:
        if isinstance(
            event, BirthCertificateApplication.Reissued | BirthCertificateApplication.CertificateReplaced
        ):
            reason = "reissued" if isinstance(event, BirthCertificateApplication.Reissued) else "replaced"
            return self._invalidate(
                position,
                str(event.originator_id),
                event.voided_certificate_number,
                reason,
                event.certificate_number,
            )
        if isinstance(event, BirthCertificateApplication.CertificateRevoked):
            return self._invalidate(
                position,
                str(event.originator_id),
                event.voided_certificate_number,
                STATUS_REASON,
                None,
                grounds=event.reason,
            )
        if isinstance(event, BirthCertificateApplication.ELicenseAmended):
            row = self.db.fetchone(
                "SELECT licence_id, status_list, status_idx FROM elicense_credentials WHERE licence_id = ?",
                (event.amends,),
            )
            return (
                0
                if row is None
                else int(self.store.set_bit(str(row[0]), str(row[1]), int(row[2]), AMENDED, position))
            )
        if isinstance(event, VerificationRecord.VerificationRecorded):
            self._record_verification(position, event)
        return 0

    def _invalidate(
        self,
        position: int,
        application_id: str,
        number: str,
        reason: str,
        replaced_by: str | None,
        *,
        grounds: str | None = None,
    ) -> int:
        rows = self.db.fetchall(
            "SELECT licence_id, status_list, status_idx FROM elicense_credentials "
            "WHERE application_id = ? AND number_digest = ?",
            (application_id, self.store.number_digest(number)),
        )
        changed = 0
        for licence_id, list_id, idx in rows:
            changed += self.store.set_bit(
                licence_id, list_id, idx, reason, position, replaced_by=replaced_by, grounds=grounds
            )
        return changed

    def _record_verification(self, position: int, event: VerificationRecord.VerificationRecorded) -> None:
        actor = event.actor or {}
        self.db.execute(
            "INSERT INTO elicense_verifications (id, position, recorded_at, kind, digest, result, licence_id, "
            "source, verifier, institution, archived) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(event.originator_id),
                position,
                event.timestamp.astimezone(UTC).isoformat(),
                event.kind,
                event.digest,
                event.result,
                event.licence_id,
                event.source,
                actor.get("id"),
                actor.get("institution"),
                int(event.archived),
            ),
        )

    # ------------------------------------------------------------------ signing

    def _round(self) -> int:
        return self.sign_due()

    def sign_due(self) -> int:
        """On the executor: sign every list that changed since its token, or whose token is a day old."""
        now = self.clock().timestamp()
        lists = self.db.fetchall(
            "SELECT s.list_id, COUNT(b.idx), t.bits_set, t.signed_at FROM "
            "(SELECT DISTINCT list_id FROM elicense_status_slots) s "
            "LEFT JOIN elicense_status_bits b ON b.list_id = s.list_id "
            "LEFT JOIN elicense_status_tokens t ON t.list_id = s.list_id "
            "GROUP BY s.list_id, t.bits_set, t.signed_at"
        )
        signed = 0
        for list_id, count, bits_set, signed_at in lists:
            if bits_set is None or int(bits_set) != int(count) or now - float(signed_at) >= DAILY_SECONDS:
                self._sign(str(list_id), now)
                signed += 1
        return signed

    def _signed(self, list_id: str, now: float) -> tuple[str, int]:
        indexes = [
            int(r[0])
            for r in self.db.fetchall("SELECT idx FROM elicense_status_bits WHERE list_id = ?", (list_id,))
        ]
        token = sign_token(
            self.keys.current(), status_uri(self.public_url, list_id), indexes, STATUS_LIST_SIZE, now=int(now)
        )
        return token, len(indexes)

    def _sign(self, list_id: str, now: float) -> None:
        token, count = self._signed(list_id, now)
        with self.db.transaction():
            self.db.check_fence(self.db.fence)
            self.db.execute(
                "INSERT INTO elicense_status_tokens (list_id, token, bits_set, signed_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (list_id) DO UPDATE SET token = excluded.token, bits_set = excluded.bits_set, "
                "signed_at = excluded.signed_at",
                (list_id, token, count, now),
            )
        log.info("status list %s signed (%d set)", list_id, count)

    # ------------------------------------------------------------------ reading

    def token(self, list_id: str) -> str | None:
        """The list's last signed token; a list in use but not yet signed is signed now, not stored (the
        leader stores it at its next round); None: no such list."""
        row = self.db.fetchone("SELECT token FROM elicense_status_tokens WHERE list_id = ?", (list_id,))
        if row is not None:
            return str(row[0])
        if (
            self.db.fetchone("SELECT 1 FROM elicense_status_slots WHERE list_id = ? LIMIT 1", (list_id,))
            is None
        ):
            return None
        return self._signed(list_id, self.clock().timestamp())[0]

    def invalidated(self, licence_id: str) -> Invalidated | None:
        """Why a credential's bit is set (None: it is valid)."""
        row = self.db.fetchone(
            "SELECT licence_id, reason, sealed_replaced_by, set_at, sealed_grounds FROM elicense_status_bits "
            "WHERE licence_id = ?",
            (licence_id,),
        )
        if row is None:
            return None
        replaced_by = None if row[2] is None else self.store.open_text(str(row[2]), licence_id)
        grounds = None if row[4] is None else self.store.open_text(str(row[4]), f"grounds:{licence_id}")
        return Invalidated(str(row[0]), str(row[1]), replaced_by, str(row[3]), grounds)

    def verifications(self, licence_id: str | None = None, limit: int = 100) -> list[VerificationRow]:
        """The verifications recorded, newest first (of one licence, when given)."""
        where, params = ("WHERE licence_id = ? ", (licence_id, limit)) if licence_id else ("", (limit,))
        rows = self.db.fetchall(
            "SELECT id, position, recorded_at, kind, digest, result, licence_id, source, verifier, institution, "
            f"archived FROM elicense_verifications {where}ORDER BY position DESC LIMIT ?",
            params,
        )
        return [
            VerificationRow(
                id=str(r[0]),
                position=int(r[1]),
                recorded_at=str(r[2]),
                kind=str(r[3]),
                digest=str(r[4]),
                result=str(r[5]),
                licence_id=None if r[6] is None else str(r[6]),
                source=str(r[7]),
                verifier=None if r[8] is None else str(r[8]),
                institution=None if r[9] is None else str(r[9]),
                archived=bool(r[10]),
            )
            for r in rows
        ]


__all__ = ["NAME", "ElicenseStatus", "Invalidated", "VerificationRow"]
