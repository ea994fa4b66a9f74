"""A fixed set of files of one directory served as they are (the staff console, the public verify page).

Only the files named are reachable (nothing else under the directory, no path is ever joined from a
request), each with its media type and a strong ETag: the files change only with a deployment, so a
browser revalidates (``Cache-Control: no-cache``) and gets a 304 while they are the same.

``page_headers`` are the headers every such page is served with: its own Content-Security-Policy, and no
framing, no sniffing, no referrer, no powerful features, its own browsing context group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from aiohttp import web


def page_headers(content_security_policy: str) -> dict[str, str]:
    """The security headers of a page of ours with this policy."""
    return {
        "Content-Security-Policy": content_security_policy,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


@cache
def _read(path: Path) -> tuple[bytes, str]:
    """The file's bytes and a strong ETag."""
    data = path.read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


@dataclass(frozen=True)
class StaticFiles:
    """The files ``types`` names (name → media type) in ``directory``."""

    directory: Path
    types: Mapping[str, str]

    def __contains__(self, name: object) -> bool:
        return name in self.types

    def response(self, request: web.Request, name: str, headers: Mapping[str, str]) -> web.Response:
        """The file with ``headers`` (a 304 when the client's ETag is current)."""
        data, etag = _read(self.directory / name)
        sent = {**headers, "ETag": etag, "Cache-Control": "no-cache"}
        if etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
            return web.Response(status=304, headers=sent)
        media = self.types[name]
        charset = "utf-8" if media.startswith("text/") else None
        return web.Response(body=data, content_type=media, charset=charset, headers=sent)


__all__ = ["StaticFiles", "page_headers"]
