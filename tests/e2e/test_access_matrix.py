"""Who may call what: every route of the app's router × every kind of caller, over real HTTP.

The callers: nobody (no token), the mother A who owns the application, another mother B, the father who
joined A's application by invitation, an issuer of A's institution and one of another, the hospital's
HIS, an auditor and an administrator. Each route has its row in ``MATRIX``, written by hand: ``ok`` (the
caller gets past every access check: whatever the answer, it is not 401, 403 or 404), ``no`` (refused:
401 without a token, else 403 or 404, and nothing changes), or ``any`` for routes that take no token.
The rows are checked against the router itself, so a new route without a row fails here.

Mutations are sent with ``If-Match`` of a version that does not exist: a caller who passes the access
checks gets 409 (or 422 for a body the route refuses), so the matrix changes no application.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from backend.admin import operator
from backend.auth import TokenKeys
from backend.components import TOKEN_KEYS
from backend.dev import DEMO_PASSWORD, seed_demo_staff
from backend.routes.staff import hash_password
from domain.values import IdNumber
from miniprogram_stub.client import MiniProgram, StaffClient, id_photo, signature_png
from miniprogram_stub.people import Family, demo_family
from tests.e2e.conftest import Stack
from tests.e2e.test_father_invitation import on_her_phone, on_his_phone
from tests.unit.test_auth import b64, good_claims, signed, unsigned

pytestmark = pytest.mark.e2e

CALLERS = (
    "none",
    "mother",
    "other_mother",
    "father",
    "issuer",
    "other_issuer",
    "hospital",
    "auditor",
    "admin",
)
NO_VERSION = "999999"
DENIED = (401, 403, 404)


@dataclass
class World:
    """The people and the ids the requests name."""

    tokens: dict[str, str | None] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)


async def world(stack: Stack) -> World:
    """A submitted two-parent application (the father joined by invitation), another mother's draft, staff."""
    await stack.in_store(seed_demo_staff, stack.service)
    await stack.in_store(
        lambda: stack.service.create_staff_account(
            operator(),
            username="admin1",
            role="admin",
            institution=None,
            display_name="吴管理",
            password_hash=hash_password(DEMO_PASSWORD),
        )
    )
    family = demo_family(1)
    mother = await on_her_phone(stack, family)
    invitation = await mother.invite_father()
    father = await on_his_phone(stack, family)
    await father.accept_invitation(invitation["invitation"])
    await father.fathers_part()
    await mother.upload("mother_id_front")
    await mother.upload("mother_id_back")
    await mother.sign()
    await mother.choose_ems()
    await mother.submit()
    other: MiniProgram = await on_her_phone(stack, demo_family(2))
    w = World()
    w.tokens = {"none": None, "mother": mother.token, "other_mother": other.token, "father": father.token}
    for caller, username in (
        ("issuer", "issuer1"),
        ("other_issuer", "issuer2"),
        ("hospital", "his1"),
        ("auditor", "auditor1"),
        ("admin", "admin1"),
    ):
        staff = StaffClient(stack.session, stack.api)
        await staff.login(username, DEMO_PASSWORD)
        w.tokens[caller] = staff.token
    issuer = StaffClient(stack.session, stack.api, token=w.tokens["issuer"])
    review = await issuer.call("GET", f"/api/v1/review/applications/{mother.app_id}")
    auditor = StaffClient(stack.session, stack.api, token=w.tokens["auditor"])
    forms = await auditor.call("GET", f"/api/v1/archive/forms?application_id={mother.app_id}")
    [record] = await stack.in_store(stack.service.get_deliveries_of_mother, IdNumber(family.mother.id_number))
    w.ids = {
        "app_id": str(mother.app_id),
        "doc_id": review["documents"][0]["document_id"],
        "record_id": str(record.id),
        "form_id": str(forms["forms"][0]["id"]),
        "out_seq_no": "0" * 32,
        "name": "h5.js",
    }
    return w


# A file each page's ``/{name}`` route serves (the matrix asks for one that exists).
ASSET_OF = {"/console/": "console.js", "/verify/": "verify.js", "/": "h5.js"}


