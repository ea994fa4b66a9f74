"""The hospital's side over HTTP: its worklist, its answer to a disputed record, and the mother's report that her
record is missing (what puts it on that worklist).

- ``GET /api/v1/hospital/worklist`` (role ``hospital``, its own institution): disputed records, missing records and
  records entered late (``projections.worklist.HospitalWorklistView``), oldest first, with counts per kind and
  overdue. A dispute comes with the mother's reason and a missing record with the birth day she gave and her
  masked ID number, read from the event store for this page only (Redis holds neither).
- ``POST /api/v1/deliveries/{record_id}/uphold`` ``{reason}``: the record stands; the mother reads the reason in her
  status view. The other answer, correcting the record, is ``PUT /api/v1/deliveries/{record_id}`` (staff.py).
- ``POST /api/v1/applications/{app_id}/delivery-record/missing`` ``{institution, born_on}`` (the mother, once her face
  check passed and no record of hers is there) and ``GET /api/v1/institutions`` (the institutions she picks from).

The OpenAPI document takes these paths from ``OPENAPI_PATHS`` here, as it does the archive's.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import date
from typing import Any, Final

from aiohttp import web

from backend.components import (
    APPLICATIONS,
    FOLLOWERS,
    PARKING,
    READ_YOUR_WRITES_SECONDS,
    REDIS_CLIENT,
    STATUS_FOLLOWER,
    STORE_EXECUTOR,
    actor_of,
    expected_version,
    in_store,
    json_response,
    query_limit,
    run_command,
)
from backend.errors import BadRequest, ViewRecovering, json_body
from backend.routes.parents import FieldCollector, _app_id, _fingerprint
from domain.application import BirthCertificateApplication
from domain.errors import FieldError, NotFound
from domain.values import IdNumber
from projections.institution_items import DEFAULT_LIMIT, MAX_LIMIT
from projections.runner import LogFollower
from projections.worklist import DISPUTE, KINDS, MISSING, HospitalWorklistView

routes = web.RouteTableDef()

WORKLIST_VIEW = web.AppKey("worklist_view", HospitalWorklistView)
WORKLIST_FOLLOWER = web.AppKey("worklist_follower", LogFollower)


async def worklist_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the worklist view and its follower (every process, like the review queue's)."""
    view = HospitalWorklistView(app[REDIS_CLIENT], app[APPLICATIONS], app[STORE_EXECUTOR])
    follower = LogFollower(
        app[APPLICATIONS], view, executor=app[STORE_EXECUTOR], name="worklist", parking=app.get(PARKING)
    )
    app[WORKLIST_VIEW], app[WORKLIST_FOLLOWER] = view, follower
    followers = app.get(FOLLOWERS)
    if followers is not None:
        followers.append(follower)
    task = asyncio.create_task(follower.run(), name="worklist-follower")
    yield
    follower.stop()
    try:
        await asyncio.wait_for(asyncio.shield(task), 5.0)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# ---------------------------------------------------------------- the hospital


def _case_details(item: dict[str, Any], app: BirthCertificateApplication | None) -> dict[str, Any]:
    """What the hospital needs to act on one item, from the application as stored (never from Redis)."""
    if item["kind"] == DISPUTE:
        return {"reason": None if app is None else app.dispute_reason}
    if item["kind"] == MISSING:
        awaited = None if app is None else app.delivery_awaited
        mother = {} if app is None else app.verified.get("mother") or {}
        return {
            "born_on": None if awaited is None else awaited["born_on"],
            "mother_id_number_masked": IdNumber(mother["id_number"]).masked() if mother else None,
        }
    return {}


@routes.get("/api/v1/hospital/worklist")
async def hospital_worklist(request: web.Request) -> web.Response:
    """The institution's disputed, missing and late delivery records, oldest first, with counts."""
    actor = actor_of(request, "hospital")
    query = request.query
    kind = query.get("kind") or None
    if kind is not None and kind not in KINDS:
        raise BadRequest(f"kind 应为 {'、'.join(KINDS)} 之一", code="invalid_kind_filter")
    overdue_text = query.get("overdue")
    if overdue_text and overdue_text not in ("true", "false"):
        raise BadRequest("overdue 应为 true 或 false", code="invalid_overdue_filter")
    limit = query_limit(request, DEFAULT_LIMIT, MAX_LIMIT)
    follower = request.app[WORKLIST_FOLLOWER]
    if follower.recovering:
        raise ViewRecovering()  # lost and being rebuilt: it would miss records
    # Read-your-writes for staff: what the parents' view already shows (a dispute answered a moment ago) is here too.
    await follower.wait_for(request.app[STATUS_FOLLOWER].position, timeout=READ_YOUR_WRITES_SECONDS)
    page = await request.app[WORKLIST_VIEW].list(
        actor.institution or "",
        state=kind,
        overdue=None if not overdue_text else overdue_text == "true",
        cursor=query.get("cursor") or None,
        limit=limit,
    )
    app_ids = [item["application_id"] for item in page["items"] if item["kind"] in (DISPUTE, MISSING)]
    cases = (
        await in_store(request, request.app[APPLICATIONS].get_hospital_cases, actor, app_ids)
        if app_ids
        else {}
    )
    page["items"] = [
        {**item, **_case_details(item, cases.get(item["application_id"]))} for item in page["items"]
    ]
    return json_response(page, headers={"Cache-Control": "no-store"})


