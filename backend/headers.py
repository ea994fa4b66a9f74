"""Response headers built from values that may come from a request: never a header a client can split.

``content_disposition`` follows RFC 6266 with the RFC 8187 (ex-5987) ``filename*`` parameter: a plain
ASCII ``filename`` in which nothing can close the quoted string (no quote, backslash, control byte or
non-ASCII character survives), and the exact name percent-encoded as UTF-8 beside it.
"""

from __future__ import annotations

from typing import Final, Literal
from urllib.parse import quote

# Characters that may stand in a quoted ``filename`` as they are (RFC 6266 §4.3: ASCII, no quote or backslash;
# no ``%`` either, which some agents decode).
_PLAIN: Final = frozenset(chr(c) for c in range(0x20, 0x7F)) - frozenset('"\\%')


def content_disposition(disposition: Literal["inline", "attachment"], filename: str) -> str:
    """``inline; filename="…"; filename*=UTF-8''…``: one filename, whatever ``filename`` holds."""
    plain = "".join(c if c in _PLAIN else "_" for c in filename) or "download"
    return f"{disposition}; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


__all__ = ["content_disposition"]
