"""The certificate numbers, e-licence identifiers and staff's own words in the parents' status documents, sealed in
Redis (decision 0042).

A certificate number names a child (decision 0038), and a licence identifier opens the child's e-licence on the
public verify page (it is what the QR code carries), so Redis holds neither in clear; nor what staff wrote in their
own words (an issuer's rejection reasons, a hospital's answer to her dispute, a department's refusal), which may
quote a name, an ID number or an address. When a document is written, every top-level member whose value holds one
of them (``certificate_number``, ``voided_certificate_numbers``, ``replacement``, the ``done_steps`` that say which
number replaced which, ``elicense``, ``rejection``, the ``next_steps`` quoting an answer, ``delivery_dispute``,
``bundle``; and any member added later that quotes one) moves into one sealed value, the document's first member
``"sealed"``, and stays in its place as ``null``. When it is read, the sealed value is opened and the members are
put back where they were: the bytes are those of the document as ``status_of`` made it. A document with nothing to
seal (every application before printing or a rejection: most reads) is stored and answered exactly as before, its
bytes never decoded (decision 0029).

The seal is AES-256-SIV (RFC 5297) under HKDF(the at-rest key, ``birthcert status view v1``): deterministic, so a
rebuild writes the same bytes (decision 0022) and equal members seal alike (which tells nothing else). Its
associated data is the rest of the stored document, so a sealed value opens with its own document only: not in
another family's, not in an older version, not after a clear member was changed.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Collection
from typing import Any, Final

import orjson
from cryptography.exceptions import InvalidTag

from backend.storage import derive_siv
from domain.application import BirthCertificateApplication

log = logging.getLogger(__name__)

JSON = dict[str, Any]
HKDF_INFO: Final = b"birthcert status view v1"
SEALED: Final = "sealed"
# A document with sealed members begins with them (orjson keeps the order the document was built in).
_PREFIX: Final = b'{"' + SEALED.encode() + b'":"'


def secrets_of(app: BirthCertificateApplication) -> list[str]:
    """What the application's documents must not show in Redis: every certificate number it was printed with,
    every e-licence identifier it was given, and what staff wrote in their own words (an issuer's rejection
    reasons, a hospital's answer to her dispute, a department's reason for refusing a service): free text that
    may quote a name, an ID number or an address."""
    values = [app.certificate_number, *app.voided_numbers]
    for licence in app.elicenses:
        values += [licence["certificate_number"], licence["licence_id"]]
    values += list((app.rejection or {}).get("reasons", []))
    if app.dispute_answer:
        values.append(app.dispute_answer.get("reason"))
    values += [part.get("reason") for part in (app.bundle_services or {}).values()]
    return [v for v in dict.fromkeys(values) if isinstance(v, str) and v.strip()]


class StatusSeal:
    """Seals the members of a status document that hold a secret, and puts them back when it is read."""

    def __init__(self, key: bytes) -> None:
        """``key``: the service's at-rest key (``backend.storage.at_rest_key``); the seal derives its own."""
        self._siv = derive_siv(key, HKDF_INFO)

    def __repr__(self) -> str:
        return "StatusSeal()"

    def sealed(self, document: JSON, secrets: Collection[str]) -> bytes:
        """The document's stored bytes: as they are when no member holds one of ``secrets``, else with those
        members sealed in front and ``null`` in their places."""
        needles = [orjson.dumps(s)[1:-1] for s in secrets if s]  # as the text appears inside a JSON string
        hidden: JSON = {}
        if needles:
            for name, value in document.items():
                encoded = (
                    b"" if value is None else orjson.dumps(value)
                )  # once per member, whatever the needles
                if any(n in encoded for n in needles):
                    hidden[name] = value
        if not hidden:
            return orjson.dumps(document)
        rest = orjson.dumps({name: None if name in hidden else value for name, value in document.items()})
        token = self._siv.encrypt(orjson.dumps(hidden), [rest])
        return _PREFIX + base64.b64encode(token) + b'",' + rest[1:]

    def opened(self, stored: bytes) -> bytes | None:
        """The document as it was before sealing: ``stored`` itself when nothing is sealed (no decoding); None
        when its sealed value does not open (another key, or altered)."""
        if not stored.startswith(_PREFIX):
            return stored
        end = stored.find(b'"', len(_PREFIX))
        rest = b"{" + stored[end + 2 :]
        try:
            hidden = self._siv.decrypt(base64.b64decode(stored[len(_PREFIX) : end], validate=True), [rest])
        except (InvalidTag, binascii.Error, ValueError):
            log.warning("status view: a document's sealed members do not open (another key, or altered)")
            return None
        document: JSON = orjson.loads(rest)
        document.update(orjson.loads(hidden))
        return orjson.dumps(document)

    @staticmethod
    def bare(stored: bytes) -> bytes:
        """The document without its sealed members (``null`` in their places), when they cannot be opened."""
        if not stored.startswith(_PREFIX):
            return stored
        return b"{" + stored[stored.find(b'"', len(_PREFIX)) + 2 :]


__all__ = ["HKDF_INFO", "SEALED", "StatusSeal", "secrets_of"]
