"""The provincial apps as identity providers (粤省事, 北京通, 健康山东, 冀时办): one fake, parametrised by channel.

None of them publishes a protocol; this is the one OUR adapter assumes (backend/channels.py,
docs/decisions/0030): an OpenID Connect provider per channel under ``/oidc/<channel>/`` — discovery, JWKS,
an authorization endpoint that performs the app's face check (authorization-code flow with PKCE), a token
endpoint whose ID tokens are ES256 JWTs — plus the app's message push, and login tickets handed out through
the control API. The channels and their claim names come from ``domain/data/channels.json``.
``/yueshengshi/.well-known/jwks.json`` and ``/_fake/yueshengshi/tickets`` are the 粤省事 ones' first names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from domain.channels import CHANNELS, Channel
from miniprogram_stub.fake_core import SETTINGS, FakeSettings, Json, add_resettable, control_reply, read_json

JWKS_PATH = "/yueshengshi/.well-known/jwks.json"
ALGORITHM = "ES256"
MAX_TTL = 86400
CODE_LIFETIME = 60
ID_TOKEN_LIFETIME = 300
OUTCOMES = ("pass", "fail", "wrong_person", "stale", "wrong_acr", "wrong_nonce", "forged")
# Who took the face check when the script says "wrong_person" and names nobody.
SOMEONE_ELSE: Json = {"name": "李四", "id_number": "440106199001011237"}


@dataclass(frozen=True)
class IdentityProvider:
    """The provider's signing key (in the JWKS) and a forger's key (not in it), made at startup."""

    kid: str
    key: ec.EllipticCurvePrivateKey
    forger_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, prefix: str = "yss") -> IdentityProvider:
        return cls(
            kid=f"{prefix}-" + secrets.token_hex(8),
            key=ec.generate_private_key(ec.SECP256R1()),
            forger_key=ec.generate_private_key(ec.SECP256R1()),
        )

    def jwks(self) -> Json:
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}]}

    def ticket(self, claims: Json, forge: bool = False) -> str:
        # A forger copies the real kid, so a verifier picks the real key and the signature fails.
        key = self.forger_key if forge else self.key
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": self.kid})


@dataclass
class Grant:
    """An authorization code: what the face check found and what its redemption must match."""

    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    sub: str
    outcome: str
    person: Json
    auth_time: int
    expires_at: float
    used: bool = False


@dataclass
class ChannelFake:
    """One channel's provider: keys, real-name accounts, scripted face outcomes, codes, pushes received."""

    channel: Channel
    issuer: str
    client_id: str
    provider: IdentityProvider
    accounts: dict[str, Json] = field(default_factory=dict)
    scripted: dict[str, Json] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    pushes: list[Json] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)

    @property
    def client_secret(self) -> str:
        return f"dev-{self.channel.name}-secret"

    def reset(self) -> None:
        for state in (self.accounts, self.scripted, self.grants):
            state.clear()
        self.pushes.clear()
        self.refused.clear()

    def client_ok(self, client_id: str | None, secret: str | None) -> bool:
        return hmac.compare_digest(f"{client_id}:{secret}", f"{self.client_id}:{self.client_secret}")


FAKES = web.AppKey("fake_channels", dict[str, ChannelFake])


def _fake(request: web.Request) -> ChannelFake:
    found = request.app[FAKES].get(request.match_info.get("channel", "yueshengshi"))
    if found is None:
        raise web.HTTPNotFound(text='{"error": "unknown channel"}', content_type="application/json")
    return found


def _base(request: web.Request, fake: ChannelFake) -> str:
    return f"{request.scheme}://{request.host}/oidc/{fake.channel.name}"


# ---------------------------------------------------------------- the provider's protocol


async def get_discovery(request: web.Request) -> web.Response:
    """`GET /oidc/<channel>/.well-known/openid-configuration` (plus the non-standard `message_push_endpoint`)."""
    fake = _fake(request)
    base = _base(request, fake)
    return control_reply(
        {
            "issuer": fake.issuer,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "jwks_uri": f"{base}/jwks.json",
            "message_push_endpoint": f"{base}/push",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "acr_values_supported": [fake.channel.face_acr],
            "claims_parameter_supported": True,
            "claims_supported": ["sub", "acr", "amr", "auth_time", "nonce", *fake.channel.claims.values()],
        }
    )


