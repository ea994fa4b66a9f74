"""C2SP signed notes (Ed25519) and tlog checkpoints.

A signed note (C2SP ``signed-note``, the format of ``golang.org/x/mod/sumdb/note``) is::

    <body: UTF-8 text ending in a newline>
    <blank line>
    — <key name> <base64(4-byte key ID ‖ signature)>
    ...

* The body has no ASCII control characters other than newline; the signature covers exactly the
  body bytes (up to and including its final newline).
* For Ed25519 (algorithm byte ``0x01``) the key ID is the first 4 bytes of
  ``SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key)``; a verifier key is written
  ``<name>+<8 hex digits of the key ID>+<base64(0x01 ‖ public key)>``.
* Key names are non-empty and contain neither Unicode white space nor ``+``.
* Opening a note: signatures by unknown keys are ignored, a signature by a known key that does not
  verify rejects the whole note, and at least one known key must have signed. Several signatures
  are how a key is rotated: sign with the old and the new key for a while.

A checkpoint (C2SP ``tlog-checkpoint``) is the body of such a note: the origin line, the tree size
in decimal (no leading zeros), the base64 root hash, then optional non-empty extension lines.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "ALG_ED25519",
    "Checkpoint",
    "CheckpointError",
    "Ed25519NoteSigner",
    "NoteError",
    "NoteVerifier",
    "checkpoint_body",
    "key_id",
    "open_note",
    "parse_checkpoint",
    "parse_verifier_key",
    "sign_note",
]

ALG_ED25519 = 0x01
SIG_PREFIX = "\u2014 "  # EM DASH, space
MAX_SIGNATURES = 100  # as golang.org/x/mod/sumdb/note: do not spend forever on a hostile note
HASH_SIZE = 32
_SIZE_RE = re.compile(r"(0|[1-9][0-9]*)")


class NoteError(ValueError):
    """A note that is malformed, or whose signatures do not verify."""


class CheckpointError(ValueError):
    """A note body that is not a well-formed C2SP checkpoint."""


# ---------------------------------------------------------------------- helpers


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode_strict(text: str) -> bytes:
    """Standard base64 with padding, in its one canonical spelling (no malleable variants)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise ValueError(f"not base64: {text!r}") from e
    if _b64(raw) != text:
        raise ValueError(f"not canonical base64: {text!r}")
    return raw


def valid_key_name(name: str) -> bool:
    """Non-empty, no Unicode white space, no ``+``, encodable as UTF-8."""
    if not isinstance(name, str) or not name or "+" in name or any(c.isspace() for c in name):
        return False
    return _utf8(name) is not None and not _has_control(name)


def _utf8(text: str) -> bytes | None:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return None


def _has_control(text: str, allow_newline: bool = False) -> bool:
    return any((ord(c) < 0x20 and not (allow_newline and c == "\n")) for c in text)


def _check_body(body: str) -> bytes:
    if not isinstance(body, str) or not body or not body.endswith("\n"):
        raise NoteError("a note body is non-empty text ending in a newline")
    data = _utf8(body)
    if data is None or _has_control(body, allow_newline=True):
        raise NoteError("a note body is UTF-8 text without control characters other than newline")
    return data


