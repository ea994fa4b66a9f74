"""The mother's 出生一件事 (issue 12, item 1; docs/decisions/0044-birth-bundle.md).

- ``GET /api/v1/applications/{id}/bundle``: what her province offers with the certificate (or that it offers
  nothing), each condition met, unmet or not yet known for her application, the extra fields of 表2 to fill
  with their allowed values, and what the form takes from her application (masked: never asked again).
- ``PUT …/bundle``: opt in, or change the opt-in; ``DELETE …/bundle``: withdraw it. Until submission.
"""

from __future__ import annotations

import uuid
from typing import Any, Final, cast

from aiohttp import web

from backend.components import APPLICATIONS, actor_of, expected_version, json_response, run_command
from backend.errors import json_body
from backend.openapi import APP_ID as _APP_ID
from backend.openapi import PROBLEM as _PROBLEM
from backend.routes.parents import _app_id, _applicants_application, _fingerprint
from domain.application import BirthCertificateApplication
from domain.bundle import (
    CERTIFICATE,
    FIELD_KINDS,
    MATERIAL_KINDS,
    SERVICE_CODES,
    SERVICE_STATES,
    BundleField,
    BundleNotOffered,
    BundleOffer,
    evaluate,
)
from domain.errors import DomainError, FieldError, ValidationFailed
from domain.service import Applications
from domain.values import Actor

routes = web.RouteTableDef()
PATH: Final = "/api/v1/applications/{app_id}/bundle"
SIGNATURE_NOTE: Final = "一件事一次办的申报表单（表2）是登记表的一部分，由您的电子签名一并确认；签名后再申请、修改或撤回，须重新签名"


def _field(spec: BundleField, value: str | None, newborn_sex: str | None) -> dict[str, Any]:
    choices = [
        {"value": c.value, "label": c.label}
        for c in spec.choices
        if c.sex is None or newborn_sex is None or c.sex == newborn_sex
    ]
    out: dict[str, Any] = {
        "code": spec.code,
        "label": spec.label,
        "section": spec.section,
        "kind": spec.kind,
        "service": spec.service,
        "required": spec.required,
        "choices": choices,
        "value": value,
    }
    if spec.default == "settle_with_address":
        out["hint"] = "不填写则为落户方（父亲或母亲）登记的住址"
    if spec.within is not None:
        out["within"] = spec.within
    return out


def _materials(app: BirthCertificateApplication, offer: BundleOffer) -> list[dict[str, Any]]:
    """The offer's materials of 表1 (decision 0047): for which service, when, whether her opt-in asks for
    each (``needed``; never before she opted in) and whether she uploaded it."""
    needed = set(app.bundle_materials_required())
    names = {s.code: s.name for s in offer.services}
    return [
        {
            "code": m.code,
            "label": m.label,
            "service": m.service,
            "service_name": names.get(m.service, m.service),
            "when": m.when,
            "needed": m.code in needed,
            "uploaded": m.code in needed and m.code in app.documents,
        }
        for m in offer.materials
    ]


def bundle_view(app: BirthCertificateApplication, service: Applications) -> dict[str, Any]:
    """What the mother sees of the bundle for her application (her own values in full, the rest masked)."""
    offer: BundleOffer | None = app.bundle_offer
    if offer is None:
        return {"offered": False, "message": BundleNotOffered.message, "version": app.version}
    requested = app.bundle
    values: dict[str, str] = dict(requested["values"]) if requested else {}
    chosen = requested["services"] if requested else [s.code for s in offer.services]
    married = requested["parents_married"] if requested else None
    facts = app.bundle_facts(service.clock(), services=chosen, values=values, parents_married=married)
    held = app.bundle_held()
    newborn_sex = None if app.record is None else app.record.get("newborn_sex")
    return {
        "offered": True,
        "name": offer.name,
        "platform": offer.platform,
        "working_days": offer.working_days,
        "services": [
            {
                "code": s.code,
                "name": s.name,
                "department": s.department,
                "always": s.code == CERTIFICATE,
                "chosen": s.code in chosen if requested else None,
            }
            for s in offer.services
        ],
        "conditions": [r.to_dict() for r in evaluate(offer, facts, service.calendar)],
        "fields": [_field(f, values.get(f.code), newborn_sex) for f in offer.fields if f.code not in held],
        "derived": [d.to_dict(masked=True) for d in app.bundle_derived()],
        "materials": _materials(app, offer),
        "requested": None
        if requested is None
        else {
            "services": list(requested["services"]),
            "parents_married": requested["parents_married"],
            "requested_at": requested["requested_at"],
        },
        "missing": [m for m in app.missing_for_signing() if m != "father_verified"],
        "signature_note": SIGNATURE_NOTE,
        "version": app.version,
    }


