#!/usr/bin/env python3
"""birthcert_verify — check birthcert's audit log proofs offline, with nothing but this file.

Usage::

    python3 birthcert_verify.py bundle BUNDLE.json --key VERIFIER_KEY [--event-bytes FILE ...]
    python3 birthcert_verify.py consistency OLD_CHECKPOINT NEW_CHECKPOINT PROOF.json --key VERIFIER_KEY
    python3 birthcert_verify.py vectors DIR

``--key`` takes the log's verifier key (``<name>+<key id>+<base64 key>``, as printed by
``birthcert audit key``); give it more than once during a key rotation. The key must come from a
trusted channel: the bundle's own ``verifier_keys`` field is never used to verify it. When a leaf of
the bundle carries ``event_state`` (the event's stored bytes, base64), their SHA-256 must equal the
leaf's ``state_sha256``: a store altered after the event was logged fails.

Exit status: 0 only when everything verified; 1 when any check failed (each failure is printed in
plain words, with the leaf index and the check); 2 for a command-line usage error.

Why this file duplicates code. An auditor must be able to check the log without trusting or even
installing birthcert, so this is ONE file that needs only the Python standard library and the
``cryptography`` package (for Ed25519). It deliberately re-implements, from the specifications, the
few small algorithms it needs instead of importing ``projections.merkle``/``projections.signed_note``:
RFC 9162 leaf/node hashes and proof verification (§2.1.3.2, §2.1.4.2), C2SP signed-note
verification with Ed25519 keys, C2SP tlog-checkpoint parsing, and RFC 8785 canonical JSON of a leaf.
A second, independent implementation also catches a bug in either one: birthcert's tests run this
file against bundles built with the service's own code.

Canonical JSON. A leaf is a flat JSON object of strings and integers. For such values RFC 8785 (JCS)
equals ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` encoded as
UTF-8: keys are ASCII (so code-point and UTF-16 ordering agree), strings escape exactly ``"``, ``\\``
and control characters (``\\b \\f \\n \\r \\t``, others as lowercase ``\\u00xx``), and integers of at
most 2**53 - 1 in magnitude print as ECMAScript prints them. This file checks those assumptions and
rejects anything else (floats, booleans, nulls, nested values, larger integers, duplicate keys).

The proof bundle format (``birthcert-proof-bundle/1``) is described in ``tools/README.md``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:  # pragma: no cover - depends on the auditor's machine
    sys.stderr.write(
        "birthcert_verify needs the 'cryptography' package: python3 -m pip install cryptography\n"
    )
    raise SystemExit(2) from None

BUNDLE_FORMAT = "birthcert-proof-bundle/1"
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
SIG_PREFIX = "\u2014 "  # EM DASH and a space
MAX_SIGNATURES = 100
MAX_SAFE_INTEGER = 2**53 - 1
LEAF_FIELDS = {
    "position": int,
    "aggregate_id": str,
    "version": int,
    "topic": str,
    "recorded_at": str,
    "actor": str,
    "state_sha256": str,
}


class VerifyError(Exception):
    """A check that failed; the message says which, in plain words."""


# ---------------------------------------------------------------------- RFC 9162 Merkle tree


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 ‖ data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: is leaf hash ``leaf`` at ``index`` of the tree (``size``, ``root``)?"""
    if not 0 <= index < size or not _is_hash(leaf) or not all(_is_hash(p) for p in proof):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and _same(r, root)


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> bool:
    """RFC 9162 §2.1.4.2: is the tree (``size1``, ``root1``) a prefix of (``size2``, ``root2``)?

    ``size1 == 0`` is rejected (RFC 9162 defines consistency proofs for 0 < size1 only);
    ``size1 == size2`` needs an empty proof and identical roots.
    """
    if size1 <= 0 or size1 > size2:
        return False
    if size1 == size2:
        return not proof and _same(root1, root2)
    if not proof or not _is_hash(root1) or not _is_hash(root2) or not all(_is_hash(p) for p in proof):
        return False
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and _same(fr, root1) and _same(sr, root2)


# ---------------------------------------------------------------------- C2SP signed notes, checkpoints


