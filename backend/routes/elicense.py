"""The electronic certificate (电子证照) for the parents, and the keys that sign it (decision 0038).

- ``GET /api/v1/applications/{id}/elicense``: the mother's, or the joined father's, e-licence: its state
  (``none`` before printing, ``pending`` until it is generated, ``issued``), the credential (SD-JWT; the
  father's copy without the mother's identity number, decision 0011), what its QR code says, and the earlier
  e-licences of voided numbers (``superseded``) and older versions of an amended one (``amended``: the police's
  registration of the newborn added, decision 0048, shown masked under ``registration``); ``revoked`` once the
  issuer declared the certificate void (decision 0040): no credential then, the ground in Chinese under
  ``revocation``.
- ``GET /api/v1/applications/{id}/elicense/qr.png`` and ``…/qr.svg``: the QR code (segno, level Q).
- ``GET /api/v1/elicense/jwks.json``: public, every signing key ever used, current and retired.

``elicense_ctx`` opens the e-licence's tables and key ring in every process, and runs the process that
schedules and issues (projections.elicense) on the elected leader only (decision 0024).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

import segno
from aiohttp import web

from backend.components import (
    APPLICATIONS,
    CONFIG,
    FOLLOWERS,
    LEADERSHIP,
    PARKING,
    STORE_EXECUTOR,
    WORKING_CALENDAR,
    actor_of,
    follow_on_leader,
    in_store,
    json_response,
)
from backend.config import Config
from backend.credentials import KeyRing, disclosed_names, present
from backend.openapi import APP_ID as _APP_ID
from backend.openapi import PROBLEM as _PROBLEM
from backend.qr import QR_ERROR, QUIET_ZONE, qr_code
from backend.storage import at_rest_key
from domain.application import BirthCertificateApplication
from domain.bundle import REGISTRATION_FIELDS, REGISTRATION_SERVICE, handoffs
from domain.elicense import FATHER_WITHHELD, LicenceId
from domain.errors import Conflict, NotFound
from domain.revocation import REVOCATION_REASONS
from domain.revocation import label_of as revocation_label
from domain.revocation import message_of as revocation_message
from domain.service import Applications
from domain.values import Actor
from projections.elicense import ElicenseProcess, ElicenseStore, verify_url
from projections.runner import LogFollower
from projections.sql import Database

routes = web.RouteTableDef()

ELICENSE_STORE = web.AppKey("elicense_store", ElicenseStore)
ELICENSE_KEYS = web.AppKey("elicense_keys", KeyRing)
ELICENSE_PROCESS = web.AppKey("elicense_process", ElicenseProcess)
ELICENSE_FOLLOWER = web.AppKey("elicense_follower", LogFollower)

STATE_LABELS: Final = {
    "none": "证件尚未签发",
    "pending": "电子证照生成中",
    "issued": "电子证照已生成",
    "revoked": "电子证照已作废",
}
# The QR code (backend.qr): 8 px a module and the standard four-module quiet zone in the PNG.
PNG_SCALE: Final = 8


def open_elicense(config: Config) -> tuple[ElicenseStore, KeyRing]:
    """The e-licence's tables and key ring on a connection of their own (blocking)."""
    db = Database.open(config.event_store_env())
    key = at_rest_key(config.cipher_key, config.index_key)
    return ElicenseStore(db, key), KeyRing(db, key)


async def elicense_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the e-licence's tables in this process; schedule and issue on the leader only."""
    loop = asyncio.get_running_loop()
    config, executor = app[CONFIG], app[STORE_EXECUTOR]
    store, keys = await loop.run_in_executor(executor, open_elicense, config)
    store.db.fence = app[
        LEADERSHIP
    ]  # rows, credentials and the position written under the leader's term only
    process = ElicenseProcess(
        app[APPLICATIONS],
        executor,
        store,
        keys,
        public_url=config.public_url,
        index_key=config.index_key,
        calendar=app[WORKING_CALENDAR],
        type_code=config.elicense_type_code,
        poll_seconds=config.elicense_poll_seconds,
    )
    follower = LogFollower(
        app[APPLICATIONS], process, executor=executor, name="elicense", parking=app.get(PARKING)
    )
    app[ELICENSE_STORE], app[ELICENSE_KEYS] = store, keys
    app[ELICENSE_PROCESS], app[ELICENSE_FOLLOWER] = process, follower
    follow_on_leader(app, follower)
    app[LEADERSHIP].lead("elicense-issuing", process.run, process.stop)
    yield
    await app[LEADERSHIP].close()  # (already done on shutdown) before the connection closes
    with contextlib.suppress(ValueError):
        app[FOLLOWERS].remove(follower)
    await loop.run_in_executor(executor, store.db.close)


def _app_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["app_id"])
    except ValueError:
        raise NotFound() from None


