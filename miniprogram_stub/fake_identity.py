"""粤省事 as an identity provider: a JWKS, and signed login tickets handed out through the control API.

粤省事 publishes no protocol (shared doc §3); this is the contract OUR adapter expects: an ES256 JWT
with iss, aud, sub (= openid), iat, exp, jti, and optionally name / id_number, verified against the JWKS.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from miniprogram_stub.fake_core import SETTINGS, Json, control_reply, read_json

JWKS_PATH = "/yueshengshi/.well-known/jwks.json"
ALGORITHM = "ES256"
MAX_TTL = 86400


@dataclass(frozen=True)
class IdentityProvider:
    """The provider's signing key (in the JWKS) and a forger's key (not in it), made at startup."""

    kid: str
    key: ec.EllipticCurvePrivateKey
    forger_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> IdentityProvider:
        return cls(
            kid="yss-" + secrets.token_hex(8),
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


IDENTITY = web.AppKey("fake_identity", IdentityProvider)


async def get_jwks(request: web.Request) -> web.Response:
    """`GET /yueshengshi/.well-known/jwks.json`."""
    return control_reply(request.app[IDENTITY].jwks())


async def issue_ticket(request: web.Request) -> web.Response:
    """`POST /_fake/yueshengshi/tickets {openid, name?, id_number?, ttl?, forge?}` → `{"ticket": JWT}`."""
    body = await read_json(request)
    settings = request.app[SETTINGS]
    openid, ttl = body.get("openid"), body.get("ttl", settings.ticket_lifetime)
    if not isinstance(openid, str) or not openid:
        return control_reply({"error": "openid required"}, 400)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not -MAX_TTL <= ttl <= MAX_TTL:
        return control_reply({"error": f"ttl must be an integer of seconds within ±{MAX_TTL}"}, 400)
    now = int(settings.clock())
    claims: Json = {
        "iss": settings.yss_issuer,
        "aud": settings.yss_audience,
        "sub": openid,
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    for optional in ("name", "id_number"):
        if isinstance(value := body.get(optional), str) and value:
            claims[optional] = value
    ticket = request.app[IDENTITY].ticket(claims, forge=bool(body.get("forge", False)))
    return control_reply({"ticket": ticket, "expires_at": claims["exp"]})


def setup_identity(app: web.Application) -> None:
    app[IDENTITY] = IdentityProvider.generate()
    app.router.add_get(JWKS_PATH, get_jwks)
    app.router.add_post("/_fake/yueshengshi/tickets", issue_ticket)
