"""EMS: the parcel-event webhook, the issuer's daily pickup list, and the process that books pickups.

- ``POST /api/v1/ems/events``: EMS reports a parcel delivered or lost (signed ``X-Ems-Signature``);
  recorded once however often EMS repeats it.
- ``GET /api/v1/review/pickup-list?date=YYYY-MM-DD&format=json|csv|pdf``: the 揽件清单 of the issuer's
  institution for a day (Asia/Shanghai), the certificates dispatched by EMS that day.
- ``ems_ctx``: a cleanup context that declares the ``EmsProcess`` behind a ``LogFollower`` named ``ems``,
  run by the elected leader only (decision 0024).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Any, Final, Literal
from uuid import UUID

from aiohttp import web

from backend.components import (
    APPLICATIONS,
    CONFIG,
    FOLLOWERS,
    HTTP,
    LEADERSHIP,
    PARKING,
    REDIS_CLIENT,
    STATUS_FOLLOWER,
    STORE_EXECUTOR,
    actor_of,
    follow_on_leader,
    in_io,
    in_store,
    json_response,
)
from backend.ems import (
    EMS_ACTOR,
    SIGNATURE_HEADER,
    WEBHOOK_PATH,
    EmsPort,
    EmsSettings,
    HttpEms,
    InvalidWebhook,
    UnconfiguredEms,
    application_of,
    verify_webhook,
)
from backend.errors import BadRequest
from backend.headers import content_disposition
from backend.pickup_list import load_pickup_list, render_pdf, to_csv, to_json
from domain.errors import DomainError, InvalidValue, NotFound, RuleViolated
from domain.service import Applications
from domain.values import Actor
from projections.ems_process import SHANGHAI, EmsProcess
from projections.review_queue import check_institution
from projections.runner import LogFollower

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

EMS_SETTINGS = web.AppKey("ems_settings", EmsSettings)
EMS_PORT: web.AppKey[EmsPort] = web.AppKey("ems_port")
EMS_PROCESS = web.AppKey("ems_process", EmsProcess)
EMS_FOLLOWER = web.AppKey("ems_follower", LogFollower)

FORMATS: Final = {"json": "application/json", "csv": "text/csv", "pdf": "application/pdf"}
_BY_MEDIA: Final = {media: name for name, media in FORMATS.items()}
_DATE_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The days a pickup list can be asked for (as the OpenAPI document says): this century.
EARLIEST_DAY: Final = date(2000, 1, 1)
LATEST_DAY: Final = date(2099, 12, 31)
DEFAULT_LOSS_REASON: Final = "邮件遗失或损毁"


class NotAcceptable(DomainError):
    """None of the formats the client accepts is one we have."""

    code = "not_acceptable"
    message = "揽件清单只提供 JSON、CSV 或 PDF 格式"
    http_status = 406


# ---------------------------------------------------------------- the webhook


def record_fate(
    service: Applications, app_id: UUID, waybill_no: str, status: str, reason: str
) -> dict[str, Any]:
    """On the store executor: record what EMS reports about the parcel, once."""
    app = service.get_application(EMS_ACTOR, app_id)
    if app.tracking_number is None:
        # Not dispatched (yet): EMS should try again later.
        raise RuleViolated("该申请尚未登记邮件号", code="not_dispatched")
    if app.tracking_number != waybill_no:
        # An earlier parcel of this application (lost, then reissued): nothing to record.
        return {"recorded": False, "ignored": "stale_waybill", "state": app.state}
    if status == "delivered":
        outcome = service.record_delivered(EMS_ACTOR, app_id)
    else:
        outcome = service.report_loss(EMS_ACTOR, app_id, reason=reason)
    return {"recorded": outcome.position is not None, "state": getattr(outcome.aggregate, "state", None)}


@routes.post(WEBHOOK_PATH)
async def ems_event(request: web.Request) -> web.Response:
    """EMS's parcel event ``{waybill_no, order_id, status: delivered|lost, reason?, occurred_at}``."""
    body = await request.read()
    event = verify_webhook(
        body, request.headers.get(SIGNATURE_HEADER), request.app[EMS_SETTINGS].webhook_secret
    )
    waybill, status = event.get("waybill_no"), event.get("status")
    if not isinstance(waybill, str) or not waybill.strip() or not isinstance(status, str):
        raise InvalidWebhook()
    app_id = application_of(event.get("order_id"))
    if app_id is None:
        raise NotFound("未找到该订单")
    if status not in ("delivered", "lost"):
        # Events we do not track (in transit, out for delivery…): acknowledged, nothing recorded.
        return json_response({"received": True, "recorded": False, "ignored": "status"})
    reason = event.get("reason")
    if not isinstance(reason, str) or len(reason.strip()) < 2:
        reason = DEFAULT_LOSS_REASON
    result = await in_store(
        request,
        record_fate,
        request.app[APPLICATIONS],
        app_id,
        waybill.strip().upper(),
        status,
        reason.strip()[:200],
    )
    if result["recorded"]:
        for follower in [*request.app.get(FOLLOWERS, []), request.app.get(STATUS_FOLLOWER)]:
            if follower is not None:
                follower.wake()
    return json_response({"received": True, **result})


# ---------------------------------------------------------------- the pickup list


