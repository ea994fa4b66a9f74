"""Verifying and revoking e-licences (decision 0039).

- ``GET /api/v1/status-lists/{list_id}``: public, the Token Status List token (``application/statuslist+jwt``),
  cacheable for its ``ttl``.
- ``POST /api/v1/verifications``: public, rate-limited per address, no login. A credential, or a paper
  certificate's number with the newborn's name and birth date → ``valid``, ``revoked``, ``superseded``, ``amended``,
  ``bad_signature``, ``unknown_key``, ``malformed`` or ``not_found``, and a signed receipt. A ``verifier``
  (a department's staff account) also gets why and the replacement number, or the ground of an issuer's
  revocation (decision 0040). Each is recorded
  (``VerificationRecord``) before the answer: a digest of what was checked, the address as a keyed hash.
- ``POST /api/v1/verifications/archive``: a verifier's 存档 of a valid e-licence: recorded, and the full
  credential with its disclosed items returned.
- ``GET /api/v1/audit/verifications``: the auditor's list of verifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

from aiohttp import web

from backend.addresses import client_source
from backend.components import (
    APPLICATIONS,
    CONFIG,
    FOLLOWERS,
    LEADERSHIP,
    STORE_EXECUTOR,
    actor_of,
    follow_on_leader,
    in_store,
    json_response,
    query_limit,
)
from backend.credentials import CredentialError, KeyRing, sign_jwt, verify_sd_jwt
from backend.errors import json_body
from backend.openapi import PROBLEM as _PROBLEM
from backend.routes.elicense import open_elicense
from backend.status_list import MEDIA_TYPE, TTL_SECONDS
from backend.throttle import limit_client
from domain.errors import Conflict, DomainError, FieldError, NotFound, ValidationFailed
from domain.revocation import REVOCATION_REASONS, STATUS_REASON
from domain.revocation import label_of as grounds_label
from domain.values import Actor
from projections.elicense import AMENDED, ElicenseStore, StoredCredential
from projections.elicense_status import ElicenseStatus, Invalidated
from projections.runner import LogFollower

routes = web.RouteTableDef()

ELICENSE_STATUS = web.AppKey("elicense_status", ElicenseStatus)
VERIFICATION_FOLLOWER = web.AppKey("verification_follower", LogFollower)
RECEIPT_TYP: Final = "verification-receipt+jwt"
MAX_CREDENTIAL: Final = 16_000
_LIST_ID: Final = re.compile(r"^[1-9][0-9]{0,8}$")
_NUMBER: Final = re.compile(r"^[A-Z0-9]{6,20}$")
SOURCE_HKDF: Final = b"birthcert verification source v1"
RESULT_LABELS: Final = {
    "valid": "有效",
    "revoked": "已作废",
    "superseded": "已被换发的新证取代",
    "amended": "已更新为新版本的电子证照取代",
    "bad_signature": "签名无效（内容被改动或非本系统签发）",
    "unknown_key": "签发密钥未知",
    "malformed": "格式不正确",
    "not_found": "未找到相符的电子证照",
}
REASON_LABELS: Final = {
    "reissued": "遗失后补发",
    "replaced": "因错证、损坏换发",
    AMENDED: "户口登记后电子证照已更新版本",
    STATUS_REASON: "签发机构宣布作废",
}


async def verification_ctx(app: web.Application) -> AsyncIterator[None]:
    """The status lists on their own connection; followed and signed on the leader only (decision 0024)."""
    loop = asyncio.get_running_loop()
    config, executor = app[CONFIG], app[STORE_EXECUTOR]
    store, keys = await loop.run_in_executor(executor, open_elicense, config)
    store.db.fence = app[LEADERSHIP]
    status = ElicenseStatus(
        store,
        keys,
        executor,
        public_url=config.public_url,
        clock=app[APPLICATIONS].clock,
        poll_seconds=min(30.0, float(config.elicense_poll_seconds)),
    )
    follower = LogFollower(app[APPLICATIONS], status, executor=executor, name="elicense-status")
    app[ELICENSE_STATUS], app[VERIFICATION_FOLLOWER] = status, follower
    follow_on_leader(app, follower)
    app[LEADERSHIP].lead("elicense-status-signing", status.run, status.stop)
    yield
    await app[LEADERSHIP].close()
    with contextlib.suppress(ValueError):
        app[FOLLOWERS].remove(follower)
    await loop.run_in_executor(executor, store.db.close)


# ---------------------------------------------------------------- the status list


@routes.get("/api/v1/status-lists/{list_id}")
async def status_list(request: web.Request) -> web.Response:
    """Public: a Token Status List token, cacheable for its ttl."""
    list_id = request.match_info["list_id"]
    if not _LIST_ID.match(list_id):
        raise NotFound("没有这个状态列表", code="status_list_not_found")
    token = await in_store(request, request.app[ELICENSE_STATUS].token, list_id)
    if token is None:
        raise NotFound("没有这个状态列表", code="status_list_not_found")
    return web.Response(
        text=token,
        content_type=MEDIA_TYPE,
        headers={"Cache-Control": f"public, max-age={TTL_SECONDS}"},
    )


# ---------------------------------------------------------------- verifying


@dataclass(frozen=True)
class Asked:
    """What a verifier asked about: a credential, or a paper certificate's three items."""

    kind: str
    credential: str | None = None
    certificate_number: str | None = None
    newborn_name: str | None = None
    birth_date: str | None = None

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of what was checked: the receipt's and the record's, never the data itself."""
        if self.credential is not None:
            return hashlib.sha256(self.credential.encode()).hexdigest()
        items = [self.certificate_number, self.newborn_name, self.birth_date]
        return hashlib.sha256(
            json.dumps(items, ensure_ascii=False, separators=(",", ":")).encode()
        ).hexdigest()


def _name(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def asked_of(body: dict[str, Any]) -> Asked:
    """The request's question, or ``ValidationFailed`` (422) naming every field at fault."""
    if "credential" in body:
        credential = body["credential"]
        if not isinstance(credential, str) or not credential.strip():
            raise ValidationFailed([FieldError("credential", "invalid_type", "电子证照应为文字")])
        if len(credential) > MAX_CREDENTIAL:
            raise ValidationFailed([FieldError("credential", "too_long", "电子证照过长")])
        return Asked("credential", credential=credential.strip())
    errors: list[FieldError] = []
    texts: dict[str, str] = {}
    for key in ("certificate_number", "newborn_name", "birth_date"):
        value = body.get(key)
        if not isinstance(value, str) or not value.strip():
            errors.append(
                FieldError(key, "required", "请填写电子证照或出生医学证明编号、新生儿姓名和出生日期")
            )
        else:
            texts[key] = value.strip()
    number = texts.get("certificate_number", "").upper()
    if "certificate_number" in texts and not _NUMBER.match(number):
        errors.append(
            FieldError("certificate_number", "invalid_certificate_number", "出生医学证明编号格式不正确")
        )
    if "newborn_name" in texts and not 1 <= len(_name(texts["newborn_name"])) <= 30:
        errors.append(FieldError("newborn_name", "invalid_name", "姓名为1到30个字"))
    if "birth_date" in texts:
        try:
            date.fromisoformat(texts["birth_date"])
        except ValueError:
            errors.append(FieldError("birth_date", "invalid_date", "日期格式应为 YYYY-MM-DD"))
    if errors:
        raise ValidationFailed(errors)
    return Asked(
        "paper",
        certificate_number=number,
        newborn_name=_name(texts["newborn_name"]),
        birth_date=texts["birth_date"],
    )


