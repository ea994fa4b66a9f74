"""A verification of an electronic certificate (电子证照校验), recorded for the auditor (decision 0039).

Every ``POST /api/v1/verifications`` — a bank, a school, a police station checking a credential or a paper
certificate's number — is one ``VerificationRecord`` with one event: in the event store, so in the
verifiable audit log (decision 0008) like every other event. It holds what was checked as a digest only
(the SHA-256 the verifier's receipt carries too), never the credential or the name typed; the caller's
address as a keyed hash (``source``), never in clear; the staff verifier's account when one was logged in.
An archive (存档) by a verifier is a ``VerificationRecord`` too, with ``archived`` set.
"""

from __future__ import annotations

from typing import Any, Final
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.errors import Forbidden, InvalidValue
from domain.values import Actor

JSON = dict[str, Any]

# What a verification can answer (the names; decision 0039 says when each is given).
RESULTS: Final = (
    "valid",
    "revoked",
    "superseded",
    "amended",
    "bad_signature",
    "unknown_key",
    "malformed",
    "not_found",
)
KINDS: Final = ("credential", "paper")


class VerificationRecord(Aggregate):
    """One verification: when, by whom (a pseudonymous source or a verifier), what digest, which result."""

    TOPIC = "birthcert:VerificationRecord"

    class Event(Aggregate.Event):
        """Base of the record's events."""

    class VerificationRecorded(Event, Aggregate.Created):
        """``kind`` (credential or paper) with ``digest`` (SHA-256 hex of what was checked) gave ``result``
        for ``licence_id`` (None when no e-licence was found); ``source`` is the keyed hash of the caller's
        address; ``actor`` the logged-in verifier (None for the public); ``archived``: a verifier's 存档."""

        TOPIC = "birthcert:VerificationRecorded"
        kind: str
        digest: str
        result: str
        licence_id: str | None
        source: str
        actor: JSON | None
        archived: bool

    Created = VerificationRecorded

    def __init__(
        self,
        kind: str,
        digest: str,
        result: str,
        licence_id: str | None,
        source: str,
        actor: JSON | None,
        archived: bool,
    ) -> None:
        self.kind = kind
        self.digest = digest
        self.result = result
        self.licence_id = licence_id
        self.source = source
        self.verifier = actor
        self.archived = archived

    @classmethod
    def record(
        cls,
        *,
        id: UUID,
        kind: str,
        digest: str,
        result: str,
        licence_id: str | None,
        source: str,
        actor: Actor | None,
        archived: bool = False,
    ) -> VerificationRecord:
        """Record one verification (or, ``archived``, a verifier's archive of a valid e-licence)."""
        if kind not in KINDS or result not in RESULTS:
            raise InvalidValue("result", "invalid_verification", "校验记录不正确")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise InvalidValue("digest", "invalid_verification", "校验记录不正确")
        if actor is not None and actor.role != "verifier":
            raise Forbidden("只有核验人员以账号核验")
        if archived and (actor is None or result != "valid"):
            raise Forbidden("只有核验人员可以存档有效的电子证照")
        return cls._create(
            cls.VerificationRecorded,
            id=id,
            kind=kind,
            digest=digest,
            result=result,
            licence_id=licence_id,
            source=source,
            actor=None if actor is None else actor.to_dict(),
            archived=archived,
        )


__all__ = ["KINDS", "RESULTS", "VerificationRecord"]