async def get_jwks(request: web.Request) -> web.Response:
    """`GET /oidc/<channel>/jwks.json` (and `GET /yueshengshi/.well-known/jwks.json`)."""
    return control_reply(_fake(request).provider.jwks())


def _authorize(fake: ChannelFake, settings: FakeSettings, query: Any) -> tuple[int, Json]:
    """The app opening an authorization request: (400, error) for a request it cannot redirect, else
    (302, {"location": …}) after its face check (the scripted outcome for the login_hint's account)."""
    redirect_uri = query.get("redirect_uri", "")
    if query.get("client_id") != fake.client_id:
        return 400, {"error": "invalid_client", "error_description": "unknown client_id"}
    if urlsplit(redirect_uri).scheme not in ("http", "https"):
        return 400, {"error": "invalid_request", "error_description": "redirect_uri"}
    state = query.get("state", "")

    def back(**params: str) -> tuple[int, Json]:
        return 302, {"location": f"{redirect_uri}?{urlencode({**params, 'state': state})}"}

    required = ("state", "nonce", "code_challenge", "login_hint")
    if (
        query.get("response_type") != "code"
        or "openid" not in query.get("scope", "").split()
        or query.get("code_challenge_method") != "S256"
        or any(not query.get(k) for k in required)
    ):
        return back(error="invalid_request")
    sub = query["login_hint"]
    account = fake.accounts.get(sub)
    if account is None:
        return back(error="login_required")
    script = fake.scripted.get(sub, {"outcome": "pass"})
    outcome = script["outcome"]
    if outcome == "fail":
        return back(error="access_denied", error_description="face_not_matched")
    person = account if outcome != "wrong_person" else script.get("person") or SOMEONE_ELSE
    now = int(settings.clock())
    code = secrets.token_urlsafe(32)
    fake.grants[code] = Grant(
        client_id=fake.client_id,
        redirect_uri=redirect_uri,
        challenge=query["code_challenge"],
        nonce=query["nonce"],
        sub=sub,
        outcome=outcome,
        person=dict(person),
        auth_time=now - 3600 if outcome == "stale" else now,
        expires_at=settings.clock() + CODE_LIFETIME,
    )
    return back(code=code)


async def authorize(request: web.Request) -> web.Response:
    """`GET /oidc/<channel>/authorize?…`: the app's face check, then a 302 to the redirect_uri."""
    status, body = _authorize(_fake(request), request.app[SETTINGS], request.query)
    if status == 302:
        raise web.HTTPFound(body["location"])
    return control_reply(body, status)


def _id_token(fake: ChannelFake, grant: Grant, settings: FakeSettings) -> str:
    now = int(settings.clock())
    names = fake.channel.claims
    nonce = "not-your-nonce" if grant.outcome == "wrong_nonce" else grant.nonce
    claims: Json = {
        "iss": fake.issuer,
        "aud": grant.client_id,
        "sub": grant.sub,
        "iat": now,
        "exp": now + ID_TOKEN_LIFETIME,
        "nonce": nonce,
        "acr": f"{fake.channel.face_acr}:password" if grant.outcome == "wrong_acr" else fake.channel.face_acr,
        "amr": ["pwd"] if grant.outcome == "wrong_acr" else ["face"],
        "auth_time": grant.auth_time,
        names["name"]: grant.person["name"],
    }
    id_number = str(grant.person["id_number"]).upper()
    if "id_number_hash" in names:
        claims[names["id_number_hash"]] = hashlib.sha256((grant.nonce + id_number).encode()).hexdigest()
    else:
        claims[names["id_number"]] = id_number
    return fake.provider.ticket(claims, forge=grant.outcome == "forged")


def _basic(request: web.Request) -> tuple[str | None, str | None]:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except ValueError:
        return None, None
    return user, password


