"""On-site pickup done properly (docs/decisions/0032-replacement-and-pickup.md).

- The mother books a slot of her institution's pickup hours (预约取证) and, for someone else to collect,
  signs a 授权委托书 in the mini-program (required by the Beijing and Hebei profiles).
- At the counter the issuer opens a face check of the collector as the ID they show: a one-time code (QR)
  that the collector opens in the mini-program on their own phone, where WeChat's face verification runs
  through the same adapter as the parents' (getverifyid / queryverifyinfo, bound to that phone's openid).
- The issuer's console lists the day's appointments; the handover (``/handover``) then needs that check.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date
from typing import Any, Final, cast

from aiohttp import web

from backend.components import (
    APPLICATIONS,
    BLOBS,
    WECHAT,
    actor_of,
    expected_version,
    in_io,
    in_store,
    json_response,
    run_command,
    version_answer,
)
from backend.errors import json_body, problem_for
from backend.routes.parents import (
    SHA256_HEX,
    FieldCollector,
    _app_id,
    _applicants_application,
    _cleaned_upload,
    _fingerprint,
    _qr_svg,
)
from backend.routes.staff import IssuerCall, _issuer_command, appointment_view
from backend.throttle import limit
from domain.application import FACE_MESSAGES, BirthCertificateApplication, form_digest
from domain.channels import channel_of
from domain.errors import FieldError, NotFound, RuleViolated, ValidationFailed
from domain.policy import SHANGHAI
from domain.referral import counter_of
from domain.service import COLLECTOR_CHECK_KIND, Outcome
from domain.values import IdNumber, PersonName

routes = web.RouteTableDef()
# The mini-program page the counter's QR code opens on the collector's phone (the code in its query).
COLLECTOR_CHECK_PAGE: Final = "/pages/collector/face"


# ---------------------------------------------------------------- the mother: slots, booking, the letter


def _slots(service: Any, actor: Any, app_id: uuid.UUID) -> dict[str, Any]:
    app = service.get_application(actor, app_id)
    slots = service.get_pickup_slots(actor, app_id)
    try:
        institution = service.get_institution(app.institution or "")
    except NotFound:
        institution = None
    return {
        "institution_name": (app.record or {}).get("institution_name"),
        "counter": counter_of(institution),  # where to come: address, telephone, opening hours
        "appointment": appointment_view(app),
        "slots": [
            {**slot.to_dict(), "label": slot.label(), "remaining": max(remaining, 0)}
            for slot, remaining in slots
        ],
    }


@routes.get("/api/v1/applications/{app_id}/pickup-slots")
async def get_pickup_slots(request: web.Request) -> web.Response:
    """The slots of the issuing institution's pickup hours she can book now, with the places left."""
    actor = actor_of(request, "parent")
    document = await in_store(request, _slots, request.app[APPLICATIONS], actor, _app_id(request))
    return json_response(document, headers={"Cache-Control": "no-store"})


@routes.put("/api/v1/applications/{app_id}/pickup-appointment")
async def book_pickup(request: web.Request) -> web.Response:
    """预约取证: book (or move to) one slot once the certificate is ready to collect."""
    actor = actor_of(request, "parent")
    app_id = _app_id(request)
    await _applicants_application(request, actor)  # a stranger 404, the joined father 403, before a 422
    body = await json_body(request)
    c = FieldCollector()
    raw_day, start = c.text(body, "date"), c.text(body, "start")
    day = None
    if raw_day:
        try:
            day = date.fromisoformat(raw_day)
        except ValueError:
            c.errors.append(FieldError("date", "invalid_date", "日期格式应为 YYYY-MM-DD"))
    c.check()
    service, version = request.app[APPLICATIONS], expected_version(request)

    def answer(outcome: Outcome) -> web.Response:
        app = outcome.aggregate
        view = appointment_view(app) if isinstance(app, BirthCertificateApplication) else None
        return version_answer(outcome, appointment=view)

    return await run_command(
        request,
        actor,
        _fingerprint(request, body),
        lambda: service.book_pickup(
            actor, app_id, day=cast(date, day), start=start, expected_version=version
        ),
        answer,
    )


def _collector(c: FieldCollector, fields: dict[str, Any]) -> tuple[PersonName, IdNumber]:
    """The collector's name and ID number (checked: ``c.check()`` before they are used)."""
    name = c.take_text(PersonName, fields, "collector_name")
    id_number = c.take_text(IdNumber, fields, "collector_id_number")
    return cast(PersonName, name), cast(IdNumber, id_number)


