"""The OpenAPI 3.1 document served at ``/api/v1/openapi.json``: the authoritative description of the API.

Kept true by the end-to-end tests, which validate every real response against the schema of its
path, method and status (``tests/e2e/openapi_check.py``).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from domain.application import DOCUMENT_KINDS, FIXABLE_FIELDS
from domain.channels import CHANNELS
from domain.policy import load_profiles
from domain.rejection import REJECTION_REASONS
from domain.revocation import NOTE_HIGH, NOTE_LOW, REVOCATION_REASONS
from domain.values import ETHNIC_GROUPS, ID_TYPES
from projections.review_queue import QUEUE_STATES
from projections.worklist import KINDS

JSON = dict[str, Any]

STATES = [
    "draft",
    "submitted",
    "returned",
    "issued",
    "dispatched",
    "delivered",
    "collected",
    "withdrawn",
    "lost",
    "counter_only",
    "revoked",
]


def _ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: JSON, description: str) -> JSON:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


PROBLEM = {
    "description": "A problem (RFC 9457)",
    "content": {"application/problem+json": {"schema": _ref("Problem")}},
}

# Where a limit applies (backend/throttle.py): the problem's code is ``rate_limited``.
RATE_LIMITED = {
    "description": "Too many requests of this kind from this client, address or ID number (code `rate_limited`): "
    "try again after Retry-After seconds",
    "headers": {"Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 1}}},
    "content": {"application/problem+json": {"schema": _ref("Problem")}},
}
# What the server takes, said in the schema (a request the document allows is never refused as malformed):
# a text is "missing" when blank, so it needs a character other than a space.
TEXT: JSON = {"type": "string", "minLength": 1, "pattern": "\\S"}
ID_NUMBER: JSON = {
    "type": "string",
    "pattern": "^[0-9]{17}[0-9Xx]$",
    "description": "18-digit resident ID number",
}
# A parent's identity document (domain.values.IdDocument): a resident ID or a Hong Kong, Macao or Taiwan
# resident's residence permit (18 characters, GB 11643; 810000/820000/830000 for the permits), an HK/Macao
# travel permit (H or M and 8 digits, 2 more on older cards) or a Taiwan travel permit (8 digits).
ID_TYPE: JSON = {
    "enum": list(ID_TYPES),
    "description": "the document's kind; without it the number's shape says (18 characters: a resident ID, or a "
    "residence permit by its 810000/820000/830000 prefix; H or M and digits: an HK/Macao travel permit); "
    "a Taiwan travel permit's 8 digits must be named taiwan_permit",
}
DOCUMENT_NUMBER: JSON = {
    "type": "string",
    "pattern": "^([0-9]{17}[0-9Xx]|[HMhm][0-9]{8}([0-9]{2})?|[0-9]{8})$",
    "description": "the document's number",
}
MOBILE: JSON = {"type": "string", "pattern": "^1[3-9][0-9]{9}$"}
INSTITUTION_CODE: JSON = {"type": "string", "pattern": "^[A-Za-z0-9]{4,16}$"}
# A list's cursor as the server hands it out (``next_cursor``): a score and an id.
CURSOR: JSON = {
    "type": "string",
    "pattern": "^-?[0-9]{1,19}:(father:)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
}
RESIDENCY: JSON = {"enum": ["mainland", "hk_macao", "taiwan", "overseas_chinese", "foreign"]}

SCHEMAS: JSON = {
    "Problem": {
        "type": "object",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string", "description": "for parents, in Chinese"},
            "code": {"type": "string", "description": "stable machine word"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "code", "message"],
                    "properties": {
                        "field": {"type": "string"},
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                    },
                },
            },
            "reasons": {"type": "array", "items": {"type": "string"}},
            "referral": _ref("Referral"),
            "missing": {"type": "array", "items": {"type": "string"}},
            "current_version": {"type": "integer"},
            "trace_id": {"type": "string"},
        },
    },
    "Counter": {
        "description": "an institution's counter as a referral names it: address, telephone and opening hours "
        "are null until the operator set them (`birthcert institutions counter`)",
        "type": ["object", "null"],
        "required": ["institution_code", "institution_name", "address", "phone", "hours"],
        "properties": {
            "institution_code": {"type": "string"},
            "institution_name": {"type": "string"},
            "address": {"type": ["string", "null"]},
            "phone": {"type": ["string", "null"]},
            "hours": {"type": ["string", "null"]},
        },
    },
    "Referral": {
        "description": "sent to the counter (现场办理): why, where (null when no institution is known) and what to "
        "bring, in Chinese; nothing personal (docs/decisions/0033)",
        "type": "object",
        "required": ["reason", "label", "message", "counter", "where", "bring"],
        "properties": {
            "reason": {"type": "string", "description": "stable code, e.g. face_verification_failed"},
            "label": {"type": "string"},
            "message": {"type": "string"},
            "counter": _ref("Counter"),
            "where": {"type": "string", "description": "the counter in one sentence"},
            "bring": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Token": {
        "type": "object",
        "required": ["token", "expires_in"],
        "properties": {"token": {"type": "string"}, "expires_in": {"type": "integer", "maximum": 7200}},
    },
    "ChannelToken": {
        "allOf": [_ref("Token")],
        "required": ["channel"],
        "properties": {"channel": {"enum": list(CHANNELS)}},
    },
    "Version": {
        "type": "object",
        "required": ["id", "version"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "version": {"type": "integer"},
            "state": {"enum": STATES},
        },
    },
    "Step": {
        "type": "object",
        "required": ["code", "label"],
        "properties": {"code": {"type": "string"}, "label": {"type": "string"}},
    },
    "Status": {
        "type": "object",
        "required": ["id", "state", "version", "next_steps"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "state": {"enum": STATES},
            "version": {"type": "integer"},
            "next_steps": {"type": "array", "items": _ref("Step")},
            "rejection": {
                "type": ["object", "null"],
                "properties": {
                    "reasons": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "the issuer's words",
                    },
                    "reason_codes": {"type": "array", "items": {"type": "string"}},
                    "reason_messages": {
                        "description": "each code's label and what the mother is told (docs/decisions/0045)",
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["code", "label", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "label": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        },
                    },
                    "fields": {"type": "array", "items": {"type": "string"}},
                },
            },
            "certificate_number": {"type": ["string", "null"]},
            "tracking_number": {"type": ["string", "null"]},
            "voided_certificate_numbers": {
                "description": "numbers of this application's certificates that are void (lost, misprinted, damaged)",
                "type": "array",
                "items": {"type": "string"},
            },
            "replacement": {
                "description": "the last replacement of a certificate the institution misprinted or damaged: "
                "the old number void, its blank recovered or destroyed, a new number; ``message`` says it in Chinese",
                "type": ["object", "null"],
                "required": ["cause", "old_certificate", "voided_certificate_number", "message"],
                "properties": {
                    "cause": {"enum": ["misprinted", "damaged"]},
                    "old_certificate": {"enum": ["recovered", "destroyed"]},
                    "voided_certificate_number": {"type": "string"},
                    "at": {"type": ["string", "null"]},
                    "message": {"type": "string"},
                },
            },
            "pickup": {
                "description": "on-site pickup: the booked slot (预约取证), whether the province requires the "
                "mother's letter for anyone else to collect, and the collector her letter names (masked)",
                "type": ["object", "null"],
                "required": ["appointment", "letter_required", "collector"],
                "properties": {
                    "appointment": {"type": ["object", "null"]},
                    "letter_required": {"type": "boolean"},
                    "collector": {"type": ["object", "null"]},
                },
            },
            "revocation": {
                "description": "state revoked: the issuing institution declared the certificate void (宣布作废, "
                "decision 0040): the number, the ground and its words, what the family is told, the counter and the "
                "materials; never the issuer's note",
                "type": ["object", "null"],
                "required": [
                    "certificate_number",
                    "reason",
                    "reason_label",
                    "message",
                    "counter",
                    "where",
                    "bring",
                ],
                "properties": {
                    "certificate_number": {"type": "string"},
                    "reason": {"enum": list(REVOCATION_REASONS)},
                    "reason_label": {"type": "string"},
                    "message": {"type": "string"},
                    "counter": _ref("Counter"),
                    "where": {"type": "string"},
                    "bring": {"type": "array", "items": {"type": "string"}},
                    "at": {"type": ["string", "null"]},
                },
            },
            "counter_reason": {
                "description": "state counter_only: why, and the counter and materials as the parent was told",
                "type": ["object", "null"],
                "required": ["code", "label", "message", "counter", "where", "bring"],
                "properties": {
                    "code": {"type": "string"},
                    "label": {"type": "string"},
                    "message": {"type": "string"},
                    "counter": _ref("Counter"),
                    "where": {"type": "string"},
                    "bring": {"type": "array", "items": {"type": "string"}},
                },
            },
            "father_invitation": {
                "description": "the mother's view: whether the father was invited, and whether he joined",
                "type": ["object", "null"],
                "required": ["status", "expires_at"],
                "properties": {
                    "status": {"enum": ["invited", "joined"]},
                    "expires_at": {"type": ["string", "null"], "format": "date-time"},
                },
            },
        },
    },
    "FatherStatus": {
        "description": (
            "what a father who joined by invitation sees: the state and his own part (his face check, "
            "his ID photos); nothing of the mother's or the newborn's personal data"
        ),
        "type": "object",
        "required": ["id", "role", "state", "version", "next_steps", "done_steps", "father"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "role": {"const": "father"},
            "state": {"enum": STATES},
            "state_label": {"type": "string"},
            "version": {"type": "integer"},
            "province": {"type": "string"},
            "updated_at": {"type": ["string", "null"]},
            "next_steps": {"type": "array", "items": _ref("Step")},
            "done_steps": {"type": "array", "items": _ref("Step")},
            "father": {
                "type": "object",
                "required": ["verified", "documents"],
                "properties": {
                    "verified": {"type": "boolean"},
                    "documents": {
                        "type": "array",
                        "items": {"enum": ["father_id_front", "father_id_back", "father_handheld_id"]},
                    },
                },
            },
        },
        "not": {
            "anyOf": [
                {"required": ["mother_name_masked"]},
                {"required": ["delivery_record"]},
                {"required": ["rejection"]},
            ]
        },
    },
    "AnyStatus": {
        "description": "the applicant's status view, or the reduced one of a father who joined by invitation",
        "anyOf": [_ref("FatherStatus"), _ref("Status")],
    },
    "StatusList": {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {"type": "array", "items": _ref("AnyStatus")},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "FatherInvitation": {
        "allOf": [_ref("Version")],
        "required": ["invitation", "expires_at", "path", "qr_svg"],
        "properties": {
            "invitation": {
                "type": "string",
                "pattern": "^[A-Za-z0-9_-]{27}$",
                "description": "the one-time code (160 random bits); shown once, stored only as a keyed digest",
            },
            "expires_at": {"type": "string", "format": "date-time"},
            "path": {
                "type": "string",
                "pattern": "^/pages/father/join\\?invitation=[A-Za-z0-9_-]{27}$",
                "description": "the mini-program page the share card opens",
            },
            "qr_svg": {"type": "string", "description": "a QR code of `path` (SVG)"},
        },
    },
    "FatherJoined": {
        "allOf": [_ref("Version")],
        "required": ["application_id", "role"],
        "properties": {"application_id": {"type": "string", "format": "uuid"}, "role": {"const": "father"}},
    },
    "Circumstances": {
        "type": "object",
        "properties": {
            "province": {"enum": sorted(load_profiles())},
            "parents": {"enum": ["both", "single_mother", "single_father"]},
            "request_kind": {"enum": ["first_issue", "replacement", "reissue"]},
            "born_in_institution": {"type": "boolean"},
            "mother_residency": RESIDENCY,
            "father_residency": RESIDENCY,
            "institution": {
                **INSTITUTION_CODE,
                "description": "where she gave birth (the hospital's QR code carries it): a referral names its "
                "counter; without a province, its province's profile applies",
            },
        },
    },
    "FaceRequest": {
        "type": "object",
        "required": ["role", "name", "id_number"],
        "properties": {
            "role": {"enum": ["mother", "father"]},
            "name": TEXT,
            "id_number": DOCUMENT_NUMBER,
            "id_type": ID_TYPE,
        },
    },
    "FaceStarted": {
        "allOf": [_ref("Version")],
        "required": ["out_seq_no", "channel"],
        "description": "WeChat (channel `wechat`): `verify_id` for wx.requestFacialVerify. A provincial app "
        "(粤省事 `yueshengshi`, 北京通 `beijingtong`, 健康山东 `jiankangshandong`, 冀时办 `jishiban`): "
        "`authorization_url`, the app's OpenID Connect authorization request for a fresh face authentication "
        "(state = out_seq_no; docs/decisions/0030); the mini-program opens it and posts the redirect's "
        "`code` and `state` to …/result",
        "properties": {
            "verify_id": {"type": "string"},
            "out_seq_no": {"type": "string"},
            "channel": {"enum": ["wechat", *CHANNELS]},
            "authorization_url": {"type": "string", "format": "uri"},
        },
    },
    "ProviderRedirect": {
        "type": "object",
        "description": "a provincial app's face check: the query of its redirect (code and state, or error "
        "and state); WeChat's check sends no body",
        "properties": {
            "code": {"type": "string"},
            "state": {"type": "string"},
            "error": {"type": "string"},
            "error_description": {"type": "string"},
        },
    },
    "FaceVerified": {
        "allOf": [_ref("Version")],
        "required": ["verified", "role"],
        "properties": {
            "verified": {"const": True},
            "role": {"enum": ["mother", "father"]},
            "delivery_record_linked": {
                "type": "boolean",
                "description": "after the mother's check: whether her delivery record was found and linked; "
                "if not, GET …/delivery-record says why (not_delivery_mother, record_in_use, …)",
            },
        },
    },
    "DeliveryRecord": {
        "type": "object",
        "required": ["delivery_record", "version"],
        "properties": {
            "version": {"type": "integer"},
            "delivery_record": {
                "type": "object",
                "required": [
                    "institution_name",
                    "mother_name",
                    "mother_id_number",
                    "newborn",
                    "confirmed",
                    "disputed",
                ],
                "properties": {
                    "institution_name": {"type": "string"},
                    "inpatient_no": {"type": "string"},
                    "mother_name": {"type": "string", "description": "masked"},
                    "mother_id_number": {"type": "string", "description": "masked"},
                    "newborn": {"type": "object"},
                    "birthplace": {"type": "object"},
                    "attendant": {"type": "string", "description": "masked"},
                    "entered_on": {"type": "string", "format": "date"},
                    "confirmed": {"type": "boolean"},
                    "disputed": {"type": "boolean"},
                    "dispute_reason": {"type": ["string", "null"]},
                },
            },
        },
    },
    "Reason": {"type": "object", "required": ["reason"], "properties": {"reason": TEXT}},
    "Parent": {
        "type": "object",
        "required": ["nationality", "ethnicity", "address"],
        "properties": {
            "name": TEXT,
            "id_number": {"type": "string", "minLength": 1},
            "id_type": ID_TYPE,
            "birth_date": {
                "type": "string",
                "format": "date",
                "description": "with a travel permit (its number has no birth date)",
            },
            "nationality": {
                "type": "string",
                "pattern": "^[A-Za-z]{3}$",
                "description": "ISO 3166-1 alpha-3, CHN",
            },
            "ethnicity": {"enum": list(ETHNIC_GROUPS), "description": "GB/T 3304 two-digit code"},
            "address": TEXT,
            "residency": RESIDENCY,
            "source": {"enum": ["typed", "registry"]},
        },
    },
    "Details": {
        "type": "object",
        "required": ["newborn_name", "mother"],
        "properties": {
            "newborn_name": TEXT,
            "mother": _ref("Parent"),
            "father": {
                "oneOf": [{"allOf": [_ref("Parent")], "required": ["name", "id_number"]}, {"type": "null"}]
            },
        },
    },
    "DocumentStored": {
        "allOf": [_ref("Version")],
        "required": ["document_id", "sha256"],
        "properties": {
            "document_id": {"type": "string"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
    },
    "Form": {
        "type": "object",
        "required": ["form", "sha256", "signature_valid", "version"],
        "properties": {
            "form": {"type": "object"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "signature_valid": {"type": "boolean"},
            "version": {"type": "integer"},
        },
    },
    "DeliveryMethod": {
        "type": "object",
        "required": ["method"],
        "properties": {
            "method": {"enum": ["ems", "pickup"]},
            "recipient": {
                "type": "object",
                "required": ["name", "phone", "address"],
                "properties": {"name": TEXT, "phone": MOBILE, "address": TEXT},
            },
        },
        "if": {"properties": {"method": {"const": "ems"}}},
        "then": {"required": ["recipient"]},
    },
    "Payment": {
        "allOf": [_ref("Version")],
        "required": ["out_trade_no", "amount_fen", "pay_params"],
        "properties": {
            "out_trade_no": {"type": "string"},
            "amount_fen": {"type": "integer"},
            "pay_params": {"type": "object", "description": "the arguments of wx.requestPayment"},
        },
    },
}


def _op(
    summary: str,
    responses: JSON,
    *,
    body: JSON | None = None,
    auth: bool = True,
    multipart: JSON | None = None,
) -> JSON:
    op: JSON = {"summary": summary, "responses": {**responses, "default": PROBLEM}}
    if auth:
        op["security"] = [{"bearer": []}]
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if multipart is not None:
        op["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": multipart}}}
    return op


APP_ID = {"name": "app_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
COMMAND_HEADERS = [
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "\\S"},
        "description": "a retry with the same key gets the first answer again (header Idempotent-Replayed: "
        "true); the same key with another request: 422 idempotency_key_reused",
    },
    {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "pattern": '^(\\*|(W/)?"?[0-9]{1,18}"?)$'},
        "description": "the version (an ETag, quoted or not; * for any)",
    },
]


def _command(summary: str, ok: JSON, *, body: JSON | None = None, multipart: JSON | None = None) -> JSON:
    op = _op(summary, ok, body=body, multipart=multipart)
    op["parameters"] = COMMAND_HEADERS
    return op


PATHS: JSON = {
    "/api/v1/auth/wechat": {
        "post": _op(
            "wx.login code → our token",
            {"200": _json(_ref("Token"), "a token"), "429": RATE_LIMITED},
            body={"type": "object", "required": ["code"], "properties": {"code": TEXT}},
            auth=False,
        )
    },
    "/api/v1/auth/yueshengshi": {
        "post": _op(
            "粤省事 ticket → our token",
            {"200": _json(_ref("Token"), "a token"), "429": RATE_LIMITED},
            body={"type": "object", "required": ["ticket"], "properties": {"ticket": TEXT}},
            auth=False,
        )
    },
    "/api/v1/auth/channels/{channel}": {
        "parameters": [
            {
                "name": "channel",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "a provincial app: "
                + ", ".join(f"`{n}` ({c.label})" for n, c in CHANNELS.items()),
            }
        ],
        "post": _op(
            "a provincial app's signed ticket → our token (404 unknown_channel; 503 provider_not_configured)",
            {"200": _json(_ref("ChannelToken"), "a token"), "429": RATE_LIMITED},
            body={"type": "object", "required": ["ticket"], "properties": {"ticket": TEXT}},
            auth=False,
        ),
    },
    "/api/v1/applications": {
        "post": _command(
            "start an application (the mother)",
            {"201": _json(_ref("Version"), "started")},
            body=_ref("Circumstances"),
        ),
        "get": {
            **_op("my applications, newest first", {"200": _json(_ref("StatusList"), "status views")}),
            "parameters": [
                {"name": "cursor", "in": "query", "schema": CURSOR},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
            ],
        },
    },
    "/api/v1/institutions": {
        "get": {
            **_op(
                "the institutions and their counters (public: where referrals send families)",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["items"],
                            "properties": {
                                "items": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["code", "name", "province", "counter"],
                                        "properties": {
                                            "code": {"type": "string"},
                                            "name": {"type": "string"},
                                            "province": {"type": "string"},
                                            "counter": {
                                                "type": ["object", "null"],
                                                "required": ["address", "phone", "hours"],
                                                "properties": {
                                                    "address": {"type": "string"},
                                                    "phone": {"type": "string"},
                                                    "hours": {"type": "string"},
                                                },
                                            },
                                        },
                                    },
                                }
                            },
                        },
                        "institutions by code (read at most once a minute)",
                    )
                },
                auth=False,
            ),
            "parameters": [{"name": "province", "in": "query", "schema": {"enum": sorted(load_profiles())}}],
        }
    },
    "/api/v1/applications/{app_id}": {
        "parameters": [APP_ID],
        "get": _op(
            "one application's status view (a father who joined by invitation gets the reduced one)",
            {"200": _json(_ref("AnyStatus"), "the status view")},
        ),
    },
    "/api/v1/applications/{app_id}/father-invitation": {
        "parameters": [APP_ID],
        "post": _command(
            "the mother (after her own face check) invites the father to verify on his own WeChat account; "
            "a new invitation supersedes the previous one; valid 24 h, once",
            {"201": _json(_ref("FatherInvitation"), "the code, its mini-program page and a QR code")},
        ),
    },
    "/api/v1/father-invitations/accept": {
        "post": {
            **_op(
                "the father, logged in on his own account, joins the application with the code; he may then "
                "do his own face check and upload his own ID photos, and sees a reduced status view",
                {"200": _json(_ref("FatherJoined"), "joined"), "429": RATE_LIMITED},
                body={
                    "type": "object",
                    "required": ["invitation"],
                    "properties": {"invitation": TEXT},
                },
            ),
            "parameters": [COMMAND_HEADERS[0]],
        }
    },
    "/api/v1/applications/{app_id}/face-verifications": {
        "parameters": [APP_ID],
        "post": _command(
            "begin a face verification",
            {"201": _json(_ref("FaceStarted"), "verify_id"), "429": RATE_LIMITED},
            body=_ref("FaceRequest"),
        ),
    },
    "/api/v1/applications/{app_id}/face-verifications/{out_seq_no}/result": {
        "parameters": [
            APP_ID,
            {"name": "out_seq_no", "in": "path", "required": True, "schema": {"type": "string"}},
        ],
        "post": {
            **_command(
                "the verdict after wx.requestFacialVerify, or after a provincial app's face check (with its "
                "redirect's code and state); a check that did not pass is a 409 with its code",
                {"200": _json(_ref("FaceVerified"), "verified")},
            ),
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": _ref("ProviderRedirect")}},
            },
        },
    },
    "/api/v1/applications/{app_id}/delivery-record": {
        "parameters": [APP_ID],
        "get": _op(
            "the hospital's delivery record, masked", {"200": _json(_ref("DeliveryRecord"), "the record")}
        ),
    },
    "/api/v1/applications/{app_id}/delivery-record/confirm": {
        "parameters": [APP_ID],
        "post": _command("confirm the delivery record", {"200": _json(_ref("Version"), "confirmed")}),
    },
    "/api/v1/applications/{app_id}/delivery-record/dispute": {
        "parameters": [APP_ID],
        "post": _command(
            "dispute the delivery record", {"200": _json(_ref("Version"), "disputed")}, body=_ref("Reason")
        ),
    },
    "/api/v1/applications/{app_id}/details": {
        "parameters": [APP_ID],
        "put": _command(
            "the newborn's name and the parents' details",
            {"200": _json(_ref("Version"), "saved")},
            body=_ref("Details"),
        ),
    },
    "/api/v1/applications/{app_id}/details/prefill": {
        "parameters": [APP_ID],
        "get": _op(
            "police-registry ethnicity and address of the verified parents (Guangdong)",
            {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["available", "mother", "father"],
                        "properties": {
                            "available": {"type": "boolean"},
                            "mother": {"type": ["object", "null"]},
                            "father": {"type": ["object", "null"]},
                        },
                    },
                    "prefill",
                )
            },
        ),
    },
    "/api/v1/applications/{app_id}/documents": {
        "parameters": [APP_ID],
        "post": _command(
            "an ID photo, or a material of 出生一件事's 表1 her opt-in asks for (JPEG or PNG; type from the bytes; "
            "EXIF removed)",
            {"201": _json(_ref("DocumentStored"), "stored"), "429": RATE_LIMITED},
            multipart={
                "type": "object",
                "required": ["kind", "file"],
                "additionalProperties": False,
                "properties": {
                    "kind": {"enum": list(DOCUMENT_KINDS)},
                    "file": {"type": "string", "contentMediaType": "image/jpeg"},
                },
            },
        ),
    },
    "/api/v1/applications/{app_id}/form": {
        "parameters": [APP_ID],
        "get": _op(
            "the registration form exactly as it will be signed", {"200": _json(_ref("Form"), "the form")}
        ),
    },
    "/api/v1/applications/{app_id}/signature": {
        "parameters": [APP_ID],
        "post": _command(
            "the mother's e-signature (PNG) over the form with this SHA-256",
            {"200": _json(_ref("Version"), "signed"), "429": RATE_LIMITED},
            multipart={
                "type": "object",
                "required": ["form_sha256", "file"],
                "additionalProperties": False,
                "properties": {
                    "form_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "file": {"type": "string", "contentMediaType": "image/png"},
                },
            },
        ),
    },
    "/api/v1/applications/{app_id}/delivery-method": {
        "parameters": [APP_ID],
        "put": _command(
            "EMS or pickup", {"200": _json(_ref("Version"), "saved")}, body=_ref("DeliveryMethod")
        ),
    },
    "/api/v1/applications/{app_id}/payments": {
        "parameters": [APP_ID],
        "post": _command(
            "WeChat Pay parameters for prepaid postage", {"201": _json(_ref("Payment"), "pay params")}
        ),
    },
    "/api/v1/applications/{app_id}/submit": {
        "parameters": [APP_ID],
        "post": _command("submit for review", {"200": _json(_ref("Version"), "submitted")}),
    },
    "/api/v1/applications/{app_id}/withdraw": {
        "parameters": [APP_ID],
        "post": {
            **_command("withdraw before issue", {"200": _json(_ref("Version"), "withdrawn")}),
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {"schema": {"type": "object", "properties": {"reason": TEXT}}}
                },
            },
        },
    },
    "/api/v1/payments/wechat/notify": {
        "post": {
            "summary": "WeChat Pay v2 notification (XML), signature and amount checked",
            "requestBody": {"required": True, "content": {"application/xml": {"schema": {"type": "string"}}}},
            "responses": {
                status: {"description": what, "content": {"application/xml": {"schema": {"type": "string"}}}}
                for status, what in (
                    ("200", "acknowledged"),
                    ("400", "refused: not signed by WeChat Pay, or malformed"),
                    ("404", "refused: an order we never made"),
                    ("413", "refused: too large"),
                )
            },
        }
    },
    "/healthz": {"get": _op("liveness", {"200": _json({"type": "object"}, "ok")}, auth=False)},
    "/readyz": {"get": _op("readiness", {"200": _json({"type": "object"}, "ready")}, auth=False)},
    "/metrics": {
        "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition"}}}
    },
    "/.well-known/jwks.json": {
        "get": _op("our token-signing public keys", {"200": _json({"type": "object"}, "JWKS")}, auth=False)
    },
    "/api/v1/openapi.json": {
        "get": _op("this document", {"200": _json({"type": "object"}, "OpenAPI 3.1")}, auth=False)
    },
}

SCHEMAS.update(
    {
        "StaffToken": {
            "type": "object",
            "required": ["token", "expires_in", "role"],
            "properties": {
                "token": {"type": "string"},
                "expires_in": {"type": "integer", "maximum": 7200},
                "role": {"enum": ["issuer", "hospital", "auditor", "admin", "verifier", "manager"]},
                "institution": {"type": ["string", "null"]},
                "name": {"type": "string"},
                "scope": {
                    "type": "string",
                    "description": "a manager's statistics scope: institution:CODE, district:440104, province:GD",
                },
            },
        },
        "Delivery": {
            "type": "object",
            "required": ["inpatient_no", "mother", "newborn", "birthplace", "attendant"],
            "properties": {
                "inpatient_no": {"type": "string"},
                "birth_order": {"type": "integer", "minimum": 1, "description": "1 unless twins (2, 3 …)"},
                "mother": {
                    "type": "object",
                    "required": ["name", "id_number"],
                    "properties": {
                        "name": {"type": "string"},
                        "id_number": {"type": "string"},
                        "id_type": ID_TYPE,
                    },
                },
                "newborn": {
                    "type": "object",
                    "required": ["sex", "born_at", "gestational_weeks", "weight_g", "length_cm"],
                    "properties": {
                        "sex": {"enum": ["M", "F"]},
                        "born_at": {"type": "string", "format": "date-time"},
                        "gestational_weeks": {"type": "integer"},
                        "weight_g": {"type": "integer"},
                        "length_cm": {"type": "number"},
                    },
                },
                "birthplace": {
                    "type": "object",
                    "required": ["province", "city", "county"],
                    "properties": {
                        "province": {"type": "string"},
                        "city": {"type": "string"},
                        "county": {"type": "string"},
                    },
                },
                "attendant": {"type": "string"},
                "reason": {"type": "string", "description": "required on a correction (PUT)"},
            },
        },
        "DeliveryCreated": {
            "type": "object",
            "required": ["id", "version"],
            "properties": {"id": {"type": "string", "format": "uuid"}, "version": {"type": "integer"}},
        },
        "DeliveryView": {
            "type": "object",
            "required": ["id", "version", "institution", "mother_name", "born_at", "entered_late"],
            "properties": {
                "id": {"type": "string"},
                "version": {"type": "integer"},
                "institution": {"type": "string"},
                "entered_late": {"type": "boolean"},
                "application_id": {"type": ["string", "null"]},
                "open_dispute": {"type": ["string", "null"]},
                "issued_certificate": {"type": ["string", "null"]},
            },
        },
        "Review": {
            "type": "object",
            "required": ["application", "form", "comparison", "documents", "history"],
            "properties": {
                "application": {"type": "object", "required": ["id", "state", "version"]},
                "form": {"type": ["object", "null"]},
                "form_sha256": {"type": ["string", "null"]},
                "delivery_record": {"type": ["object", "null"]},
                "comparison": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "label", "differs"],
                        "properties": {
                            "field": {"type": "string"},
                            "label": {"type": "string"},
                            "differs": {"type": "boolean"},
                        },
                    },
                },
                "documents": {
                    "type": "array",
                    "items": {"type": "object", "required": ["kind", "document_id", "url"]},
                },
                "changes_since_rejection": {"type": ["array", "null"]},
                "history": {
                    "type": "array",
                    "items": {"type": "object", "required": ["version", "event", "at", "actor"]},
                },
            },
        },
        "Reject": {
            "description": "reason_codes from the catalogue (docs/decisions/0045; ``other`` needs reasons); a "
            "body without reason_codes is ``other`` and needs reasons (the first API's body)",
            "type": "object",
            "required": ["fields"],
            "anyOf": [{"required": ["reason_codes"]}, {"required": ["reasons"]}],
            "properties": {
                "reason_codes": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "reasons": {"type": "array", "items": TEXT},
                "fields": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            },
        },
        "Issue": {
            "type": "object",
            "required": ["certificate_number", "sealer"],
            "properties": {
                "certificate_number": {"type": "string", "pattern": "^[A-Z][0-9]{9}$"},
                "sealer": {**TEXT, "description": "盖章人"},
            },
        },
        "Dispatch": {
            "type": "object",
            "required": ["tracking_number"],
            "properties": {"tracking_number": {"type": "string", "pattern": "^[A-Za-z0-9]{10,32}$"}},
        },
        "Handover": {
            "description": "the collector must have passed the counter's face check (collector-check) as this "
            "name and ID number within 30 minutes; where the province requires it (Beijing, Hebei) anyone but "
            "the mother must be the one the mother's signed letter names",
            "type": "object",
            "required": ["recipient_name", "relation", "id_number"],
            "properties": {
                "recipient_name": TEXT,
                "relation": {"enum": ["mother", "father", "authorized"]},
                "id_number": ID_NUMBER,
            },
        },
        "Replacement": {
            "type": "object",
            "required": ["certificate_number", "sealer", "cause", "old_certificate"],
            "properties": {
                "certificate_number": {"type": "string", "pattern": "^[A-Z][0-9]{9}$"},
                "sealer": {**TEXT, "description": "盖章人"},
                "cause": {
                    "enum": ["misprinted", "damaged"],
                    "description": "打印错误 or 毁损 (the institution's own)",
                },
                "old_certificate": {
                    "enum": ["recovered", "destroyed"],
                    "description": "the old blank: 收回 or 销毁",
                },
                "note": {"type": "string", "maxLength": 200, "pattern": "^$|\\S"},
            },
        },
        "Revocation": {
            "type": "object",
            "required": ["reason", "note"],
            "properties": {
                "reason": {
                    "enum": list(REVOCATION_REASONS),
                    "description": "以欺骗等不正当手段取得 / 签发机构工作差错 / 依人民法院生效法律文书",
                },
                "note": {
                    "type": "string",
                    "minLength": NOTE_LOW,
                    "maxLength": NOTE_HIGH,
                    "pattern": "\\S",
                    "description": "the issuer's account of the review (issuers and auditors read it; never the family)",
                },
            },
        },
        "CollectorCheckRequest": {
            "type": "object",
            "required": ["name", "id_number"],
            "properties": {"name": TEXT, "id_number": ID_NUMBER},
        },
        "CollectorCheck": {
            "type": "object",
            "required": ["id", "version", "code", "path", "qr_svg", "expires_at"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "version": {"type": "integer"},
                "state": {"enum": STATES},
                "code": {"type": "string", "description": "one-time; only its keyed digest is stored"},
                "path": {
                    "type": "string",
                    "description": "the mini-program page the collector's phone opens",
                },
                "qr_svg": {"type": "string"},
                "expires_at": {"type": "string"},
            },
        },
        "CollectorCode": {
            "type": "object",
            "required": ["code"],
            "properties": {"code": {"type": "string", "pattern": "^[A-Za-z0-9_-]{27}$"}},
        },
        "Collector": {
            "type": "object",
            "required": ["collector_name", "collector_id_number"],
            "properties": {"collector_name": TEXT, "collector_id_number": ID_NUMBER},
        },
        "PickupSlots": {
            "type": "object",
            "required": ["slots", "appointment"],
            "properties": {
                "institution_name": {"type": ["string", "null"]},
                "counter": _ref("Counter"),
                "appointment": {"type": ["object", "null"]},
                "slots": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["date", "start", "end", "label", "remaining"],
                        "properties": {
                            "date": {"type": "string", "format": "date"},
                            "start": {"type": "string"},
                            "end": {"type": "string"},
                            "label": {"type": "string"},
                            "remaining": {"type": "integer", "minimum": 0},
                        },
                    },
                },
            },
        },
    }
)
REVIEW_ID = {"name": "app_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
RECORD_ID = {
    "name": "record_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "format": "uuid"},
}
PATHS.update(
    {
        "/api/v1/auth/staff": {
            "post": _op(
                "staff login; failures make the address (and, from addresses that failed too, the account) "
                "wait longer and longer: 429 with Retry-After",
                {"200": _json(_ref("StaffToken"), "a token"), "429": RATE_LIMITED},
                body={
                    "type": "object",
                    "required": ["username", "password"],
                    "properties": {"username": TEXT, "password": TEXT},
                },
                auth=False,
            )
        },
        "/api/v1/deliveries": {
            "post": _command(
                "分娩信息录入 (hospital role, own institution)",
                {"201": _json(_ref("DeliveryCreated"), "recorded")},
                body=_ref("Delivery"),
            )
        },
        "/api/v1/deliveries/{record_id}": {
            "parameters": [RECORD_ID],
            "get": _op(
                "one of the hospital's own records", {"200": _json(_ref("DeliveryView"), "the record")}
            ),
            "put": _command(
                "correct a record before issue (with a reason)",
                {"200": _json(_ref("DeliveryCreated"), "corrected")},
                body=_ref("Delivery"),
            ),
        },
        "/api/v1/review/applications/{app_id}": {
            "parameters": [REVIEW_ID],
            "get": _op(
                "everything needed to decide (issuer of the institution, or auditor)",
                {"200": _json(_ref("Review"), "review")},
            ),
        },
        "/api/v1/review/applications/{app_id}/documents/{doc_id}": {
            "parameters": [
                REVIEW_ID,
                {"name": "doc_id", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "get": {
                "summary": "one uploaded file, as an attachment (nosniff)",
                "security": [{"bearer": []}],
                "responses": {
                    "200": {"description": "the file", "content": {"image/jpeg": {}, "image/png": {}}},
                    "default": PROBLEM,
                },
            },
        },
        "/api/v1/review/applications/{app_id}/reject": {
            "parameters": [REVIEW_ID],
            "post": _command(
                "驳回 with reasons and fields to fix",
                {"200": _json(_ref("Version"), "returned")},
                body=_ref("Reject"),
            ),
        },
        "/api/v1/review/applications/{app_id}/issue": {
            "parameters": [REVIEW_ID],
            "post": _command(
                "签发 with the blank's serial number",
                {"200": _json(_ref("Version"), "issued")},
                body=_ref("Issue"),
            ),
        },
        "/api/v1/review/applications/{app_id}/dispatch": {
            "parameters": [REVIEW_ID],
            "post": _command(
                "handed to EMS", {"200": _json(_ref("Version"), "dispatched")}, body=_ref("Dispatch")
            ),
        },
        "/api/v1/review/applications/{app_id}/handover": {
            "parameters": [REVIEW_ID],
            "post": _command(
                "on-site handover", {"200": _json(_ref("Version"), "collected")}, body=_ref("Handover")
            ),
        },
        "/api/v1/review/applications/{app_id}/loss": {
            "parameters": [REVIEW_ID],
            "post": _command(
                "EMS lost or damaged it", {"200": _json(_ref("Version"), "lost")}, body=_ref("Reason")
            ),
        },
        "/api/v1/review/applications/{app_id}/reissue": {
            "parameters": [REVIEW_ID],
            "post": _command(
                "reissue with a new number", {"200": _json(_ref("Version"), "issued")}, body=_ref("Issue")
            ),
        },
        "/api/v1/review/applications/{app_id}/replacement": {
            "parameters": [REVIEW_ID],
            "post": _command(
                "换发 for the institution's own error (misprinted or damaged): a new number used once ever, "
                "the old one void and its blank recovered or destroyed, the registered data unchanged; from "
                "issued, delivered or collected (an EMS certificate is sent again)",
                {"200": _json(_ref("Version"), "issued again")},
                body=_ref("Replacement"),
            ),
        },
        "/api/v1/review/applications/{app_id}/revoke": {
            "parameters": [REVIEW_ID],
            "post": _command(
                "宣布作废 (decision 0040): the certificate in force declared void after the institution's review, "
                "once (409 already_revoked), from issued, dispatched, delivered or collected (409 invalid_state); "
                "its e-licence revoked within a minute, the family told and sent to the counter",
                {"200": _json(_ref("Version"), "revoked")},
                body=_ref("Revocation"),
            ),
        },
        "/api/v1/review/applications/{app_id}/collector-check": {
            "parameters": [REVIEW_ID],
            "post": _command(
                "at the counter: a face check of the collector as the ID shown; a one-time code and its QR "
                "for the collector's phone (30 minutes; a new one supersedes it)",
                {"201": _json(_ref("CollectorCheck"), "the code, its page and a QR code")},
                body=_ref("CollectorCheckRequest"),
            ),
        },
        "/api/v1/review/pickup-appointments": {
            "get": {
                **_op(
                    "the institution's appointments to collect on a day (预约取证), with its pickup hours",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["date", "hours", "appointments"],
                                "properties": {
                                    "date": {"type": "string", "format": "date"},
                                    "institution": {"type": ["string", "null"]},
                                    "hours": {"type": "array", "items": {"type": "object"}},
                                    "appointments": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["application_id", "start", "state"],
                                        },
                                    },
                                },
                            },
                            "the day's appointments",
                        )
                    },
                ),
                "parameters": [
                    {
                        "name": "date",
                        "in": "query",
                        "required": False,
                        "description": "the day in Asia/Shanghai (default: today)",
                        "schema": {
                            "type": "string",
                            "format": "date",
                            "pattern": "^20[0-9]{2}-[0-9]{2}-[0-9]{2}$",
                        },
                    }
                ],
            }
        },
        "/api/v1/applications/{app_id}/pickup-slots": {
            "parameters": [APP_ID],
            "get": _op(
                "the slots of the issuing institution's pickup hours the mother can book now, with places left",
                {"200": _json(_ref("PickupSlots"), "slots")},
            ),
        },
        "/api/v1/applications/{app_id}/pickup-appointment": {
            "parameters": [APP_ID],
            "put": _command(
                "预约取证: book (or move to) a slot once the certificate is ready to collect",
                {"200": _json(_ref("Version"), "booked")},
                body={
                    "type": "object",
                    "required": ["date", "start"],
                    "properties": {
                        "date": {
                            "type": "string",
                            "format": "date",
                            "pattern": "^20[0-9]{2}-[0-9]{2}-[0-9]{2}$",
                        },
                        "start": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
                    },
                },
            ),
        },
        "/api/v1/applications/{app_id}/collector-letter/preview": {
            "parameters": [APP_ID],
            "post": _op(
                "the 授权委托书 for this collector exactly as the mother would sign it, with its SHA-256",
                {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["letter", "sha256"],
                            "properties": {"letter": {"type": "object"}, "sha256": {"type": "string"}},
                        },
                        "the letter",
                    )
                },
                body=_ref("Collector"),
            ),
        },
        "/api/v1/applications/{app_id}/collector-letter": {
            "parameters": [APP_ID],
            "post": _command(
                "the mother's e-signature (PNG) on the letter with this SHA-256: the collector may then collect "
                "for her (required in Beijing and Hebei for anyone but the mother)",
                {"201": _json(_ref("Version"), "signed"), "429": RATE_LIMITED},
                multipart={
                    "type": "object",
                    "required": ["collector_name", "collector_id_number", "letter_sha256", "file"],
                    "additionalProperties": False,
                    "properties": {
                        "collector_name": TEXT,
                        "collector_id_number": ID_NUMBER,
                        "letter_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "file": {"type": "string", "contentMediaType": "image/png"},
                    },
                },
            ),
        },
        "/api/v1/collector-checks/face-verifications": {
            "post": {
                **_op(
                    "on the collector's phone (any WeChat user, through the counter's code): a verify_id bound to "
                    "the ID the issuer typed and this user",
                    {
                        "201": _json(
                            {
                                "type": "object",
                                "required": ["verify_id", "out_seq_no"],
                                "properties": {
                                    "verify_id": {"type": "string"},
                                    "out_seq_no": {"type": "string"},
                                },
                            },
                            "verify_id (nothing of the application)",
                        ),
                        "429": RATE_LIMITED,
                    },
                    body=_ref("CollectorCode"),
                ),
                "parameters": [COMMAND_HEADERS[0]],
            }
        },
        "/api/v1/collector-checks/face-verifications/{out_seq_no}/result": {
            "parameters": [
                {"name": "out_seq_no", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "post": {
                **_op(
                    "the collector's verdict after wx.requestFacialVerify (recorded on the application)",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["verified", "out_seq_no"],
                                "properties": {"verified": {"const": True}, "out_seq_no": {"type": "string"}},
                            },
                            "verified",
                        )
                    },
                    body=_ref("CollectorCode"),
                ),
                "parameters": [COMMAND_HEADERS[0]],
            },
        },
    }
)

PATHS.update(
    {
        "/api/v1/review/queue": {
            "get": {
                **_op(
                    "the institution's review queue, oldest submission first, with working-day deadlines",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["items", "counts"],
                                "properties": {
                                    "institution": {"type": "string"},
                                    "as_of": {"type": "string"},
                                    "items": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": [
                                                "application_id",
                                                "state",
                                                "submitted_at",
                                                "due_at",
                                                "overdue",
                                            ],
                                            "properties": {
                                                "application_id": {"type": "string", "format": "uuid"},
                                                "state": {"enum": STATES},
                                                "queue_state": {"type": "string"},
                                                "submitted_at": {"type": "string"},
                                                "due_at": {"type": ["string", "null"]},
                                                "calendar_source": {
                                                    "enum": [
                                                        "official",
                                                        "chinesecalendar",
                                                        "statutory",
                                                        None,
                                                    ],
                                                    "description": "which working-day calendar counted "
                                                    "due_at: an official 放假/调休 schedule loaded with "
                                                    "`birthcert calendar import`, chinesecalendar's data, or "
                                                    "the statutory holidays alone (an estimate)",
                                                },
                                                "calendar_year": {"type": ["integer", "null"]},
                                                "overdue": {"type": "boolean"},
                                                "bundle_due_at": {
                                                    "type": ["string", "null"],
                                                    "description": "出生一件事's time limit while a department "
                                                    "has not answered: the earliest open deadline (decision 0049)",
                                                },
                                                "bundle_open": {"type": "array", "items": {"type": "string"}},
                                                "bundle_overdue": {"type": "boolean"},
                                            },
                                        },
                                    },
                                    "counts": {
                                        "type": "object",
                                        "description": "items per queue state, overdue (reviews past their "
                                        "deadline), bundle_overdue (出生一件事 past its time limit), total",
                                    },
                                    "next_cursor": {"type": ["string", "null"]},
                                },
                            },
                            "the queue",
                        )
                    },
                ),
                "parameters": [
                    {"name": "state", "in": "query", "schema": {"enum": list(QUEUE_STATES)}},
                    {"name": "overdue", "in": "query", "schema": {"enum": ["true", "false"]}},
                    {"name": "bundle_overdue", "in": "query", "schema": {"enum": ["true", "false"]}},
                    {
                        "name": "institution",
                        "in": "query",
                        "schema": INSTITUTION_CODE,
                        "description": "auditors (required for them)",
                    },
                    {"name": "cursor", "in": "query", "schema": CURSOR},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                ],
            }
        },
        "/api/v1/review/queue/events": {
            "get": {
                "summary": "live queue changes (Server-Sent Events, `event: queue`)",
                "security": [{"bearer": []}],
                "responses": {
                    "200": {"description": "an event stream", "content": {"text/event-stream": {}}},
                    "default": PROBLEM,
                },
            }
        },
        "/api/v1/audit/applications/{app_id}/events": {
            "parameters": [REVIEW_ID],
            "get": _op(
                "the complete history, decrypted (the reading is itself recorded)",
                {"200": _json({"type": "object", "required": ["events"]}, "history")},
            ),
        },
        "/api/v1/audit/applications/{app_id}/proof": {
            "parameters": [REVIEW_ID],
            "get": _op(
                "a proof bundle (birthcert-proof-bundle/1) to verify offline",
                {"200": _json({"type": "object", "required": ["format", "checkpoint", "leaves"]}, "bundle")},
            ),
        },
        "/api/v1/audit/checkpoint": {
            "get": _op(
                "the latest signed checkpoint (C2SP signed note); ?fresh=true signs one now",
                {
                    "200": _json(
                        {"type": "object", "required": ["tree_size", "root_hash", "note"]}, "checkpoint"
                    )
                },
            ),
        },
        "/api/v1/audit/consistency": {
            "get": _op(
                "a consistency proof between two tree sizes (?from=N&to=M)",
                {"200": _json({"type": "object", "required": ["from", "to", "proof"]}, "proof")},
            ),
        },
        "/api/v1/audit/integrity": {
            "get": _op(
                "what the start-up self-check found",
                {"200": _json({"type": "object", "required": ["ok"]}, "result")},
            ),
        },
    }
)
PATHS.update(
    {
        "/api/v1/review/pickup-list": {
            "get": {
                "summary": "the day's EMS pickup list (揽件清单): JSON, CSV or a printable PDF (format= or Accept)",
                "security": [{"bearer": []}],
                "parameters": [
                    {
                        "name": "date",
                        "in": "query",
                        "required": False,
                        "description": "the day in Asia/Shanghai, 2000-01-01 to 2099-12-31 (default: today)",
                        "schema": {
                            "type": "string",
                            "format": "date",
                            "pattern": "^20[0-9]{2}-[0-9]{2}-[0-9]{2}$",
                        },
                    },
                    {"name": "format", "in": "query", "schema": {"enum": ["json", "csv", "pdf"]}},
                    {
                        "name": "institution",
                        "in": "query",
                        "schema": INSTITUTION_CODE,
                        "description": "auditors (required for them); an issuer's own",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "the list",
                        "content": {
                            "application/json": {"schema": {"type": "object", "required": ["rows"]}},
                            "text/csv": {},
                            "application/pdf": {},
                        },
                    },
                    "default": PROBLEM,
                },
            }
        },
        "/api/v1/statistics": {
            "get": {
                "summary": "managers' figures per day or week (JSON, or CSV in UTF-8 with BOM): decision 0043",
                "security": [{"bearer": []}],
                "parameters": [
                    {
                        "name": "scope",
                        "in": "query",
                        "description": "institution:CODE, district:440104 or province:GD, within the manager's "
                        "own (default: the manager's own)",
                        "schema": {"type": "string", "maxLength": 40},
                    },
                    {
                        "name": "from",
                        "in": "query",
                        "description": "the first Beijing day (default: 29 days before to)",
                        "schema": {"type": "string", "format": "date"},
                    },
                    {
                        "name": "to",
                        "in": "query",
                        "description": "the last Beijing day, at most 366 days after from (default: today)",
                        "schema": {"type": "string", "format": "date"},
                    },
                    {"name": "granularity", "in": "query", "schema": {"enum": ["day", "week"]}},
                    {"name": "format", "in": "query", "schema": {"enum": ["json", "csv"]}},
                ],
                "responses": {
                    "200": {
                        "description": "the periods' figures, their total and the reviews overdue now",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["scope", "from", "to", "granularity", "periods", "total"],
                                    "properties": {
                                        "periods": {"type": "array", "items": {"type": "object"}},
                                        "total": {
                                            "description": "counts (revoked: certificates declared void); "
                                            "rejections_by_reason by reason code "
                                            "(docs/decisions/0045), rejections_by_field by field, "
                                            "rejections_by_field_group by the field's group; bundle: 出生一件事 "
                                            "by department code — sent, done, refused, on_time, late and "
                                            "turnaround_seconds {count, median, p90} from the hand-off to the "
                                            "answer (docs/decisions/0049)",
                                            "type": "object",
                                        },
                                        "labels": {"type": "object"},
                                        "overdue_open": {"type": "integer"},
                                        "bundle_overdue_open": {
                                            "description": "出生一件事's parts past the time limit and not "
                                            "answered, by department code",
                                            "type": "object",
                                            "additionalProperties": {"type": "integer"},
                                        },
                                        "position": {"type": "integer"},
                                    },
                                }
                            },
                            "text/csv": {},
                        },
                    },
                    "default": PROBLEM,
                },
            }
        },
        "/api/v1/ems/events": {
            "post": {
                "summary": "EMS parcel events (delivered, lost), signed with X-Ems-Signature (HMAC-SHA256)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["waybill_no", "order_id", "status"],
                                "properties": {
                                    "waybill_no": {"type": "string"},
                                    "order_id": {"type": "string"},
                                    "status": {"enum": ["delivered", "lost"]},
                                    "reason": {"type": "string"},
                                    "occurred_at": {"type": "string"},
                                },
                            }
                        }
                    },
                },
                "responses": {"200": _json({"type": "object"}, "recorded"), "default": PROBLEM},
            }
        },
    }
)
# The hospital's side (docs/decisions/0034-hospital-worklist.md): its worklist, its answer to a disputed record,
# the mother's report of a missing one, and what her status view says of them.
ITEM_ID = "(dispute|missing|late):[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SCHEMAS.update(
    {
        "WorklistItem": {
            "type": "object",
            "required": ["item_id", "kind", "institution", "since", "due_at", "overdue"],
            "properties": {
                "item_id": {"type": "string", "pattern": f"^{ITEM_ID}$"},
                "kind": {
                    "enum": list(KINDS),
                    "description": "dispute: the mother disputes the record (answer by correcting it, PUT "
                    "/api/v1/deliveries/{id}, or upholding it, POST …/uphold); missing: she found no record "
                    "and named this institution; late_entry: entered past the province's limit (Guangdong "
                    "72 h, Shandong 24 h)",
                },
                "institution": {"type": "string"},
                "application_id": {"type": ["string", "null"], "format": "uuid"},
                "delivery_record_id": {"type": ["string", "null"], "format": "uuid"},
                "mother_name_masked": {"type": ["string", "null"]},
                "entered_late": {"const": True},
                "since": {
                    "type": "string",
                    "format": "date-time",
                    "description": "disputed, reported or entered at",
                },
                "due_at": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": "the entry deadline (missing, late_entry); none for a dispute",
                },
                "overdue": {"type": "boolean"},
                "reason": {"type": ["string", "null"], "description": "dispute: the mother's reason"},
                "born_on": {
                    "type": ["string", "null"],
                    "format": "date",
                    "description": "missing: the day she gave",
                },
                "mother_id_number_masked": {"type": ["string", "null"], "description": "missing"},
            },
        },
    }
)
SCHEMAS["Status"]["properties"].update(
    {
        "delivery_dispute": {
            "description": "her dispute of the delivery record and the hospital's answer, until she confirms the record",
            "type": ["object", "null"],
            "required": ["status", "label", "answer"],
            "properties": {
                "status": {"enum": ["open", "corrected", "upheld"]},
                "label": {"type": "string"},
                "disputed_at": {"type": ["string", "null"]},
                "answer": {"type": ["string", "null"], "description": "the hospital's reason, in Chinese"},
                "answered_at": {"type": ["string", "null"]},
            },
        },
        "delivery_record_requested": {
            "description": "the institution she asked to enter her missing delivery record, until one is entered",
            "type": ["object", "null"],
            "required": ["institution_name"],
            "properties": {
                "institution_name": {"type": "string"},
                "reported_at": {"type": ["string", "null"]},
            },
        },
        "delivery_record_entered": {
            "description": "the record she reported missing, entered since by a hospital, until she looks at it "
            "(institution_name null when another institution than the one she named entered it)",
            "type": ["object", "null"],
            "required": ["institution_name", "entered_at"],
            "properties": {
                "institution_name": {"type": ["string", "null"]},
                "entered_at": {"type": ["string", "null"]},
            },
        },
    }
)
# Issue 10: what whoever collects needs to know, and where the father goes when the application went to the counter.
SCHEMAS["Status"]["properties"]["pickup"]["properties"].update(
    {
        "institution_name": {"type": ["string", "null"]},
        "who_may_collect": {"type": "array", "items": {"type": "string"}},
        "bring": {"type": "array", "items": {"type": "string"}},
    }
)
SCHEMAS["FatherStatus"]["properties"]["counter"] = {
    "description": "state counter_only: the counter and the materials, as the mother is told them (not the reason)",
    "type": ["object", "null"],
    "required": ["counter", "where", "bring"],
    "properties": {
        "counter": _ref("Counter"),
        "where": {"type": "string"},
        "bring": {"type": "array", "items": {"type": "string"}},
    },
}
PATHS.update(
    {
        "/api/v1/hospital/worklist": {
            "get": {
                **_op(
                    "the hospital's worklist: disputed records, records reported missing, records entered late "
                    "(oldest first; counts per kind and overdue)",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["institution", "as_of", "items", "counts", "next_cursor"],
                                "properties": {
                                    "institution": {"type": "string"},
                                    "as_of": {"type": "string"},
                                    "items": {"type": "array", "items": _ref("WorklistItem")},
                                    "counts": {
                                        "type": "object",
                                        "required": [*KINDS, "overdue", "total"],
                                        "additionalProperties": {"type": "integer"},
                                    },
                                    "next_cursor": {"type": ["string", "null"]},
                                },
                            },
                            "the worklist",
                        )
                    },
                ),
                "parameters": [
                    {"name": "kind", "in": "query", "schema": {"enum": list(KINDS)}},
                    {"name": "overdue", "in": "query", "schema": {"enum": ["true", "false"]}},
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string", "pattern": f"^-?[0-9]{{1,19}}:{ITEM_ID}$"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                ],
            }
        },
        "/api/v1/deliveries/{record_id}/uphold": {
            "parameters": [RECORD_ID],
            "post": _command(
                "answer the mother's dispute: the record stands, for this reason (the other answer is a "
                "correction, PUT /api/v1/deliveries/{record_id}); 409 no_open_dispute when there is none",
                {"200": _json(_ref("DeliveryCreated"), "answered")},
                body=_ref("Reason"),
            ),
        },
        "/api/v1/applications/{app_id}/delivery-record/missing": {
            "parameters": [APP_ID],
            "post": _command(
                "after her face check, no record of hers: the institution she names sees it as missing on its "
                "worklist (overdue past its province's entry limit); 409 delivery_record_entered when there is one",
                {"200": _json(_ref("Version"), "reported")},
                body={
                    "type": "object",
                    "required": ["institution", "born_on"],
                    "properties": {
                        "institution": INSTITUTION_CODE,
                        "born_on": {
                            "type": "string",
                            "format": "date",
                            "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                        },
                    },
                },
            ),
        },
    }
)
SCHEMAS["Reject"]["properties"]["fields"]["items"] = {"enum": list(FIXABLE_FIELDS)}
SCHEMAS["Reject"]["properties"]["reason_codes"]["items"] = {"enum": list(REJECTION_REASONS)}
# The e-licence's state in both parents' status views (decision 0038; the credential: GET …/elicense); revoked
# with the certificate (0040).
for _status in ("Status", "FatherStatus"):
    SCHEMAS[_status]["properties"]["elicense"] = {
        "type": "object",
        "required": ["state", "licence_id"],
        "properties": {
            "state": {"enum": ["none", "pending", "issued", "revoked"]},
            "licence_id": {"type": ["string", "null"]},
        },
    }


def _archive_paths() -> JSON:
    from backend.routes.archive import (
        OPENAPI_PATHS,  # the archive documents its own paths beside its handlers
    )

    return dict(OPENAPI_PATHS)


PATHS.update(_archive_paths())


def _elicense_paths() -> JSON:
    from backend.routes.elicense import (
        OPENAPI_PATHS,
    )  # the e-licence documents its own paths beside its handlers

    return dict(OPENAPI_PATHS)


PATHS.update(_elicense_paths())


def _verification_paths() -> JSON:
    from backend.routes.verification import OPENAPI_PATHS  # beside its handlers (decision 0039)

    return dict(OPENAPI_PATHS)


PATHS.update(_verification_paths())


def _verify_page_paths() -> JSON:
    from backend.routes.verify_page import OPENAPI_PATHS  # beside its handler (decision 0041)

    return dict(OPENAPI_PATHS)


PATHS.update(_verify_page_paths())


def _bundle_paths() -> JSON:
    from backend.routes.bundle import OPENAPI_PATHS, PATH, STATUS_SCHEMA  # beside its handlers (0044)

    paths = {path: dict(item) for path, item in OPENAPI_PATHS.items()}
    for method in ("put", "delete"):
        paths[PATH][method] = {**paths[PATH][method], "parameters": COMMAND_HEADERS}
    SCHEMAS["Status"]["properties"]["bundle"] = STATUS_SCHEMA
    SCHEMAS["Status"]["properties"]["bundle_offered"] = {
        "type": "boolean",
        "description": "her province offers 出生一件事 (GET …/bundle tells what)",
    }
    return paths


PATHS.update(_bundle_paths())


def _department_paths() -> JSON:
    from backend.routes.departments import OPENAPI_PATHS  # beside its handler (decision 0046)

    paths = {path: dict(item) for path, item in OPENAPI_PATHS.items()}
    for item in paths.values():
        for method, operation in item.items():
            item[method] = {**operation, "responses": {**operation["responses"], "default": PROBLEM}}
    return paths


PATHS.update(_department_paths())
# Operations documented beside their handlers that the ``verification`` limit applies to: each lists its 429.
for _limited in ("/api/v1/verifications", "/api/v1/verifications/archive", "/api/v1/elicense/presentations"):
    PATHS[_limited]["post"]["responses"]["429"] = RATE_LIMITED


DOCUMENT: JSON = {
    "openapi": "3.1.0",
    "info": {
        "title": "birthcert — 出生医学证明网上申领",
        "version": "1.0.0",
        "description": "Errors are RFC 9457 problems with a stable `code`; commands accept Idempotency-Key and If-Match.",
    },
    "servers": [{"url": "/"}],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT (EdDSA)"}},
    },
}
_BODY = orjson.dumps(DOCUMENT)


async def openapi_handler(request: web.Request) -> web.Response:
    """The OpenAPI document."""
    return web.Response(body=_BODY, content_type="application/json")
