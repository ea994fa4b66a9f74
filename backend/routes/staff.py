"""Staff endpoints: login, the hospitals' delivery records (HIS), and the issuers' review actions.

Every staff endpoint is scoped to the token's institution: another institution's application or
record is a 404 (nothing tells the caller it exists) and nothing changes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from backend.addresses import client_source
from backend.auth import Unauthenticated
from backend.components import (
    APPLICATIONS,
    BLOBS,
    TOKENS,
    actor_of,
    expected_version,
    in_io,
    in_store,
    json_response,
    run_command,
)
from backend.errors import json_body
from backend.headers import content_disposition
from backend.routes.audit import record_reading
from backend.routes.departments import HANDOFF_PROCESS
from backend.routes.parents import FieldCollector, _fingerprint, id_document_reader
from backend.throttle import LOGIN_THROTTLE, limit
from domain.application import BirthCertificateApplication
from domain.bundle import MATERIAL_KINDS
from domain.bundle_clock import CLOCK_LABELS
from domain.delivery import DeliveryFacts, DeliveryRecord
from domain.errors import DomainError, FieldError, InvalidValue, NotFound, ValidationFailed
from domain.pickup import Slot
from domain.revocation import check_reason
from domain.service import Applications, Outcome
from domain.values import Actor, BirthData, Birthplace, CertificateNumber, IdNumber, PersonName
from projections.status import bundle_view

routes = web.RouteTableDef()
SHANGHAI = ZoneInfo("Asia/Shanghai")
HASHER = PasswordHasher()
# Verified when the username is unknown, so that a wrong username costs as much time as a wrong password.
_DUMMY_HASH = HASHER.hash("birthcert-no-such-user")
# Event fields shown on the issuer's 办理记录 (none of them personal data beyond what the page shows).
_HISTORY_DETAIL = (
    "role",
    "kind",
    "reason_codes",
    "reasons",
    "fields",
    "certificate_number",
    "tracking_number",
    "submission",
    "voided_certificate_number",
    "cause",
    "old_certificate",
    "date",
    "start",
    "relation",
    # 出生一件事 (BundleServiceUpdated): which service, which state — never its result (personal) or reason.
    "service",
    "state",
)
# The events that print a certificate on a numbered blank, with the issuer's and the sealer's names.
_PRINTS = (
    BirthCertificateApplication.Issued,
    BirthCertificateApplication.Reissued,
    BirthCertificateApplication.CertificateReplaced,
)


def hash_password(password: str) -> str:
    """An argon2id hash (for `birthcert users add`)."""
    if len(password) < 10:
        raise ValidationFailed([FieldError("password", "password_too_short", "密码至少10位")])
    return HASHER.hash(password)


def _check_password(stored: str, password: str) -> bool:
    try:
        return HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


# ---------------------------------------------------------------- login


@routes.post("/api/v1/auth/staff")
async def login_staff(request: web.Request) -> web.Response:
    """Username and password → a token carrying role, institution and name.

    Guessing is slowed, never locked (``LoginThrottle``): an address that keeps failing waits longer and
    longer, and so does an account guessed at from many addresses, except from an address with a clean
    record or one the account logged in from before, so nobody can lock a colleague out.
    """
    body = await json_body(request)
    c = FieldCollector()
    username = c.text(body, "username").strip().lower()
    password = c.text(body, "password")
    c.check()
    source = client_source(request)
    await limit(request, "login_source", source)
    attempt = await request.app[LOGIN_THROTTLE].attempt(source, username)
    account = await in_store(request, request.app[APPLICATIONS].get_staff_account, username)
    stored = account.password_hash if account is not None else _DUMMY_HASH
    ok = await in_io(request, _check_password, stored, password)
    if not ok or account is None or account.disabled:
        await request.app[LOGIN_THROTTLE].failed(attempt)
        raise Unauthenticated("用户名或密码不正确", code="invalid_credentials")
    await request.app[LOGIN_THROTTLE].succeeded(attempt)
    token, expires_in = request.app[TOKENS].issue(account.as_actor())
    return json_response(
        {
            "token": token,
            "expires_in": expires_in,
            "role": account.role,
            "institution": account.institution,
            "name": account.display_name,
            **({"scope": account.scope} if account.scope else {}),
        }
    )


# ---------------------------------------------------------------- hospitals: delivery records


def _delivery_facts(c: FieldCollector, body: dict[str, Any]) -> DeliveryFacts | None:
    def part(key: str) -> dict[str, Any]:
        value = body.get(key)
        return value if isinstance(value, dict) else {}

    mother, newborn, place = part("mother"), part("newborn"), part("birthplace")
    mother_name = c.take_text(PersonName, mother, "name", "mother.name")
    # A Hong Kong, Macao or Taiwan mother's residence permit or travel permit (``mother.id_type``) too.
    mother_id = c.take_text(id_document_reader(c, mother, "mother"), mother, "id_number", "mother.id_number")
    attendant = c.take_text(PersonName, body, "attendant", "attendant")
    born_at = None
    raw_born = c.text(newborn, "born_at", "newborn.born_at")
    if raw_born:
        try:
            born_at = datetime.fromisoformat(raw_born)
        except ValueError:
            c.errors.append(
                FieldError("newborn.born_at", "invalid_birth_time", "出生时间格式应为 ISO 8601（含时区）")
            )
    birth = None
    if born_at is not None:
        birth = c.take(
            lambda *, field: BirthData(
                sex=newborn.get("sex"),  # type: ignore[arg-type]  # checked by BirthData
                born_at=born_at,
                gestational_weeks=newborn.get("gestational_weeks"),  # type: ignore[arg-type]
                weight_g=newborn.get("weight_g"),  # type: ignore[arg-type]
                length_cm=newborn.get("length_cm"),  # type: ignore[arg-type]
                field=field,
            ),
            field="newborn",
        )
    birthplace = c.take(
        lambda *, field: Birthplace(
            place.get("province", ""), place.get("city", ""), place.get("county", ""), field=field
        ),
        field="birthplace",
    )
    inpatient_no = c.text(body, "inpatient_no")
    birth_order = body.get("birth_order", 1)
    if mother_name is None or mother_id is None or attendant is None or birth is None or birthplace is None:
        return None
    if c.errors:
        return None
    try:
        return DeliveryFacts(
            inpatient_no=inpatient_no,
            mother_name=mother_name,
            mother_id_number=mother_id,
            birth=birth,
            birthplace=birthplace,
            attendant=attendant,
            birth_order=birth_order if isinstance(birth_order, int) else 0,
        )
    except DomainError as e:
        c.errors.extend(getattr(e, "errors", []))
        return None


def _record_view(record: DeliveryRecord) -> dict[str, Any]:
    return {
        "id": str(record.id),
        "version": record.version,
        "institution": record.institution_code,
        **record.snapshot(),
        "entered_late": record.entered_late,
        "application_id": record.application_id,
        "open_dispute": record.open_dispute,
        "issued_certificate": record.issued_certificate,
    }


@routes.post("/api/v1/deliveries")
async def record_delivery(request: web.Request) -> web.Response:
    """分娩信息录入 by the hospital's HIS, for its own institution."""
    actor = actor_of(request, "hospital")
    body = await json_body(request)
    c = FieldCollector()
    facts = _delivery_facts(c, body)
    c.check()
    service = request.app[APPLICATIONS]
    institution = await in_store(request, service.get_institution, actor.institution or "")

    def created(outcome: Outcome) -> web.Response:
        response = json_response({"id": str(outcome.id), "version": outcome.version}, status=201)
        response.headers["Location"] = f"/api/v1/deliveries/{outcome.id}"
        return response

    return await run_command(
        request,
        actor,
        _fingerprint(request, body),
        lambda: service.record_delivery(actor, institution=institution, facts=cast(DeliveryFacts, facts)),
        created,
    )