def b64decode(text: object, what: str) -> bytes:
    """Strict standard base64 (canonical spelling only)."""
    if not isinstance(text, str):
        raise VerifyError(f"{what} is not a base64 string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise VerifyError(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise VerifyError(f"{what} is not canonical base64")
    return raw


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() or ord(c) < 0x20 for c in name)


class Verifier:
    """An Ed25519 note verifier key ``<name>+<hex key id>+<base64(0x01 ‖ public key)>``."""

    def __init__(self, text: str) -> None:
        parts = text.strip().split("+", 2)  # the base64 key may itself contain "+"
        if len(parts) != 3:
            raise VerifyError(f"the verifier key {text!r} is not <name>+<key id>+<base64 key>")
        self.name, hex_id, b64 = parts
        if not _valid_name(self.name) or not re.fullmatch(r"[0-9a-f]{8}", hex_id):
            raise VerifyError(f"the verifier key {text!r} has an invalid name or key id")
        raw = b64decode(b64, "the verifier key's public key")
        if len(raw) != 33 or raw[0] != 0x01:
            raise VerifyError("the verifier key is not an Ed25519 key (algorithm 0x01, 32 bytes)")
        self.public_key = raw[1:]
        self.key_id = hashlib.sha256(self.name.encode() + b"\n" + raw).digest()[:4]
        if self.key_id.hex() != hex_id:
            raise VerifyError(f"the verifier key's id {hex_id} does not match its name and public key")

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


def open_note(note: str, verifiers: Sequence[Verifier], what: str) -> tuple[str, list[str]]:
    """C2SP signed-note: the body and the names of known keys whose signatures verified."""
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise VerifyError(f"{what}: the note contains control characters")
    split = note.rfind("\n\n")
    if split < 0:
        raise VerifyError(f"{what}: the note has no blank line between its text and its signatures")
    body, sigs = note[: split + 1], note[split + 2 :]
    if not sigs or not sigs.endswith("\n"):
        raise VerifyError(f"{what}: the note's signature lines are missing or do not end in a newline")
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise VerifyError(f"{what}: the note has more than {MAX_SIGNATURES} signatures")
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[str] = []
    seen: set[tuple[str, bytes]] = set()
    for number, line in enumerate(lines, 1):
        name, space, b64 = line[len(SIG_PREFIX) :].partition(" ")
        if not line.startswith(SIG_PREFIX) or not space or not _valid_name(name) or not b64:
            raise VerifyError(f"{what}: signature line {number} is not '— <key name> <base64>'")
        raw = b64decode(b64, f"{what}: signature line {number}")
        if len(raw) < 5:
            raise VerifyError(f"{what}: signature line {number} is too short")
        verifier = known.get((name, raw[:4]))
        if verifier is None or (name, raw[:4]) in seen:
            continue  # a key we were not given (e.g. a witness), or a repeated signature: ignored
        seen.add((name, raw[:4]))
        if not verifier.verify(body.encode("utf-8"), raw[4:]):
            raise VerifyError(
                f"{what}: the signature by key {name}+{raw[:4].hex()} does NOT verify (the text was changed?)"
            )
        verified.append(f"{name}+{raw[:4].hex()}")
    if not verified:
        given = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in verifiers)
        raise VerifyError(f"{what}: not signed by the given key ({given})")
    return body, verified


def parse_checkpoint(body: str, what: str) -> tuple[str, int, bytes]:
    """C2SP tlog-checkpoint: origin line, decimal tree size, base64 root hash, extension lines."""
    lines = body[:-1].split("\n") if body.endswith("\n") else []
    if len(lines) < 3 or not all(lines):
        raise VerifyError(f"{what}: the note text is not a checkpoint (origin, size, root hash lines)")
    origin, size_text, root_text = lines[:3]
    if not re.fullmatch(r"0|[1-9][0-9]*", size_text) or int(size_text) >= 2**64:
        raise VerifyError(f"{what}: the tree size {size_text!r} is not a decimal number")
    root = b64decode(root_text, f"{what}: the root hash")
    if len(root) != HASH_SIZE:
        raise VerifyError(f"{what}: the root hash is not {HASH_SIZE} bytes")
    return origin, int(size_text), root


