"""出生一件事's departments: the signed callback their results come back by, and the hand-off process.

- ``POST /api/v1/departments/{department}/results``: a department's answer to one hand-off ``{message_id,
  result_id, state: accepted|refused|done, reason?, result?}``, signed with that department's key
  (``X-Birthcert-Signature``, backend/departments.py); recorded once as ``BundleServiceUpdated`` however often
  it is posted (the message id and the result id). A bad signature is a 401 problem and records nothing.
- ``GET /api/v1/departments/{department}/materials/{message_id}/{document}``: one material of 表1 a hand-off
  lists (the police's 户口簿 pages and 结婚证, decision 0047), to the department the message went to, signed
  with its key over the request; any other department, message or document: 401 or 404.
- ``departments_ctx``: the ``HandoffProcess`` behind a ``LogFollower`` named ``bundle_handoff`` and its delivery
  loop, run by the elected leader only (decisions 0024, 0046).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Any, Final
from uuid import UUID

from aiohttp import web

from backend.components import (
    APPLICATIONS,
    BLOBS,
    CONFIG,
    FOLLOWERS,
    HTTP,
    LEADERSHIP,
    PARKING,
    STATUS_FOLLOWER,
    STORE_EXECUTOR,
    follow_on_leader,
    in_io,
    in_store,
    json_response,
)
from backend.departments import (
    MATERIALS_PATH,
    SIGNATURE_HEADER,
    DepartmentKey,
    DepartmentPort,
    HttpDepartment,
    check_signature,
    department_actor,
    department_keys,
    signed_request,
    verify,
)
from backend.ems import InvalidWebhook
from domain.bundle import DEPARTMENT_ANSWERS, Handoff, handoff_of_department
from domain.errors import InvalidValue, NotFound
from domain.values import Address, IdNumber, PersonName
from projections.bundle_handoff import HandoffProcess
from projections.runner import LogFollower
from projections.sql import Database

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

DEPARTMENT_KEYS: web.AppKey[dict[str, DepartmentKey]] = web.AppKey("department_keys")
DEPARTMENT_PORTS: web.AppKey[dict[str, DepartmentPort]] = web.AppKey("department_ports")
HANDOFF_PROCESS = web.AppKey("handoff_process", HandoffProcess)
HANDOFF_FOLLOWER = web.AppKey("handoff_follower", LogFollower)

_MESSAGE_RE: Final = re.compile(
    r"^(?P<app>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-v[1-9][0-9]{0,8}-(?P<dept>[a-z_]{2,32})$"
)
_RESULT_ID_RE: Final = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def _result(handoff: Handoff, raw: Any) -> dict[str, str]:
    """A done result: only the fields this department hands back, each a short text, exactly one of its
    ``result_one_of`` where it has them (the vaccination certificate's number; the card's pickup place or
    parcel number); the police's registered name and citizen ID number checked as such."""
    if raw is None and not handoff.result_one_of:
        return {}
    if not isinstance(raw, dict) or set(raw) - set(handoff.result_fields):
        raise InvalidValue("result", "invalid", f"办理结果只能包含：{'、'.join(handoff.result_fields)}")
    if handoff.result_one_of and len(set(raw) & set(handoff.result_one_of)) != 1:
        raise InvalidValue(
            "result", "invalid", f"办理结果须有且只有其中一项：{'、'.join(handoff.result_one_of)}"
        )
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str) or not value.strip() or len(value) > 200:
            raise InvalidValue(f"result.{key}", "invalid", "办理结果的各项应为200字以内的文字")
        out[key] = value.strip()
    if "registered_name" in out:
        out["registered_name"] = PersonName(out["registered_name"]).value
    if "citizen_id_number" in out:
        out["citizen_id_number"] = IdNumber(out["citizen_id_number"]).value
    if "household_place" in out:
        out["household_place"] = Address(out["household_place"], field="result.household_place").value
    return out


@routes.post("/api/v1/departments/{department}/results")
async def department_result(request: web.Request) -> web.Response:
    """A department's answer to one hand-off, signed with its key."""
    department = request.match_info["department"]
    body = await request.read()
    data = verify(body, request.headers.get(SIGNATURE_HEADER), request.app[DEPARTMENT_KEYS].get(department))
    handoff = handoff_of_department(department)
    result_id, state = data.get("result_id"), data.get("state")
    given = data.get("message_id")
    message_id = given if isinstance(given, str) else ""
    match = _MESSAGE_RE.fullmatch(message_id)
    if handoff is None or match is None or match["dept"] != department:
        raise NotFound("未找到该推送")
    if not isinstance(result_id, str) or not _RESULT_ID_RE.fullmatch(result_id):
        raise InvalidWebhook("缺少或无效的办理结果编号 result_id")
    if state not in DEPARTMENT_ANSWERS:
        raise InvalidValue("state", "invalid", "办理状态只能是 accepted、refused 或 done")
    reason = data.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 200):
        raise InvalidValue("reason", "invalid", "原因应为200字以内的文字")
    result = _result(handoff, data.get("result")) if state == "done" else {}
    outcome = await in_store(
        request,
        request.app[APPLICATIONS].record_bundle_service,
        department_actor(department, handoff.name),
        UUID(match["app"]),
        service=handoff.service,
        department=department,
        state=state,
        message_id=message_id,
        result_id=result_id,
        reason=reason,
        result=result,
    )
    recorded = outcome.position is not None
    if recorded:
        for follower in [*request.app.get(FOLLOWERS, []), request.app.get(STATUS_FOLLOWER)]:
            if follower is not None:
                follower.wake()
    # Never the result itself in the answer (nor in a log line).
    return json_response({"received": True, "recorded": recorded})