@routes.get(PATH)
async def get_bundle(request: web.Request) -> web.Response:
    """The offer, its conditions for this application, the fields to fill, what the form takes from it."""
    actor = actor_of(request, "parent")
    app = await _applicants_application(request, actor)
    view = bundle_view(app, request.app[APPLICATIONS])
    return json_response(view, headers={"ETag": f'"{app.version}"'})


def _parse(body: dict[str, Any]) -> tuple[list[str], dict[str, Any], bool]:
    errors: list[FieldError] = []
    services = body.get("services")
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        errors.append(FieldError("services", "required", "请选择要一并办理的事项"))
        services = []
    fields = body.get("fields", {})
    if not isinstance(fields, dict):
        errors.append(FieldError("fields", "invalid_type", "格式不正确"))
        fields = {}
    married = body.get("parents_married")
    if not isinstance(married, bool):
        errors.append(FieldError("parents_married", "required", "请确认新生儿是否为父母现行婚姻内生育"))
    if errors:
        raise ValidationFailed(errors)
    return cast(list[str], services), fields, cast(bool, married)


@routes.put(PATH)
async def put_bundle(request: web.Request) -> web.Response:
    """Opt in to the bundle, or change the opt-in (the services, her statement, the extra fields)."""
    actor = actor_of(request, "parent")
    try:
        app_id, version = _app_id(request), expected_version(request)
        body = await json_body(request)
        services, fields, married = _parse(body)
    except DomainError:
        await _applicants_application(request, actor)  # 404 for a stranger, 403 for the father first
        raise
    service = request.app[APPLICATIONS]
    return await run_command(
        request,
        actor,
        _fingerprint(request, body),
        lambda: service.request_bundle(
            actor, app_id, services=services, values=fields, parents_married=married, expected_version=version
        ),
    )


@routes.delete(PATH)
async def delete_bundle(request: web.Request) -> web.Response:
    """Withdraw the opt-in: the certificate alone is applied for."""
    actor: Actor = actor_of(request, "parent")
    app_id: uuid.UUID = _app_id(request)
    version, service = expected_version(request), request.app[APPLICATIONS]
    return await run_command(
        request,
        actor,
        _fingerprint(request),
        lambda: service.withdraw_bundle(actor, app_id, expected_version=version),
    )