async def _own_record(request: web.Request, actor: Actor) -> DeliveryRecord:
    try:
        record_id = uuid.UUID(request.match_info["record_id"])
    except ValueError:
        raise NotFound() from None
    record = await in_store(request, request.app[APPLICATIONS].get_delivery_record, record_id)
    if record.institution_code != actor.institution:
        raise NotFound()
    return record


@routes.get("/api/v1/deliveries/{record_id}")
async def get_delivery(request: web.Request) -> web.Response:
    """One of the hospital's own delivery records (with any open dispute)."""
    actor = actor_of(request, "hospital")
    record = await _own_record(request, actor)
    return json_response(_record_view(record), headers={"ETag": f'"{record.version}"'})


@routes.put("/api/v1/deliveries/{record_id}")
async def correct_delivery(request: web.Request) -> web.Response:
    """Correct a record before issue (with a reason); a linked application must be confirmed and signed again."""
    actor = actor_of(request, "hospital")
    record = await _own_record(request, actor)
    body = await json_body(request)
    c = FieldCollector()
    facts = _delivery_facts(c, body)
    reason = c.text(body, "reason")
    c.check()
    service, version = request.app[APPLICATIONS], expected_version(request)

    def answer(outcome: Outcome) -> web.Response:
        return json_response({"id": str(outcome.id), "version": outcome.version})

    return await run_command(
        request,
        actor,
        _fingerprint(request, body),
        lambda: service.correct_delivery(
            actor, record.id, facts=cast(DeliveryFacts, facts), reason=reason, expected_version=version
        ),
        answer,
    )


