"""The parents' endpoints of shared/api.md: login, start, face checks, the delivery record, details,
documents, the form and its signature, delivery method, postage, submit and withdraw; the father's
invitation and its acceptance (docs/decisions/0011-father-invitation.md).

Each handler parses and checks the request at the edge (value objects), calls one service method off
the loop through ``run_command`` and answers JSON. Anything about another parent's application is a
404: a parent cannot even learn that it exists. A father who joined by invitation sees a reduced
status view and may do only his own part; the mother's reads (form, delivery record, prefill) are 403.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import re
import uuid
from datetime import date
from typing import Any, Final, Literal, cast

import orjson
import segno
from aiohttp import web

from backend.auth import ProviderIdentity
from backend.channels import ProvincialApp
from backend.components import (
    APPLICATIONS,
    BLOBS,
    CHANNELS,
    CONFIG,
    HTTP,
    REGISTRY,
    STATUS_FOLLOWER,
    STATUS_VIEW,
    TOKENS,
    WECHAT,
    actor_of,
    caught_up,
    expected_version,
    in_io,
    in_store,
    json_response,
    query_limit,
    run_command,
    version_answer,
)
from backend.errors import REDIS_UNAVAILABLE, ServiceUnavailable, ViewRecovering, json_body, problem_for
from backend.registry import RegistryEntry
from backend.throttle import UPLOAD_DECODES, limit, limit_client
from backend.uploads import UnsupportedFileType, clean_image, read_multipart, sniff_content_type
from domain.application import (
    COUNTER_ONLY,
    DOCUMENT_KINDS,
    FACE_MESSAGES,
    FACE_PASS,
    BirthCertificateApplication,
    NotReady,
    ParentDetails,
    Recipient,
)
from domain.channels import CHANNELS as CHANNEL_DEFINITIONS
from domain.channels import WECHAT as WECHAT_CHANNEL
from domain.channels import channel_of
from domain.errors import (
    DomainError,
    FieldError,
    Forbidden,
    InvalidValue,
    NotFound,
    RuleViolated,
    ValidationFailed,
)
from domain.policy import Circumstances
from domain.referral import Referral
from domain.service import Applications, Outcome
from domain.values import (
    Actor,
    Address,
    EthnicGroup,
    IdDocument,
    MobileNumber,
    Nationality,
    PersonName,
    mask_id_number,
    parse_id_type,
    parse_residency,
)
from projections.status import MAX_LIST_LIMIT, document_version, father_status_of, status_of

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
PAYMENT_ACTOR = Actor(id="wechat-pay", role="system")
# The mini-program page a father's share card or QR code opens (the code rides in its query string).
FATHER_JOIN_PAGE: Final = "/pages/father/join"
SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")


# ---------------------------------------------------------------- edge parsing


class FieldCollector:
    """Collects every invalid field of a body so that the parent sees them all at once."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def take(self, build: Any, *args: Any, field: str) -> Any:
        """``build(*args, field=field)``, or None with the error noted."""
        try:
            return build(*args, field=field)
        except InvalidValue as e:
            self.errors.extend(e.errors)
            return None

    def text(self, body: dict[str, Any], key: str, field: str | None = None) -> str:
        """A required string (a number or a list where text belongs is a type error, not a missing field)."""
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            self.errors.append(FieldError(field or key, "invalid_type", "格式不正确，应为文字"))
            return ""
        if value is None or not value.strip():
            self.errors.append(FieldError(field or key, "required", "此项为必填项"))
            return ""
        return value

    def take_text(self, build: Any, body: dict[str, Any], key: str, field: str | None = None) -> Any:
        """``build(text, field=…)`` of a required string, with only one error per field."""
        text = self.text(body, key, field)
        return self.take(build, text, field=field or key) if text else None

    def check(self) -> None:
        """Raise all collected errors together."""
        if self.errors:
            raise ValidationFailed(self.errors)


def _app_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["app_id"])
    except ValueError:
        raise NotFound() from None


def _fingerprint(request: web.Request, body: Any = None) -> bytes:
    return request.method.encode() + request.path.encode() + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def _parent_details(c: FieldCollector, raw: Any, prefix: str, *, with_identity: bool) -> ParentDetails | None:
    if not isinstance(raw, dict):
        c.errors.append(FieldError(prefix, "required", "请填写完整的父母信息"))
        return None
    nationality = c.take(
        Nationality, c.text(raw, "nationality", f"{prefix}.nationality"), field=f"{prefix}.nationality"
    )
    ethnicity = c.take(
        EthnicGroup, c.text(raw, "ethnicity", f"{prefix}.ethnicity"), field=f"{prefix}.ethnicity"
    )
    address = c.take_text(Address, raw, "address", f"{prefix}.address")
    # Not said: the document says it (a resident ID: the mainland).
    residency = None
    if raw.get("residency"):
        residency = c.take(parse_residency, raw["residency"], field=f"{prefix}.residency")
    name = id_number = birth_date = None
    if with_identity:
        name = c.take_text(PersonName, raw, "name", f"{prefix}.name")
        id_number = c.take_text(id_document_reader(c, raw, prefix), raw, "id_number", f"{prefix}.id_number")
        if raw.get("birth_date") is not None:
            birth_date = c.take(_birth_date, raw["birth_date"], field=f"{prefix}.birth_date")
    if None in (nationality, ethnicity, address) or (with_identity and None in (name, id_number)):
        return None
    # "typed" until the server itself finds these values in the police registry (put_details): what the
    # client says about where they came from is not evidence.
    return ParentDetails(
        nationality=nationality,
        ethnicity=ethnicity,
        address=address,
        residency=residency,
        name=name,
        id_number=id_number,
        birth_date=birth_date,
    )


