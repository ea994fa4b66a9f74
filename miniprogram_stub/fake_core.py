"""What every part of the fake WeChat platform shares: its settings, its state registry and WeChat's replies."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Json = dict[str, Any]


@dataclass(frozen=True)
class FakeSettings:
    """Credentials the fake accepts and the lifetimes it applies (tests shorten them)."""

    appid: str = "wxb1r7hce27dev0001"
    secret: str = "dev-app-secret"
    mch_id: str = "1900000109"
    pay_api_key: str = "192006250b4c09247ec02edce69f6a2d"
    yss_issuer: str = "https://yss.gd.gov.cn"
    yss_audience: str = "birthcert"
    registry_api_key: str = "dev-registry-key"
    token_lifetime: float = 7200
    # A new /cgi-bin/token leaves the previous one valid this long (official AccessToken doc: 5 min).
    token_grace: float = 300
    verify_id_lifetime: float = 3600
    ticket_lifetime: int = 300
    sec_check_blocklist: tuple[str, ...] = ("赌博", "毒品", "枪支")
    # msg_sec_check v2 answers 61010 for an openid that has not logged in (jscode2session) this recently;
    # 0 turns the check off.
    sec_check_login_window: float = 7200
    notify_timeout: float = 5.0
    clock: Callable[[], float] = field(default=time.time, compare=False)


class Resettable(Protocol):
    def reset(self) -> None: ...


SETTINGS = web.AppKey("fake_settings", FakeSettings)
RESETTABLES = web.AppKey("fake_resettables", list[Resettable])
# The errcode a reply carried, for the log line (the log never holds request data).
ERRCODE = web.ResponseKey("fake_errcode", object)


def dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()


def rid() -> str:
    """A request id shaped like the real one (`668f2aa4-51c08c03-3d141241`)."""
    return "-".join(secrets.token_hex(4) for _ in range(3))


def wechat_ok(body: Json | None = None) -> web.Response:
    """A success reply: `{"errcode": 0, "errmsg": "ok", ...}`."""
    response = web.json_response({"errcode": 0, "errmsg": "ok", **(body or {})}, dumps=dumps)
    response[ERRCODE] = 0
    return response


def wechat_error(errcode: int, errmsg: str) -> web.Response:
    """An error the way WeChat sends it: HTTP 200, errcode, errmsg with a rid suffix."""
    response = web.json_response({"errcode": errcode, "errmsg": f"{errmsg}, rid: {rid()}"}, dumps=dumps)
    response[ERRCODE] = errcode
    return response


def control_reply(body: object, status: int = 200) -> web.Response:
    """A reply of the control API (`/_fake/...`): plain JSON, HTTP status carries the outcome."""
    return web.json_response(body, status=status, dumps=dumps)


class BadJson(Exception):
    """The request body is not a JSON object."""


async def read_json(request: web.Request) -> Json:
    """The body as a JSON object, whatever the Content-Type (wechatpy sends none)."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as e:
        raise BadJson from e
    if not isinstance(body, dict):
        raise BadJson
    return body


def add_resettable(app: web.Application, state: Resettable) -> None:
    app[RESETTABLES].append(state)