# ---------------------------------------------------------------- issuers: reviewing


def _review_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["app_id"])
    except ValueError:
        raise NotFound() from None


COMPARED = (
    ("mother_name", "产妇姓名"),
    ("mother_id_number", "产妇身份证号码"),
    ("inpatient_no", "住院病历号"),
    ("newborn_sex", "新生儿性别"),
    ("born_at", "出生时间"),
    ("gestational_weeks", "出生孕周"),
    ("weight_g", "出生体重（克）"),
    ("length_cm", "出生身长（厘米）"),
    ("birthplace", "出生地点"),
    ("attendant", "接生人员"),
)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
        return out
    return {prefix: value}


def appointment_view(app: BirthCertificateApplication) -> dict[str, Any] | None:
    """The booked slot as the parent and the issuer read it."""
    booked = app.pickup_appointment
    if booked is None:
        return None
    slot = Slot(date.fromisoformat(booked["date"]), booked["start"], booked["end"], 1)
    return {**booked, "label": slot.label()}


def collector_check_view(app: BirthCertificateApplication) -> dict[str, Any] | None:
    """The counter's face check of the collector, for the issuer (who typed the ID they saw)."""
    check = app.collector_check
    if check is None:
        return None
    return {
        "status": check["status"],
        "name": check["name"],
        "id_number": check["id_number"],
        "expires_at": check["expires_at"],
        "failures": sum(1 for code in check["verdicts"].values() if code is not None),
    }


def pickup_view(app: BirthCertificateApplication) -> dict[str, Any] | None:
    """On-site pickup as the issuer sees it: the appointment, the mother's letter, the counter's check."""
    if app.delivery_method is None or app.delivery_method["method"] != "pickup":
        return None
    return {
        "appointment": appointment_view(app),
        "letter_required": app.profile.collector_letter_required,
        "collector_letter": app.collector_letter,
        "collector_check": collector_check_view(app),
    }


def _documents_in_use(app: BirthCertificateApplication) -> dict[str, Any]:
    """The uploaded documents the application uses: the ID photos, and 出生一件事's materials only while her
    opt-in asks for them (a withdrawn opt-in's are neither shown nor sent: decision 0047)."""
    wanted = set(app.bundle_materials_required())
    return {k: d for k, d in app.documents.items() if k not in MATERIAL_KINDS or k in wanted}