def elicense_document(
    service: Applications, store: ElicenseStore, public_url: str, actor: Actor, app_id: uuid.UUID
) -> dict[str, Any]:
    """On the store executor: the e-licence this parent sees (404 for anyone else)."""
    app: BirthCertificateApplication = service.get_application(actor, app_id)
    father = app.is_joined_father(actor)
    state = app.elicense_state()
    current = app.elicense_for(app.certificate_number) if state == "issued" else None
    revoked = app.revocation if state == "revoked" else None
    document: dict[str, Any] = {
        "application_id": str(app.id),
        "role": "father" if father else "mother",
        "state": state,
        "state_label": STATE_LABELS[state],
        "certificate_number": app.certificate_number if state != "none" else None,
        "licence_id": None,
        "licence_version": None,
        "key_id": None,
        "issued_at": None,
        "expected_at": None,
        "credential": None,
        "verify_url": None,
        "qr": None,
        "superseded": [
            {
                "licence_id": e["licence_id"],
                "certificate_number": e["certificate_number"],
                "issued_at": e["at"],
                "state": _superseded_state(app, e, revoked),
            }
            for e in app.elicenses
            if e is not current
        ],
        "registration": _registration(app),
        "revocation": None
        if revoked is None
        else {
            "reason": revoked["reason"],
            "reason_label": revocation_label(revoked["reason"]),
            "message": revocation_message(revoked["reason"], revoked["certificate_number"]),
            "at": revoked["at"],
        },
    }
    if state == "pending":
        digest = store.number_digest(str(app.certificate_number))
        waiting = [d for d in store.due_of(str(app.id)) if d.number_digest == digest]
        if waiting:
            document["expected_at"] = waiting[-1].due_at.isoformat()
    if current is not None:
        stored = store.credential(current["licence_id"])
        if stored is None:
            raise RuntimeError("an e-licence recorded without its stored credential")
        base = f"/api/v1/applications/{app.id}/elicense/qr"
        document |= {
            "licence_id": stored.licence_id,
            "key_id": stored.kid,
            "issued_at": stored.issued_at,
            "credential": present(stored.credential, FATHER_WITHHELD) if father else stored.credential,
            "licence_version": LicenceId.parse(stored.licence_id).version,
            "verify_url": verify_url(public_url, stored.licence_id),
            "qr": {"png": f"{base}.png", "svg": f"{base}.svg", "error_correction": QR_ERROR.upper()},
        }
        if document["registration"] is not None:
            document["registration"]["in_elicense"] = "citizen_id_number" in disclosed_names(
                stored.credential
            )
    return document


def _superseded_state(
    app: BirthCertificateApplication, licence: dict[str, Any], revoked: dict[str, Any] | None
) -> str:
    """Why an e-licence is no longer the one in force: its certificate declared void, an older version of the
    same certificate's amended e-licence (0048), or a certificate replaced or reissued."""
    if revoked is not None and licence["certificate_number"] == revoked["certificate_number"]:
        return "revoked"
    if any(e.get("amends") == licence["licence_id"] for e in app.elicenses):
        return "amended"
    return "superseded"


def _registration(app: BirthCertificateApplication) -> dict[str, Any] | None:
    """The police's registration of the newborn where the province puts it into the e-licence (0048), masked:
    the parent reads the credential itself for the values in full."""
    registration = app.bundle_registration()
    handoff = handoffs().get(REGISTRATION_SERVICE)
    if registration is None or handoff is None:
        return None
    masked = handoff.masked_result(registration)
    return {
        "items": [
            {"code": k, "label": handoff.result_labels.get(k, k), "value": masked[k]} for k in registration
        ],
        "in_elicense": False,  # set once the credential in force is read
    }


async def _document(request: web.Request) -> dict[str, Any]:
    actor = actor_of(request, "parent")
    return await in_store(
        request,
        elicense_document,
        request.app[APPLICATIONS],
        request.app[ELICENSE_STORE],
        request.app[CONFIG].public_url,
        actor,
        _app_id(request),
    )


@routes.get("/api/v1/applications/{app_id}/elicense")
async def get_elicense(request: web.Request) -> web.Response:
    """The parent's e-licence: state, credential, QR links, superseded ones."""
    return json_response(await _document(request))


async def _qr(request: web.Request) -> segno.QRCode:
    document = await _document(request)
    if document["state"] == "revoked":
        raise Conflict("电子证照已作废", code="elicense_revoked")
    if document["verify_url"] is None:
        raise Conflict("电子证照尚未生成", code="elicense_not_issued")
    return qr_code(str(document["verify_url"]))


@routes.get("/api/v1/applications/{app_id}/elicense/qr.png")
async def get_elicense_qr_png(request: web.Request) -> web.Response:
    """The QR code as PNG."""
    out = io.BytesIO()
    (await _qr(request)).save(out, kind="png", scale=PNG_SCALE, border=QUIET_ZONE)
    return web.Response(body=out.getvalue(), content_type="image/png")


@routes.get("/api/v1/applications/{app_id}/elicense/qr.svg")
async def get_elicense_qr_svg(request: web.Request) -> web.Response:
    """The QR code as SVG."""
    out = io.BytesIO()
    (await _qr(request)).save(out, kind="svg", xmldecl=False, scale=4, border=QUIET_ZONE)
    return web.Response(body=out.getvalue(), content_type="image/svg+xml")