@dataclass(frozen=True)
class Found:
    """The answer before it is recorded."""

    result: str
    licence_id: str | None = None
    stored: StoredCredential | None = None
    invalidated: Invalidated | None = None


def _result_of(invalidated: Invalidated | None) -> str:
    """``revoked`` after a loss (whoever holds the lost paper is not its holder) or an issuer's revocation (0040),
    ``superseded`` after a replacement for the institution's own error, ``amended`` when a newer version of the
    same e-licence took its place (the police's registration added, 0048; the paper certificate stands)."""
    if invalidated is None:
        return "valid"
    if invalidated.reason == AMENDED:
        return "amended"
    return "superseded" if invalidated.reason == "replaced" else "revoked"


def _why(invalidated: Invalidated | None) -> dict[str, Any]:
    """What a verifier is told of why: the reason, in words, and the replacement or the revocation's ground."""
    if invalidated is None:
        return {
            "reason": None,
            "reason_label": None,
            "replaced_by": None,
            "grounds": None,
            "grounds_label": None,
        }
    grounds = invalidated.grounds
    label = REASON_LABELS.get(invalidated.reason)
    return {
        "reason": invalidated.reason,
        "reason_label": f"{label}：{grounds_label(grounds)}" if label and grounds else label,
        "replaced_by": invalidated.replaced_by,
        "grounds": grounds,
        "grounds_label": None if grounds is None else grounds_label(grounds),
    }