def id_document_reader(c: FieldCollector, body: dict[str, Any], prefix: str = "") -> Any:
    """How ``id_number`` is read: as the document ``id_type`` names (a resident ID when neither it nor the
    number's shape says otherwise), the kind's own errors reported with the rest."""
    dot = f"{prefix}." if prefix else ""
    kind = None
    if body.get("id_type") is not None:
        kind = c.take(parse_id_type, body["id_type"], field=f"{dot}id_type")

    def build(text: str, *, field: str) -> IdDocument:
        return IdDocument(text, kind, field=field)

    return build


def _birth_date(text: Any, *, field: str) -> date:
    """A birth date ``YYYY-MM-DD`` (given beside a travel permit, whose number has none)."""
    try:
        born = date.fromisoformat(text) if isinstance(text, str) and len(text) == 10 else None
    except ValueError:
        born = None
    if born is None or not date(1900, 1, 1) <= born <= date.today():
        raise InvalidValue(field, "invalid_birth_date", "出生日期不正确，请按 年-月-日 填写，如 1990-01-31")
    return born


# ---------------------------------------------------------------- login


@routes.post("/api/v1/auth/wechat")
async def login_wechat(request: web.Request) -> web.Response:
    """wx.login code → code2session → our token."""
    body = await json_body(request)
    code = body.get("code")
    if not isinstance(code, str) or not 1 <= len(code) <= 128:
        raise ValidationFailed([FieldError("code", "required", "缺少登录凭证 code")])
    await limit_client(request, "login_source")
    session = await in_io(request, request.app[WECHAT].code_to_session, code)
    await limit(request, "login_account", f"wechat:{session.openid}")
    token, expires_in = request.app[TOKENS].issue(Actor(id=session.openid, role="parent"))
    return json_response({"token": token, "expires_in": expires_in})


@routes.post("/api/v1/auth/yueshengshi")
async def login_yueshengshi(request: web.Request) -> web.Response:
    """粤省事 login: the provider's signed ticket → our token (the first of the channels' logins)."""
    return await _login_channel(request, "yueshengshi")


@routes.post("/api/v1/auth/channels/{channel}")
async def login_channel(request: web.Request) -> web.Response:
    """A provincial app's login (粤省事, 北京通, 健康山东, 冀时办): its signed ticket → our token."""
    return await _login_channel(request, request.match_info["channel"])


async def _login_channel(request: web.Request, name: str) -> web.Response:
    channel = CHANNEL_DEFINITIONS.get(name)
    if channel is None:
        raise NotFound("没有这个登录渠道", code="unknown_channel")
    body = await json_body(request)
    ticket = body.get("ticket")
    if not isinstance(ticket, str) or not ticket:
        raise ValidationFailed([FieldError("ticket", "required", f"缺少{channel.label}登录凭证")])
    app = request.app[CHANNELS].get(name)
    if app is None:
        raise ServiceUnavailable(f"本服务未开通{channel.label}登录", code="provider_not_configured")
    await limit_client(request, "login_source")
    identity: ProviderIdentity = await in_io(request, app.verifier.verify_ticket, ticket)
    await limit(request, "login_account", identity.actor_id)
    token, expires_in = request.app[TOKENS].issue(identity.actor())
    return json_response({"token": token, "expires_in": expires_in, "channel": name})


# ---------------------------------------------------------------- applications


