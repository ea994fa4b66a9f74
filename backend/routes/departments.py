"""出生一件事's departments: the signed callback their results come back by, and the hand-off process.

- ``POST /api/v1/departments/{department}/results``: a department's answer to one hand-off ``{message_id,
  result_id, state: accepted|refused|done, reason?, result?}``, signed with that department's key
  (``X-Birthcert-Signature``, backend/departments.py); recorded once as ``BundleServiceUpdated`` however often
  it is posted (the message id and the result id). A bad signature is a 401 problem and records nothing.
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
    CONFIG,
    FOLLOWERS,
    HTTP,
    LEADERSHIP,
    PARKING,
    STATUS_FOLLOWER,
    STORE_EXECUTOR,
    follow_on_leader,
    in_store,
    json_response,
)
from backend.departments import (
    SIGNATURE_HEADER,
    DepartmentKey,
    DepartmentPort,
    HttpDepartment,
    department_actor,
    department_keys,
    verify,
)
from backend.ems import InvalidWebhook
from domain.bundle import DEPARTMENT_ANSWERS, Handoff, handoff_of_department
from domain.errors import InvalidValue, NotFound
from domain.values import IdNumber, PersonName
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


OPENAPI_PATHS: dict[str, Any] = {
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
    }
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
