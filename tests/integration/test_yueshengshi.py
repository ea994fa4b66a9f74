"""The 粤省事 ticket login against a stand-in provider: a real HTTP server publishing a JWKS of our making."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from backend.auth import ProviderIdentity, ProviderUnavailable, Unauthenticated, YueshengshiVerifier
from backend.config import ProviderSettings
from tests.relative_time import Now, resolved

ISS = "https://yss.gd.gov.cn"
AUD = "birthcert"


@dataclass
class ProviderKey:
    alg: str
    private_key: Any
    kid: str = field(default_factory=lambda: secrets.token_hex(8))

    @classmethod
    def make(cls, alg: str = "ES256") -> ProviderKey:
        if alg == "EdDSA":
            return cls(alg, ed25519.Ed25519PrivateKey.generate())
        if alg == "ES256":
            return cls(alg, ec.generate_private_key(ec.SECP256R1()))
        return cls(alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwk(self) -> dict[str, Any]:
        public = self.private_key.public_key()
        if self.alg == "EdDSA":
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        elif self.alg == "ES256":
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig"}

    def ticket(self, **changes: Any) -> str:
        now = int(time.time())
        claims = {"iss": ISS, "aud": AUD, "sub": "gd-8f1c2a", "iat": now, "exp": now + 300}
        claims["jti"] = secrets.token_urlsafe(12)
        claims.update(changes)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.private_key, algorithm=self.alg, headers={"kid": self.kid})


@dataclass
class Provider:
    """The stand-in: publishes ``keys`` at /jwks.json (or a 503 while ``down``) and counts the fetches."""

    url: str
    keys: list[ProviderKey]
    fetches: int = 0
    down: bool = False


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def provider(aiohttp_server: Callable[[web.Application], Awaitable[TestServer]]) -> Provider:
    state = Provider(url="", keys=[ProviderKey.make("ES256")])

    async def jwks(request: web.Request) -> web.Response:
        state.fetches += 1
        if state.down:
            return web.Response(status=503, text="维护中")
        return web.json_response({"keys": [k.jwk() for k in state.keys]})

    app = web.Application()
    app.router.add_get("/jwks.json", jwks)
    server = await aiohttp_server(app)
    state.url = str(server.make_url("/jwks.json"))
    return state


def verifier_for(provider: Provider, **kwargs: Any) -> YueshengshiVerifier:
    return YueshengshiVerifier(ProviderSettings(jwks_url=provider.url, issuer=ISS, audience=AUD), **kwargs)


async def verify(verifier: YueshengshiVerifier, ticket: str) -> ProviderIdentity:
    return await asyncio.to_thread(verifier.verify_ticket, ticket)


async def refused(verifier: YueshengshiVerifier, ticket: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await verify(verifier, ticket)
    return caught.value.code


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256"])
async def test_a_good_ticket_logs_the_parent_in(provider: Provider, alg: str) -> None:
    provider.keys = [ProviderKey.make(alg)]
    identity = await verify(verifier_for(provider), provider.keys[0].ticket())
    assert identity.subject == "gd-8f1c2a"
    assert identity.actor_id == "yss:gd-8f1c2a"
    assert identity.actor().role == "parent"
    assert identity.claims["iss"] == ISS


async def test_the_jwks_is_fetched_once_and_cached(provider: Provider) -> None:
    verifier = verifier_for(provider)
    for _ in range(3):
        await verify(verifier, provider.keys[0].ticket())
    assert provider.fetches == 1


async def test_an_expired_ticket(provider: Provider) -> None:
    now = int(time.time())
    ticket = provider.keys[0].ticket(iat=now - 400, exp=now - 60)
    assert await refused(verifier_for(provider), ticket) == "ticket_expired"


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "another-service"},
        {"iss": "https://evil.example"},
        {"exp": None},
        {"iat": None},
        {"sub": None},
        {"sub": ""},
        {"sub": "a\nb"},
        {"iat": Now(0), "exp": Now(601)},
        {"iat": Now(3600), "exp": Now(3900)},
    ],
    ids=[
        "wrong-aud",
        "wrong-iss",
        "no-exp",
        "no-iat",
        "no-sub",
        "empty-sub",
        "control-in-sub",
        "lives-over-10-min",
        "issued-in-future",
    ],
)
async def test_a_ticket_with_bad_claims(provider: Provider, changes: dict[str, Any]) -> None:
    assert (
        await refused(verifier_for(provider), provider.keys[0].ticket(**resolved(changes)))
        == "ticket_invalid"
    )


async def test_a_forged_ticket(provider: Provider) -> None:
    verifier = verifier_for(provider)
    forger = ProviderKey.make("ES256")
    forger.kid = provider.keys[0].kid  # claims the provider's kid, signed with another key
    assert await refused(verifier, forger.ticket()) == "ticket_invalid"
    # HS256 "signed" with the provider's public JWK: refused before any key is looked at.
    confused = jwt.encode(
        {"iss": ISS, "aud": AUD, "sub": "x", "iat": int(time.time()), "exp": int(time.time()) + 60},
        "x" * 32,
        algorithm="HS256",
        headers={"kid": provider.keys[0].kid},
    )
    assert await refused(verifier, confused) == "ticket_invalid"
    assert await refused(verifier, "not-a-jwt") == "ticket_invalid"


async def test_a_ticket_is_single_use(provider: Provider) -> None:
    verifier = verifier_for(provider)
    ticket = provider.keys[0].ticket()
    await verify(verifier, ticket)
    with pytest.raises(Unauthenticated) as caught:
        await verify(verifier, ticket)
    assert caught.value.code == "ticket_invalid"
    assert "已使用" in caught.value.message
    # Without a jti, the ticket itself is what may be used once.
    bare = provider.keys[0].ticket(jti=None)
    await verify(verifier, bare)
    assert await refused(verifier, bare) == "ticket_invalid"


async def test_reuse_is_allowed_when_single_use_is_off(provider: Provider) -> None:
    verifier = verifier_for(provider, single_use=False)
    ticket = provider.keys[0].ticket()
    await verify(verifier, ticket)
    await verify(verifier, ticket)


async def test_an_unknown_kid_refetches_at_most_once_a_minute(provider: Provider) -> None:
    clock = FakeClock()
    verifier = verifier_for(provider, clock=clock)
    await verify(verifier, provider.keys[0].ticket())
    assert provider.fetches == 1

    rotated = ProviderKey.make("EdDSA")
    provider.keys.append(rotated)
    # Within a minute of the last fetch an unknown kid costs nothing: forged kids cannot hammer the provider.
    assert await refused(verifier, rotated.ticket()) == "ticket_invalid"
    assert provider.fetches == 1

    clock.now += 61
    assert (await verify(verifier, rotated.ticket())).subject == "gd-8f1c2a"
    assert provider.fetches == 2
    assert await refused(verifier, ProviderKey.make().ticket()) == "ticket_invalid"
    assert provider.fetches == 2


async def test_provider_down(provider: Provider) -> None:
    clock = FakeClock()
    provider.down = True
    verifier = verifier_for(provider, clock=clock)
    with pytest.raises(ProviderUnavailable) as caught:
        await verify(verifier, provider.keys[0].ticket())
    assert caught.value.code == "provider_unavailable"
    assert caught.value.message == "粤省事服务暂不可用，请稍后再试"
    provider.down = False
    # Right after a failure it answers at once instead of queueing every login behind another timeout.
    assert await refused(verifier, provider.keys[0].ticket()) == "provider_unavailable"
    assert provider.fetches == 1
    clock.now += YueshengshiVerifier.RETRY_AFTER
    assert (await verify(verifier, provider.keys[0].ticket())).subject == "gd-8f1c2a"
    assert provider.fetches == 2


async def test_provider_unreachable(unused_tcp_port: int) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}/jwks.json"
    verifier = YueshengshiVerifier(ProviderSettings(url, ISS, AUD), http_timeout=1)
    assert await refused(verifier, ProviderKey.make().ticket()) == "provider_unavailable"


async def test_cached_keys_outlive_a_short_outage(provider: Provider) -> None:
    clock = FakeClock()
    verifier = verifier_for(provider, clock=clock)
    await verify(verifier, provider.keys[0].ticket())
    provider.down = True
    clock.now += YueshengshiVerifier.JWKS_LIFESPAN + 10
    assert (await verify(verifier, provider.keys[0].ticket())).subject == "gd-8f1c2a"
    assert provider.fetches == 2  # it did try
    clock.now += YueshengshiVerifier.STALE_GRACE
    assert await refused(verifier, provider.keys[0].ticket()) == "provider_unavailable"
    clock.now += YueshengshiVerifier.RETRY_AFTER
    assert await refused(verifier, provider.keys[0].ticket()) == "provider_unavailable"


async def test_a_jwks_without_usable_keys_is_the_provider_failing(provider: Provider) -> None:
    provider.keys = []
    assert await refused(verifier_for(provider), ProviderKey.make().ticket()) == "provider_unavailable"