def bodies(family: Family) -> dict[tuple[str, str], Any]:
    """A body each command would take (so that only the access checks decide), by (method, route)."""
    mother, father = family.mother, family.father
    assert father is not None
    issue = {"certificate_number": "X440100009", "sealer": "李盖章"}
    app = "/api/v1/applications/{app_id}"
    review = "/api/v1/review/applications/{app_id}"
    photo = aiohttp.FormData()
    photo.add_field("kind", "father_id_front")
    photo.add_field("file", id_photo("father_id_front"), filename="p.jpg", content_type="image/jpeg")
    signature = aiohttp.FormData()
    signature.add_field("form_sha256", "0" * 64)
    signature.add_field("file", signature_png(), filename="s.png", content_type="image/png")
    letter = aiohttp.FormData()
    letter.add_field("collector_name", "李强")
    letter.add_field("collector_id_number", father.id_number)
    letter.add_field("letter_sha256", "0" * 64)
    letter.add_field("file", signature_png(), filename="s.png", content_type="image/png")
    return {
        ("POST", f"{app}/collector-letter"): letter,
        ("POST", f"{app}/face-verifications"): {
            "role": "father",
            "name": father.name,
            "id_number": father.id_number,
        },
        ("POST", f"{app}/delivery-record/dispute"): {"reason": "出生时间与实际不符"},
        ("POST", f"{app}/delivery-record/missing"): {"institution": "GZFY01", "born_on": "2026-11-20"},
        ("POST", "/api/v1/deliveries/{record_id}/uphold"): {"reason": "经核对原记录无误"},
        ("PUT", f"{app}/details"): {
            "newborn_name": family.newborn_name,
            "mother": {"nationality": "CHN", "ethnicity": "01", "address": "广东省广州市越秀区中山二路58号"},
            "father": {
                "name": father.name,
                "id_number": father.id_number,
                "nationality": "CHN",
                "ethnicity": "01",
                "address": "广东省广州市越秀区中山二路58号",
            },
        },
        ("POST", f"{app}/documents"): photo,
        ("POST", f"{app}/signature"): signature,
        ("PUT", f"{app}/delivery-method"): {"method": "pickup"},
        ("POST", f"{review}/reject"): {"reasons": ["照片不清晰"], "fields": ["newborn_name"]},
        ("POST", f"{review}/issue"): issue,
        ("POST", f"{review}/reissue"): issue,
        ("POST", f"{review}/dispatch"): {"tracking_number": "1100000000018"},
        ("POST", f"{review}/handover"): {
            "recipient_name": mother.name,
            "relation": "mother",
            "id_number": mother.id_number,
        },
        ("POST", f"{review}/loss"): {"reason": "邮件遗失"},
        ("POST", f"{review}/revoke"): {"reason": "issued_in_error", "note": "经复核，该证件不应签发"},
    }


QUERIES = {
    "/api/v1/archive/forms": "?application_id={app_id}",
    "/api/v1/review/queue": "?institution=GZFY01",
    "/api/v1/review/queue/events": "?institution=GZFY01",
    "/api/v1/review/pickup-list": "?institution=GZFY01",
    "/api/v1/audit/consistency": "?from=1&to=1",
}


async def observe(stack: Stack, w: World, method: str, template: str, row: str) -> dict[str, int]:
    """Each caller's status for the route. Whoever should get through sends a version that does not exist
    (a command stops at 409 and changes nothing); whoever should be refused sends none (so a hole in the
    checks would show as a change)."""
    path = template + QUERIES.get(template, "")
    ids = {
        **w.ids,
        "name": next(f for prefix, f in ASSET_OF.items() if template.startswith(prefix)),
        "channel": "beijingtong",
    }
    for key, value in ids.items():
        path = path.replace("{" + key + "}", value)
    statuses = {}
    for caller, expected in zip(CALLERS, row, strict=True):
        headers = {} if expected == "n" else {"If-Match": NO_VERSION}
        token = w.tokens[caller]
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {"headers": headers}
        body = bodies(demo_family(1)).get((method, template))
        if isinstance(body, aiohttp.FormData):
            kwargs["data"] = body
        elif method in ("POST", "PUT"):
            kwargs["json"] = body if body is not None else {}
        async with stack.session.request(method, stack.api + path, **kwargs) as r:
            statuses[caller] = r.status
    return statuses


