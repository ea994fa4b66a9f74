"""Access tokens: `/cgi-bin/token`, `/cgi-bin/stable_token`, and the check every protected API makes."""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass, field

from aiohttp import web

from miniprogram_stub.fake_core import (
    SETTINGS,
    FakeSettings,
    Handler,
    add_resettable,
    control_reply,
    read_json,
    wechat_error,
)

MISSING = 41001
INVALID = 40001
EXPIRED = 42001


@dataclass
class Token:
    expires_at: float
    revoked_at: float | None = None  # superseded: from then on it is "not latest" (40001), not "expired"


@dataclass
class Tokens:
    """Every access token handed out; plain and stable tokens are kept apart, as on the real platform."""

    settings: FakeSettings
    by_value: dict[str, Token] = field(default_factory=dict)
    latest_plain: str | None = None
    latest_stable: str | None = None

    def reset(self) -> None:
        self.by_value.clear()
        self.latest_plain = self.latest_stable = None

    def _new(self) -> str:
        value = secrets.token_urlsafe(96)
        self.by_value[value] = Token(self.settings.clock() + self.settings.token_lifetime)
        return value

    def issue_plain(self) -> tuple[str, int]:
        """A new token; the previous plain token stays valid for the grace period only."""
        now = self.settings.clock()
        if self.latest_plain is not None:
            old = self.by_value[self.latest_plain]
            old.revoked_at = min(old.expires_at, now + self.settings.token_grace)
        self.latest_plain = self._new()
        return self.latest_plain, int(self.settings.token_lifetime)

    def issue_stable(self, force_refresh: bool) -> tuple[str, int]:
        """The current stable token while it is valid; a new one (revoking the old at once) if forced."""
        now = self.settings.clock()
        latest = self.latest_stable
        if latest is not None and self.check(latest) == 0:
            if not force_refresh:
                return latest, int(self.by_value[latest].expires_at - now)
            self.by_value[latest].revoked_at = now
        self.latest_stable = self._new()
        return self.latest_stable, int(self.settings.token_lifetime)

    def check(self, value: str | None) -> int:
        """0 if the token may be used, else the errcode the platform answers."""
        if not value:
            return MISSING
        token = self.by_value.get(value)
        if token is None:
            return INVALID
        now = self.settings.clock()
        if token.revoked_at is not None and now >= token.revoked_at:
            return INVALID
        if now >= token.expires_at:
            return EXPIRED
        return 0

    def expire_all(self) -> int:
        now = self.settings.clock()
        for token in self.by_value.values():
            token.expires_at = min(token.expires_at, now)
        return len(self.by_value)


TOKENS = web.AppKey("fake_tokens", Tokens)

TOKEN_ERRMSG = {
    MISSING: "access_token missing",
    INVALID: "invalid credential, access_token is invalid or not latest",
    EXPIRED: "access_token expired",
}


def requires_access_token(handler: Handler) -> Handler:
    """Answer 41001/40001/42001 unless `?access_token=` is valid, as every protected API does."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        errcode = request.app[TOKENS].check(request.query.get("access_token"))
        if errcode:
            return wechat_error(errcode, TOKEN_ERRMSG[errcode])
        return await handler(request)

    return checked


def credentials_error(settings: FakeSettings, appid: object, secret: object) -> web.Response | None:
    """The reply for a missing or wrong appid/secret, or None when both are right."""
    if not appid:
        return wechat_error(41002, "appid missing")
    if not secret:
        return wechat_error(41004, "appsecret missing")
    if appid != settings.appid:
        return wechat_error(40013, "invalid appid")
    if secret != settings.secret:
        return wechat_error(40125, "invalid appsecret")
    return None


def _grant_error(grant_type: object) -> web.Response | None:
    if grant_type != "client_credential":
        return wechat_error(40002, "invalid grant_type")
    return None


async def get_token(request: web.Request) -> web.Response:
    """`GET /cgi-bin/token?grant_type=client_credential&appid=&secret=`."""
    q = request.query
    error = credentials_error(request.app[SETTINGS], q.get("appid"), q.get("secret")) or _grant_error(
        q.get("grant_type")
    )
    if error:
        return error
    token, expires_in = request.app[TOKENS].issue_plain()
    # Success carries no errcode, like the real reply.
    return control_reply({"access_token": token, "expires_in": expires_in})


async def post_stable_token(request: web.Request) -> web.Response:
    """`POST /cgi-bin/stable_token` with a JSON body; `force_refresh` replaces the current token."""
    body = await read_json(request)
    error = credentials_error(request.app[SETTINGS], body.get("appid"), body.get("secret")) or _grant_error(
        body.get("grant_type")
    )
    if error:
        return error
    force_refresh = body.get("force_refresh", False)
    if not isinstance(force_refresh, bool):
        return wechat_error(47001, "data format error")
    token, expires_in = request.app[TOKENS].issue_stable(force_refresh)
    return control_reply({"access_token": token, "expires_in": expires_in})


async def expire_tokens(request: web.Request) -> web.Response:
    """`POST /_fake/tokens/expire`: every token handed out so far now answers 42001."""
    return control_reply({"expired": request.app[TOKENS].expire_all()})


def setup_tokens(app: web.Application, settings: FakeSettings) -> None:
    tokens = Tokens(settings)
    app[TOKENS] = tokens
    add_resettable(app, tokens)
    app.router.add_get("/cgi-bin/token", get_token)
    app.router.add_post("/cgi-bin/stable_token", post_stable_token)
    app.router.add_post("/_fake/tokens/expire", expire_tokens)