@routes.get(MATERIALS_PATH)
async def department_material(request: web.Request) -> web.Response:
    """One material a hand-off lists, to the department it went to (signed over ``GET <path>``, decision 0047):
    its bytes as uploaded (stored encrypted; their sha256 is the message's), never cached."""
    department = request.match_info["department"]
    check_signature(
        signed_request("GET", request.rel_url.raw_path),
        request.headers.get(SIGNATURE_HEADER),
        request.app[DEPARTMENT_KEYS].get(department),
    )
    message_id, document = request.match_info["message_id"], request.match_info["document"]
    match = _MESSAGE_RE.fullmatch(message_id)
    process = request.app.get(HANDOFF_PROCESS)
    if match is None or match["dept"] != department or process is None:
        raise NotFound("未找到该推送")
    handoff = await in_store(request, process.handoff, message_id)
    if handoff is None or handoff.department != department:
        raise NotFound("未找到该推送")
    listed = await in_store(request, process.materials, handoff)
    material = next((m for m in listed if m["kind"] == document), None)
    if material is None:
        raise NotFound("该推送没有此材料，或该事项已办结")
    data, content_type = await in_io(request, request.app[BLOBS].get, material["sha256"])
    # Who fetched which material of which message (ids only: the material itself is personal data).
    log.info("department %s fetched %s of %s", department, document, message_id)
    return web.Response(
        body=data,
        content_type=content_type,
        headers={
            "X-Content-SHA256": material["sha256"],
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


OPENAPI_PATHS: dict[str, Any] = {
    MATERIALS_PATH: {
        "get": {
            "summary": "One material of 表1 a 出生一件事 hand-off lists, to its department, signed X-Birthcert-"
            "Signature over 'GET <path>' (HMAC-SHA256)",
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in ("department", "message_id", "document")
            ]
            + [{"name": SIGNATURE_HEADER, "in": "header", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {
                    "description": "the material's bytes (its sha256 is the message's)",
                    "content": {
                        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                        "image/png": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
            },
        }
    },
    "/api/v1/departments/{department}/results": {
        "post": {
            "summary": "A department's answer to a 出生一件事 hand-off, signed X-Birthcert-Signature (HMAC-SHA256)",
            "parameters": [
                {"name": "department", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": SIGNATURE_HEADER, "in": "header", "required": True, "schema": {"type": "string"}},
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["message_id", "result_id", "state"],
                            "properties": {
                                "message_id": {"type": "string"},
                                "result_id": {"type": "string"},
                                "state": {"enum": list(DEPARTMENT_ANSWERS)},
                                "reason": {"type": "string"},
                                "result": {"type": "object"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "received (recorded once)",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
            },
        }
    },
}


async def departments_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the departments' keys and adapters, the ``HandoffProcess`` and its follower and loop.
    Set ``app[DEPARTMENT_PORTS]`` before start to override the adapters (tests)."""
    loop = asyncio.get_running_loop()
    config, executor = app[CONFIG], app[STORE_EXECUTOR]
    keys = department_keys(config.departments_environ)
    app[DEPARTMENT_KEYS] = keys
    if DEPARTMENT_PORTS not in app:
        ports: dict[str, DepartmentPort] = {
            code: HttpDepartment(key, app[HTTP]) for code, key in keys.items() if key.base_url
        }
        app[DEPARTMENT_PORTS] = ports
    db = await loop.run_in_executor(executor, Database.open, config.event_store_env())
    db.fence = app[LEADERSHIP]  # rows and the position written under the leader's term only
    process = HandoffProcess(
        db, app[APPLICATIONS], executor, app[DEPARTMENT_PORTS], callback_base=config.public_url
    )
    follower = LogFollower(
        app[APPLICATIONS], process, executor=executor, name="bundle_handoff", parking=app.get(PARKING)
    )
    app[HANDOFF_PROCESS], app[HANDOFF_FOLLOWER] = process, follower
    follow_on_leader(app, follower)
    app[LEADERSHIP].lead("bundle-handoff", process.run, process.stop)
    yield
    await app[LEADERSHIP].close()
    with contextlib.suppress(ValueError):
        app[FOLLOWERS].remove(follower)
    await loop.run_in_executor(executor, db.close)


__all__ = [
    "DEPARTMENT_KEYS",
    "DEPARTMENT_PORTS",
    "HANDOFF_PROCESS",
    "OPENAPI_PATHS",
    "departments_ctx",
    "routes",
]
