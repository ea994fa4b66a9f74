"""The fake WeChat platform: an aiohttp app speaking WeChat's real HTTP protocol, plus a control API.

Point wechatpy (or any client) at its base URL instead of `https://api.weixin.qq.com` /
`https://api.mch.weixin.qq.com`. The routes live in one module per job (tokens, login, messages,
face, pay, 粤省事, registry); this module composes them, counts calls, injects errors and logs
method, path and errcode only. See miniprogram_stub/README.md for the control API.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from miniprogram_stub.fake_core import (
    ERRCODE,
    RESETTABLES,
    SETTINGS,
    BadJson,
    FakeSettings,
    Handler,
    add_resettable,
    control_reply,
    read_json,
    wechat_error,
)
from miniprogram_stub.fake_departments import setup_departments
from miniprogram_stub.fake_ems import setup_ems
from miniprogram_stub.fake_face import setup_face
from miniprogram_stub.fake_identity import JWKS_PATH, setup_identity
from miniprogram_stub.fake_messages import setup_messages
from miniprogram_stub.fake_pay import injected_failure, return_failure, setup_pay
from miniprogram_stub.fake_registry import setup_registry
from miniprogram_stub.fake_tokens import TOKEN_ERRMSG, setup_tokens
from miniprogram_stub.fake_wechat import setup_wechat

__all__ = ["FakeSettings", "create_fake_platform", "register_stub", "start_fake_platform"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765
INJECTED_ERRMSG = {
    **TOKEN_ERRMSG,
    -1: "system error",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
}


@dataclass
class Controls:
    """Calls per path, and the errors queued for the next calls of a path."""

    calls: Counter[str] = field(default_factory=Counter)
    errors: dict[str, list[int | str]] = field(default_factory=dict)

    def reset(self) -> None:
        self.calls.clear()
        self.errors.clear()

    def take_error(self, path: str) -> int | str | None:
        queued = self.errors.get(path)
        if not queued:
            return None
        errcode = queued.pop(0)
        if not queued:
            del self.errors[path]
        return errcode


CONTROLS = web.AppKey("fake_controls", Controls)


def _kind(path: str) -> str:
    """Which protocol a path speaks: control, pay (XML), plain (HTTP status codes) or wechat (errcode)."""
    if path.startswith("/_fake/"):
        return "control"
    if path.startswith("/pay/"):
        return "pay"
    if path.startswith(("/registry/", "/yueshengshi/", "/oidc/", "/ems/")):
        return "plain"
    return "wechat"


def _injected(settings: FakeSettings, kind: str, errcode: int | str) -> web.Response:
    if kind == "pay":
        return injected_failure(settings, errcode)
    if kind == "plain":
        status = errcode if isinstance(errcode, int) and 400 <= errcode <= 599 else 503
        return control_reply({"code": "unavailable"}, status)
    code = int(errcode)
    return wechat_error(code, INJECTED_ERRMSG.get(code, f"injected error {code}"))


def _wrong_method(kind: str, allowed: set[str] | frozenset[str]) -> web.Response | None:
    if kind == "pay":
        return return_failure("REQUIRE_POST_METHOD")
    if kind == "wechat":
        return (
            wechat_error(43002, "require POST method")
            if "POST" in allowed
            else wechat_error(43001, "require GET method")
        )
    return None


@web.middleware
async def platform_edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count the call, serve a queued error, map bad bodies and methods, log method/path/errcode."""
    path, kind = request.path, _kind(request.path)
    controls = request.app[CONTROLS]
    response: web.StreamResponse
    if kind != "control":
        controls.calls[path] += 1
    errcode = controls.take_error(path) if kind != "control" else None
    if errcode is not None:
        response = _injected(request.app[SETTINGS], kind, errcode)
    else:
        try:
            response = await handler(request)
        except BadJson:
            if kind == "wechat":
                response = wechat_error(47001, "data format error")
            elif kind == "plain":
                response = control_reply({"code": "bad_request"}, 400)
            else:
                response = control_reply({"error": "the body must be a JSON object"}, 400)
        except web.HTTPMethodNotAllowed as e:
            replacement = _wrong_method(kind, e.allowed_methods)
            if replacement is None:
                raise
            response = replacement
        except web.HTTPException as e:
            log.info("%s %s -> %s", request.method, path, e.status)
            raise
    log.info("%s %s -> %s errcode=%s", request.method, path, response.status, response.get(ERRCODE, "-"))
    return response


CONTROL_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "600",
}


@web.middleware
async def control_cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """CORS on the control API only (`/_fake/…`): the H5 simulator (another origin) plays the user's side."""
    if not request.path.startswith("/_fake/"):
        return await handler(request)
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=CONTROL_CORS)
    try:
        response = await handler(request)
    except web.HTTPException as e:
        e.headers.update(CONTROL_CORS)
        raise
    response.headers.update(CONTROL_CORS)
    return response


