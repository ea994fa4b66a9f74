"""The public verify page at ``/verify/``, and the one endpoint only it needs (decision 0041).

- ``/verify/``: static files (``backend/verify/``: one HTML page, its CSS and one ES module; no build step,
  nothing from another origin, a strict Content-Security-Policy). An e-licence's QR code opens it as
  ``/verify/#<licence id>``; a parent may share ``/verify/#<credential>``; a clerk may paste either. The page
  checks in the browser — the ES256 signature against ``/api/v1/elicense/jwks.json``, each disclosure's
  digest, the status list's own signature and the credential's bit in it — then asks
  ``POST /api/v1/verifications`` (with no disclosure) for the reason of a revocation and a receipt.
- ``POST /api/v1/elicense/presentations`` ``{"licence_id": …}``: public, rate-limited per address (the
  ``verification`` limit). The e-licence's credential as stored, every personal item withheld
  (``present(credential, PERSONAL_ITEMS)``: what stays is the issuer-signed part — the certificate's number,
  the issuing institution, the issue date, the licence id, the status entry — and salted digests). The
  licence id travels in the body, never in a request line: the QR code keeps it in the fragment so that no
  server or proxy logs it (decision 0038), and the page keeps that promise. Unknown: 404
  ``elicense_not_found``. A revoked or superseded e-licence is presented too (its status list says so);
  nothing here names a replacement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from aiohttp import web

from backend.components import in_store, json_response
from backend.credentials import present
from backend.errors import json_body
from backend.routes.elicense import ELICENSE_STORE
from backend.static_files import StaticFiles, page_headers
from backend.throttle import limit_client
from domain.elicense import PERSONAL_ITEMS, LicenceId
from domain.errors import NotFound

routes = web.RouteTableDef()

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "verify"
# The only files served, with their types: nothing else under the directory is reachable.
ASSETS: Final = StaticFiles(
    STATIC_DIR,
    {
        "index.html": "text/html",
        "verify.js": "text/javascript",
        "verify.css": "text/css",
        "favicon.svg": "image/svg+xml",
    },
)
# Stricter than the console's: nothing but this origin's own script, style, images and API; no form posts
# anywhere (the page's forms are answered by its script); never framed.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS: Final = page_headers(CONTENT_SECURITY_POLICY)


@routes.get("/verify")
async def verify_root(request: web.Request) -> web.Response:
    """``/verify`` → ``/verify/`` (the fragment, which the server never sees, is kept by the browser)."""
    raise web.HTTPPermanentRedirect("/verify/", headers=SECURITY_HEADERS)


@routes.get("/verify/")
async def verify_index(request: web.Request) -> web.Response:
    """The verify page."""
    return ASSETS.response(request, "index.html", SECURITY_HEADERS)


@routes.get("/verify/{name}")
async def verify_asset(request: web.Request) -> web.Response:
    """One of the page's files (and nothing else)."""
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound(headers=SECURITY_HEADERS)
    return ASSETS.response(request, name, SECURITY_HEADERS)


@routes.post("/api/v1/elicense/presentations")
async def presentation(request: web.Request) -> web.Response:
    """Public: the e-licence of a licence id without any personal item, for the verify page to check."""
    await limit_client(request, "verification")
    body = await json_body(request)
    licence_id = str(LicenceId.parse(str(body.get("licence_id") or "")))  # 422 invalid_licence_id
    stored = await in_store(request, request.app[ELICENSE_STORE].credential, licence_id)
    if stored is None:
        raise NotFound("没有这个电子证照，请核对二维码或电子证照标识", code="elicense_not_found")
    return json_response(
        {"licence_id": stored.licence_id, "credential": present(stored.credential, PERSONAL_ITEMS)}
    )


LICENCE_ID_PATTERN: Final = (
    "^1\\.2\\.156\\.3005\\.2\\.[0-9A-Z]{1,40}\\.[0-9A-Z]{1,40}\\.[0-9A-Z]{1,40}\\.[0-9]{3}\\.[0-9A-Z]$"
)
_PROBLEM: Final = {
    "description": "A problem (RFC 9457): 404 elicense_not_found, 422 invalid_licence_id",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
# For backend/openapi.py (which adds the 429 of the ``verification`` limit).
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/elicense/presentations": {
        "post": {
            "summary": "public, rate-limited: an e-licence's credential without any personal item, by licence id "
            "(for the verify page; the id in the body, never in a URL)",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["licence_id"],
                            "properties": {"licence_id": {"type": "string", "pattern": LICENCE_ID_PATTERN}},
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "the issuer-signed credential with no disclosure (decision 0041)",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["licence_id", "credential"],
                                "additionalProperties": False,
                                "properties": {
                                    "licence_id": {"type": "string", "pattern": LICENCE_ID_PATTERN},
                                    "credential": {
                                        "type": "string",
                                        "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+~$",
                                        "description": "SD-JWT (ES256, typ dc+sd-jwt) without disclosures: <jws>~",
                                    },
                                },
                            }
                        }
                    },
                },
                "default": _PROBLEM,
            },
        }
    }
}