@routes.post("/api/v1/applications")
async def start_application(request: web.Request) -> web.Response:
    """Start an application (the mother; proven by her face check next)."""
    actor = actor_of(request, "parent")
    body = await json_body(request)
    c = FieldCollector()
    parents = body.get("parents", "both")
    mother_residency = c.take(
        parse_residency, body.get("mother_residency") or "mainland", field="mother_residency"
    )
    father_residency = None
    if parents == "both":
        father_residency = c.take(
            parse_residency, body.get("father_residency") or "mainland", field="father_residency"
        )
    province = body.get("province")
    if province is not None and not isinstance(province, str):
        c.errors.append(FieldError("province", "invalid_province", "省份代码不正确"))
    # Where she gave birth (the hospital's QR code carries it): a referral names its counter (decision 0033).
    institution = body.get("institution")
    if institution is not None and not isinstance(institution, str):
        c.errors.append(FieldError("institution", "invalid_institution", "分娩机构代码不正确"))
    c.check()
    try:
        circumstances = Circumstances(
            request_kind=body.get("request_kind", "first_issue"),
            born_in_institution=bool(body.get("born_in_institution", True)),
            parents=parents,
            mother_residency=mother_residency,
            father_residency=father_residency,
        )
    except InvalidValue as e:
        raise ValidationFailed(e.errors) from None
    service = request.app[APPLICATIONS]

    def created(outcome: Outcome) -> web.Response:
        response = version_answer(outcome, status=201)
        response.headers["Location"] = f"/api/v1/applications/{outcome.id}"
        return response

    return await run_command(
        request,
        actor,
        _fingerprint(request, body),
        lambda: service.start_application(
            actor, circumstances=circumstances, province=province, institution=institution
        ),
        created,
    )


@routes.get("/api/v1/applications")
async def list_applications(request: web.Request) -> web.Response:
    """My applications, newest first."""
    actor = actor_of(request, "parent")
    limit = query_limit(request, 20, MAX_LIST_LIMIT)
    if request.app[STATUS_FOLLOWER].recovering:
        # The view was lost (Redis flushed or replaced) and is being rebuilt: a list now would miss entries.
        raise ViewRecovering()
    items, cursor = await request.app[STATUS_VIEW].list_for(actor.id, request.query.get("cursor"), limit)
    return json_response({"items": items, "next_cursor": cursor})


def _document_from_store(service: Applications, actor: Actor, app_id: uuid.UUID) -> dict[str, Any]:
    """On the store executor: the status document this user sees, computed from the application itself."""
    app = service.get_application(actor, app_id)
    return father_status_of(app) if app.is_joined_father(actor) else status_of(app)


@routes.get("/api/v1/applications/{app_id}")
async def get_application(request: web.Request) -> web.Response:
    """The status view: state, what is done, what is next, rejection reasons, numbers.

    The hot path is one Redis round trip (ownership and the document in one script) whose stored bytes are
    the body, never decoded (decision 0029). Not projected yet, lost with Redis, Redis away, or not theirs:
    the store knows, and answers (never a 404 for an application that is there); the follower is woken to
    repair the view.
    """
    actor = actor_of(request, "parent")
    app_id = _app_id(request)
    try:
        stored = await request.app[STATUS_VIEW].get_bytes_for(actor.id, app_id)
    except REDIS_UNAVAILABLE as error:
        log.warning("status view unavailable, reading the store", extra={"error": type(error).__name__})
        stored = None
    if stored is not None:
        return web.Response(
            body=stored,
            content_type="application/json",
            headers={"ETag": f'"{document_version(stored)}"'},
        )
    request.app[STATUS_FOLLOWER].wake()
    document = await in_store(request, _document_from_store, request.app[APPLICATIONS], actor, app_id)
    return json_response(document, headers={"ETag": f'"{document["version"]}"'})


async def _application(request: web.Request, actor: Actor) -> BirthCertificateApplication:
    return await in_store(request, request.app[APPLICATIONS].get_application, actor, _app_id(request))


async def _applicants_application(request: web.Request, actor: Actor) -> BirthCertificateApplication:
    """For the applicant's reads (the form, the delivery record, police data): not the joined father's."""
    app = await _application(request, actor)
    if app.is_joined_father(actor):
        raise Forbidden("该信息只能由申办人（新生儿母亲）查看", code="applicant_only")
    return app


# ---------------------------------------------------------------- the father's invitation


def _qr_svg(text: str) -> str:
    """A QR code of ``text`` as an SVG document (segno; medium error correction, the standard quiet zone)."""
    out = io.BytesIO()
    segno.make(text, error="m", micro=False).save(out, kind="svg", xmldecl=False, scale=4)
    return out.getvalue().decode("utf-8")