PUBLIC = "*********"
PARENT = "nyyynnnnn"  # any parent, for herself
OWNER = "nynynnnnn"  # the mother and the father who joined
MOTHER = "nynnnnnnn"  # the applicant alone
HOSPITAL = "nnnnnnynn"
READ_REVIEW = "nnnnynnyn"  # the institution's issuer; an auditor
ISSUER = "nnnnynnnn"
AUDITOR = "nnnnnnnyn"
AUDIT_LOG = "nnnnnnnyy"
APP = "/api/v1/applications/{app_id}"
REVIEW = "/api/v1/review/applications/{app_id}"
# Columns in the order of CALLERS: y = gets past the access checks, n = refused, * = takes no token.
MATRIX: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/.well-known/jwks.json"): PUBLIC,
    ("GET", "/api/v1/elicense/jwks.json"): PUBLIC,  # every e-licence key, current and retired (decision 0038)
    ("GET", "/api/v1/status-lists/{list_id}"): PUBLIC,  # Token Status List (decision 0039)
    ("POST", "/api/v1/verifications"): PUBLIC,  # a verifier's token adds why; any other token is the public
    (
        "POST",
        "/api/v1/verifications/archive",
    ): "nnnnnnnnn",  # the verifier role alone (test_verification_http)
    ("GET", "/api/v1/audit/verifications"): AUDITOR,
    ("POST", "/api/v1/elicense/presentations"): PUBLIC,  # by licence id, nothing personal (decision 0041)
    ("GET", "/api/v1/statistics"): "nnnnnnnnn",  # the manager role alone, in its scope (test_statistics_http)
    ("GET", f"{APP}/elicense"): OWNER,  # the father's copy without the mother's identity number
    ("GET", f"{APP}/elicense/qr.png"): OWNER,
    ("GET", f"{APP}/elicense/qr.svg"): OWNER,
    ("GET", "/api/v1/openapi.json"): PUBLIC,
    ("POST", "/api/v1/auth/wechat"): PUBLIC,
    ("POST", "/api/v1/auth/yueshengshi"): PUBLIC,
    ("POST", "/api/v1/auth/channels/{channel}"): PUBLIC,  # a provincial app's ticket (decision 0030)
    ("POST", "/api/v1/auth/staff"): PUBLIC,
    ("GET", "/api/v1/institutions"): PUBLIC,  # institutions and their counters: public information
    ("POST", "/api/v1/applications"): PARENT,
    ("GET", "/api/v1/applications"): PARENT,
    ("GET", APP): OWNER,
    ("POST", f"{APP}/father-invitation"): MOTHER,
    ("POST", "/api/v1/father-invitations/accept"): PARENT,
    ("POST", f"{APP}/face-verifications"): OWNER,
    ("POST", f"{APP}/face-verifications/{{out_seq_no}}/result"): OWNER,
    ("GET", f"{APP}/delivery-record"): MOTHER,
    ("POST", f"{APP}/delivery-record/confirm"): MOTHER,
    ("POST", f"{APP}/delivery-record/dispute"): MOTHER,
    ("POST", f"{APP}/delivery-record/missing"): MOTHER,
    ("PUT", f"{APP}/details"): MOTHER,
    ("GET", f"{APP}/bundle"): MOTHER,  # 出生一件事 (decision 0044)
    ("PUT", f"{APP}/bundle"): MOTHER,
    ("DELETE", f"{APP}/bundle"): MOTHER,
    ("GET", f"{APP}/details/prefill"): MOTHER,
    ("POST", f"{APP}/documents"): OWNER,
    ("GET", f"{APP}/form"): MOTHER,
    ("POST", f"{APP}/signature"): MOTHER,
    ("PUT", f"{APP}/delivery-method"): MOTHER,
    ("POST", f"{APP}/payments"): MOTHER,
    ("POST", f"{APP}/submit"): MOTHER,
    ("POST", f"{APP}/withdraw"): MOTHER,
    ("POST", "/api/v1/payments/wechat/notify"): PUBLIC,  # signed by WeChat Pay, not a token
    ("POST", "/api/v1/deliveries"): HOSPITAL,
    ("GET", "/api/v1/deliveries/{record_id}"): HOSPITAL,
    ("PUT", "/api/v1/deliveries/{record_id}"): HOSPITAL,
    ("POST", "/api/v1/deliveries/{record_id}/uphold"): HOSPITAL,
    ("GET", "/api/v1/hospital/worklist"): HOSPITAL,
    ("GET", REVIEW): READ_REVIEW,
    ("GET", f"{REVIEW}/documents/{{doc_id}}"): READ_REVIEW,
    ("POST", f"{REVIEW}/reject"): ISSUER,
    ("POST", f"{REVIEW}/issue"): ISSUER,
    ("POST", f"{REVIEW}/dispatch"): ISSUER,
    ("POST", f"{REVIEW}/handover"): ISSUER,
    ("POST", f"{REVIEW}/loss"): ISSUER,
    ("POST", f"{REVIEW}/reissue"): ISSUER,
    ("POST", f"{REVIEW}/replacement"): ISSUER,
    ("POST", f"{REVIEW}/revoke"): ISSUER,
    ("POST", f"{REVIEW}/collector-check"): ISSUER,
    ("GET", "/api/v1/review/pickup-appointments"): "nnnnyynnn",  # every issuer, his own institution's day
    ("GET", f"{APP}/pickup-slots"): MOTHER,
    ("PUT", f"{APP}/pickup-appointment"): MOTHER,
    ("POST", f"{APP}/collector-letter/preview"): MOTHER,
    ("POST", f"{APP}/collector-letter"): MOTHER,
    # Anyone logged in to the mini-program, with the counter's one-time code (the collector's own phone).
    ("POST", "/api/v1/collector-checks/face-verifications"): PARENT,
    ("POST", "/api/v1/collector-checks/face-verifications/{out_seq_no}/result"): PARENT,
    ("GET", "/api/v1/audit/applications/{app_id}/events"): AUDITOR,
    ("GET", "/api/v1/audit/applications/{app_id}/proof"): AUDITOR,
    ("GET", "/api/v1/audit/checkpoint"): AUDIT_LOG,
    ("GET", "/api/v1/audit/consistency"): AUDIT_LOG,
    ("GET", "/api/v1/audit/integrity"): AUDIT_LOG,
    ("GET", "/api/v1/review/queue"): READ_REVIEW,
    ("GET", "/api/v1/review/queue/events"): READ_REVIEW,
    ("POST", "/api/v1/ems/events"): PUBLIC,  # signed by EMS, not a token
    ("POST", "/api/v1/departments/{department}/results"): PUBLIC,  # signed by the department (0046)
    # A material of 表1 a hand-off lists, to its department: signed by that department, not a token (0047).
    ("GET", "/api/v1/departments/{department}/materials/{message_id}/{document}"): PUBLIC,
    ("GET", "/api/v1/review/pickup-list"): READ_REVIEW,
    ("GET", "/api/v1/archive/forms"): READ_REVIEW,
    ("GET", "/api/v1/archive/forms/{form_id}"): READ_REVIEW,
    ("GET", "/console"): PUBLIC,
    ("GET", "/console/"): PUBLIC,
    ("GET", "/console/config.json"): PUBLIC,
    ("GET", "/console/institutions.json"): "nnnnyyyyn",  # an issuer's or a hospital's own; an auditor's all
    ("GET", "/console/{name}"): PUBLIC,
    ("GET", "/h5"): PUBLIC,
    ("GET", "/h5/"): PUBLIC,
    ("GET", "/h5/channels.json"): PUBLIC,
    ("GET", "/h5/face-return"): PUBLIC,
    ("GET", "/h5/{name}"): PUBLIC,
    ("GET", "/verify"): PUBLIC,  # the public verify page (decision 0041)
    ("GET", "/verify/"): PUBLIC,
    ("GET", "/verify/{name}"): PUBLIC,
}


