"""The blob store: uploaded documents kept encrypted and addressed by the SHA-256 of their content.

ID-card photos and signatures are sensitive personal information (PIPL), so nothing is written in the
clear: each file is AES-256-GCM under a key derived from the service's cipher key (HKDF-SHA256), with the
content hash and content type bound in as associated data, so a file moved to another name or given
another type fails to decrypt. Where the sealed files are kept is an ``ObjectStore``
(``backend.object_store``): a local directory by default, an S3-compatible bucket that every host reaches
when one is configured; either way it holds only ciphertext. The class is synchronous (blocking I/O):
call it from a thread.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backend.object_store import LocalObjects, ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)

HKDF_INFO = b"birthcert blob v1"
# File layout: MAGIC, VERSION, one byte content-type length, the content type (ASCII), nonce, ciphertext+tag.
MAGIC = b"BCB"
VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
MIN_KEY_BYTES = 16
_HEADER = struct.Struct(">3sBB")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*")


def derive_aead(key: bytes, info: bytes) -> AESGCM:
    """AES-256-GCM under HKDF-SHA256(``key``, no salt, ``info``): one purpose, one derived key.

    The service's cipher key (or, with the event cipher off, its index key) is the one secret kept at
    rest; each use of it (blobs, the form archive) derives its own key with its own ``info``.
    """
    return AESGCM(_derived(key, info, 32))


def derive_siv(key: bytes, info: bytes) -> AESSIV:
    """AES-256-SIV (RFC 5297, deterministic) under HKDF-SHA256(``key``, no salt, ``info``), as ``derive_aead``:
    for values that must seal to the same bytes every time (a view rebuilt byte for byte)."""
    return AESSIV(_derived(key, info, 64))


def _derived(key: bytes, info: bytes, length: int) -> bytes:
    if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the storage key must be at least {MIN_KEY_BYTES} bytes")
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key)


def at_rest_key(cipher_key: str, index_key: bytes) -> bytes:
    """The secret that blobs and archived forms derive their keys from.

    The event store's ``CIPHER_KEY`` (base64), or — with the event cipher turned off, in development —
    the index key, so that files and archived forms are never written in the clear.
    """
    return base64.b64decode(cipher_key) if cipher_key else index_key


class BlobError(Exception):
    """Base of the blob store's errors (infrastructure faults, not the parent's)."""


class BlobNotFound(BlobError):
    """No blob is stored under that hash."""


class BlobCorrupted(BlobError):
    """The stored file does not decrypt, or does not hash to its name: damaged or tampered with."""


@dataclass(frozen=True)
class BlobRef:
    """What is kept about a stored blob: the hex SHA-256 of its plaintext, its size and content type."""

    sha256: str
    size: int
    content_type: str


class BlobStore:
    """Encrypted, content-addressed blobs under ``ab/cd/<sha256>`` in an ``ObjectStore``.

    Given a directory, the blobs are files there (dirs 0700, files 0600): the embedded default.
    """

    def __init__(self, objects: ObjectStore | Path, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the blob key must be at least {MIN_KEY_BYTES} bytes")
        self.objects: ObjectStore = LocalObjects(objects) if isinstance(objects, Path) else objects
        # Derive rather than reuse: the same secret also encrypts the event store, for another purpose.
        self._aead = derive_aead(key, HKDF_INFO)

    def __repr__(self) -> str:
        return f"BlobStore({self.objects!r})"

    @property
    def root(self) -> Path | None:
        """The directory of a local blob store (None when the blobs are in an object store)."""
        return self.objects.root if isinstance(self.objects, LocalObjects) else None

    def put(self, data: bytes, content_type: str) -> BlobRef:
        """Store ``data`` (idempotent: the same content is written once) and return its reference.

        ``ObjectStoreUnavailable`` when it could not be stored: nothing may then be acknowledged.
        """
        if not _CONTENT_TYPE.fullmatch(content_type) or len(content_type) > 255:
            raise ValueError("content_type must be a plain lower-case media type such as image/jpeg")
        sha256 = hashlib.sha256(data).hexdigest()
        name = blob_key(sha256)
        if self.objects.exists(name):
            try:
                _, stored_type = self._read(sha256)
            except BlobCorrupted:
                # Heal a damaged copy by writing it again; never serve it.
                log.warning("blob %s was corrupted in storage; rewriting it", sha256)
            else:
                return BlobRef(sha256=sha256, size=len(data), content_type=stored_type)
        self.objects.put(name, self._seal(data, sha256, content_type))
        log.debug("stored blob %s (%d bytes, %s)", sha256, len(data), content_type)
        return BlobRef(sha256=sha256, size=len(data), content_type=content_type)

    def get(self, sha256: str) -> tuple[bytes, str]:
        """The plaintext and content type of blob ``sha256``; ``BlobNotFound`` or ``BlobCorrupted``."""
        if not _SHA256_HEX.fullmatch(sha256):
            raise BlobNotFound("no such blob")
        return self._read(sha256)

    def exists(self, sha256: str) -> bool:
        """Whether a blob is stored under ``sha256`` (without decrypting it)."""
        return bool(_SHA256_HEX.fullmatch(sha256)) and self.objects.exists(blob_key(sha256))

    def _seal(self, data: bytes, sha256: str, content_type: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        encoded_type = content_type.encode("ascii")
        header = _HEADER.pack(MAGIC, VERSION, len(encoded_type)) + encoded_type
        return header + nonce + self._aead.encrypt(nonce, data, _aad(sha256, content_type))

    def _read(self, sha256: str) -> tuple[bytes, str]:
        try:
            sealed = self.objects.get(blob_key(sha256))
        except ObjectNotFound:
            raise BlobNotFound("no such blob") from None
        content_type, nonce, ciphertext = _parse(sealed)
        try:
            data = self._aead.decrypt(nonce, ciphertext, _aad(sha256, content_type))
        except InvalidTag:
            raise BlobCorrupted(f"blob {sha256} does not decrypt") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BlobCorrupted(f"blob {sha256} does not match its hash")
        return data, content_type


def blob_key(sha256: str) -> str:
    """Where blob ``sha256`` is kept in its object store: ``ab/cd/<sha256>``."""
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


def _aad(sha256: str, content_type: str) -> bytes:
    return f"{sha256}\n{content_type}".encode("ascii")


def _parse(sealed: bytes) -> tuple[str, bytes, bytes]:
    """Split a stored file into content type, nonce and ciphertext, or raise ``BlobCorrupted``."""
    if len(sealed) < _HEADER.size:
        raise BlobCorrupted("blob file is truncated")
    magic, version, type_length = _HEADER.unpack_from(sealed)
    if magic != MAGIC or version != VERSION:
        raise BlobCorrupted("blob file has an unknown header")
    start = _HEADER.size + type_length
    if len(sealed) < start + NONCE_BYTES + TAG_BYTES:
        raise BlobCorrupted("blob file is truncated")
    try:
        content_type = sealed[_HEADER.size : start].decode("ascii")
    except UnicodeDecodeError:
        raise BlobCorrupted("blob file has an unreadable header") from None
    return content_type, sealed[start : start + NONCE_BYTES], sealed[start + NONCE_BYTES :]