@routes.post("/api/v1/deliveries/{record_id}/uphold")
async def uphold_delivery(request: web.Request) -> web.Response:
    """Answer the mother's dispute: the record stands, for this reason (she sees it in her status view)."""
    actor = actor_of(request, "hospital")
    try:
        record_id = uuid.UUID(request.match_info["record_id"])
    except ValueError:
        raise NotFound() from None
    body = await json_body(request)
    c = FieldCollector()
    reason = c.text(body, "reason")
    c.check()
    service, version = request.app[APPLICATIONS], expected_version(request)
    return await run_command(
        request,
        actor,
        _fingerprint(request, body),
        lambda: service.uphold_delivery_record(actor, record_id, reason=reason, expected_version=version),
    )


# ---------------------------------------------------------------- the mother


@routes.get("/api/v1/institutions")
async def institutions(request: web.Request) -> web.Response:
    """The midwifery institutions a mother may name as where she gave birth (``?province=GD`` keeps one)."""
    actor_of(request, "parent")
    province = (request.query.get("province") or "").strip().upper()
    every = await in_store(request, request.app[APPLICATIONS].list_institutions)
    items = [
        {"code": i.code, "name": i.name, "province": i.province}
        for i in every
        if not province or i.province == province
    ]
    return json_response({"items": items}, headers={"Cache-Control": "private, max-age=300"})


@routes.post("/api/v1/applications/{app_id}/delivery-record/missing")
async def report_missing_delivery(request: web.Request) -> web.Response:
    """No delivery record of hers yet: the institution she names is asked to enter it (its worklist shows it)."""
    actor = actor_of(request, "parent")
    app_id = _app_id(request)
    body = await json_body(request)
    c = FieldCollector()
    institution = c.text(body, "institution").strip().upper()
    raw_day = c.text(body, "born_on")
    born_on: date | None = None
    if raw_day:
        try:
            born_on = date.fromisoformat(raw_day)
        except ValueError:
            c.errors.append(FieldError("born_on", "invalid_date", "分娩日期格式应为 YYYY-MM-DD"))
    c.check()
    service, version = request.app[APPLICATIONS], expected_version(request)
    day: date = born_on or date.min  # c.check() raised when it is missing
    return await run_command(
        request,
        actor,
        _fingerprint(request, body),
        lambda: service.report_missing_delivery(
            actor, app_id, institution=institution, born_on=day, expected_version=version
        ),
    )


# ---------------------------------------------------------------- the OpenAPI document's part