def _day(request: web.Request) -> date:
    raw = request.query.get("date")
    if raw is None or not raw.strip():
        return datetime.now(SHANGHAI).date()
    try:
        if not _DATE_RE.fullmatch(raw.strip()):
            raise ValueError
        day = date.fromisoformat(raw.strip())
    except ValueError:
        raise BadRequest("date 应为 YYYY-MM-DD 格式的日期", code="invalid_date") from None
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise BadRequest(
            f"date 应在 {EARLIEST_DAY.isoformat()} 至 {LATEST_DAY.isoformat()} 之间", code="date_out_of_range"
        )
    return day


def _institution(request: web.Request, actor: Actor) -> str:
    """The institution whose list is read: an issuer's own (another's is not found), or the one an auditor names."""
    raw = request.query.get("institution")
    wanted: str | None = None
    if raw is not None and raw.strip():
        try:
            wanted = check_institution(raw)
        except InvalidValue:
            raise BadRequest("机构代码为4到16位大写字母或数字", code="invalid_institution_code") from None
    if actor.role == "issuer":
        own = actor.institution or ""
        if wanted is not None and wanted != own:
            raise NotFound()
        return own
    if wanted is None:
        raise BadRequest("请用 institution 参数指定机构代码", code="institution_required")
    return wanted


def negotiate(format_param: str | None, accept: str | None) -> str:
    """``json``, ``csv`` or ``pdf``: the ``format`` parameter, else the best of ``Accept`` (JSON by default)."""
    if format_param is not None and format_param.strip():
        name = format_param.strip().lower()
        if name not in FORMATS:
            raise BadRequest("format 只能是 json、csv 或 pdf", code="invalid_format")
        return name
    if accept is None or not accept.strip():
        return "json"
    best: tuple[float, int, int] | None = None
    chosen: str | None = None
    for position, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        media = media.lower()
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        if media in _BY_MEDIA:
            name, specificity = _BY_MEDIA[media], 2
        elif media in ("*/*", "application/*"):
            name, specificity = "json", 0
        elif media == "text/*":
            name, specificity = "csv", 1
        else:
            continue
        rank = (quality, specificity, -position)
        if best is None or rank > best:
            best, chosen = rank, name
    if chosen is None:
        raise NotAcceptable()
    return chosen


@routes.get("/api/v1/review/pickup-list")
async def pickup_list(request: web.Request) -> web.Response:
    """The day's 揽件清单 of the issuer's institution (auditors name one with ``?institution=``)."""
    actor = actor_of(request, "issuer", "auditor")
    code = _institution(request, actor)
    day = _day(request)
    name = negotiate(request.query.get("format"), request.headers.get("Accept"))
    dispatched = await request.app[EMS_PROCESS].index.dispatched_on(code, day)
    pickup = await in_store(
        request, load_pickup_list, request.app[APPLICATIONS], actor, code, day, dispatched
    )
    headers = {"Cache-Control": "no-store", "Vary": "Accept, Authorization"}
    if name == "json":
        return json_response(to_json(pickup), headers=headers)
    if name == "csv":
        body, content_type = to_csv(pickup), "text/csv; charset=utf-8"
        disposition: Literal["inline", "attachment"] = "attachment"
    else:
        body, content_type = await in_io(request, render_pdf, pickup), "application/pdf"
        disposition = "inline"
    headers["Content-Type"] = content_type
    headers["Content-Disposition"] = content_disposition(disposition, f"{pickup.filename_stem}.{name}")
    return web.Response(body=body, headers=headers)


# ---------------------------------------------------------------- the process


async def ems_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: EMS settings and adapter, the ``EmsProcess`` and its follower (after the event
    store, Redis and the HTTP session are open). Set ``app[EMS_SETTINGS]`` or ``app[EMS_PORT]`` before
    start to override the environment (tests)."""
    # Configured when the settings were given (tests) or EMS_API_BASE is set: never a default address.
    configured = EMS_SETTINGS in app or bool(app[CONFIG].ems_environ.get("EMS_API_BASE"))
    if EMS_SETTINGS not in app:
        config = app[CONFIG]
        app[EMS_SETTINGS] = EmsSettings.from_env(config.ems_environ, development=config.development)
    settings = app[EMS_SETTINGS]
    if EMS_PORT not in app:
        if configured:
            app[EMS_PORT] = HttpEms(
                settings.api_base, settings.api_key, app[HTTP], timeout=settings.timeout_seconds
            )
        else:
            log.warning("EMS_API_BASE is not set: pickups are not booked; issuers dispatch by hand")
            app[EMS_PORT] = UnconfiguredEms()
    callback = settings.callback_url or f"{app[CONFIG].public_url.rstrip('/')}{WEBHOOK_PATH}"
    process = EmsProcess(
        app[REDIS_CLIENT],
        app[APPLICATIONS],
        app[STORE_EXECUTOR],
        app[EMS_PORT],
        callback_url=callback,
        fence=app[LEADERSHIP],
    )
    follower = LogFollower(
        app[APPLICATIONS],
        process,
        executor=app[STORE_EXECUTOR],
        name="ems",
        parking=app.get(PARKING),
    )
    app[EMS_PROCESS], app[EMS_FOLLOWER] = process, follower
    follow_on_leader(app, follower)  # books once: on the leader only (a command there wakes it at once)
    yield


__all__ = ["EMS_FOLLOWER", "EMS_PORT", "EMS_PROCESS", "EMS_SETTINGS", "ems_ctx", "negotiate", "routes"]
