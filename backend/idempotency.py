"""``Idempotency-Key`` on commands: a retried request returns the first answer and records nothing twice.

The key is scoped to who sent it and to the method and path, and the request body is fingerprinted:
the same key with a different body is a client bug (422), and a request still in flight under the
same key gets 409 rather than running twice. Answers are kept 24 hours in Redis under an HMAC of
the scope, so neither the key nor the user id appears there in clear. Command answers carry ids,
versions and hashes, but some carry secrets (a father's invitation code): the kept body is encrypted
(AES-256-GCM, a key derived from the secret with ``derive_aead``, the slot as associated data, so a record copied to
another slot does not open).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis
from aiohttp import web
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.storage import derive_aead
from domain.errors import Conflict, DomainError

KEEP_SECONDS = 24 * 3600
IN_FLIGHT_SECONDS = 120
_MAX_KEY_LENGTH = 255


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


@dataclass(frozen=True)
class Idempotency:
    """The Redis-backed store of first answers."""

    redis: aioredis.Redis
    secret: bytes
    prefix: str = "bc:idem:"

    @functools.cached_property
    def _aead(self) -> AESGCM:
        return derive_aead(self.secret, b"birthcert idempotency answers v1")

    def _seal(self, slot: str, body: bytes) -> str:
        nonce = os.urandom(12)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, body, slot.encode())).decode("ascii")

    def _open(self, slot: str, sealed: str) -> bytes:
        raw = base64.b64decode(sealed)
        return self._aead.decrypt(raw[:12], raw[12:], slot.encode())

    def _slot(self, actor_id: str, request: web.Request, key: str) -> str:
        scope = f"{actor_id}\n{request.method}\n{request.path}\n{key}".encode()
        return self.prefix + hmac.new(self.secret, scope, hashlib.sha256).hexdigest()

    async def run(
        self,
        request: web.Request,
        actor_id: str,
        fingerprint: bytes,
        handler: Callable[[], Awaitable[web.Response]],
    ) -> web.Response:
        """Run ``handler`` once per (actor, method, path, Idempotency-Key); replay its answer after that."""
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return await handler()
        if not key.strip() or len(key) > _MAX_KEY_LENGTH:
            raise BadIdempotencyKey()
        slot = self._slot(actor_id, request, key)
        digest = hashlib.sha256(fingerprint).hexdigest()
        pending = orjson.dumps({"state": "pending", "digest": digest})
        if not await self.redis.set(slot, pending, nx=True, ex=IN_FLIGHT_SECONDS):
            stored = await self.redis.get(slot)
            return self._replay(slot, stored, digest)
        try:
            response = await handler()
        except DomainError as e:
            # A refused command changed nothing: the client may retry it with the same key.
            await self.redis.delete(slot)
            raise e from None
        except BaseException:
            await self.redis.delete(slot)
            raise
        if response.status < 500:
            record = {
                "state": "done",
                "digest": digest,
                "status": response.status,
                "content_type": response.content_type,
                "sealed_body": self._seal(slot, response.body if isinstance(response.body, bytes) else b""),
                "headers": {str(k): v for k, v in response.headers.items() if k in ("ETag", "Location")},
            }
            await self.redis.set(slot, orjson.dumps(record), ex=KEEP_SECONDS)
        else:
            await self.redis.delete(slot)
        return response

    def _replay(self, slot: str, stored: bytes | None, digest: str) -> web.Response:
        if stored is None:  # expired between our SET and GET: treat as in flight, the client retries
            raise Conflict("相同的请求正在处理，请稍后重试", code="idempotency_in_progress")
        record = orjson.loads(stored)
        if record["digest"] != digest:
            raise IdempotencyKeyReused()
        if record["state"] != "done":
            raise Conflict("相同的请求正在处理，请稍后重试", code="idempotency_in_progress")
        headers = {**record["headers"], "Idempotent-Replayed": "true"}
        return web.Response(
            body=self._open(slot, record["sealed_body"]),
            status=record["status"],
            content_type=record["content_type"],
            headers=headers,
        )