_TEXT: Final = {"type": "string", "minLength": 1, "pattern": "\\S"}
_UUID: Final = {"type": "string", "format": "uuid"}
_PROBLEM: Final = {
    "description": "A problem (RFC 9457)",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
_ITEM_ID_PATTERN: Final = (
    "^(dispute|missing|late):[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)


def _ok(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


WORKLIST_ITEM: Final = {
    "type": "object",
    "required": ["item_id", "kind", "institution", "since", "due_at", "overdue", "version"],
    "properties": {
        "item_id": {"type": "string", "pattern": _ITEM_ID_PATTERN},
        "kind": {
            "enum": list(KINDS),
            "description": "dispute: the mother disputes the record (answer by correcting it, PUT "
            "/api/v1/deliveries/{id}, or upholding it, POST …/uphold); missing: she found no record and named "
            "this institution; late_entry: entered past the province's limit (Guangdong 72 h, Shandong 24 h)",
        },
        "institution": {"type": "string"},
        "application_id": {"type": ["string", "null"], "format": "uuid"},
        "delivery_record_id": {"type": ["string", "null"], "format": "uuid"},
        "mother_name_masked": {"type": ["string", "null"]},
        "state": {"type": "string", "description": "the application's (dispute, missing)"},
        "entered_late": {"const": True},
        "since": {"type": "string", "format": "date-time", "description": "disputed, reported or entered at"},
        "due_at": {
            "type": ["string", "null"],
            "format": "date-time",
            "description": "the entry deadline (missing, late_entry); none for a dispute",
        },
        "overdue": {"type": "boolean"},
        "version": {"type": "integer"},
        "reason": {"type": ["string", "null"], "description": "dispute: the mother's reason"},
        "born_on": {"type": ["string", "null"], "format": "date", "description": "missing: the day she gave"},
        "mother_id_number_masked": {"type": ["string", "null"], "description": "missing"},
    },
}

OPENAPI_PATHS: Final = {
    "/api/v1/hospital/worklist": {
        "get": {
            "summary": "the hospital's worklist: disputed records, records reported missing, records entered late "
            "(oldest first; counts per kind and overdue)",
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "kind", "in": "query", "schema": {"enum": list(KINDS)}},
                {"name": "overdue", "in": "query", "schema": {"enum": ["true", "false"]}},
                {
                    "name": "cursor",
                    "in": "query",
                    "schema": {
                        "type": "string",
                        "pattern": "^-?[0-9]{1,19}:" + _ITEM_ID_PATTERN.removeprefix("^"),
                    },
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                },
            ],
            "responses": {
                "200": _ok(
                    {
                        "type": "object",
                        "required": ["institution", "as_of", "items", "counts", "next_cursor"],
                        "properties": {
                            "institution": {"type": "string"},
                            "as_of": {"type": "string"},
                            "items": {"type": "array", "items": WORKLIST_ITEM},
                            "counts": {
                                "type": "object",
                                "required": [*KINDS, "overdue", "total"],
                                "additionalProperties": {"type": "integer"},
                            },
                            "next_cursor": {"type": ["string", "null"]},
                        },
                    },
                    "the worklist",
                ),
                "default": _PROBLEM,
            },
        }
    },
    "/api/v1/deliveries/{record_id}/uphold": {
        "parameters": [{"name": "record_id", "in": "path", "required": True, "schema": _UUID}],
        "post": {
            "summary": "answer the mother's dispute: the record stands, for this reason (the other answer is "
            "a correction, PUT /api/v1/deliveries/{record_id}); 409 no_open_dispute when there is none",
            "security": [{"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "required": ["reason"], "properties": {"reason": _TEXT}}
                    }
                },
            },
            "responses": {
                "200": _ok(
                    {
                        "type": "object",
                        "required": ["id", "version"],
                        "properties": {"id": _UUID, "version": {"type": "integer"}},
                    },
                    "answered",
                ),
                "default": _PROBLEM,
            },
        },
    },
    "/api/v1/institutions": {
        "get": {
            "summary": "the midwifery institutions a mother may name (parents)",
            "security": [{"bearer": []}],
            "parameters": [{"name": "province", "in": "query", "schema": {"type": "string"}}],
            "responses": {
                "200": _ok(
                    {
                        "type": "object",
                        "required": ["items"],
                        "properties": {
                            "items": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["code", "name", "province"],
                                    "properties": {
                                        "code": {"type": "string"},
                                        "name": {"type": "string"},
                                        "province": {"type": "string"},
                                    },
                                },
                            }
                        },
                    },
                    "the institutions",
                ),
                "default": _PROBLEM,
            },
        }
    },
    "/api/v1/applications/{app_id}/delivery-record/missing": {
        "parameters": [{"name": "app_id", "in": "path", "required": True, "schema": _UUID}],
        "post": {
            "summary": "after her face check, no record of hers: the institution she names sees it as missing on "
            "its worklist (overdue past its province's entry limit); 409 delivery_record_entered when there is one",
            "security": [{"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["institution", "born_on"],
                            "properties": {
                                "institution": {"type": "string", "pattern": "^[A-Za-z0-9]{4,16}$"},
                                "born_on": {
                                    "type": "string",
                                    "format": "date",
                                    "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _ok({"$ref": "#/components/schemas/Version"}, "reported"),
                "default": _PROBLEM,
            },
        },
    },
}

# The parents' status view gains the hospital's answer and the institution asked to enter a missing record.
OPENAPI_STATUS_PROPERTIES: Final = {
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
        "properties": {"institution_name": {"type": "string"}, "reported_at": {"type": ["string", "null"]}},
    },
}