def review_document(service: Applications, actor: Actor, app_id: uuid.UUID) -> dict[str, Any]:
    """Everything an issuer needs to decide (runs on the store executor)."""
    app = service.get_application(actor, app_id)
    record = service.get_delivery_record(app.delivery_record_id) if app.delivery_record_id else None
    form = app.form()
    verified_mother = app.verified.get("mother", {})
    comparison = []
    if app.record is not None and record is not None:
        for key, label in COMPARED:
            on_form, on_record = app.record.get(key), record.facts.get(key)
            comparison.append(
                {
                    "field": key,
                    "label": label,
                    "application": on_form,
                    "record": on_record,
                    "differs": on_form != on_record,
                }
            )
        comparison.append(
            {
                "field": "verified_mother_name",
                "label": "刷脸认证的母亲姓名",
                "application": verified_mother.get("name"),
                "record": record.facts.get("mother_name"),
                "differs": verified_mother.get("name") != record.facts.get("mother_name"),
            }
        )
    events = list(service.events.get(app.id))
    history = [
        {
            "version": e.originator_version,
            "event": type(e).__name__,
            "at": e.timestamp.astimezone(SHANGHAI).isoformat(),
            "actor": {
                "role": e.actor.get("role"),
                "name": e.actor.get("name") if e.actor.get("role") != "parent" else None,
                "institution": e.actor.get("institution"),
            },
            # What the issuer needs to read the line: whose face check, why it was sent back, which number.
            "detail": {k: getattr(e, k) for k in _HISTORY_DETAIL if hasattr(e, k)},
        }
        for e in events
        if isinstance(e, BirthCertificateApplication.Event)
    ]
    changes = None
    rejected = [e.originator_version for e in events if isinstance(e, BirthCertificateApplication.Rejected)]
    if rejected:
        before: BirthCertificateApplication = service.repository.get(app.id, version=rejected[-1])
        old, new = _flatten(before.form() or {}), _flatten(form or {})
        changes = [
            {"field": k, "before": old.get(k), "after": new.get(k)}
            for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)
        ]
        for kind, doc in app.documents.items():
            if before.documents.get(kind, {}).get("sha256") != doc["sha256"]:
                changes.append(
                    {
                        "field": f"documents.{kind}",
                        "before": before.documents.get(kind, {}).get("sha256"),
                        "after": doc["sha256"],
                    }
                )
        if app.signature and (before.signature or {}).get("form_sha256") != app.signature["form_sha256"]:
            changes.append(
                {
                    "field": "signature",
                    "before": (before.signature or {}).get("form_sha256"),
                    "after": app.signature["form_sha256"],
                }
            )
    printed = [e for e in events if isinstance(e, _PRINTS)]
    printer = (
        {"issuer_name": printed[-1].issuer_name, "sealer_name": printed[-1].sealer_name} if printed else {}
    )
    base = f"/api/v1/review/applications/{app.id}/documents"
    documents = [
        {"kind": kind, **doc, "url": f"{base}/{doc['document_id']}"}
        for kind, doc in sorted(_documents_in_use(app).items())
    ]
    if app.signature:
        documents.append(
            {
                "kind": "signature",
                "document_id": app.signature["signature_document_id"],
                "sha256": app.signature["signature_sha256"],
                "content_type": "image/png",
                "url": f"{base}/{app.signature['signature_document_id']}",
            }
        )
    return {
        "application": {
            "id": str(app.id),
            "state": app.state,
            "version": app.version,
            "province": app.province,
            "institution": app.institution,
            "submissions": app.submissions,
            "first_submitted_at": app.first_submitted_at,
            "submitted_at": app.submitted_at,
            "delivery_method": app.delivery_method,
            "postage_paid": app.postage_paid is not None,
            "signature": {
                "valid": app.signature_valid,
                "form_sha256": (app.signature or {}).get("form_sha256"),
                "signed_times": app.signatures,
            },
            "rejection": app.rejection,
            "certificate_number": app.certificate_number,
            "issuer_name": printer.get("issuer_name"),
            "sealer_name": printer.get("sealer_name"),
            "voided_numbers": app.voided_numbers,
            "tracking_number": app.tracking_number,
            "counter_reason": app.counter_reason,
            "replacements": app.replacements,
            # The institution's declaration that the certificate is void, with the issuer's note (0040).
            "revocation": app.revocation,
            "pickup": pickup_view(app),
            # 出生一件事: each service's state, a department's refusal with its reason (decision 0046), and each
            # department's part against the time limit as of now (0049).
            "bundle": _with_clocks(bundle_view(app), app, service),
        },
        "form": form,
        "form_sha256": app.form_sha256(),
        "delivery_record": _record_view(record) if record else None,
        "comparison": comparison,
        "documents": documents,
        "changes_since_rejection": changes,
        "history": history,
    }


def _with_clocks(
    bundle: dict[str, Any] | None, app: BirthCertificateApplication, service: Applications
) -> dict[str, Any] | None:
    """Each department's service with its ``clock``: its deadline, and on time, late, open or overdue now."""
    if bundle is None:
        return None
    now = service.clock()
    found = {c.service: c for c in app.bundle_clocks(service.calendar)}
    for part in bundle["services"]:
        clock = found.get(part["code"])
        part["clock"] = (
            None
            if clock is None
            else {
                "due_at": clock.due_at.isoformat(),
                "working_days": clock.working_days,
                "state": clock.state(now),
                "label": CLOCK_LABELS[clock.state(now)],
            }
        )
    return bundle