def routes_of(stack: Stack) -> list[tuple[str, str]]:
    return [
        (route.method, route.resource.canonical)
        for route in stack.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    ]


async def test_every_route_has_a_row() -> None:
    """The matrix is the router's: a new route fails here until its row says who may call it."""
    from backend.app import create_app
    from backend.config import Config

    app = create_app(Config.from_env({}, data_dir=Path("/nonexistent")))
    routes = [
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    ]
    assert sorted(set(routes) - set(MATRIX)) == [], "routes without a row in MATRIX"
    assert sorted(set(MATRIX) - set(routes)) == [], "rows of routes that no longer exist"
    assert all(len(row) == len(CALLERS) and set(row) <= set("yn*") for row in MATRIX.values())


async def test_each_caller_reaches_exactly_what_the_matrix_says(stack: Stack) -> None:
    w = await world(stack)
    mother = StaffClient(stack.session, stack.api, token=w.tokens["mother"])
    before = await mother.call("GET", f"/api/v1/applications/{w.ids['app_id']}")
    wrong: list[str] = []
    for method, template in routes_of(stack):
        row = MATRIX[(method, template)]
        statuses = await observe(stack, w, method, template, row)
        for caller, expected in zip(CALLERS, row, strict=True):
            got = statuses[caller]
            if got >= 500:
                wrong.append(f"{method} {template} as {caller}: {got}")
            elif expected == "y" and got in DENIED:
                wrong.append(f"{method} {template} as {caller}: refused with {got}, should get through")
            elif expected == "n" and got not in ((401,) if caller == "none" else (403, 404)):
                wrong.append(f"{method} {template} as {caller}: {got}, should be refused")
        if row == PUBLIC and len(set(statuses.values())) != 1:
            wrong.append(f"{method} {template}: a token changes the answer of a public route: {statuses}")
    assert wrong == []
    # Nothing of the matrix changed the application: every command was refused or met a stale If-Match.
    after = await mother.call("GET", f"/api/v1/applications/{w.ids['app_id']}")
    assert (
        (after["state"], after["version"])
        == (before["state"], before["version"])
        == ("submitted", before["version"])
    )


