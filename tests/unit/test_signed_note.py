"""C2SP signed notes and checkpoints: the sumdb/note known-answer vector, round trips, rejections."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.merkle import EMPTY_ROOT, leaf_hash
from projections.signed_note import (
    Checkpoint,
    CheckpointError,
    Ed25519NoteSigner,
    NoteError,
    NoteVerifier,
    checkpoint_body,
    key_id,
    open_note,
    parse_checkpoint,
    parse_verifier_key,
    sign_note,
)

# golang.org/x/mod/sumdb/note's test key and its signature of this text (note_test.go).
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
PETER_NOTE = (
    PETER_TEXT
    + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

ORIGIN = "birthcert.example/audit-log"
ROOT = leaf_hash(b"root")


def signer(name: str = ORIGIN, seed: int = 1) -> Ed25519NoteSigner:
    return Ed25519NoteSigner(name, bytes([seed]) * 32)


def test_known_answer_sumdb_note_vector() -> None:
    peter = Ed25519NoteSigner.from_signer_key(PETER_SKEY)
    assert peter.key_id.hex() == "c74f20a3"
    assert peter.verifier_key() == PETER_VKEY
    assert peter.signer_key() == PETER_SKEY
    assert sign_note(PETER_TEXT, [peter]) == PETER_NOTE
    assert open_note(PETER_NOTE, [PETER_VKEY]) == (PETER_TEXT, ["PeterNeumann"])
    assert open_note(PETER_NOTE.encode(), [parse_verifier_key(PETER_VKEY)])[0] == PETER_TEXT
    v = parse_verifier_key(PETER_VKEY)
    assert (v.name, v.key_id.hex(), str(v)) == ("PeterNeumann", "c74f20a3", PETER_VKEY)


def test_key_id_is_sha256_of_name_newline_alg_key() -> None:
    s = signer()
    assert s.key_id == key_id(ORIGIN, s.public_key)
    encoded = base64.b64encode(b"\x01" + s.public_key).decode()
    assert s.verifier_key() == f"{ORIGIN}+{s.key_id.hex()}+{encoded}"
    assert (
        NoteVerifier.from_public_key(
            ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32).public_key()
        )
        == s.verifier
    )


def test_checkpoint_round_trip() -> None:
    s = signer()
    body = checkpoint_body(ORIGIN, 42, ROOT, ["ext one", "ext two"])
    assert body == f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\next one\next two\n"
    note = sign_note(body, [s])
    assert note.startswith(body + "\n— " + ORIGIN + " ")
    opened, names = open_note(note, [s.verifier_key()])
    assert (opened, names) == (body, [ORIGIN])
    assert parse_checkpoint(opened) == Checkpoint(ORIGIN, 42, ROOT, ("ext one", "ext two"))
    origin, size, root, ext = parse_checkpoint(checkpoint_body(ORIGIN, 0, EMPTY_ROOT))
    assert (origin, size, root, ext) == (ORIGIN, 0, EMPTY_ROOT, ())


def test_key_rotation_two_signatures() -> None:
    old, new = signer(seed=1), signer(seed=2)
    note = sign_note(checkpoint_body(ORIGIN, 7, ROOT), [old, new])
    assert note.count("\n\n— ") == 1 and note.count("\n— ") == 2
    assert open_note(note, [old.verifier_key()])[1] == [ORIGIN]
    assert open_note(note, [new.verifier_key()])[1] == [ORIGIN]
    assert open_note(note, [old.verifier_key(), new.verifier_key()])[1] == [ORIGIN]
    witness = signer("witness.example", seed=3)
    cosigned = note + witness.sign(checkpoint_body(ORIGIN, 7, ROOT))
    assert open_note(cosigned, [new.verifier_key(), witness.verifier_key()])[1] == [ORIGIN, "witness.example"]


def test_unknown_keys_are_ignored_but_one_known_key_is_required() -> None:
    s, other = signer(seed=1), signer(seed=9)
    note = sign_note(checkpoint_body(ORIGIN, 7, ROOT), [other, s])
    assert open_note(note, [s.verifier_key()])[1] == [ORIGIN]
    with pytest.raises(NoteError, match="no known key"):
        open_note(sign_note(checkpoint_body(ORIGIN, 7, ROOT), [other]), [s.verifier_key()])
    with pytest.raises(NoteError, match="no known key"):
        open_note(note, [])


def test_a_bad_signature_from_a_known_key_rejects_the_note() -> None:
    s, t = signer(seed=1), signer("other.example", seed=2)
    body = checkpoint_body(ORIGIN, 7, ROOT)
    forged_line = s.sign(checkpoint_body(ORIGIN, 8, ROOT))  # a real signature, of another body
    note = sign_note(body, [t]) + forged_line
    with pytest.raises(NoteError, match="does not verify"):
        open_note(note, [s.verifier_key(), t.verifier_key()])


def _edit_sig(note: str) -> str:
    head, _, b64 = note.rstrip("\n").rpartition(" ")
    raw = bytearray(base64.b64decode(b64))
    raw[10] ^= 1
    return f"{head} {base64.b64encode(bytes(raw)).decode()}\n"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda n: n.replace("\n7\n", "\n8\n"), "does not verify"),  # edited body
        (_edit_sig, "does not verify"),  # edited signature
        (lambda n: n.replace(f"— {ORIGIN} ", "— someone.else "), "no known key"),  # wrong key name
        (lambda n: n.replace("\n\n", "\n"), "blank line"),  # missing blank line
        (lambda n: n + "trailing garbage\n", "em dash"),
        (lambda n: n + "trailing garbage", "newline"),
        (lambda n: n.rstrip("\n"), "newline"),
        (lambda n: n.replace("— ", "- "), "em dash"),
        (lambda n: n.replace("— ", "—"), "em dash"),
        (lambda n: n.replace("\n7\n", "\n7\r\n"), "control"),
        (lambda n: n.replace("=\n", "\n"), "base64"),  # non-canonical / unpadded base64
        (lambda n: n.rstrip("\n") + " \n", "base64"),
        (lambda n: n + "\n", "empty"),
        (lambda n: n + "— x AAAA\n", "too short"),
        (lambda n: n + f"— {ORIGIN}\n", "key name"),
        (lambda n: n.split("\n\n")[0] + "\n\n", "empty"),
    ],
)
def test_malformed_or_tampered_notes_are_rejected(edit: object, message: str) -> None:
    s = signer()
    note = sign_note(checkpoint_body(ORIGIN, 7, ROOT), [s])
    assert callable(edit)
    with pytest.raises(NoteError, match=message):
        open_note(edit(note), [s.verifier_key()])


def test_too_many_signatures() -> None:
    s = signer()
    body = checkpoint_body(ORIGIN, 7, ROOT)
    note = sign_note(body, [s] * 101)
    with pytest.raises(NoteError, match="more than 100"):
        open_note(note, [s.verifier_key()])
    assert open_note(sign_note(body, [s] * 100), [s.verifier_key()])[1] == [ORIGIN]


def test_invalid_keys_and_names() -> None:
    s = signer()
    good = s.verifier_key()
    name, hex_id, b64 = good.split("+")
    alg2 = base64.b64encode(b"\x02" + s.public_key).decode()
    for bad in (
        f"{name}+{hex_id}",
        f"{name}+{hex_id.upper()}+{b64}",
        f"{name}+00000000+{b64}",  # key id does not match
        f"other+{hex_id}+{b64}",
        f"{name}+{hex_id}+{alg2}",
        f"{name}+{hex_id}+{b64[:-4]}",
        f"+{hex_id}+{b64}",
    ):
        with pytest.raises(NoteError):
            parse_verifier_key(bad)
    for bad_name in ("", "has space", "has+plus", "tab\there", "nbsp\u00a0"):
        with pytest.raises(NoteError):
            Ed25519NoteSigner(bad_name, bytes(32))
    with pytest.raises(NoteError):
        Ed25519NoteSigner.from_signer_key(PETER_SKEY.replace("c74f20a3", "c74f20a4"))
    for bad_body in ("", "no newline", "bell\x07\n"):
        with pytest.raises(NoteError):
            s.sign(bad_body)
    with pytest.raises(NoteError):
        sign_note("x\n", [])


@pytest.mark.parametrize(
    "body",
    [
        f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}",  # no final newline
        f"{ORIGIN}\n42\n",
        f"{ORIGIN}\n042\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n-1\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n+4\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n４２\n{base64.b64encode(ROOT).decode()}\n",  # non-ASCII digits
        f"{ORIGIN}\n{2**64}\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n42\n{base64.b64encode(ROOT[:31]).decode()}\n",
        f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode().rstrip('=')}\n",
        f"\n42\n{base64.b64encode(ROOT).decode()}\n",
        f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}\n\n",  # empty extension line
    ],
)
def test_malformed_checkpoints(body: str) -> None:
    with pytest.raises(CheckpointError):
        parse_checkpoint(body)


def test_checkpoint_body_validation() -> None:
    for args in (
        ("", 1, ROOT),
        ("a\nb", 1, ROOT),
        (ORIGIN, -1, ROOT),
        (ORIGIN, True, ROOT),
        (ORIGIN, 1, ROOT[:5]),
    ):
        with pytest.raises(CheckpointError):
            checkpoint_body(*args)
    with pytest.raises(CheckpointError):
        checkpoint_body(ORIGIN, 1, ROOT, [""])


@settings(max_examples=50, deadline=None)
@given(
    origin=st.text(
        st.characters(blacklist_categories=["Cc", "Cs", "Zs", "Zl", "Zp"]), min_size=1, max_size=30
    ).filter(lambda s: "+" not in s and not any(c.isspace() for c in s)),
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    ext=st.lists(
        st.text(st.characters(blacklist_categories=["Cc", "Cs"]), min_size=1, max_size=20), max_size=3
    ),
)
def test_property_checkpoint_round_trip(origin: str, size: int, root: bytes, ext: list[str]) -> None:
    s = Ed25519NoteSigner(origin, bytes(32))
    body = checkpoint_body(origin, size, root, ext)
    opened, names = open_note(sign_note(body, [s]), [s.verifier_key()])
    assert names == [origin]
    assert parse_checkpoint(opened) == Checkpoint(origin, size, root, tuple(ext))


def test_verifier_keys_whose_base64_contains_plus() -> None:
    """The key string splits at its first two ``+`` only: standard base64 may contain ``+`` too."""
    seed = next(i for i in range(256) if "+" in signer(seed=i).verifier_key().split("+", 2)[2])
    s = signer(seed=seed)
    assert str(parse_verifier_key(s.verifier_key())) == s.verifier_key()
    assert open_note(sign_note(checkpoint_body(ORIGIN, 1, ROOT), [s]), [s.verifier_key()])[1] == [ORIGIN]


def test_note_bytes_must_be_utf8() -> None:
    s = signer()
    note = sign_note(checkpoint_body(ORIGIN, 1, ROOT), [s]).encode()
    with pytest.raises(NoteError, match="UTF-8"):
        open_note(b"\xff" + note, [s.verifier_key()])
