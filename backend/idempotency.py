"""``Idempotency-Key`` on commands: a retried request returns the first answer and records nothing twice.

The answer is recorded in the event store, in the command's own transaction (an ``IdempotencyRecord``,
domain/idempotency.py; docs/decisions/0014-idempotency-in-the-store.md): either the command's events and
its answer are stored, or neither. So a retry after a crash, a lost answer, a Redis flush or with Redis
down finds the answer and gets it again — the same status, body, ETag and Location, with
``Idempotent-Replayed: true`` — and two requests with the same key never both commit (the record's id is
created once). Redis plays no part.

The key is scoped to who sent it and to the method and path; the record's id is a keyed digest of that
scope (the index key, decision 0002), so neither the key nor the user id is stored in clear. The request
is fingerprinted (method, path, body): the same key with a different request is a client bug (422). A
command refused with a domain error records nothing: the client may retry it with the same key. In this
process a request whose twin (same key) is running waits for it and gets its answer; only a twin still
running after ``IN_FLIGHT_WAIT_SECONDS`` gives 409 ``idempotency_in_progress``. Twins in two processes
both run, and the store lets one commit: the other replays the first's answer.

The recorded body is sealed (AES-256-GCM, the record id as associated data) under a key derived from the
index key and the scope, which holds the client's Idempotency-Key; the request's digest is keyed the same
way. So a copy of the store, even with its keys, does not give away a secret an answer carries (the
father's invitation code, decision 0011) without the client's key.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from aiohttp import web
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.errors import Conflict, DomainError
from domain.idempotency import IdempotencyRecord
from domain.service import Applications

IN_FLIGHT_WAIT_SECONDS = 10.0
_MAX_KEY_LENGTH = 255
# The headers of an answer that a replay repeats (the rest are the server's own: Date, Cache-Control, …).
KEPT_HEADERS = ("ETag", "Location")
REPLAYED = "Idempotent-Replayed"


class IdempotencyKeyReused(DomainError):
    """The same Idempotency-Key came with a different request."""

    code = "idempotency_key_reused"
    message = "同一个幂等键不能用于不同的请求"
    http_status = 422


class BadIdempotencyKey(DomainError):
    """The header is empty or too long."""

    code = "invalid_idempotency_key"
    message = "Idempotency-Key 请求头无效"
    http_status = 400


def in_progress() -> Conflict:
    """The twin of a request (same key) is still running."""
    return Conflict("相同的请求正在处理，请稍后重试", code="idempotency_in_progress")


@dataclass(frozen=True)
class KeyedRequest:
    """One request under an Idempotency-Key: its record's id, its keyed digest and its sealing key."""

    record_id: UUID
    digest: str
    seal_key: bytes

    @classmethod
    def of(
        cls, request: web.Request, actor_id: str, fingerprint: bytes, service: Applications
    ) -> KeyedRequest | None:
        """The request's key and record, or None when it has no Idempotency-Key (400 when the key is bad)."""
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return None
        if not key.strip() or len(key) > _MAX_KEY_LENGTH:
            raise BadIdempotencyKey()
        scope = f"{actor_id}\n{request.method}\n{request.path}\n{key}"
        digest_key = bytes.fromhex(service.keyed_digest("idempotency-request", scope))
        return cls(
            record_id=service.index_id("idempotency", scope),
            digest=hmac.new(digest_key, fingerprint, hashlib.sha256).hexdigest(),
            seal_key=bytes.fromhex(service.keyed_digest("idempotency-answer", scope)),
        )

    def recorded(self, response: web.Response) -> dict[str, Any]:
        """What the store keeps of ``response``: status, type, the kept headers and the sealed body."""
        body = response.body if isinstance(response.body, bytes) else b""
        nonce = os.urandom(12)
        sealed = nonce + AESGCM(self.seal_key).encrypt(nonce, body, self.record_id.bytes)
        return {
            "status": response.status,
            "content_type": response.content_type,
            "headers": {k: response.headers[k] for k in KEPT_HEADERS if k in response.headers},
            "sealed_body": base64.b64encode(sealed).decode("ascii"),
        }

    def replay(self, record: IdempotencyRecord) -> web.Response:
        """The recorded answer again; 422 when the record is of another request under the same key."""
        if not hmac.compare_digest(record.request_digest, self.digest):
            raise IdempotencyKeyReused()
        answer = record.answer
        sealed = base64.b64decode(answer["sealed_body"])
        body = AESGCM(self.seal_key).decrypt(sealed[:12], sealed[12:], self.record_id.bytes)
        return web.Response(
            body=body,
            status=answer["status"],
            content_type=answer["content_type"],
            headers={**answer["headers"], REPLAYED: "true"},
        )


@dataclass
class Idempotency:
    """The requests under an Idempotency-Key running in this process, by record id."""

    running: dict[UUID, asyncio.Event] = field(default_factory=dict)

    async def run(
        self,
        keyed: KeyedRequest,
        lookup: Callable[[], Awaitable[IdempotencyRecord | None]],
        execute: Callable[[], Awaitable[web.Response]],
    ) -> web.Response:
        """``execute`` (which records its answer with the command) once per key; the recorded answer after."""
        while (twin := self.running.get(keyed.record_id)) is not None:
            try:
                await asyncio.wait_for(twin.wait(), IN_FLIGHT_WAIT_SECONDS)
            except TimeoutError:
                recorded = await lookup()  # committed, and still waiting for its views: its answer stands
                if recorded is None:
                    raise in_progress() from None
                return keyed.replay(recorded)
        done = asyncio.Event()
        self.running[keyed.record_id] = done
        try:
            recorded = await lookup()
            if recorded is not None:
                return keyed.replay(recorded)
            try:
                return await execute()
            except DomainError:
                # Refused: nothing was recorded, unless a twin in another process committed first and this
                # command then lost the race (or found its effect already there): the twin's answer, then.
                recorded = await lookup()
                if recorded is None:
                    raise
                return keyed.replay(recorded)
        finally:
            del self.running[keyed.record_id]
            done.set()
