"""The H5 simulator of the parents' mini-program at ``/h5/``: static files, served by the service itself.

A development aid standing in for the WeChat mini-program: a phone-sized page (``miniprogram_stub/h5/``)
that walks the parent journey against this service's API (same origin, so no CORS) and plays the WeChat
client APIs (``wx.login``, ``wx.requestFacialVerify``, ``wx.requestPayment``) through the fake platform's
control API, whose base URL comes from ``?platform=`` (default ``http://127.0.0.1:8765``).

A parent may also come from a provincial app (粤省事, 北京通, 健康山东, 冀时办: docs/decisions/0030): the
login screen offers the configured ones (``/h5/channels.json``), and the app's face check redirects back to
``/h5/face-return?code=&state=`` (each channel's default ``<ENV>_REDIRECT_URI``), the same page, which hands
the redirect to the simulator waiting for it.

Served like the console: a strict Content-Security-Policy (no inline script or style, nothing from other
origins) except that ``connect-src`` also allows the fake platform's origin named in ``?platform=``.

Development only: ``create_app`` adds these routes only to a development configuration (``birthcert dev``,
``BIRTHCERT_ENV=development``), since the page logs in as the demo HIS account and ``?platform=`` widens
its policy to any origin. In production ``/h5/`` is a 404.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web

from backend.components import CHANNELS, json_response
from domain.policy import get_profile

routes = web.RouteTableDef()

STATIC_DIR: Final = Path(__file__).resolve().parents[2] / "miniprogram_stub" / "h5"
ASSETS: Final = {
    "index.html": "text/html",
    "h5.js": "text/javascript",
    "h5.css": "text/css",
}
DEFAULT_PLATFORM: Final = "http://127.0.0.1:8765"


def platform_origin(raw: str | None) -> str:
    """The origin (scheme://host[:port]) of the fake platform's URL; the default one when unusable."""
    parts = urlsplit(raw or DEFAULT_PLATFORM)
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789.-:[]")
    if parts.scheme not in ("http", "https") or not parts.netloc or not set(parts.netloc.lower()) <= allowed:
        parts = urlsplit(DEFAULT_PLATFORM)
    return f"{parts.scheme}://{parts.netloc.lower()}"


def security_headers(platform: str) -> dict[str, str]:
    """The console's headers, with the fake platform's origin as the one other place to connect to."""
    policy = "; ".join(
        (
            "default-src 'self'",
            f"connect-src 'self' {platform}",
            "img-src 'self' blob: data:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


@cache
def _asset(name: str) -> tuple[bytes, str]:
    """The file's bytes and a strong ETag."""
    data = (STATIC_DIR / name).read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _serve(request: web.Request, name: str) -> web.Response:
    data, etag = _asset(name)
    headers = {
        **security_headers(platform_origin(request.query.get("platform"))),
        "ETag": etag,
        "Cache-Control": "no-cache",
    }
    if name == "index.html":
        headers["Vary"] = "Accept-Encoding"
        headers.pop("ETag")  # the policy depends on the query: always send the page
    elif etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, content_type=ASSETS[name], charset="utf-8", headers=headers)


@routes.get("/h5")
async def h5_root(request: web.Request) -> web.Response:
    """``/h5`` → ``/h5/`` (keeping the query)."""
    location = "/h5/" + (f"?{request.query_string}" if request.query_string else "")
    raise web.HTTPPermanentRedirect(location, headers=security_headers(platform_origin(None)))


@routes.get("/h5/")
async def h5_index(request: web.Request) -> web.Response:
    """The simulator's single page."""
    return _serve(request, "index.html")


@routes.get("/h5/face-return")
async def h5_face_return(request: web.Request) -> web.Response:
    """Where a provincial app's face check redirects (``?code=&state=`` or ``?error=&state=``): the simulator's
    page, which takes the redirect's query to the application it was begun for."""
    return _serve(request, "index.html")


@routes.get("/h5/channels.json")
async def h5_channels(request: web.Request) -> web.Response:
    """The provincial apps this service is configured for (besides WeChat), from ``channels.json``."""
    channels = [
        {
            "channel": name,
            "label": app.channel.label,
            "province": app.channel.province,
            "province_name": get_profile(app.channel.province).name,
        }
        for name, app in request.app[CHANNELS].items()
    ]
    headers = {**security_headers(platform_origin(None)), "Cache-Control": "no-cache"}
    return json_response({"channels": channels}, headers=headers)


@routes.get("/h5/{name}")
async def h5_asset(request: web.Request) -> web.Response:
    """One of the simulator's files (and nothing else)."""
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound(headers=security_headers(platform_origin(None)))
    return _serve(request, name)