@routes.post("/api/v1/applications/{app_id}/collector-letter/preview")
async def preview_collector_letter(request: web.Request) -> web.Response:
    """The 授权委托书 for this collector exactly as she would sign it, with its SHA-256 (nothing recorded)."""
    actor = actor_of(request, "parent")
    await _applicants_application(request, actor)
    body = await json_body(request)
    c = FieldCollector()
    name, id_number = _collector(c, body)
    c.check()
    letter = await in_store(
        request,
        request.app[APPLICATIONS].get_collector_letter,
        actor,
        _app_id(request),
        collector_name=name,
        collector_id=id_number,
    )
    return json_response(
        {"letter": letter, "sha256": form_digest(letter)}, headers={"Cache-Control": "no-store"}
    )


@routes.post("/api/v1/applications/{app_id}/collector-letter")
async def sign_collector_letter(request: web.Request) -> web.Response:
    """The mother's e-signature (PNG) on the letter whose SHA-256 she was shown (a stale one → 409)."""
    actor = actor_of(request, "parent")
    app_id = _app_id(request)
    await _applicants_application(request, actor)  # 404/403 before reading the upload
    fields, data, content_type = await _cleaned_upload(
        request, text_fields={"collector_name", "collector_id_number", "letter_sha256"}, png_only=True
    )
    c = FieldCollector()
    name, id_number = _collector(c, fields)
    letter_sha256 = c.text(fields, "letter_sha256")
    if letter_sha256 and not SHA256_HEX.fullmatch(letter_sha256):
        c.errors.append(FieldError("letter_sha256", "invalid_sha256", "委托书的 SHA-256 应为64位十六进制数"))
    c.check()
    version, service, blobs = expected_version(request), request.app[APPLICATIONS], request.app[BLOBS]
    sha256 = hashlib.sha256(data).hexdigest()

    def answer(outcome: Outcome) -> web.Response:
        return version_answer(outcome, status=201, letter_sha256=letter_sha256)

    return await run_command(
        request,
        actor,
        _fingerprint(request, {"letter_sha256": letter_sha256, "sha256": sha256}),
        lambda: service.authorize_collector(
            actor,
            app_id,
            collector_name=name,
            collector_id=id_number,
            letter_sha256=letter_sha256,
            signature_document_id=sha256,
            signature_sha256=sha256,
            expected_version=version,
            before_save=lambda: blobs.put(data, content_type),
        ),
        answer,
    )


# ---------------------------------------------------------------- the counter: the collector's face check


@routes.post("/api/v1/review/applications/{app_id}/collector-check")
async def open_collector_check(request: web.Request) -> web.Response:
    """The issuer types the name and ID number of the ID shown: a one-time code, its page and a QR code for
    the collector's phone (valid 30 minutes; a new one supersedes it)."""

    def build(x: IssuerCall) -> Any:
        name = x.c.take_text(PersonName, x.body, "name")
        id_number = x.c.take_text(IdNumber, x.body, "id_number")
        return lambda: x.s.open_collector_check(
            x.actor, x.app_id, name=name, id_number=id_number, expected_version=x.version
        )

    def answer(outcome: Outcome) -> web.Response:
        code = outcome.detail or ""
        path = f"{COLLECTOR_CHECK_PAGE}?code={code}"
        app = outcome.aggregate
        check = app.collector_check if isinstance(app, BirthCertificateApplication) else None
        return version_answer(
            outcome,
            status=201,
            code=code,
            path=path,
            qr_svg=_qr_svg(path),
            expires_at=(check or {}).get("expires_at"),
        )

    response = await _issuer_command(request, build, answer)
    response.headers["Cache-Control"] = "no-store"
    return response


def _code(body: dict[str, Any]) -> str:
    code = body.get("code")
    if not isinstance(code, str) or not code.strip():
        raise ValidationFailed([FieldError("code", "required", "缺少认证码")])
    return code.strip()