async def queue_errors(request: web.Request) -> web.Response:
    """`POST /_fake/errors {path, errcode, times}`: the next `times` calls of `path` fail with errcode."""
    body = await read_json(request)
    path, errcode, times = body.get("path"), body.get("errcode"), body.get("times", 1)
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("/_fake/"):
        return control_reply({"error": "path must be a platform path such as /cgi-bin/token"}, 400)
    if not isinstance(errcode, int | str) or isinstance(errcode, bool):
        return control_reply({"error": "errcode must be a number (or a Pay err_code string)"}, 400)
    if not isinstance(times, int) or isinstance(times, bool) or times < 1:
        return control_reply({"error": "times must be a positive integer"}, 400)
    queued = request.app[CONTROLS].errors.setdefault(path, [])
    queued.extend([errcode] * times)
    return control_reply({"path": path, "queued": len(queued)})


async def list_errors(request: web.Request) -> web.Response:
    """`GET /_fake/errors`: the errors still queued, per path."""
    return control_reply({"errors": request.app[CONTROLS].errors})


async def count_calls(request: web.Request) -> web.Response:
    """`GET /_fake/calls?path=`: calls of that path so far; without `path`, every path's count."""
    calls = request.app[CONTROLS].calls
    path = request.query.get("path")
    if path is None:
        return control_reply({"calls": dict(calls)})
    return control_reply({"path": path, "count": calls[path]})


async def reset(request: web.Request) -> web.Response:
    """`POST /_fake/reset`: forget everything but the keys (tokens, codes, messages, orders, faces…)."""
    for state in request.app[RESETTABLES]:
        state.reset()
    return control_reply({"reset": True})


def create_fake_platform(settings: FakeSettings) -> web.Application:
    """A fresh fake platform; all state lives on the app."""
    app = web.Application(middlewares=[control_cors, platform_edge])
    app[SETTINGS] = settings
    app[RESETTABLES] = []
    controls = Controls()
    app[CONTROLS] = controls
    add_resettable(app, controls)
    setup_tokens(app, settings)
    setup_wechat(app, settings)
    setup_messages(app, settings)
    setup_face(app, settings)
    setup_pay(app, settings)
    setup_identity(app)
    setup_registry(app)
    setup_ems(app)
    setup_departments(app)
    app.router.add_post("/_fake/errors", queue_errors)
    app.router.add_get("/_fake/errors", list_errors)
    app.router.add_get("/_fake/calls", count_calls)
    app.router.add_post("/_fake/reset", reset)
    return app


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


async def start_fake_platform(
    host: str = "127.0.0.1", port: int = 0, settings: FakeSettings | None = None
) -> tuple[web.AppRunner, str]:
    """Serve a fresh fake on host:port (0 picks a free port); returns the runner (call `cleanup()`) and base URL."""
    app = create_fake_platform(settings or FakeSettings())
    # No access log: query strings carry access tokens and login codes.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    return runner, f"http://{_url_host(host)}:{bound_port}"


async def _serve_until_cancelled(host: str, port: int, settings: FakeSettings) -> None:
    runner, base = await start_fake_platform(host, port, settings)
    try:
        print(f"fake WeChat platform listening on {base}", flush=True)
        print(f"  appid {settings.appid}, mch_id {settings.mch_id} (credentials: miniprogram_stub/README.md)")
        print(f"  calls:     GET  {base}/_fake/calls?path=/cgi-bin/token")
        print(f"  messages:  GET  {base}/_fake/messages?touser=<openid>")
        print(f"  errors:    POST {base}/_fake/errors {{path, errcode, times}}")
        print(
            f"  face:      POST {base}/_fake/face/verify {{verify_id}}   POST {base}/_fake/faces {{cert_no, verify_ret}}"
        )
        print(f"  pay:       POST {base}/_fake/pay/notify {{out_trade_no, total_fee?, forge?}}")
        print(f"  粤省事:    POST {base}/_fake/yueshengshi/tickets {{openid}}   GET {base}{JWKS_PATH}")
        print(
            f"  省级App:   {base}/oidc/<yueshengshi|beijingtong|jiankangshandong|jishiban>/.well-known/openid-configuration"
        )
        print(
            f"             POST {base}/_fake/oidc/<channel>/faces {{openid, outcome}}   GET …/pushes?touser="
        )
        print(f"  registry:  POST {base}/_fake/registry/persons {{id_number, name, ethnicity, address}}")
        print(f"  tokens:    POST {base}/_fake/tokens/expire     reset: POST {base}/_fake/reset")
        print("Press Ctrl+C to stop.", flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run_stub(args: argparse.Namespace) -> int:
    """Run the fake platform until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = FakeSettings(token_lifetime=args.token_lifetime)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_cancelled(args.host, args.port, settings))
    return 0


def register_stub(subparsers: Any) -> None:
    """Add `stub --host --port`: run the fake WeChat platform."""
    p = subparsers.add_parser("stub", help="run the fake WeChat platform (for local development and tests)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0 = any free port)"
    )
    p.add_argument(
        "--token-lifetime", type=float, default=7200, help="access token lifetime in seconds (default: 7200)"
    )
    p.set_defaults(handler=run_stub)