def open_checkpoint(
    note: object, verifiers: Sequence[Verifier], what: str
) -> tuple[str, int, bytes, list[str]]:
    if not isinstance(note, str):
        raise VerifyError(f"{what}: the checkpoint is not text")
    body, names = open_note(note, verifiers, what)
    origin, size, root = parse_checkpoint(body, what)
    return origin, size, root, names


# ---------------------------------------------------------------------- canonical JSON


def _reject_constant(name: str) -> NoReturn:
    raise VerifyError(f"JSON constant {name} is not allowed")


def _reject_float(text: str) -> NoReturn:
    raise VerifyError(f"the number {text} is not an integer (no floats in birthcert JSON)")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise VerifyError(f"the key {key!r} appears twice in one JSON object")
        obj[key] = value
    return obj


def load_json(text: str, what: str) -> Any:
    """Parse JSON, refusing floats, NaN/Infinity and duplicate keys."""
    try:
        return json.loads(
            text, parse_float=_reject_float, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates
        )
    except VerifyError as e:
        raise VerifyError(f"{what}: {e}") from None
    except ValueError as e:
        raise VerifyError(f"{what} is not valid JSON ({e})") from None


def canonical_leaf(leaf: object) -> bytes:
    """RFC 8785 canonical JSON of a leaf object, after checking it is one of ours."""
    if not isinstance(leaf, dict):
        raise VerifyError("the leaf is not a JSON object")
    missing = sorted(set(LEAF_FIELDS) - set(leaf))
    extra = sorted(set(leaf) - set(LEAF_FIELDS))
    if missing or extra:
        raise VerifyError(
            f"the leaf's fields are wrong (missing: {missing or 'none'}, unexpected: {extra or 'none'})"
        )
    for key, kind in LEAF_FIELDS.items():
        value = leaf[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise VerifyError(f"the leaf's {key!r} is not a JSON {'integer' if kind is int else 'string'}")
        if isinstance(value, int) and abs(value) > MAX_SAFE_INTEGER:
            raise VerifyError(f"the leaf's {key!r} is too large for RFC 8785 canonical JSON")
    try:
        return json.dumps(leaf, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise VerifyError("the leaf holds a string that is not valid Unicode") from None


# ---------------------------------------------------------------------- commands


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise VerifyError(f"cannot read {what} {path}: {e}") from None


def _proof(value: object, what: str) -> list[bytes]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise VerifyError(f"{what} is not a list of base64 hashes")
    return [b64decode(h, f"{what}[{i}]") for i, h in enumerate(value)]


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise VerifyError(f"{what} is not a non-negative integer")
    return value


def check_event_state(value: object, leaf: dict[str, Any]) -> str | None:
    """The bundle's copy of the event as the store holds it, against the leaf's ``state_sha256``.

    Returns what is wrong, or None. ``null`` means the store no longer has an event at the leaf's
    position (deleted); other bytes mean it was altered after the leaf was signed.
    """
    if value is None:
        return "the event store no longer holds an event at this position (deleted since it was logged)"
    try:
        state = b64decode(value, "its event_state")
    except VerifyError as e:
        return str(e)
    digest = hashlib.sha256(state).hexdigest()
    if not hmac.compare_digest(digest, leaf["state_sha256"]):
        return (
            f"the stored event's bytes hash to {digest}, not to the leaf's state_sha256 "
            f"{leaf['state_sha256']} (the event store was altered after this event was logged)"
        )
    return None


def check_bundle(path: str, verifiers: Sequence[Verifier], event_files: Sequence[str]) -> list[str]:
    """Every check of a proof bundle; returns the failures (an empty list: all verified)."""
    bundle = load_json(_read(path, "the bundle"), "the bundle")
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise VerifyError(f"the bundle is not a {BUNDLE_FORMAT!r} JSON object")
    origin, size, root, names = open_checkpoint(bundle.get("checkpoint"), verifiers, "checkpoint")
    print(f"checkpoint: origin {origin!r}, tree size {size}, root {base64.b64encode(root).decode()}")
    print(f"checkpoint: signature verified (key {', '.join(names)})")
    failures: list[str] = []
    if bundle.get("origin") != origin:
        failures.append(
            f"the bundle's origin {bundle.get('origin')!r} is not the checkpoint's origin {origin!r}"
        )
    if bundle.get("tree_size") != size:
        failures.append(
            f"the bundle's tree_size {bundle.get('tree_size')!r} is not the checkpoint's tree size {size}"
        )
    leaves = bundle.get("leaves")
    if not isinstance(leaves, list):
        raise VerifyError("the bundle's 'leaves' is not a list")
    if not leaves:
        failures.append("the bundle holds no leaves: nothing was proven")
    state_hashes: dict[str, list[int]] = {}
    for n, entry in enumerate(leaves):
        label = f"leaf #{n}"
        try:
            if not isinstance(entry, dict):
                raise VerifyError("it is not a JSON object")
            index = _int(entry.get("index"), "its index")
            label = f"leaf index {index}"
            data = canonical_leaf(entry.get("leaf"))
            computed = leaf_hash(data)
            claimed = b64decode(entry.get("leaf_hash"), "its leaf_hash")
            if not _same(computed, claimed):
                raise VerifyError(
                    "the leaf's canonical JSON hashes to "
                    f"{base64.b64encode(computed).decode()}, not to the bundle's leaf_hash {entry.get('leaf_hash')} "
                    "(the leaf's content was changed)"
                )
            if index >= size:
                raise VerifyError(f"the index is outside the checkpoint's tree of size {size}")
            proof = _proof(entry.get("inclusion_proof"), "its inclusion_proof")
            if not verify_inclusion(computed, index, size, proof, root):
                raise VerifyError(
                    f"the inclusion proof does not lead to the checkpoint's root (tree size {size})"
                )
        except VerifyError as e:
            failures.append(f"{label}: {e}")
            continue
        leaf = entry["leaf"]
        state_hashes.setdefault(leaf["state_sha256"], []).append(index)
        print(
            f"leaf index {index}: included — position {leaf['position']}, aggregate {leaf['aggregate_id']}, "
            f"version {leaf['version']}, {leaf['topic']}, recorded {leaf['recorded_at']}"
        )
        if "event_state" in entry:
            problem = check_event_state(entry["event_state"], leaf)
            if problem:
                failures.append(f"{label} (position {leaf['position']}): {problem}")
            else:
                print(f"leaf index {index}: the stored event's bytes match its state_sha256")
    for file in event_files:
        try:
            digest = hashlib.sha256(Path(file).read_bytes()).hexdigest()
        except OSError as e:
            failures.append(f"event bytes {file}: cannot read ({e})")
            continue
        matches = state_hashes.get(digest)
        if matches:
            print(
                f"event bytes {file}: SHA-256 matches the state_sha256 of leaf index {', '.join(map(str, matches))}"
            )
        else:
            failures.append(f"event bytes {file}: SHA-256 {digest} matches no verified leaf's state_sha256")
    return failures


def check_consistency(
    old_path: str, new_path: str, proof_path: str, verifiers: Sequence[Verifier]
) -> list[str]:
    """Both checkpoints' signatures and the consistency proof between them."""
    origin1, size1, root1, _ = open_checkpoint(
        _read(old_path, "the old checkpoint"), verifiers, "old checkpoint"
    )
    origin2, size2, root2, _ = open_checkpoint(
        _read(new_path, "the new checkpoint"), verifiers, "new checkpoint"
    )
    print(f"old checkpoint: signature verified, tree size {size1}")
    print(f"new checkpoint: signature verified, tree size {size2}")
    doc = load_json(_read(proof_path, "the proof"), "the proof")
    if isinstance(doc, list):
        doc = {"proof": doc}
    if not isinstance(doc, dict):
        raise VerifyError("the proof file is not a JSON object with a 'proof' list")
    proof = _proof(doc.get("proof"), "the proof")
    failures = []
    if origin1 != origin2:
        failures.append(f"the checkpoints are of different logs ({origin1!r} and {origin2!r})")
    for key, expected in (("from", size1), ("to", size2)):
        if key in doc and doc[key] != expected:
            failures.append(
                f"the proof is for tree size {doc[key]!r} as '{key}', but the checkpoint has {expected}"
            )
    for key, expected_root in (("root1", root1), ("root2", root2)):
        if key in doc and doc[key] != base64.b64encode(expected_root).decode():
            failures.append(f"the proof file's {key} is not the root hash of the corresponding checkpoint")
    if size1 > size2:
        failures.append(f"the old checkpoint (size {size1}) is larger than the new one (size {size2})")
    elif size1 == 0:
        # The empty tree is a prefix of every tree; RFC 9162 has no proof for it, so none is expected.
        if not _same(root1, EMPTY_ROOT) or proof:
            failures.append(
                "the old checkpoint is of size 0 but its root is not the empty tree's hash or a proof was given"
            )
    elif not verify_consistency(size1, size2, proof, root1, root2):
        failures.append(f"the consistency proof from tree size {size1} to {size2} does NOT verify")
    return failures


def _vector_b64(value: object) -> bytes:
    return base64.b64decode(str(value), validate=True)


def run_vectors(directory: str) -> tuple[int, int]:
    """Run RFC 9162 test vector files (transparency-dev/merkle format); returns (passed, failed)."""
    passed = failed = 0
    files = sorted(Path(directory).rglob("*.json"))
    for file in files:
        name = file.relative_to(directory)
        try:
            case = json.loads(file.read_text(encoding="utf-8"))
            want_err = bool(case["wantErr"])
            try:
                b64 = _vector_b64
                proof = [b64(h) for h in case.get("proof") or []]
                if "leafIdx" in case:
                    ok = verify_inclusion(
                        b64(case["leafHash"]),
                        int(case["leafIdx"]),
                        int(case["treeSize"]),
                        proof,
                        b64(case["root"]),
                    )
                else:
                    ok = verify_consistency(
                        int(case["size1"]), int(case["size2"]), proof, b64(case["root1"]), b64(case["root2"])
                    )
            except (binascii.Error, ValueError):
                ok = False  # undecodable input never verifies
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"FAIL {name}: not a test vector ({e})")
            failed += 1
            continue
        if ok != want_err:
            passed += 1
        else:
            failed += 1
            print(
                f"FAIL {name}: {'verified, but it must be rejected' if want_err else 'rejected, but it must verify'}"
            )
    return passed, failed


def _fail(failures: list[str]) -> int:
    for failure in failures:
        print(f"FAILED: {failure}")
    if failures:
        print(f"NOT VERIFIED: {len(failures)} check(s) failed")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="birthcert_verify.py", description="Verify birthcert audit log proofs offline."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bundle", help="verify a proof bundle against its signed checkpoint")
    b.add_argument("bundle", help="the proof bundle JSON file")
    b.add_argument("--key", action="append", required=True, help="a verifier key of the log (repeatable)")
    b.add_argument(
        "--event-bytes",
        action="append",
        default=[],
        metavar="FILE",
        help="stored event bytes to match against state_sha256",
    )
    c = sub.add_parser("consistency", help="verify that a newer checkpoint extends an older one")
    c.add_argument("old_checkpoint")
    c.add_argument("new_checkpoint")
    c.add_argument("proof", help="JSON: {'proof': [base64 hashes], optional 'from', 'to', 'root1', 'root2'}")
    c.add_argument("--key", action="append", required=True, help="a verifier key of the log (repeatable)")
    v = sub.add_parser("vectors", help="run the RFC 9162 test vector files of a directory")
    v.add_argument("directory")
    args = parser.parse_args(argv)

    if args.command == "vectors":
        if not Path(args.directory).is_dir():
            print(f"FAILED: {args.directory} is not a directory")
            return 1
        passed, failed = run_vectors(args.directory)
        print(f"{passed} passed, {failed} failed")
        return 0 if failed == 0 and passed > 0 else 1
    try:
        verifiers = [Verifier(k) for k in args.key]
        if args.command == "bundle":
            failures = check_bundle(args.bundle, verifiers, args.event_bytes)
            if not failures:
                print("VERIFIED: every leaf is included in the signed checkpoint")
        else:
            failures = check_consistency(args.old_checkpoint, args.new_checkpoint, args.proof, verifiers)
            if not failures:
                print("VERIFIED: the new checkpoint's tree extends the old one (append-only)")
    except VerifyError as e:
        failures = [str(e)]
    return _fail(failures)


if __name__ == "__main__":
    sys.exit(main())