def find(store: ElicenseStore, keys: KeyRing, status: ElicenseStatus, asked: Asked) -> Found:
    """On the store executor: what the credential or the paper certificate is now."""
    jwks = keys.jwks()
    if asked.credential is not None:
        try:
            verified = verify_sd_jwt(asked.credential, jwks)
        except CredentialError as error:
            return Found(error.code)
        licence_id = str(verified.claims.get("licence_id") or "")
        stored = store.credential(licence_id)
        if stored is None:  # signed by us, yet never stored: nothing we stand behind
            return Found("not_found")
        invalidated = status.invalidated(licence_id)
        return Found(_result_of(invalidated), licence_id, stored, invalidated)
    for stored in reversed(store.credentials_of_number(str(asked.certificate_number))):
        disclosed = verify_sd_jwt(stored.credential, jwks).disclosed
        born = str(disclosed.get("born_at") or "")[:10]
        if _name(str(disclosed.get("newborn_name") or "")) == asked.newborn_name and born == asked.birth_date:
            invalidated = status.invalidated(stored.licence_id)
            return Found(_result_of(invalidated), stored.licence_id, stored, invalidated)
    return Found("not_found")  # no hint whether the number, the name or the date did not match


def source_of(request: web.Request) -> str:
    """The caller's address as a keyed hash (HMAC-SHA256 under a key derived from the index key)."""
    key = hmac.new(request.app[CONFIG].index_key, SOURCE_HKDF, hashlib.sha256).digest()
    return hmac.new(key, client_source(request).encode(), hashlib.sha256).hexdigest()


def _verifier(request: web.Request) -> Actor | None:
    """The logged-in verifier, or None: any other caller (with a token or not) is the public."""
    if not request.headers.get("Authorization"):
        return None
    try:
        actor = actor_of(request)
    except DomainError:
        return None
    return actor if actor.role == "verifier" else None


def receipt(keys: KeyRing, public_url: str, record_id: str, asked: Asked, result: str, now: datetime) -> str:
    """The signed receipt the verifier keeps: when, what (its digest), the result; ES256 with the e-licence key."""
    claims = {
        "iss": public_url.rstrip("/"),
        "iat": int(now.timestamp()),
        "jti": record_id,
        "checked": {"kind": asked.kind, "sha256": asked.digest},
        "result": result,
    }
    return sign_jwt(keys.current(), RECEIPT_TYP, claims)


async def _verify(request: web.Request, *, archive: bool) -> web.Response:
    await limit_client(request, "verification")
    verifier = _verifier(request)
    if archive and verifier is None:
        actor_of(request, "verifier")  # 401 without a token, 403 for any other role
    body = await json_body(request)
    asked = asked_of(body)
    app = request.app
    store, keys, status = app[ELICENSE_STATUS].store, app[ELICENSE_STATUS].keys, app[ELICENSE_STATUS]
    found = await in_store(request, find, store, keys, status, asked)
    if archive and found.result != "valid":
        raise Conflict(f"只能存档有效的电子证照（此证{RESULT_LABELS[found.result]}）", code="not_archivable")
    outcome = await in_store(
        request,
        app[APPLICATIONS].record_verification,
        verifier,
        kind=asked.kind,
        digest=asked.digest,
        result=found.result,
        licence_id=found.licence_id,
        source=source_of(request),
        archived=archive,
    )
    now = datetime.now(UTC)
    signed = await in_store(
        request, receipt, keys, app[CONFIG].public_url, str(outcome.id), asked, found.result, now
    )
    answer: dict[str, Any] = {
        "id": str(outcome.id),
        "result": found.result,
        "result_label": RESULT_LABELS[found.result],
        "checked_at": now.isoformat(),
        "checked": {"kind": asked.kind, "sha256": asked.digest},
        "receipt": signed,
        "audience": "verifier" if verifier else "public",
    }
    if found.stored is not None:
        answer["certificate_number"] = found.stored.certificate_number
        answer["issued_at"] = found.stored.issued_at
    if verifier is not None:
        answer["licence_id"] = found.licence_id
        answer |= _why(found.invalidated)
    if archive and found.stored is not None:
        verified = await in_store(
            request, verify_sd_jwt, found.stored.credential, await in_store(request, keys.jwks)
        )
        answer["archived"] = True
        answer["credential"] = found.stored.credential
        answer["items"] = {**verified.claims, **verified.disclosed}
    return json_response(answer, status=201 if archive else 200)