async def token(request: web.Request) -> web.Response:
    """`POST /oidc/<channel>/token` (form): authorization_code + PKCE; client_secret_basic or _post."""
    fake, settings = _fake(request), request.app[SETTINGS]
    form = await request.post()
    client_id, secret = _basic(request)
    if client_id is None:
        client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
    if not fake.client_ok(client_id, secret):
        return control_reply({"error": "invalid_client"}, 401)
    if form.get("grant_type") != "authorization_code":
        return control_reply({"error": "unsupported_grant_type"}, 400)
    grant = fake.grants.get(str(form.get("code", "")))
    verifier = str(form.get("code_verifier", ""))
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    if grant is None or grant.used or settings.clock() >= grant.expires_at:
        return control_reply(
            {"error": "invalid_grant", "error_description": "code unknown, used or expired"}, 400
        )
    grant.used = True  # once, whatever follows (RFC 6749 §4.1.2)
    if form.get("redirect_uri") != grant.redirect_uri or not hmac.compare_digest(challenge, grant.challenge):
        return control_reply({"error": "invalid_grant", "error_description": "redirect_uri or PKCE"}, 400)
    return control_reply(
        {
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": ID_TOKEN_LIFETIME,
            "id_token": _id_token(fake, grant, settings),
        }
    )


async def push(request: web.Request) -> web.Response:
    """`POST /oidc/<channel>/push {touser, template, page?, data}` (client_secret_basic): one message to the
    app's user. 400 bad body · 401 bad client · 403 the user turned messages off."""
    fake = _fake(request)
    if not fake.client_ok(*_basic(request)):
        return control_reply({"code": "invalid_client"}, 401)
    body = await read_json(request)
    touser, template, data = body.get("touser"), body.get("template"), body.get("data")
    if (
        not isinstance(touser, str)
        or not touser
        or not isinstance(template, str)
        or not template
        or not isinstance(data, dict)
        or not data
        or not all(isinstance(v, str) and v for v in data.values())
    ):
        return control_reply({"code": "bad_request"}, 400)
    if touser in fake.refused:
        return control_reply({"code": "user_refused"}, 403)
    msg_id = uuid.uuid4().hex
    fake.pushes.append(
        {
            "msg_id": msg_id,
            "touser": touser,
            "template": template,
            "page": body.get("page"),
            "data": data,
            "received_at": int(request.app[SETTINGS].clock()),
        }
    )
    return control_reply({"msg_id": msg_id})


# ---------------------------------------------------------------- control API