def key_id(name: str, public_key: bytes, alg: int = ALG_ED25519) -> bytes:
    """The 4-byte key ID: ``SHA-256(name ‖ 0x0A ‖ alg ‖ public key)[:4]``."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()[:4]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


# ---------------------------------------------------------------------- verifiers and signers


@dataclass(frozen=True)
class NoteVerifier:
    """An Ed25519 note verifier key: name, 4-byte key ID, 32-byte public key."""

    name: str
    key_id: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        if not valid_key_name(self.name):
            raise NoteError(f"invalid key name {self.name!r}")
        if len(self.public_key) != 32:
            raise NoteError("an Ed25519 public key is 32 bytes")
        if key_id(self.name, self.public_key) != self.key_id:
            raise NoteError(f"key ID {self.key_id.hex()} does not belong to key {self.name!r}")

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey | bytes) -> NoteVerifier:
        """The verifier for a public key (an object or its 32 raw bytes)."""
        raw = public_key if isinstance(public_key, bytes) else _raw_public(public_key)
        return cls(name, key_id(name, raw), raw)

    def verify(self, body: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (without the key ID) is this key's Ed25519 signature of ``body``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, body)
        except (InvalidSignature, ValueError):
            return False
        return True

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([ALG_ED25519]) + self.public_key)}"


def parse_verifier_key(text: str) -> NoteVerifier:
    """Parse ``<name>+<hex key ID>+<base64(0x01 ‖ public key)>``; the key ID must match the key."""
    parts = text.strip().split("+", 2)  # base64 may itself contain "+"
    if len(parts) != 3:
        raise NoteError("a verifier key is <name>+<key id>+<base64 key>")
    name, hex_id, b64 = parts
    if not re.fullmatch(r"[0-9a-f]{8}", hex_id):
        raise NoteError(f"the key ID {hex_id!r} is not 8 lowercase hex digits")
    try:
        raw = _b64decode_strict(b64)
    except ValueError as e:
        raise NoteError(f"verifier key: {e}") from e
    if len(raw) != 33 or raw[0] != ALG_ED25519:
        raise NoteError("only Ed25519 verifier keys (algorithm 0x01, 32 bytes) are supported")
    return NoteVerifier(name, bytes.fromhex(hex_id), raw[1:])


class Ed25519NoteSigner:
    """Signs note bodies with one Ed25519 key under a key name (for checkpoints: the log's origin)."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey | bytes) -> None:
        if not valid_key_name(name):
            raise NoteError(f"invalid key name {name!r}")
        if isinstance(private_key, bytes):
            private_key = Ed25519PrivateKey.from_private_bytes(private_key)
        self.name = name
        self._key = private_key
        self.public_key = _raw_public(private_key.public_key())
        self.key_id = key_id(name, self.public_key)
        self.verifier = NoteVerifier(name, self.key_id, self.public_key)

    @classmethod
    def from_signer_key(cls, text: str) -> Ed25519NoteSigner:
        """Parse ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 ‖ seed)>`` (sumdb/note's format)."""
        parts = text.strip().split("+", 4)  # base64 may itself contain "+"
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise NoteError("a signer key is PRIVATE+KEY+<name>+<key id>+<base64 seed>")
        try:
            raw = _b64decode_strict(parts[4])
        except ValueError as e:
            raise NoteError(f"signer key: {e}") from e
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise NoteError("only Ed25519 signer keys are supported")
        signer = cls(parts[2], raw[1:])
        if signer.key_id.hex() != parts[3]:
            raise NoteError("the signer key's ID does not match its key")
        return signer

    def signer_key(self) -> str:
        """The private key in sumdb/note's ``PRIVATE+KEY+…`` spelling (keep it secret)."""
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        seed = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{_b64(bytes([ALG_ED25519]) + seed)}"

    def verifier_key(self) -> str:
        """The public verifier key string auditors are given."""
        return str(self.verifier)

    def sign(self, body: str) -> str:
        """One signature line for ``body``, ending in a newline: ``— <name> <base64(id ‖ sig)>``."""
        signature = self._key.sign(_check_body(body))
        return f"{SIG_PREFIX}{self.name} {_b64(self.key_id + signature)}\n"


def sign_note(body: str, signers: Sequence[Ed25519NoteSigner] | Ed25519NoteSigner) -> str:
    """The signed note: ``body``, a blank line, one signature line per signer."""
    if isinstance(signers, Ed25519NoteSigner):
        signers = [signers]
    if not signers:
        raise NoteError("a signed note needs at least one signer")
    _check_body(body)
    return body + "\n" + "".join(s.sign(body) for s in signers)


def open_note(note: str | bytes, verifiers: Iterable[str | NoteVerifier]) -> tuple[str, list[str]]:
    """Check a signed note; returns its body and the names of the known keys that signed it.

    Raises ``NoteError`` when the note is malformed, when a known key's signature does not verify,
    or when no known key signed it. Signatures by keys not in ``verifiers`` are ignored.
    """
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for v in verifiers:
        parsed = parse_verifier_key(v) if isinstance(v, str) else v
        known[(parsed.name, parsed.key_id)] = parsed
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as e:
            raise NoteError("the note is not UTF-8") from e
    if _utf8(note) is None or _has_control(note, allow_newline=True):
        raise NoteError("the note has control characters or is not valid UTF-8")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("the note has no blank line before its signatures")
    body, sigs = note[: split + 1], note[split + 2 :]
    if not sigs or not sigs.endswith("\n"):
        raise NoteError("the note's signature block is empty or does not end in a newline")
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"the note has more than {MAX_SIGNATURES} signatures")
    body_bytes = body.encode("utf-8")
    verified: list[str] = []
    seen: set[tuple[str, bytes]] = set()
    for number, line in enumerate(lines, 1):
        if not line.startswith(SIG_PREFIX):
            raise NoteError(f"signature line {number} does not start with an em dash and a space")
        name, space, b64 = line[len(SIG_PREFIX) :].partition(" ")
        if not space or not valid_key_name(name) or not b64:
            raise NoteError(f"signature line {number} is not '— <key name> <base64>'")
        try:
            raw = _b64decode_strict(b64)
        except ValueError as e:
            raise NoteError(f"signature line {number}: {e}") from e
        if len(raw) < 5:
            raise NoteError(f"signature line {number} is too short")
        kid, signature = raw[:4], raw[4:]
        verifier = known.get((name, kid))
        if verifier is None or (name, kid) in seen:
            continue  # an unknown key (e.g. a witness), or a repeat of one already checked
        seen.add((name, kid))
        if not verifier.verify(body_bytes, signature):
            raise NoteError(f"the signature of known key {name!r} ({kid.hex()}) does not verify")
        if name not in verified:
            verified.append(name)
    if not verified:
        raise NoteError("no known key signed the note")
    return body, verified


