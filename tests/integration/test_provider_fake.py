"""The fake provincial apps (miniprogram_stub/fake_identity.py) against our adapter (backend/channels.py), both
real over HTTP: discovery, JWKS, the authorization request and the app's face check, the token endpoint with
PKCE and single-use codes, the ID token's claims, the message push; and the protocol's refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest

from backend.auth import ProviderUnavailable, ProviderVerifier
from backend.channels import ProvincialApp, PushDataInvalid, PushRefused
from backend.config import channel_settings
from backend.dev import channel_environ
from miniprogram_stub.platform import start_fake_platform

NAME, ID = "王芳", "44010619930101002X"


@dataclass
class Provider:
    base: str
    http: aiohttp.ClientSession

    async def control(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        async with self.http.post(self.base + path, json=body) as r:
            return r.status, await r.json()

    def app(self, channel: str) -> ProvincialApp:
        settings = channel_settings(channel_environ(self.base), "http://127.0.0.1:1", development=True)[
            channel
        ]
        return ProvincialApp(settings, ProviderVerifier(settings), b"k" * 32)

    async def open(self, url: str) -> dict[str, str]:
        """The app opening the authorization request: the redirect's query."""
        async with self.http.get(url, allow_redirects=False) as r:
            assert r.status == 302, await r.text()
            return dict(parse_qsl(urlsplit(r.headers["Location"]).query))


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    runner, base = await start_fake_platform("127.0.0.1", 0)
    async with aiohttp.ClientSession() as http:
        yield Provider(base, http)
    await runner.cleanup()


async def account(provider: Provider, channel: str, openid: str = "u-1") -> None:
    status, _ = await provider.control(
        f"/_fake/oidc/{channel}/accounts", {"openid": openid, "name": NAME, "id_number": ID}
    )
    assert status == 200


async def check(app: ProvincialApp, seq: str, redirect: dict[str, str], **claimed: str) -> str | None:
    def run() -> str | None:
        return app.complete(
            out_seq_no=seq,
            subject=claimed.get("subject", "u-1"),
            name=claimed.get("name", NAME),
            id_number=claimed.get("id_number", ID),
            state=redirect.get("state"),
            code=redirect.get("code"),
            error=redirect.get("error"),
        )

    return await asyncio.to_thread(run)


async def begin(app: ProvincialApp, seq: str, subject: str = "u-1") -> str:
    step_up = await asyncio.to_thread(lambda: app.begin(out_seq_no=seq, subject=subject, id_number=ID))
    return step_up.authorization_url


@pytest.mark.parametrize("channel", ["yueshengshi", "beijingtong", "jiankangshandong", "jishiban"])
async def test_each_channels_issuer_speaks_the_step_up_and_its_discovery_names_it(
    provider: Provider, channel: str
) -> None:
    async with provider.http.get(f"{provider.base}/oidc/{channel}/.well-known/openid-configuration") as r:
        discovery = await r.json()
    app = provider.app(channel)
    assert discovery["issuer"] == app.settings.issuer
    assert discovery["acr_values_supported"] == [app.channel.face_acr]
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    assert discovery["message_push_endpoint"].endswith(f"/oidc/{channel}/push")
    await account(provider, channel)
    url = await begin(app, "bc0001")
    redirect = await provider.open(url)
    assert redirect["state"] == "bc0001"
    assert await check(app, "bc0001", redirect) is None
    # The same code again: the token endpoint refuses it (single use), and the check says so.
    assert await check(app, "bc0001", redirect) == "face_code_invalid"