@routes.post("/api/v1/verifications")
async def verify(request: web.Request) -> web.Response:
    """Public: is this e-licence (or this paper certificate) valid? With a receipt; recorded for the auditor."""
    return await _verify(request, archive=False)


@routes.post("/api/v1/verifications/archive")
async def archive(request: web.Request) -> web.Response:
    """A verifier's 存档: the valid e-licence's full credential and items, the archiving recorded."""
    return await _verify(request, archive=True)


@routes.get("/api/v1/audit/verifications")
async def audit_verifications(request: web.Request) -> web.Response:
    """The auditor's list of verifications, newest first (``?licence_id=`` narrows it)."""
    actor_of(request, "auditor")
    licence_id = request.query.get("licence_id") or None
    rows = await in_store(
        request, request.app[ELICENSE_STATUS].verifications, licence_id, query_limit(request, 100, 1000)
    )
    return json_response({"verifications": [asdict(r) for r in rows]})


_TEXT: Final = {"type": "string"}
_NULLABLE: Final = {"type": ["string", "null"]}
VERIFY_REQUEST: Final = {
    "oneOf": [
        {
            "type": "object",
            "required": ["credential"],
            "properties": {"credential": {"type": "string", "maxLength": MAX_CREDENTIAL}},
        },
        {
            "type": "object",
            "required": ["certificate_number", "newborn_name", "birth_date"],
            "properties": {
                "certificate_number": _TEXT,
                "newborn_name": _TEXT,
                "birth_date": {"type": "string", "format": "date"},
            },
        },
    ]
}
VERIFY_ANSWER: Final = {
    "type": "object",
    "required": ["id", "result", "result_label", "checked_at", "checked", "receipt", "audience"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "result": {"enum": list(RESULT_LABELS)},
        "result_label": _TEXT,
        "checked_at": _TEXT,
        "checked": {
            "type": "object",
            "required": ["kind", "sha256"],
            "properties": {"kind": {"enum": ["credential", "paper"]}, "sha256": _TEXT},
        },
        "receipt": {
            "type": "string",
            "description": "JWT, ES256, typ verification-receipt+jwt (decision 0039)",
        },
        "audience": {"enum": ["public", "verifier"]},
        "certificate_number": _TEXT,
        "issued_at": _TEXT,
        "licence_id": _NULLABLE,
        "reason": {"enum": [*REASON_LABELS, None]},
        "reason_label": _NULLABLE,
        "replaced_by": _NULLABLE,
        "grounds": {
            "enum": [*REVOCATION_REASONS, None],
            "description": "an issuer's revocation (reason revoked_by_issuer): its ground (decision 0040)",
        },
        "grounds_label": _NULLABLE,
        "archived": {"type": "boolean"},
        "credential": _TEXT,
        "items": {"type": "object"},
    },
}


def _post(summary: str, security: list[Any], status: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": security,
            "requestBody": {"required": True, "content": {"application/json": {"schema": VERIFY_REQUEST}}},
            "responses": {
                status: {
                    "description": "the result and a signed receipt",
                    "content": {"application/json": {"schema": VERIFY_ANSWER}},
                },
                "default": _PROBLEM,
            },
        }
    }


# For backend/openapi.py.
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/status-lists/{list_id}": {
        "parameters": [{"name": "list_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "get": {
            "summary": "public: a Token Status List (draft-ietf-oauth-status-list), one bit an e-licence",
            "responses": {
                "200": {
                    "description": "the signed status list token (JWT, typ statuslist+jwt)",
                    "content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
                },
                "default": _PROBLEM,
            },
        },
    },
    "/api/v1/verifications": _post(
        "public, rate-limited: verify an e-licence or a paper certificate (a verifier also learns why)",
        [{}, {"bearer": []}],
        "200",
    ),
    "/api/v1/verifications/archive": _post(
        "a verifier's 存档 of a valid e-licence: the credential and its items, the archiving recorded",
        [{"bearer": []}],
        "201",
    ),
    "/api/v1/audit/verifications": {
        "get": {
            "summary": "the auditor's list of verifications (digests and hashed addresses only)",
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "licence_id", "in": "query", "required": False, "schema": _TEXT},
                {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}},
            ],
            "responses": {
                "200": {
                    "description": "newest first",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["verifications"],
                                "properties": {
                                    "verifications": {"type": "array", "items": {"type": "object"}}
                                },
                            }
                        }
                    },
                },
                "default": _PROBLEM,
            },
        }
    },
}
