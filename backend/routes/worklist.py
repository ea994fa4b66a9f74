"""The hospital's side over HTTP: its worklist, its answer to a disputed record, and the mother's report that her
record is missing (what puts it on that worklist).

- ``GET /api/v1/hospital/worklist`` (role ``hospital``, its own institution): disputed records, missing records and
  records entered late (``projections.worklist.HospitalWorklistView``), oldest first, with counts per kind and
  overdue. A dispute comes with the mother's reason and a missing record with the birth day she gave and her
  masked ID number, read from the event store for this page only (Redis holds neither).
- ``POST /api/v1/deliveries/{record_id}/uphold`` ``{reason}``: the record stands; the mother reads the reason in her
  status view. The other answer, correcting the record, is ``PUT /api/v1/deliveries/{record_id}`` (staff.py).
- ``POST /api/v1/applications/{app_id}/delivery-record/missing`` ``{institution, born_on}`` (the mother, once her face
  check passed and no record of hers is there) and ``GET /api/v1/institutions`` (backend/routes/institutions.py: the institutions she picks from).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

from aiohttp import web

from backend.components import (
    APPLICATIONS,
    PARKING,
    READ_YOUR_WRITES_SECONDS,
    REDIS_CLIENT,
    STATUS_FOLLOWER,
    STORE_EXECUTOR,
    actor_of,
    expected_version,
    following,
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
    async with following(app, follower):
        yield


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