# ---------------------------------------------------------------------------------------------- forged tokens


def forgeries(keys: TokenKeys, real: str) -> dict[str, str]:
    """Tokens an attacker can make, each wrong in one way (the unit tests in tests/unit/test_auth.py try
    each against the verifier; here they meet the running service)."""
    now = int(time.time())
    public = keys.public_key(keys.current_kid)
    assert public is not None
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    hs_head = unsigned({"alg": "HS256", "typ": "JWT", "kid": keys.current_kid}, good_claims())
    _, stranger = TokenKeys.generate().signing_key()
    head, payload, signature = real.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return {
        "expired": signed(keys, good_claims(iat=now - 7200, exp=now - 60)),
        "not yet valid": signed(keys, good_claims(nbf=now + 600)),
        "wrong iss": signed(keys, good_claims(iss="someone-else")),
        "wrong aud": signed(keys, good_claims(aud="another-api")),
        "alg none": unsigned({"alg": "none", "typ": "JWT", "kid": keys.current_kid}, good_claims()) + ".",
        "HS256 with our public key": f"{hs_head}.{b64(hmac.new(pem, hs_head.encode(), hashlib.sha256).digest())}",
        "unknown kid": signed(keys, good_claims(), kid="not-one-of-ours"),
        "another key under our kid": jwt.encode(
            good_claims(), stranger, algorithm="EdDSA", headers={"kid": keys.current_kid}
        ),
        "tampered claims": f"{head}.{b64(json.dumps({**claims, 'role': 'auditor'}).encode())}.{signature}",
        "no signature": f"{head}.{payload}.",
    }


async def test_forged_tokens_are_refused_on_parent_and_staff_routes(stack: Stack, family: Family) -> None:
    await stack.record_delivery(family)
    mother = stack.mini_program(family)
    await mother.login()
    await mother.start()
    assert mother.token is not None
    # The control: the same hand-made claims, rightly signed, are let in (so each refusal below is its flaw's).
    genuine = signed(stack.app[TOKEN_KEYS], good_claims())
    async with stack.session.get(
        f"{stack.api}/api/v1/applications", headers={"Authorization": f"Bearer {genuine}"}
    ) as r:
        assert r.status == 200
    for name, token in forgeries(stack.app[TOKEN_KEYS], mother.token).items():
        for method, path in (
            ("GET", f"/api/v1/applications/{mother.app_id}"),
            ("POST", "/api/v1/applications"),
            ("GET", "/api/v1/review/queue"),
            ("GET", "/api/v1/audit/checkpoint"),
        ):
            async with stack.session.request(
                method, stack.api + path, headers={"Authorization": f"Bearer {token}"}, json={}
            ) as r:
                problem = await r.json()
                assert r.status == 401, (name, path, r.status, problem)
                assert problem["code"] in ("token_invalid", "token_expired"), (name, problem)
                assert r.headers["WWW-Authenticate"].startswith("Bearer"), name
    assert len((await mother.call("GET", "/api/v1/applications"))["items"]) == 1  # nothing was started
