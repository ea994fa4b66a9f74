"""A command's first answer, recorded in the event store in the command's own transaction.

A request sent with an ``Idempotency-Key`` is answered once: the answer is an ``IdempotencyRecord``
saved in the same ``save()`` as the command's events (docs/decisions/0014-idempotency-in-the-store.md).
Either both are stored or neither, so a retry after a crash, a lost answer or a Redis flush finds the
answer and replays it, and two requests with the same key cannot both commit: the record's id is
created once, like an index entry (decision 0002).

The record's id is keyed (``Applications.index_id`` of the scope: who, method, path, key), and what it
holds is what the HTTP side gave it, already sealed: no personal data in its id or topic, and the
answer's body (which may carry a secret, the father's invitation code) opens only with the client's
own key. The domain never looks inside.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

JSON = dict[str, Any]


class IdempotencyRecord(Aggregate):
    """The first answer to a request made under an Idempotency-Key: one event, never changed."""

    TOPIC = "birthcert:IdempotencyRecord"

    class Event(Aggregate.Event):
        """Base of the record's events."""

    class AnswerRecorded(Event, Aggregate.Created):
        """The command committed with this answer: ``request_digest`` identifies the request (a keyed
        digest of its method, path and body); ``answer`` is ``{status, content_type, headers, sealed_body}``."""

        TOPIC = "birthcert:IdempotentAnswerRecorded"
        request_digest: str
        answer: JSON

    Created = AnswerRecorded

    def __init__(self, request_digest: str, answer: JSON) -> None:
        self.request_digest = request_digest
        self.answer = answer

    @classmethod
    def record(cls, record_id: UUID, request_digest: str, answer: JSON) -> IdempotencyRecord:
        """A new record (saved with the command's aggregates)."""
        return cls._create(cls.AnswerRecorded, id=record_id, request_digest=request_digest, answer=answer)


@dataclass(frozen=True)
class IdempotentRequest:
    """A request to answer once: its record's id and digest, and how to turn the command's outcome into
    the answer to record (plain JSON; called just before the save, so it must not do I/O)."""

    record_id: UUID
    request_digest: str
    answer: Callable[[Any], JSON]


__all__ = ["IdempotencyRecord", "IdempotentRequest"]