# ---------------------------------------------------------------------- checkpoints


class Checkpoint(NamedTuple):
    """A parsed C2SP checkpoint body."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...]


def checkpoint_body(origin: str, size: int, root: bytes, extensions: Iterable[str] = ()) -> str:
    """The C2SP checkpoint text: origin, decimal size, base64 root, extension lines; ends in a newline."""
    ext = tuple(extensions)
    for line in (origin, *ext):
        if not isinstance(line, str) or not line or "\n" in line or _has_control(line) or _utf8(line) is None:
            raise CheckpointError(f"a checkpoint line is non-empty single-line text: {line!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 2**64:
        raise CheckpointError(f"the tree size {size!r} is not an unsigned 64-bit integer")
    if not isinstance(root, bytes) or len(root) != HASH_SIZE:
        raise CheckpointError(f"the root hash is {HASH_SIZE} bytes")
    return "\n".join((origin, str(size), _b64(root), *ext)) + "\n"


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a checkpoint body (as returned by ``open_note``) into origin, size, root, extensions."""
    if not isinstance(body, str) or not body.endswith("\n"):
        raise CheckpointError("a checkpoint ends in a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("a checkpoint has an origin, a tree size and a root hash line")
    origin, size_text, root_text, *ext = lines
    if any(not line for line in lines):
        raise CheckpointError("a checkpoint has no empty lines")
    if not _SIZE_RE.fullmatch(size_text) or int(size_text) >= 2**64:
        raise CheckpointError(f"the tree size {size_text!r} is not a decimal number without leading zeros")
    try:
        root = _b64decode_strict(root_text)
    except ValueError as e:
        raise CheckpointError(f"the root hash: {e}") from e
    if len(root) != HASH_SIZE:
        raise CheckpointError(f"the root hash is {len(root)} bytes, not {HASH_SIZE}")
    return Checkpoint(origin, int(size_text), root, tuple(ext))