@routes.get("/api/v1/review/applications/{app_id}")
async def get_review(request: web.Request) -> web.Response:
    """The application, the delivery record side by side (differences flagged), documents, history."""
    actor = actor_of(request, "issuer", "auditor")
    app_id = _review_id(request)
    if actor.role == "auditor":  # full personal data, beyond the auditor's own institution: recorded first
        await record_reading(request, actor, app_id, "review")
    document = await in_store(request, review_document, request.app[APPLICATIONS], actor, app_id)
    bundle = document["application"]["bundle"]
    process = request.app.get(HANDOFF_PROCESS)
    if (
        bundle is not None and process is not None
    ):  # each hand-off's delivery: sent, retrying, refused outright
        deliveries = await in_store(request, process.deliveries_of, str(app_id))
        for part in bundle["services"]:
            part["delivery"] = deliveries.get(part["code"])
    return json_response(
        document, headers={"ETag": f'"{document["application"]["version"]}"', "Cache-Control": "no-store"}
    )


@routes.get("/api/v1/review/applications/{app_id}/documents/{doc_id}")
async def get_review_document(request: web.Request) -> web.Response:
    """One uploaded file, as an attachment that the browser must not sniff or cache."""
    actor = actor_of(request, "issuer", "auditor")
    app = await in_store(request, request.app[APPLICATIONS].get_application, actor, _review_id(request))
    doc_id = request.match_info["doc_id"]
    kinds = {doc["document_id"]: kind for kind, doc in _documents_in_use(app).items()}
    if app.signature:
        kinds[app.signature["signature_document_id"]] = "signature"
    if doc_id not in kinds:
        raise NotFound()
    if actor.role == "auditor":
        await record_reading(request, actor, app.id, f"document:{kinds[doc_id]}")
    data, content_type = await in_io(request, request.app[BLOBS].get, doc_id)
    extension = {"image/jpeg": "jpg", "image/png": "png"}.get(content_type, "bin")
    return web.Response(
        body=data,
        content_type=content_type,
        headers={
            "Content-Disposition": content_disposition("attachment", f"{kinds[doc_id]}.{extension}"),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )


@dataclass(frozen=True)
class IssuerCall:
    """What an issuer's command handler has to build its command from."""

    c: FieldCollector
    body: dict[str, Any]
    actor: Actor
    app_id: uuid.UUID
    version: int | None
    s: Applications


async def _issuer_command(
    request: web.Request,
    build: Callable[[IssuerCall], Callable[[], Outcome]],
    answer: Callable[[Outcome], web.Response] | None = None,
) -> web.Response:
    """Authenticate, parse the body, build the command (collecting field errors), run it once per key."""
    actor = actor_of(request, "issuer")
    body = await json_body(request)
    call = IssuerCall(
        FieldCollector(),
        body,
        actor,
        _review_id(request),
        expected_version(request),
        request.app[APPLICATIONS],
    )
    command = build(call)
    if call.c.errors:  # another institution's application is not found, whatever its body (no 422 hint)
        await in_store(request, call.s.get_application, actor, call.app_id)
    call.c.check()
    return await run_command(request, actor, _fingerprint(request, body), command, answer)


def _on_a_numbered_blank(
    method: str, more: Callable[[IssuerCall], dict[str, Any]] | None = None
) -> Callable[[IssuerCall], Callable[[], Outcome]]:
    """Issue, reissue and replacement alike print on a numbered blank: the number, the sealer, the issuer's own
    name (and what ``more`` reads from the body)."""

    def build(x: IssuerCall) -> Callable[[], Outcome]:
        number = x.c.take_text(CertificateNumber, x.body, "certificate_number", "certificate_number")
        sealer = x.c.text(x.body, "sealer")
        extra = more(x) if more is not None else {}
        command = getattr(x.s, method)
        return lambda: command(
            x.actor,
            x.app_id,
            certificate_number=number,
            sealer_name=sealer,
            issuer_name=x.actor.name,
            expected_version=x.version,
            **extra,
        )

    return build


@routes.post("/api/v1/review/applications/{app_id}/reject")
async def reject(request: web.Request) -> web.Response:
    """驳回: back to the parent with reason codes, the issuer's words and the fields to fix. A body without
    ``reason_codes`` (the first API's ``{reasons, fields}``) is ``other`` (docs/decisions/0045)."""

    def build(x: IssuerCall) -> Callable[[], Outcome]:
        codes = x.body.get("reason_codes")
        reasons = x.body.get("reasons", [] if codes is not None else None)
        fields = x.body.get("fields")
        if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
            x.c.errors.append(FieldError("reasons", "reasons_required", "请填写驳回原因"))
        if codes is not None and (not isinstance(codes, list) or not all(isinstance(c, str) for c in codes)):
            x.c.errors.append(FieldError("reason_codes", "reason_codes_required", "请选择驳回原因"))
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            x.c.errors.append(FieldError("fields", "fields_required", "请选择需要修改的项目"))
        return lambda: x.s.reject(
            x.actor,
            x.app_id,
            reasons=cast(list[str], reasons),
            fields=cast(list[str], fields),
            reason_codes=cast(list[str] | None, codes),
            expected_version=x.version,
        )

    return await _issuer_command(request, build)


@routes.post("/api/v1/review/applications/{app_id}/issue")
async def issue(request: web.Request) -> web.Response:
    """签发 on the pre-printed blank with this serial number (unique forever); the sealer's name recorded."""

    return await _issuer_command(request, _on_a_numbered_blank("issue"))


@routes.post("/api/v1/review/applications/{app_id}/dispatch")
async def dispatch(request: web.Request) -> web.Response:
    """Handed to EMS with this waybill number (when not booked automatically)."""

    def build(x: IssuerCall) -> Callable[[], Outcome]:
        tracking = x.c.text(x.body, "tracking_number")
        return lambda: x.s.dispatch(x.actor, x.app_id, tracking_number=tracking, expected_version=x.version)

    return await _issuer_command(request, build)


@routes.post("/api/v1/review/applications/{app_id}/handover")
async def handover(request: web.Request) -> web.Response:
    """On-site pickup: who took it, their relation to the newborn, their ID number."""

    def build(x: IssuerCall) -> Callable[[], Outcome]:
        name = x.c.take_text(PersonName, x.body, "recipient_name", "recipient_name")
        relation = x.c.text(x.body, "relation")
        id_number = x.c.take_text(IdNumber, x.body, "id_number", "id_number")
        return lambda: x.s.hand_over(
            x.actor,
            x.app_id,
            recipient_name=name,
            relation=relation,
            recipient_id=id_number,
            expected_version=x.version,
        )

    return await _issuer_command(request, build)


@routes.post("/api/v1/review/applications/{app_id}/loss")
async def report_loss(request: web.Request) -> web.Response:
    """EMS lost or damaged the parcel (the EMS webhook records the same automatically)."""

    def build(x: IssuerCall) -> Callable[[], Outcome]:
        reason = x.c.text(x.body, "reason")
        return lambda: x.s.report_loss(x.actor, x.app_id, reason=reason)

    return await _issuer_command(request, build)


@routes.post("/api/v1/review/applications/{app_id}/reissue")
async def reissue(request: web.Request) -> web.Response:
    """After a loss: a new blank and number; the old number void; the data unchanged."""

    return await _issuer_command(request, _on_a_numbered_blank("reissue"))


@routes.post("/api/v1/review/applications/{app_id}/replacement")
async def replace_certificate(request: web.Request) -> web.Response:
    """换发 for the institution's own error (misprinted, damaged): a new blank and number, the old number
    void and its blank recorded as recovered or destroyed; the registered data unchanged."""

    def why(x: IssuerCall) -> dict[str, Any]:
        note = x.body.get("note") or ""
        if not isinstance(note, str):
            x.c.errors.append(FieldError("note", "invalid_type", "格式不正确，应为文字"))
            note = ""
        return {
            "cause": x.c.text(x.body, "cause"),
            "old_certificate": x.c.text(x.body, "old_certificate"),
            "note": note,
        }

    return await _issuer_command(request, _on_a_numbered_blank("replace_certificate", why))


@routes.post("/api/v1/review/applications/{app_id}/revoke")
async def revoke_certificate(request: web.Request) -> web.Response:
    """宣布作废 (decision 0040): after the institution's review, the certificate it issued is declared void for one
    ground (``obtained_by_deception``, ``issued_in_error``, ``court_order``) with the issuer's note; its
    e-licence is revoked within a minute and the family is sent to the counter."""

    def build(x: IssuerCall) -> Callable[[], Outcome]:
        reason = x.c.text(x.body, "reason")
        if reason:
            try:
                check_reason(reason)
            except InvalidValue as error:
                x.c.errors.extend(error.errors)
        note = x.c.text(x.body, "note")
        return lambda: x.s.revoke_certificate(
            x.actor, x.app_id, reason=reason, note=note, expected_version=x.version
        )

    return await _issuer_command(request, build)


__all__ = ["IssuerCall", "hash_password", "routes"]