_CONDITION: Final = {
    "type": "object",
    "required": ["code", "label", "state", "message"],
    "properties": {
        "code": {"type": "string"},
        "label": {"type": "string"},
        "state": {"enum": ["met", "unmet", "unknown"]},
        "message": {"type": "string"},
    },
}
BUNDLE_SCHEMA: Final = {
    "description": "the province's 出生一件事 for this application; ``offered`` false: the province offers none",
    "type": "object",
    "required": ["offered", "version"],
    "properties": {
        "offered": {"type": "boolean"},
        "message": {"type": "string"},
        "name": {"type": "string"},
        "platform": {"type": "string"},
        "working_days": {"type": ["integer", "null"]},
        "services": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["code", "name", "department", "always", "chosen"],
                "properties": {
                    "code": {"enum": list(SERVICE_CODES)},
                    "name": {"type": "string"},
                    "department": {"type": "string"},
                    "always": {"type": "boolean"},
                    "chosen": {"type": ["boolean", "null"]},
                },
            },
        },
        "conditions": {"type": "array", "items": _CONDITION},
        "fields": {
            "description": "the extra fields of 表2 to fill (never one the application already holds)",
            "type": "array",
            "items": {
                "type": "object",
                "required": ["code", "label", "section", "kind", "required", "choices", "value"],
                "properties": {
                    "code": {"type": "string"},
                    "label": {"type": "string"},
                    "section": {"type": "string"},
                    "kind": {"enum": list(FIELD_KINDS)},
                    "service": {"type": ["string", "null"]},
                    "required": {"type": "boolean"},
                    "choices": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["value", "label"],
                            "properties": {"value": {"type": "string"}, "label": {"type": "string"}},
                        },
                    },
                    "value": {"type": ["string", "null"]},
                    "hint": {"type": "string"},
                    "within": {"type": "string"},
                },
            },
        },
        "derived": {
            "description": "what the form takes from the application, personal values masked",
            "type": "array",
            "items": {
                "type": "object",
                "required": ["code", "label", "section", "value"],
                "properties": {
                    "code": {"type": "string"},
                    "label": {"type": "string"},
                    "section": {"type": "string"},
                    "value": {"type": "string"},
                },
            },
        },
        "materials": {
            "description": "the materials of 表1 the offer asks for with a service (decision 0047): ``needed`` by her "
            "opt-in, ``uploaded`` (POST …/documents with the material's code as ``kind``)",
            "type": "array",
            "items": {
                "type": "object",
                "required": ["code", "label", "service", "service_name", "when", "needed", "uploaded"],
                "properties": {
                    "code": {"enum": list(MATERIAL_KINDS)},
                    "label": {"type": "string"},
                    "service": {"enum": list(SERVICE_CODES)},
                    "service_name": {"type": "string"},
                    "when": {"type": ["string", "null"]},
                    "needed": {"type": "boolean"},
                    "uploaded": {"type": "boolean"},
                },
            },
        },
        "requested": {"type": ["object", "null"]},
        "missing": {"type": "array", "items": {"type": "string"}},
        "signature_note": {"type": "string"},
        "version": {"type": "integer"},
    },
}
BUNDLE_BODY: Final = {
    "type": "object",
    "required": ["services", "parents_married"],
    "properties": {
        "services": {"type": "array", "items": {"enum": list(SERVICE_CODES)}, "minItems": 1},
        "parents_married": {"type": "boolean", "description": "现行婚姻内生育 (the 结婚证 of 表1)"},
        "fields": {
            "type": "object",
            "description": "the extra fields of 表2 by code (GET …/bundle lists them and their allowed values)",
            "additionalProperties": {"type": "string"},
        },
    },
}
# The service's state in the status view (items 2–4 of issue 12 add more).
STATUS_SCHEMA: Final = {
    "description": "出生一件事: the services she applied for with the certificate, each with its state",
    "type": ["object", "null"],
    "required": ["name", "services"],
    "properties": {
        "name": {"type": "string"},
        "requested_at": {"type": ["string", "null"]},
        "services": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["code", "name", "state", "state_label"],
                "properties": {
                    "code": {"enum": list(SERVICE_CODES)},
                    "name": {"type": "string"},
                    "state": {"enum": list(SERVICE_STATES)},
                    "state_label": {"type": "string"},
                    "department": {"type": "string"},
                    "reason": {"type": ["string", "null"], "description": "why the department refused"},
                    "result": {
                        "type": ["object", "null"],
                        "description": "what the department handed back, personal values masked",
                    },
                    "result_labels": {
                        "type": ["object", "null"],
                        "additionalProperties": {"type": "string"},
                        "description": "each field of result by its Chinese name (登记姓名, 公民身份号码 …)",
                    },
                    "at": {"type": ["string", "null"]},
                },
            },
        },
    },
}
_VERSION: Final = {
    "description": "saved",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Version"}}},
}
# For backend/openapi.py: ``PATHS.update(bundle.OPENAPI_PATHS)`` (it adds the command headers).
OPENAPI_PATHS: dict[str, Any] = {
    PATH: {
        "parameters": [_APP_ID],
        "get": {
            "summary": "出生一件事: the offer, its conditions for this application, the fields of 表2 to fill",
            "security": [{"bearer": []}],
            "responses": {
                "200": {
                    "description": "the bundle",
                    "content": {"application/json": {"schema": BUNDLE_SCHEMA}},
                },
                "default": _PROBLEM,
            },
        },
        "put": {
            "summary": "opt in to 出生一件事, or change the opt-in (until submission); an unmet condition: 422 "
            "with its code (bundle_not_offered 409)",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": BUNDLE_BODY}}},
            "responses": {"200": _VERSION, "default": _PROBLEM},
        },
        "delete": {
            "summary": "withdraw the opt-in to 出生一件事 (until submission)",
            "security": [{"bearer": []}],
            "responses": {"200": _VERSION, "default": _PROBLEM},
        },
    }
}