async def issue_ticket(request: web.Request) -> web.Response:
    """`POST /_fake/oidc/<channel>/tickets {openid, name?, id_number?, ttl?, forge?}` → `{"ticket": JWT}`.

    With a name and an ID number the account is a real-name one: its face checks vouch for that person."""
    fake = _fake(request)
    body = await read_json(request)
    settings = request.app[SETTINGS]
    openid, ttl = body.get("openid"), body.get("ttl", settings.ticket_lifetime)
    if not isinstance(openid, str) or not openid:
        return control_reply({"error": "openid required"}, 400)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not -MAX_TTL <= ttl <= MAX_TTL:
        return control_reply({"error": f"ttl must be an integer of seconds within ±{MAX_TTL}"}, 400)
    now = int(settings.clock())
    claims: Json = {
        "iss": fake.issuer,
        "aud": fake.client_id,
        "sub": openid,
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    for optional in ("name", "id_number"):
        if isinstance(value := body.get(optional), str) and value:
            claims[optional] = value
    if "name" in claims and "id_number" in claims:
        fake.accounts[openid] = {"name": claims["name"], "id_number": claims["id_number"]}
    ticket = fake.provider.ticket(claims, forge=bool(body.get("forge", False)))
    return control_reply({"ticket": ticket, "expires_at": claims["exp"]})


async def put_account(request: web.Request) -> web.Response:
    """`POST /_fake/oidc/<channel>/accounts {openid, name, id_number}`: a real-name account."""
    fake = _fake(request)
    body = await read_json(request)
    openid, name, id_number = body.get("openid"), body.get("name"), body.get("id_number")
    if not all(isinstance(v, str) and v for v in (openid, name, id_number)):
        return control_reply({"error": "openid, name and id_number required"}, 400)
    fake.accounts[str(openid)] = {"name": name, "id_number": id_number}
    return control_reply({"account": True})


async def script_face(request: web.Request) -> web.Response:
    """`POST /_fake/oidc/<channel>/faces {openid, outcome, person?}`: what that account's next face checks do."""
    fake = _fake(request)
    body = await read_json(request)
    openid, outcome, person = body.get("openid"), body.get("outcome"), body.get("person")
    if not isinstance(openid, str) or not openid or outcome not in OUTCOMES:
        return control_reply({"error": f"openid and outcome (one of {', '.join(OUTCOMES)}) required"}, 400)
    if person is not None and not (
        isinstance(person, dict) and all(isinstance(person.get(k), str) for k in ("name", "id_number"))
    ):
        return control_reply({"error": "person must be {name, id_number}"}, 400)
    fake.scripted[openid] = {"outcome": outcome, "person": person}
    return control_reply({"scripted": True})


async def play_authorize(request: web.Request) -> web.Response:
    """`POST /_fake/oidc/<channel>/authorize {authorization_url}`: the app opens it (as `GET …/authorize`),
    answered as JSON: `{"status": 302, "location", "code"?, "state", "error"?}` or `{"status": 400, …}`."""
    fake = _fake(request)
    body = await read_json(request)
    url = body.get("authorization_url")
    if not isinstance(url, str) or not url:
        return control_reply({"error": "authorization_url required"}, 400)
    split = urlsplit(url)
    if not split.path.endswith(f"/oidc/{fake.channel.name}/authorize"):
        return control_reply({"error": "not this channel's authorization endpoint"}, 400)
    status, answer = _authorize(fake, request.app[SETTINGS], dict(parse_qsl(split.query)))
    if status != 302:
        return control_reply({"status": status, **answer})
    params = dict(parse_qsl(urlsplit(answer["location"]).query))
    return control_reply({"status": 302, **answer, **params})


async def list_pushes(request: web.Request) -> web.Response:
    """`GET /_fake/oidc/<channel>/pushes?touser=`: the messages the app's push took, oldest first."""
    fake = _fake(request)
    touser = request.query.get("touser")
    return control_reply({"pushes": [m for m in fake.pushes if touser is None or m["touser"] == touser]})


async def refuse_pushes(request: web.Request) -> web.Response:
    """`POST /_fake/oidc/<channel>/pushes/refuse {touser, refuse?}`: that user's messages answer 403 (or not)."""
    fake = _fake(request)
    body = await read_json(request)
    touser = body.get("touser")
    if not isinstance(touser, str) or not touser:
        return control_reply({"error": "touser required"}, 400)
    if body.get("refuse", True):
        fake.refused.add(touser)
    else:
        fake.refused.discard(touser)
    return control_reply({"refused": touser in fake.refused})


def setup_identity(app: web.Application) -> None:
    settings = app[SETTINGS]
    fakes = {}
    for name, channel in CHANNELS.items():
        yss = name == "yueshengshi"
        fakes[name] = ChannelFake(
            channel=channel,
            issuer=settings.yss_issuer if yss else channel.issuer,
            client_id=settings.yss_audience if yss else channel.client_id,
            provider=IdentityProvider.generate(channel.actor_prefix),
        )
        add_resettable(app, fakes[name])
    app[FAKES] = fakes
    app.router.add_get(JWKS_PATH, get_jwks)
    app.router.add_post("/_fake/yueshengshi/tickets", issue_ticket)
    app.router.add_get("/oidc/{channel}/.well-known/openid-configuration", get_discovery)
    app.router.add_get("/oidc/{channel}/jwks.json", get_jwks)
    app.router.add_get("/oidc/{channel}/authorize", authorize)
    app.router.add_post("/oidc/{channel}/token", token)
    app.router.add_post("/oidc/{channel}/push", push)
    app.router.add_post("/_fake/oidc/{channel}/tickets", issue_ticket)
    app.router.add_post("/_fake/oidc/{channel}/accounts", put_account)
    app.router.add_post("/_fake/oidc/{channel}/faces", script_face)
    app.router.add_post("/_fake/oidc/{channel}/authorize", play_authorize)
    app.router.add_get("/_fake/oidc/{channel}/pushes", list_pushes)
    app.router.add_post("/_fake/oidc/{channel}/pushes/refuse", refuse_pushes)