@routes.post("/api/v1/applications/{app_id}/father-invitation")
async def invite_father(request: web.Request) -> web.Response:
    """The mother invites the father to verify on his own WeChat account: a one-time code, its page, a QR."""
    actor = actor_of(request, "parent")
    app_id, version, service = _app_id(request), expected_version(request), request.app[APPLICATIONS]

    def answer(outcome: Outcome) -> web.Response:
        app = cast(BirthCertificateApplication, outcome.aggregate)
        code = outcome.detail or ""
        path = f"{FATHER_JOIN_PAGE}?invitation={code}"
        # Recorded for a retry under its Idempotency-Key, sealed with that key (the code is a secret).
        return version_answer(
            outcome,
            status=201,
            invitation=code,
            expires_at=(app.father_invitation or {}).get("expires_at"),
            path=path,
            qr_svg=_qr_svg(path),
        )

    response = await run_command(
        request,
        actor,
        _fingerprint(request),
        lambda: service.invite_father(actor, app_id, expected_version=version),
        answer,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@routes.post("/api/v1/father-invitations/accept")
async def accept_father_invitation(request: web.Request) -> web.Response:
    """The father, logged in on his own account, joins the application the invitation code belongs to."""
    actor = actor_of(request, "parent")
    body = await json_body(request)
    code = body.get("invitation")
    if not isinstance(code, str) or not code.strip():
        raise ValidationFailed([FieldError("invitation", "required", "缺少邀请码")])
    code = code.strip()
    await limit(request, "invitation", actor.id)  # codes are long, but guessing costs a try each
    service = request.app[APPLICATIONS]

    def answer(outcome: Outcome) -> web.Response:
        return version_answer(outcome, application_id=str(outcome.id), role="father")

    return await run_command(
        request,
        actor,
        # Only a digest of the fingerprint is recorded; still, take the code's keyed digest, not the code.
        _fingerprint(request, {"invitation_digest": service.invitation_digest(code)}),
        lambda: service.accept_father_invitation(actor, code),
        answer,
    )


# ---------------------------------------------------------------- face verification


@routes.post("/api/v1/applications/{app_id}/face-verifications")
async def begin_face_verification(request: web.Request) -> web.Response:
    """Begin a face check bound to this identity and this user: WeChat's verify_id for a WeChat user (the
    client then shows wx.requestFacialVerify), the app's authorization request for a provincial app's user
    (the client opens it; docs/decisions/0030)."""
    actor = actor_of(request, "parent")
    channel = _provincial_app(request, actor)
    app_id = _app_id(request)
    body = await json_body(request)
    c = FieldCollector()
    role = body.get("role")
    if role not in ("mother", "father"):
        c.errors.append(FieldError("role", "invalid_role", "认证角色只能是母亲（mother）或父亲（father）"))
    name = c.take_text(PersonName, body, "name", "name")
    id_number = c.take_text(id_document_reader(c, body), body, "id_number", "id_number")
    c.check()
    role = cast(Literal["mother", "father"], role)
    service = request.app[APPLICATIONS]
    out_seq_no = "bc" + uuid.uuid4().hex[:24]
    version = expected_version(request)
    verify_id = ""
    started: dict[str, Any] = {"channel": WECHAT_CHANNEL}
    # The identity the check is to prove, as both the check below and the command take it.
    claim: dict[str, Any] = {"role": role, "name": name, "id_number": id_number, "out_seq_no": out_seq_no}

    async def ask_the_checker() -> None:
        """Refused before WeChat or the app is asked (each verify_id is a paid call), and never for a retry."""
        nonlocal verify_id
        await in_store(request, service.check_face_request, actor, app_id, **claim)
        # Each start is a paid call: counted per parent and per ID number (HMAC'd) before it is made.
        await limit(request, "face_user", actor.id)
        await limit(request, "face_id_number", id_number.value)
        if channel is not None:
            step_up = await in_io(
                request,
                lambda: channel.begin(
                    out_seq_no=out_seq_no,
                    subject=channel.channel.subject_of(actor.id),
                    id_number=id_number.value,
                ),
            )
            started.update(channel=step_up.channel, authorization_url=step_up.authorization_url)
            return
        verify_id = await in_io(
            request,
            request.app[WECHAT].get_verify_id,
            out_seq_no=out_seq_no,
            name=name.value,
            id_number=id_number.value,
            openid=actor.id,
        )
        started["verify_id"] = verify_id

    def answer(outcome: Outcome) -> web.Response:
        return version_answer(outcome, status=201, out_seq_no=out_seq_no, **started)

    return await run_command(
        request,
        actor,
        _fingerprint(request, body),
        lambda: service.request_face_verification(
            actor, app_id, **claim, verify_id=verify_id, expected_version=version
        ),
        answer,
        prepare=ask_the_checker,
    )


def _provincial_app(request: web.Request, actor: Actor) -> ProvincialApp | None:
    """The provincial app a parent logged in through (None: WeChat); 503 when it is not configured."""
    channel = channel_of(actor.id)
    if channel is None:
        return None
    app = request.app[CHANNELS].get(channel.name)
    if app is None:
        raise ServiceUnavailable(f"本服务未开通{channel.label}刷脸认证", code="provider_not_configured")
    return app


@routes.post("/api/v1/applications/{app_id}/face-verifications/{out_seq_no}/result")
async def face_verification_result(request: web.Request) -> web.Response:
    """After the face check: record FaceVerified or say why not. WeChat's verdict is asked of WeChat; a
    provincial app's comes with the body, ``{code, state}`` (or ``{error, state}``) from the app's redirect,
    the code exchanged and its ID token checked (docs/decisions/0030).

    Asked again once the verdict is recorded (the answer to the first request was lost), it answers the
    recorded verdict again, without asking WeChat or the app, or recording anything twice.
    """
    actor = actor_of(request, "parent")
    app_id = _app_id(request)
    out_seq_no = request.match_info["out_seq_no"]
    channel = _provincial_app(request, actor)
    body = await json_body(request) if channel is not None else None
    app = await _application(request, actor)
    service = request.app[APPLICATIONS]
    verify_ret: int | None = None
    failure: str | None = None
    if out_seq_no in app.pending_face:
        pending = app.pending_face_of(actor, out_seq_no)  # refused before WeChat is asked anything
        role = pending["role"]
        if channel is not None:
            redirect = body or {}
            failure = await in_io(
                request,
                lambda: channel.complete(
                    out_seq_no=out_seq_no,
                    subject=channel.channel.subject_of(actor.id),
                    name=pending["name"],
                    id_number=pending["id_number"],
                    state=redirect.get("state"),
                    code=redirect.get("code"),
                    error=redirect.get("error"),
                ),
            )
            verify_ret = FACE_PASS
        else:
            verify_ret = await in_io(
                request,
                request.app[WECHAT].query_verify_ret,
                verify_id=pending["verify_id"],
                out_seq_no=out_seq_no,
                name=pending["name"],
                id_number=pending["id_number"],
                openid=actor.id,
            )
    else:
        role = (await in_store(request, service.get_face_verdict, actor, app_id, out_seq_no)).role

    def answer(outcome: Outcome) -> web.Response:
        if outcome.detail is not None:  # not passed: recorded all the same, and answered as a problem
            failure = FACE_MESSAGES.get(outcome.detail, FACE_MESSAGES["face_failed"])
            return problem_for(_face_failure(failure, outcome.detail, outcome.aggregate))
        app = cast(BirthCertificateApplication, outcome.aggregate)
        linked = {"delivery_record_linked": app.delivery_record_id is not None} if role == "mother" else {}
        return version_answer(outcome, verified=True, role=role, **linked)

    return await run_command(
        request,
        actor,
        _fingerprint(request, body),
        lambda: service.record_face_verification(
            actor,
            app_id,
            out_seq_no=out_seq_no,
            verify_ret=verify_ret,
            channel=WECHAT_CHANNEL if channel is None else channel.channel.name,
            failure=failure,
        ),
        answer,
    )


def _face_failure(failure: str, code: str, app: Any) -> RuleViolated:
    """A failed check's problem; the day's last allowed failure (the application went to the counter) says
    so, naming the counter and what to bring (docs/decisions/0033)."""
    if not isinstance(app, BirthCertificateApplication) or app.state != COUNTER_ONLY or app.referral is None:
        return RuleViolated(failure, code=code)
    referral = Referral.from_event(**app.referral)
    error = RuleViolated(f"{failure}。{referral.message}", code=referral.reason)
    error.referral = dataclasses.replace(referral, message=error.message)
    return error


# ---------------------------------------------------------------- the delivery record


def _masked_record(app: BirthCertificateApplication) -> dict[str, Any]:
    record = app.record or {}
    return {
        "institution_name": record.get("institution_name"),
        "inpatient_no": record.get("inpatient_no"),
        "mother_name": PersonName(record["mother_name"]).masked() if record else None,
        "mother_id_number": mask_id_number(record["mother_id_number"]) if record else None,
        "newborn": {
            "sex": record.get("newborn_sex"),
            "born_at": record.get("born_at"),
            "gestational_weeks": record.get("gestational_weeks"),
            "weight_g": record.get("weight_g"),
            "length_cm": record.get("length_cm"),
        },
        "birthplace": record.get("birthplace"),
        "attendant": PersonName(record["attendant"]).masked() if record else None,
        "entered_on": record.get("entered_on"),
        "confirmed": app.delivery_confirmed is True,
        "disputed": app.delivery_confirmed is False,
        "dispute_reason": app.dispute_reason,
    }


@routes.get("/api/v1/applications/{app_id}/delivery-record")
async def get_delivery_record(request: web.Request) -> web.Response:
    """The hospital's delivery record, masked (linked now if the face check could not link it)."""
    actor = actor_of(request, "parent")
    app = await _applicants_application(request, actor)
    if app.record is None and "mother" in app.verified:
        outcome = await in_store(request, request.app[APPLICATIONS].link_delivery_record, actor, app.id)
        await caught_up(request, outcome.position)
        app = cast(BirthCertificateApplication, outcome.aggregate)
    if app.record is None:
        raise NotReady(["mother_verified"] if "mother" not in app.verified else ["delivery_record_linked"])
    return json_response({"delivery_record": _masked_record(app), "version": app.version})


@routes.post("/api/v1/applications/{app_id}/delivery-record/confirm")
async def confirm_delivery_record(request: web.Request) -> web.Response:
    """The mother confirms the delivery record."""
    actor = actor_of(request, "parent")
    app_id, version, service = _app_id(request), expected_version(request), request.app[APPLICATIONS]
    return await run_command(
        request,
        actor,
        _fingerprint(request),
        lambda: service.confirm_delivery_info(actor, app_id, expected_version=version),
    )


@routes.post("/api/v1/applications/{app_id}/delivery-record/dispute")
async def dispute_delivery_record(request: web.Request) -> web.Response:
    """The mother disputes the delivery record; the hospital is told and must correct it."""
    actor = actor_of(request, "parent")
    body = await json_body(request)
    c = FieldCollector()
    reason = c.text(body, "reason")
    c.check()
    app_id, version, service = _app_id(request), expected_version(request), request.app[APPLICATIONS]
    return await run_command(
        request,
        actor,
        _fingerprint(request, body),
        lambda: service.dispute_delivery_info(actor, app_id, reason=reason, expected_version=version),
    )


# ---------------------------------------------------------------- details, documents


@routes.put("/api/v1/applications/{app_id}/details")
async def put_details(request: web.Request) -> web.Response:
    """The newborn's name, the mother's and the father's details.

    The command itself checks who acts (the application is loaded once, in the command): the handler
    loads it first only to refuse a stranger (404) or the joined father (403) before a 400/422, and to
    ask the police registry about the verified parents where the province uses it.
    """
    actor = actor_of(request, "parent")
    try:
        app_id, version = _app_id(request), expected_version(request)
        body = await json_body(request)
        c = FieldCollector()
        newborn_name = c.take_text(PersonName, body, "newborn_name", "newborn_name")
        mother = _parent_details(c, body.get("mother"), "mother", with_identity=False)
        father = None
        if body.get("father") is not None:
            father = _parent_details(c, body.get("father"), "father", with_identity=True)
        c.check()
    except DomainError:
        await _applicants_application(
            request, actor
        )  # 404 for a stranger, 403 for the father, before any 422
        raise
    if mother is None:  # c.check() raised already; this tells the type checker
        raise ValidationFailed([FieldError("mother", "required", "请填写母亲信息")])
    if request.app.get(REGISTRY) is not None:
        # Marked as from the police registry only where the registry, asked now, says exactly this.
        found = await _registry_entries(request, await _applicants_application(request, actor))
        for role, details in (("mother", mother), ("father", father)):
            entry = found.get(role)
            if details is not None and entry is not None and _as_registered(details, *entry):
                details.source = "registry"
    service = request.app[APPLICATIONS]
    return await run_command(
        request,
        actor,
        _fingerprint(request, body),
        lambda: service.provide_details(
            actor, app_id, newborn_name=newborn_name, mother=mother, father=father, expected_version=version
        ),
    )


@routes.get("/api/v1/applications/{app_id}/details/prefill")
async def details_prefill(request: web.Request) -> web.Response:
    """Where the province takes them from police data (Guangdong): the verified parents' ethnicity and address."""
    actor = actor_of(request, "parent")
    app = await _applicants_application(request, actor)
    if not app.profile.population_registry_prefill or request.app.get(REGISTRY) is None:
        return json_response({"available": False, "mother": None, "father": None})
    found: dict[str, Any] = {"available": True, "mother": None, "father": None}
    for role, (entry, _) in (await _registry_entries(request, app)).items():
        found[role] = {"ethnicity": entry.ethnicity, "address": entry.address, "source": "registry"}
    return json_response(found, headers={"Cache-Control": "no-store"})


async def _registry_entries(
    request: web.Request, app: BirthCertificateApplication
) -> dict[str, tuple[RegistryEntry, str]]:
    """The police registry's entries of the verified parents, with their ID numbers (none where the
    province does not use the registry or it is not configured)."""
    registry = request.app.get(REGISTRY)
    if not app.profile.population_registry_prefill or registry is None:
        return {}
    found = {}
    for role in ("mother", "father"):
        person = app.verified.get(role)
        if person is None:
            continue
        entry = await registry.lookup(request.app[HTTP], id_number=person["id_number"], name=person["name"])
        if entry is not None:
            found[role] = (entry, person["id_number"])
    return found


def _as_registered(details: ParentDetails, entry: RegistryEntry, id_number: str) -> bool:
    """Whether these details are the registry's, for the person the registry was asked about."""
    if details.id_number is not None and details.id_number.value != id_number:
        return False
    try:
        address = Address(entry.address, field="address").value
    except InvalidValue:
        return False
    return details.ethnicity.code == entry.ethnicity and details.address.value == address


async def _cleaned_upload(
    request: web.Request, *, text_fields: set[str], png_only: bool = False
) -> tuple[dict[str, str], bytes, str]:
    """The form fields, and the image re-encoded without EXIF with its type (nothing stored yet).

    Counted against the parent's upload limit before the body is read; decoded only a few at a time
    (``UPLOAD_DECODES``), so that many uploads at once wait for memory rather than multiply it.
    """
    config = request.app[CONFIG]
    await limit(request, "upload", actor_of(request, "parent").id)
    upload = await read_multipart(request, max_bytes=config.upload_max_bytes, text_fields=text_fields)
    if png_only and sniff_content_type(upload.file) != "image/png":
        raise UnsupportedFileType("签名图片须为 PNG 格式", code="unsupported_file_type")
    async with request.app[UPLOAD_DECODES]:
        cleaned, content_type = await in_io(
            request, clean_image, upload.file, max_pixels=config.upload_max_pixels
        )
    return upload.fields, cleaned, content_type


@routes.post("/api/v1/applications/{app_id}/documents")
async def upload_document(request: web.Request) -> web.Response:
    """An ID photo (multipart ``kind`` + ``file``): type from the bytes, EXIF stripped, stored encrypted."""
    actor = actor_of(request, "parent")
    app_id = _app_id(request)
    await _application(request, actor)  # 404 before reading a stranger's upload
    fields, data, content_type = await _cleaned_upload(request, text_fields={"kind"})
    kind = fields.get("kind", "")
    if kind not in DOCUMENT_KINDS:
        raise ValidationFailed([FieldError("kind", "invalid_document_kind", "材料类型不正确")])
    version, service, blobs = expected_version(request), request.app[APPLICATIONS], request.app[BLOBS]
    sha256 = hashlib.sha256(data).hexdigest()  # the blob store's content address of these bytes

    def answer(outcome: Outcome) -> web.Response:
        return version_answer(outcome, status=201, document_id=sha256, sha256=sha256)

    return await run_command(
        request,
        actor,
        _fingerprint(request, {"kind": kind, "sha256": sha256}),
        lambda: service.upload_document(
            actor,
            app_id,
            kind=kind,
            document_id=sha256,
            sha256=sha256,
            content_type=content_type,
            size=len(data),
            expected_version=version,
            # The photo (personal data) is written only once the application has taken it.
            before_save=lambda: blobs.put(data, content_type),
        ),
        answer,
    )


# ---------------------------------------------------------------- the form and its signature


@routes.get("/api/v1/applications/{app_id}/form")
async def get_form(request: web.Request) -> web.Response:
    """The registration form exactly as it will be signed, with its SHA-256."""
    actor = actor_of(request, "parent")
    app = await _applicants_application(request, actor)
    form = app.form()
    if form is None:
        raise NotReady(app.missing_for_signing())
    return json_response(
        {
            "form": form,
            "sha256": app.form_sha256(),
            "signature_valid": app.signature_valid,
            "version": app.version,
        },
        headers={"ETag": f'"{app.version}"'},
    )


@routes.post("/api/v1/applications/{app_id}/signature")
async def sign_form(request: web.Request) -> web.Response:
    """The mother's e-signature (PNG) over the form whose SHA-256 she was shown (a stale one → 409)."""
    actor = actor_of(request, "parent")
    app_id = _app_id(request)
    await _applicants_application(request, actor)  # 404/403 before reading the upload
    fields, data, content_type = await _cleaned_upload(request, text_fields={"form_sha256"}, png_only=True)
    form_sha256 = fields.get("form_sha256", "")
    if not form_sha256:
        raise ValidationFailed([FieldError("form_sha256", "required", "缺少登记表的 SHA-256")])
    if not SHA256_HEX.fullmatch(form_sha256):
        raise ValidationFailed(
            [FieldError("form_sha256", "invalid_sha256", "登记表的 SHA-256 应为64位十六进制数")]
        )
    version, service, blobs = expected_version(request), request.app[APPLICATIONS], request.app[BLOBS]
    sha256 = hashlib.sha256(data).hexdigest()  # the blob store's content address of the image
    return await run_command(
        request,
        actor,
        _fingerprint(request, {"form_sha256": form_sha256, "sha256": sha256}),
        lambda: service.sign_form(
            actor,
            app_id,
            form_sha256=form_sha256,
            signature_document_id=sha256,
            signature_sha256=sha256,
            expected_version=version,
            before_save=lambda: blobs.put(data, content_type),  # stored only if the signature is taken
        ),
    )


# ---------------------------------------------------------------- delivery, postage, submit, withdraw


@routes.put("/api/v1/applications/{app_id}/delivery-method")
async def put_delivery_method(request: web.Request) -> web.Response:
    """EMS to a recipient, or pickup at the issuing institution."""
    actor = actor_of(request, "parent")
    body = await json_body(request)
    c = FieldCollector()
    method = body.get("method")
    recipient = None
    if method == "ems":
        raw = body.get("recipient")
        if not isinstance(raw, dict):
            c.errors.append(FieldError("recipient", "recipient_required", "邮寄到家需要填写收件人信息"))
        else:
            name = c.take_text(PersonName, raw, "name", "recipient.name")
            phone = c.take_text(MobileNumber, raw, "phone", "recipient.phone")
            address = c.take_text(Address, raw, "address", "recipient.address")
            if None not in (name, phone, address):
                recipient = Recipient(name=name, phone=phone, address=address)
    elif method != "pickup":
        c.errors.append(
            FieldError("method", "invalid_delivery_method", "领取方式只能是邮寄（ems）或现场领取（pickup）")
        )
    c.check()
    app_id, version, service = _app_id(request), expected_version(request), request.app[APPLICATIONS]
    return await run_command(
        request,
        actor,
        _fingerprint(request, body),
        lambda: service.choose_delivery_method(
            actor, app_id, method=cast(str, method), recipient=recipient, expected_version=version
        ),
    )


@routes.post("/api/v1/applications/{app_id}/payments")
async def create_payment(request: web.Request) -> web.Response:
    """WeChat Pay (JSAPI) parameters for the postage, where the province charges it up front."""
    actor = actor_of(request, "parent")
    app_id, version, service = _app_id(request), expected_version(request), request.app[APPLICATIONS]
    out_trade_no = "BC" + uuid.uuid4().hex[:28]
    params: dict[str, str] = {}

    async def order_at_wechat() -> None:
        """WeChat Pay's order first (checked against the application before), so that the answer,
        made and recorded with the command, carries its parameters; an order never recorded is never paid."""
        amount = await in_store(
            request, service.check_postage_order, actor, app_id, out_trade_no=out_trade_no
        )
        params.update(
            await in_io(
                request,
                request.app[WECHAT].create_jsapi_payment,
                out_trade_no=out_trade_no,
                amount_fen=amount,
                openid=actor.id,
                description="出生医学证明邮寄费",
                client_ip=request.remote or "127.0.0.1",
            )
        )

    def answer(outcome: Outcome) -> web.Response:
        amount = int(outcome.detail or 0)
        return version_answer(
            outcome, status=201, out_trade_no=out_trade_no, amount_fen=amount, pay_params=params
        )

    return await run_command(
        request,
        actor,
        _fingerprint(request),
        lambda: service.place_postage_order(
            actor, app_id, out_trade_no=out_trade_no, expected_version=version
        ),
        answer,
        prepare=order_at_wechat,
    )


@routes.post("/api/v1/payments/wechat/notify")
async def payment_notification(request: web.Request) -> web.Response:
    """WeChat Pay's notification (XML): signature and amount checked, recorded once however often it comes."""
    wechat = request.app[WECHAT]
    raw = await request.content.read(64 * 1024 + 1)
    if len(raw) > 64 * 1024:
        return web.Response(
            body=wechat.payment_ack(False, "too large"), status=413, content_type="application/xml"
        )
    try:
        notice = await in_io(request, wechat.parse_payment_notification, raw)
    except Exception as e:  # a forged or malformed notification: refuse it, record nothing
        code = getattr(e, "code", "invalid")
        return web.Response(body=wechat.payment_ack(False, code), status=400, content_type="application/xml")
    if notice.result_code != "SUCCESS":
        return web.Response(body=wechat.payment_ack(True), content_type="application/xml")
    service = request.app[APPLICATIONS]
    app_id = await in_store(request, service.find_application_by_order, notice.out_trade_no)
    if app_id is None:
        return web.Response(
            body=wechat.payment_ack(False, "unknown order"), status=404, content_type="application/xml"
        )
    try:
        outcome = await in_store(
            request,
            service.record_postage_paid,
            PAYMENT_ACTOR,
            app_id,
            out_trade_no=notice.out_trade_no,
            amount_fen=notice.total_fee,
            transaction_id=notice.transaction_id,
        )
    except RuleViolated as e:
        return web.Response(
            body=wechat.payment_ack(False, e.code), status=409, content_type="application/xml"
        )
    await caught_up(request, outcome.position)
    return web.Response(body=wechat.payment_ack(True), content_type="application/xml")


@routes.post("/api/v1/applications/{app_id}/submit")
async def submit(request: web.Request) -> web.Response:
    """Submit for review."""
    actor = actor_of(request, "parent")
    app_id, version, service = _app_id(request), expected_version(request), request.app[APPLICATIONS]
    return await run_command(
        request, actor, _fingerprint(request), lambda: service.submit(actor, app_id, expected_version=version)
    )


@routes.post("/api/v1/applications/{app_id}/withdraw")
async def withdraw(request: web.Request) -> web.Response:
    """Withdraw before issue."""
    actor = actor_of(request, "parent")
    body = await json_body(request)
    # Optional, but a withdrawal cannot be undone: a reason of the wrong type refuses it, never ignored.
    c = FieldCollector()
    reason = c.text(body, "reason") if body.get("reason") is not None else "申办人撤回"
    c.check()
    app_id, version, service = _app_id(request), expected_version(request), request.app[APPLICATIONS]
    return await run_command(
        request,
        actor,
        _fingerprint(request, body),
        lambda: service.withdraw(actor, app_id, reason=str(reason), expected_version=version),
    )
