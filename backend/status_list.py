"""The IETF Token Status List (draft-ietf-oauth-status-list) of the e-licences: encoding, signing, reading.

Pure (no I/O, no clock): ``projections.elicense_status`` keeps the bits and calls these (decision 0039).

- **The list**: one bit a credential (``bits: 1``; 0 VALID, 1 INVALID), ``STATUS_LIST_SIZE`` entries. The
  byte array is read the draft's way: the status at index ``i`` is bit ``i % 8`` of byte ``i // 8``, bit 0
  being the least significant (so indexes 0…7 fill byte 0 from its low end). ``lst`` is base64url (no
  padding) of the byte array compressed with DEFLATE in the ZLIB format (RFC 1950), best compression.
- **The token**: a JWT ``typ: statuslist+jwt``, ES256 with the e-licence key ring's key, claims ``sub`` (the
  list's URI, the one in each credential's ``status.status_list.uri``), ``iat``, ``exp``, ``ttl`` and
  ``status_list: {bits, lst}``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from backend.credentials import CredentialError, Signer, b64url, b64url_decode, read_jwt, sign_jwt

JSON = dict[str, Any]

TYP: Final = "statuslist+jwt"
MEDIA_TYPE: Final = "application/statuslist+jwt"
BITS: Final = 1
VALID: Final = 0
INVALID: Final = 1
# How long a fetched list may be cached (seconds): a change is re-signed within a minute, and a cache keeps it
# no longer than this after that.
TTL_SECONDS: Final = 60
# A token's lifetime: re-signed daily, so a day and a half leaves the daily signer half a day's slack.
EXP_SECONDS: Final = 36 * 3600


def encode_bits(invalid: Iterable[int], size: int) -> bytes:
    """The byte array of a list of ``size`` one-bit entries with the ``invalid`` indexes set."""
    raw = bytearray((size + 7) // 8)
    for idx in invalid:
        if not 0 <= idx < size:
            raise ValueError(f"status index {idx} outside a list of {size}")
        raw[idx // 8] |= 1 << (idx % 8)
    return bytes(raw)


def compress(raw: bytes) -> str:
    """``lst``: base64url(ZLIB(DEFLATE(raw)))."""
    return b64url(zlib.compress(raw, 9))


def decompress(lst: str) -> bytes:
    """The byte array of an ``lst``; ``ValueError`` when it is not one."""
    try:
        return zlib.decompress(b64url_decode(lst))
    except zlib.error as error:
        raise ValueError("lst is not ZLIB data") from error


def status_at(raw: bytes, idx: int) -> int:
    """The one-bit status at ``idx`` of a byte array; ``IndexError`` beyond it."""
    if idx < 0 or idx // 8 >= len(raw):
        raise IndexError(f"status index {idx} outside the list")
    return (raw[idx // 8] >> (idx % 8)) & 1


def sign_token(
    signer: Signer, uri: str, invalid: Iterable[int], size: int, *, now: int, ttl: int = TTL_SECONDS
) -> str:
    """The signed status list token of the list at ``uri``, issued at ``now`` (epoch seconds)."""
    payload = {
        "sub": uri,
        "iat": now,
        "exp": now + EXP_SECONDS,
        "ttl": ttl,
        "status_list": {"bits": BITS, "lst": compress(encode_bits(invalid, size))},
    }
    return sign_jwt(signer, TYP, payload)


@dataclass(frozen=True)
class StatusList:
    """A verified status list token: its claims and its bytes."""

    header: JSON
    claims: JSON
    raw: bytes

    def status(self, idx: int) -> int:
        """The status at ``idx`` (``VALID`` or ``INVALID``)."""
        return status_at(self.raw, idx)


def read_token(token: str, jwks: Mapping[str, Any]) -> StatusList:
    """Check a status list token against the JWKS; ``CredentialError`` (malformed, unknown_key, bad_signature)."""
    header, claims = read_jwt(token, jwks, TYP)
    listed = claims.get("status_list")
    if not isinstance(listed, dict) or listed.get("bits") != BITS or not isinstance(listed.get("lst"), str):
        raise CredentialError("malformed", "no one-bit status list")
    try:
        raw = decompress(listed["lst"])
    except ValueError:
        raise CredentialError("malformed", "lst does not decompress") from None
    return StatusList(header=header, claims=claims, raw=raw)


__all__ = [
    "INVALID",
    "MEDIA_TYPE",
    "TTL_SECONDS",
    "TYP",
    "VALID",
    "StatusList",
    "compress",
    "decompress",
    "encode_bits",
    "read_token",
    "sign_token",
    "status_at",
]