@routes.post("/api/v1/collector-checks/face-verifications")
async def begin_collector_face_check(request: web.Request) -> web.Response:
    """On the collector's phone (any WeChat user of the mini-program, through the counter's code): ask WeChat
    for a verify_id bound to the ID the issuer typed and this phone's user; the phone then shows the check."""
    actor = actor_of(request, "parent")
    if channel_of(actor.id) is not None:
        # The counter's check of a collector is WeChat's (a provincial app's step-up proves its own users only).
        raise RuleViolated("请在微信小程序中完成刷脸认证", code="face_via_wechat_only")
    body = await json_body(request)
    code = _code(body)
    await limit(request, "invitation", actor.id)  # codes are long, but guessing costs a try each
    service = request.app[APPLICATIONS]
    out_seq_no = "bk" + uuid.uuid4().hex[:24]
    verify_id = ""

    async def ask_wechat() -> None:
        nonlocal verify_id
        claim = await in_store(request, service.get_collector_check, code)
        await limit(request, "face_user", actor.id)
        await limit(request, "face_id_number", claim["id_number"])
        verify_id = await in_io(
            request,
            request.app[WECHAT].get_verify_id,
            out_seq_no=out_seq_no,
            name=claim["name"],
            id_number=claim["id_number"],
            openid=actor.id,
        )

    def answer(outcome: Outcome) -> web.Response:
        return json_response({"verify_id": verify_id, "out_seq_no": out_seq_no}, status=201)

    return await run_command(
        request,
        actor,
        _fingerprint(request, {"code_digest": service.keyed_digest(COLLECTOR_CHECK_KIND, code)}),
        lambda: service.request_collector_face_check(actor, code, out_seq_no=out_seq_no, verify_id=verify_id),
        answer,
        prepare=ask_wechat,
    )


@routes.post("/api/v1/collector-checks/face-verifications/{out_seq_no}/result")
async def collector_face_check_result(request: web.Request) -> web.Response:
    """After wx.requestFacialVerify on the collector's phone: WeChat's verdict, recorded on the application
    (a failure too); asked again, the recorded verdict again."""
    actor = actor_of(request, "parent")
    body = await json_body(request)
    code = _code(body)
    out_seq_no = request.match_info["out_seq_no"]
    service = request.app[APPLICATIONS]
    pending = await in_store(request, service.get_collector_pending, actor, code, out_seq_no)
    verify_ret = None
    if pending is not None:
        verify_ret = await in_io(
            request,
            request.app[WECHAT].query_verify_ret,
            verify_id=pending["verify_id"],
            out_seq_no=out_seq_no,
            name=pending["name"],
            id_number=pending["id_number"],
            openid=actor.id,
        )

    def answer(outcome: Outcome) -> web.Response:
        if outcome.detail is not None:
            failure = FACE_MESSAGES.get(outcome.detail, FACE_MESSAGES["face_failed"])
            return problem_for(RuleViolated(failure, code=outcome.detail))
        return json_response({"verified": True, "out_seq_no": out_seq_no})

    return await run_command(
        request,
        actor,
        _fingerprint(request, {"code_digest": service.keyed_digest(COLLECTOR_CHECK_KIND, code)}),
        lambda: service.record_collector_face_check(
            actor, code, out_seq_no=out_seq_no, verify_ret=verify_ret
        ),
        answer,
    )


# ---------------------------------------------------------------- the issuer's day


def _day_list(service: Any, actor: Any, raw: str | None) -> dict[str, Any]:
    try:
        day = date.fromisoformat(raw) if raw else service.clock().astimezone(SHANGHAI).date()
    except ValueError:
        raise ValidationFailed([FieldError("date", "invalid_date", "日期格式应为 YYYY-MM-DD")]) from None
    entries = []
    for start, app in service.get_pickup_day(actor, day):
        booked = app.pickup_appointment or {}
        letter = app.collector_letter
        mother = app.verified.get("mother", {})
        entries.append(
            {
                "application_id": str(app.id),
                "start": start,
                "end": booked.get("end"),
                "state": app.state,
                "certificate_number": app.certificate_number,
                "mother_name": mother.get("name"),
                "newborn_name": (app.details or {}).get("newborn_name"),
                "collector": None
                if letter is None
                else {"name": letter["name"], "signed_at": letter["signed_at"]},
                "letter_required": app.profile.collector_letter_required,
            }
        )
    return {
        "date": day.isoformat(),
        "institution": actor.institution,
        "hours": [w.to_dict() | {"label": w.label()} for w in service.get_pickup_hours(actor.institution)],
        "appointments": entries,
    }


@routes.get("/api/v1/review/pickup-appointments")
async def pickup_appointments(request: web.Request) -> web.Response:
    """The institution's appointments to collect on ``?date=`` (default today, Beijing time)."""
    actor = actor_of(request, "issuer")
    document = await in_store(request, _day_list, request.app[APPLICATIONS], actor, request.query.get("date"))
    return json_response(document, headers={"Cache-Control": "no-store"})


__all__ = ["routes"]