async def test_the_code_needs_this_checks_pkce_verifier_and_is_burnt_by_a_wrong_one(
    provider: Provider,
) -> None:
    await account(provider, "yueshengshi")
    app = provider.app("yueshengshi")
    redirect = await provider.open(await begin(app, "bc0001"))
    # Sent as another check's (another verifier, another state): refused, and the code is gone.
    assert await check(app, "bc0002", {**redirect, "state": "bc0002"}) == "face_code_invalid"
    assert await check(app, "bc0001", redirect) == "face_code_invalid"


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        ("fail", "face_failed"),
        ("wrong_person", "face_mismatch"),
        ("stale", "face_stale"),
        ("wrong_acr", "face_acr_mismatch"),
        ("wrong_nonce", "face_nonce_mismatch"),
        ("forged", "face_token_invalid"),
    ],
)
async def test_each_scripted_outcome_of_the_apps_face_check(
    provider: Provider, outcome: str, code: str
) -> None:
    await account(provider, "beijingtong")
    status, _ = await provider.control("/_fake/oidc/beijingtong/faces", {"openid": "u-1", "outcome": outcome})
    assert status == 200
    app = provider.app("beijingtong")
    redirect = await provider.open(await begin(app, "bc0003"))
    assert await check(app, "bc0003", redirect) == code


async def test_the_authorization_request_is_refused_as_the_protocol_says(provider: Provider) -> None:
    app = provider.app("yueshengshi")
    url = await begin(app, "bc0004", subject="nobody")
    assert (await provider.open(url))["error"] == "login_required"  # no real-name account
    await account(provider, "yueshengshi", "u-1")
    async with provider.http.get(
        url.replace("client_id=birthcert", "client_id=intruder"), allow_redirects=False
    ) as r:
        assert (r.status, (await r.json())["error"]) == (400, "invalid_client")
    without_pkce = url.replace("code_challenge_method=S256", "code_challenge_method=plain")
    assert (await provider.open(without_pkce.replace("login_hint=nobody", "login_hint=u-1")))[
        "error"
    ] == "invalid_request"
    # The control API plays the same request and answers it as JSON (for the H5 simulator).
    url = await begin(app, "bc0005")
    status, played = await provider.control("/_fake/oidc/yueshengshi/authorize", {"authorization_url": url})
    assert status == 200 and played["status"] == 302 and played["state"] == "bc0005" and played["code"]
    assert await check(app, "bc0005", played) is None


async def test_a_token_endpoint_that_is_down_is_unavailable_not_a_failure(provider: Provider) -> None:
    await account(provider, "jishiban")
    app = provider.app("jishiban")
    redirect = await provider.open(await begin(app, "bc0006"))
    await provider.control("/_fake/errors", {"path": "/oidc/jishiban/token", "errcode": 503})
    with pytest.raises(ProviderUnavailable) as down:
        await check(app, "bc0006", redirect)
    assert "冀时办" in str(down.value.message)
    assert await check(app, "bc0006", redirect) is None  # the code was not spent by the outage


async def test_the_push_records_each_message_and_refuses_as_documented(provider: Provider) -> None:
    app = provider.app("jiankangshandong")
    data = {"phrase2": "已签发", "character_string1": "Y370100001"}
    await asyncio.to_thread(lambda: app.push(subject="u-1", kind="issued", data=data, page="p?id=1"))
    async with provider.http.get(
        f"{provider.base}/_fake/oidc/jiankangshandong/pushes", params={"touser": "u-1"}
    ) as r:
        [message] = (await r.json())["pushes"]
    assert (message["template"], message["data"], message["page"]) == ("issued", data, "p?id=1")
    with pytest.raises(PushDataInvalid):
        await asyncio.to_thread(lambda: app.push(subject="u-1", kind="issued", data={}, page="p"))
    await provider.control("/_fake/oidc/jiankangshandong/pushes/refuse", {"touser": "u-1"})
    with pytest.raises(PushRefused):
        await asyncio.to_thread(lambda: app.push(subject="u-1", kind="issued", data=data, page="p"))
    async with provider.http.post(f"{provider.base}/oidc/jiankangshandong/push", json={"touser": "u-1"}) as r:
        assert r.status == 401  # no client credentials
    async with provider.http.get(f"{provider.base}/oidc/nowhere/jwks.json") as r:
        assert r.status == 404