@routes.get("/api/v1/elicense/jwks.json")
async def elicense_jwks(request: web.Request) -> web.Response:
    """Public: every key that ever signed an e-licence, the current one and the retired ones (never deleted)."""
    jwks = await in_store(request, request.app[ELICENSE_KEYS].jwks)
    return json_response(jwks, headers={"Cache-Control": "public, max-age=300"})


_NULLABLE_TEXT: Final = {"type": ["string", "null"]}
ELICENSE_SCHEMA: Final = {
    "type": "object",
    "required": [
        "application_id",
        "role",
        "state",
        "state_label",
        "credential",
        "verify_url",
        "qr",
        "superseded",
        "registration",
        "licence_version",
    ],
    "additionalProperties": False,
    "properties": {
        "application_id": {"type": "string", "format": "uuid"},
        "role": {"enum": ["mother", "father"]},
        "state": {"enum": list(STATE_LABELS)},
        "state_label": {"type": "string"},
        "certificate_number": _NULLABLE_TEXT,
        "licence_id": {
            "type": ["string", "null"],
            "pattern": "^1\\.2\\.156\\.3005\\.2\\.[0-9A-Z]+\\.[0-9A-Z]+\\.[0-9A-Z]+\\.[0-9]{3}\\.[0-9A-Z]$",
        },
        "licence_version": {"type": ["string", "null"], "pattern": "^[0-9]{3}$"},
        "key_id": _NULLABLE_TEXT,
        "issued_at": _NULLABLE_TEXT,
        "expected_at": _NULLABLE_TEXT,
        "credential": {
            "type": ["string", "null"],
            "description": "SD-JWT (ES256, typ dc+sd-jwt): <jws>~<disclosure>~…~ (decision 0038)",
        },
        "verify_url": _NULLABLE_TEXT,
        "qr": {
            "type": ["object", "null"],
            "required": ["png", "svg", "error_correction"],
            "properties": {
                "png": {"type": "string"},
                "svg": {"type": "string"},
                "error_correction": {"enum": ["Q"]},
            },
        },
        "superseded": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["licence_id", "certificate_number", "issued_at", "state"],
                "properties": {
                    "licence_id": {"type": "string"},
                    "certificate_number": {"type": "string"},
                    "issued_at": {"type": "string"},
                    "state": {"enum": ["superseded", "revoked", "amended"]},
                },
            },
        },
        "registration": {
            "description": "the police's registration of the newborn where the province puts it into the "
            "e-licence (decision 0048), masked; in_elicense once the credential in force carries it",
            "type": ["object", "null"],
            "required": ["items", "in_elicense"],
            "additionalProperties": False,
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["code", "label", "value"],
                        "properties": {
                            "code": {"enum": list(REGISTRATION_FIELDS)},
                            "label": {"type": "string"},
                            "value": {"type": "string"},
                        },
                    },
                },
                "in_elicense": {"type": "boolean"},
            },
        },
        "revocation": {
            "description": "state revoked: the issuer declared the certificate void (decision 0040)",
            "type": ["object", "null"],
            "required": ["reason", "reason_label", "message", "at"],
            "properties": {
                "reason": {"enum": list(REVOCATION_REASONS)},
                "reason_label": {"type": "string"},
                "message": {"type": "string"},
                "at": {"type": "string"},
            },
        },
    },
}


def _image(media: str, what: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": f"the e-licence's QR code as {what} (409 elicense_not_issued before it exists, "
            "elicense_revoked once void)",
            "security": [{"bearer": []}],
            "responses": {
                "200": {
                    "description": what,
                    "content": {media: {"schema": {"type": "string", "format": "binary"}}},
                },
                "default": _PROBLEM,
            },
        },
        "parameters": [_APP_ID],
    }


# For backend/openapi.py: ``PATHS.update(elicense.OPENAPI_PATHS)``.
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/applications/{app_id}/elicense": {
        "parameters": [_APP_ID],
        "get": {
            "summary": "the electronic certificate (电子证照) for the mother or the joined father: state, credential, QR",
            "security": [{"bearer": []}],
            "responses": {
                "200": {
                    "description": "the e-licence (the father's credential without the mother's identity number)",
                    "content": {"application/json": {"schema": ELICENSE_SCHEMA}},
                },
                "default": _PROBLEM,
            },
        },
    },
    "/api/v1/applications/{app_id}/elicense/qr.png": _image("image/png", "PNG"),
    "/api/v1/applications/{app_id}/elicense/qr.svg": _image("image/svg+xml", "SVG"),
    "/api/v1/elicense/jwks.json": {
        "get": {
            "summary": "public: every key that ever signed an e-licence (status current or retired; never deleted)",
            "responses": {
                "200": {
                    "description": "JWKS",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["keys"],
                                "properties": {"keys": {"type": "array", "items": {"type": "object"}}},
                            }
                        }
                    },
                },
                "default": _PROBLEM,
            },
        }
    },
}
