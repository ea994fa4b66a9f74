"""tools/birthcert_verify.py, run as auditors run it: a subprocess over files, against our own proofs."""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from projections.merkle import MerkleTree, leaf_hash
from projections.signed_note import Ed25519NoteSigner, checkpoint_body, sign_note

ROOT_DIR = Path(__file__).resolve().parents[2]
TOOL = ROOT_DIR / "tools" / "birthcert_verify.py"
VECTORS = ROOT_DIR / "tests" / "data" / "rfc9162"  # vendored from ../shared/testdata, unchanged
ORIGIN = "birthcert.example/audit-log"
SIGNER = Ed25519NoteSigner(ORIGIN, bytes(range(32)))
KEY = SIGNER.verifier_key()
APP = "6f1c2d4e-0000-4000-8000-00000000000a"
OTHER = "6f1c2d4e-0000-4000-8000-00000000000b"


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def canonical(leaf: dict[str, Any]) -> bytes:
    return json.dumps(leaf, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_bytes(position: int) -> bytes:
    return f"encrypted event #{position} — 出生医学证明".encode()


def make_log(n: int = 37) -> tuple[list[dict[str, Any]], MerkleTree]:
    leaves = []
    versions = {APP: 0, OTHER: 0}
    for position in range(1, n + 1):
        aggregate = APP if position % 3 == 0 else OTHER
        versions[aggregate] += 1
        leaves.append(
            {
                "position": position,
                "aggregate_id": aggregate,
                "version": versions[aggregate],
                "topic": "domain.application:Application.Submitted",
                "recorded_at": f"2025-01-02T03:04:{position:02d}.000001+00:00",
                "actor": hashlib.sha256(b"actor %d" % (position % 4)).hexdigest() if position % 5 else "",
                "state_sha256": hashlib.sha256(event_bytes(position)).hexdigest(),
            }
        )
    return leaves, MerkleTree([leaf_hash(canonical(leaf)) for leaf in leaves])


def make_bundle(size: int | None = None, signer: Ed25519NoteSigner = SIGNER) -> dict[str, Any]:
    leaves, tree = make_log()
    size = len(leaves) if size is None else size
    note = sign_note(checkpoint_body(ORIGIN, size, tree.root(size)), [signer])
    return {
        "format": "birthcert-proof-bundle/1",
        "origin": ORIGIN,
        "checkpoint": note,
        "tree_size": size,
        "verifier_keys": [signer.verifier_key()],
        "leaves": [
            {
                "index": i,
                "leaf": leaf,
                "leaf_hash": base64.b64encode(leaf_hash(canonical(leaf))).decode(),
                "inclusion_proof": [base64.b64encode(h).decode() for h in tree.inclusion_proof(i, size)],
            }
            for i, leaf in enumerate(leaves[:size])
            if leaf["aggregate_id"] == APP
        ],
    }


def write(tmp_path: Path, name: str, doc: Any) -> Path:
    path = tmp_path / name
    path.write_text(
        doc if isinstance(doc, str) else json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    return path


def test_standalone_file_imports_only_stdlib_and_cryptography() -> None:
    tree = ast.parse(TOOL.read_text(encoding="utf-8"))
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert modules - {"__future__"} <= set(sys.stdlib_module_names) | {"cryptography"}, modules


def test_vectors_subcommand() -> None:
    result = run("vectors", VECTORS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "196 passed, 0 failed" in result.stdout.splitlines()


def test_vectors_subcommand_reports_a_wrong_expectation(tmp_path: Path) -> None:
    case = {"leafIdx": 0, "treeSize": 1, "root": "", "leafHash": "", "proof": None, "wantErr": False}
    write(tmp_path, "lie.json", case)
    result = run("vectors", tmp_path)
    assert result.returncode == 1
    assert "0 passed, 1 failed" in result.stdout.splitlines()
    assert "FAIL lie.json: rejected, but it must verify" in result.stdout


def test_bundle_round_trip(tmp_path: Path) -> None:
    bundle = make_bundle()
    path = write(tmp_path, "bundle.json", bundle)
    events = [write(tmp_path, f"event-{p}.bin", "") for p in (3, 6)]
    for p, file in zip((3, 6), events, strict=True):
        file.write_bytes(event_bytes(p))
    result = run(
        "bundle", path, "--key", KEY, "--event-bytes", events[0], "--event-bytes", events[1], cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(bundle["leaves"]) == 12
    assert result.stdout.count(": included") == 12
    assert "event bytes" in result.stdout and "matches the state_sha256 of leaf index 2" in result.stdout
    assert "VERIFIED" in result.stdout


def test_bundle_at_a_smaller_checkpoint_and_key_rotation(tmp_path: Path) -> None:
    new = Ed25519NoteSigner(ORIGIN, bytes(range(1, 33)))
    bundle = make_bundle(size=20)
    _, tree = make_log()
    bundle["checkpoint"] = sign_note(checkpoint_body(ORIGIN, 20, tree.root(20)), [SIGNER, new])
    path = write(tmp_path, "bundle.json", bundle)
    assert run("bundle", path, "--key", new.verifier_key()).returncode == 0


def _tamper_leaf(b: dict[str, Any]) -> None:
    b["leaves"][1]["leaf"]["topic"] = "domain.application:Application.Approved"


def _tamper_proof(b: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(b["leaves"][2]["inclusion_proof"][1]))
    raw[0] ^= 0xFF
    b["leaves"][2]["inclusion_proof"][1] = base64.b64encode(bytes(raw)).decode()


def _other_key(b: dict[str, Any]) -> None:
    b["checkpoint"] = make_bundle(signer=Ed25519NoteSigner(ORIGIN, b"\x07" * 32))["checkpoint"]


def _root_in_note(b: dict[str, Any]) -> None:
    lines = b["checkpoint"].split("\n")
    lines[2] = base64.b64encode(hashlib.sha256(b"another root").digest()).decode()
    b["checkpoint"] = "\n".join(lines)


def _root_resigned(b: dict[str, Any]) -> None:
    b["checkpoint"] = sign_note(
        checkpoint_body(ORIGIN, 37, hashlib.sha256(b"another root").digest()), [SIGNER]
    )


def _float(b: dict[str, Any]) -> None:
    b["leaves"][0]["leaf"]["version"] = 1.0


def _index(b: dict[str, Any]) -> None:
    b["leaves"][3]["index"] += 1


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (_tamper_leaf, "leaf index 5: the leaf's canonical JSON hashes to"),
        (_tamper_proof, "leaf index 8: the inclusion proof does not lead to the checkpoint's root"),
        (_other_key, "checkpoint: not signed by the given key"),
        (_root_in_note, "checkpoint: the signature by key"),
        (_root_resigned, "the inclusion proof does not lead to the checkpoint's root"),
        (_float, "is not an integer"),
        (_index, "leaf index 12: the inclusion proof does not lead"),
    ],
)
def test_tampered_bundles_fail(tmp_path: Path, tamper: Any, expected: str) -> None:
    bundle = make_bundle()
    tamper(bundle)
    result = run("bundle", write(tmp_path, "bundle.json", bundle), "--key", KEY)
    assert result.returncode == 1, result.stdout
    assert expected in result.stdout
    assert "NOT VERIFIED" in result.stdout


def test_unmatched_event_bytes_and_empty_bundle_fail(tmp_path: Path) -> None:
    path = write(tmp_path, "bundle.json", make_bundle())
    stray = tmp_path / "stray.bin"
    stray.write_bytes(b"not an event of this application")
    result = run("bundle", path, "--key", KEY, "--event-bytes", stray)
    assert result.returncode == 1
    assert "stray.bin: SHA-256" in result.stdout and "matches no verified leaf" in result.stdout
    empty = make_bundle()
    empty["leaves"] = []
    result = run("bundle", write(tmp_path, "empty.json", empty), "--key", KEY)
    assert result.returncode == 1 and "nothing was proven" in result.stdout


def test_consistency_subcommand(tmp_path: Path) -> None:
    _, tree = make_log()
    old = write(tmp_path, "old.txt", sign_note(checkpoint_body(ORIGIN, 13, tree.root(13)), [SIGNER]))
    new = write(tmp_path, "new.txt", sign_note(checkpoint_body(ORIGIN, 37, tree.root(37)), [SIGNER]))
    proof = [base64.b64encode(h).decode() for h in tree.consistency_proof(13, 37)]
    good = write(tmp_path, "proof.json", {"from": 13, "to": 37, "proof": proof})
    result = run("consistency", old, new, good, "--key", KEY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VERIFIED" in result.stdout

    bad_proof = [proof[0], base64.b64encode(b"\x00" * 32).decode(), *proof[2:]]
    bad = write(tmp_path, "bad.json", {"proof": bad_proof})
    result = run("consistency", old, new, bad, "--key", KEY)
    assert result.returncode == 1
    assert "the consistency proof from tree size 13 to 37 does NOT verify" in result.stdout

    swapped = run("consistency", new, old, good, "--key", KEY)
    assert swapped.returncode == 1 and "FAILED" in swapped.stdout


def test_in_process_main_matches(tmp_path: Path) -> None:
    """``birthcert audit verify`` loads the file and calls ``main``: same result without a subprocess."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("birthcert_verify_under_test", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = write(tmp_path, "bundle.json", make_bundle())
    assert module.main(["bundle", str(path), "--key", KEY]) == 0
    assert (
        module.main(["bundle", str(path), "--key", Ed25519NoteSigner(ORIGIN, b"\x09" * 32).verifier_key()])
        == 1
    )
    bad = make_bundle()
    bad["leaves"][0]["leaf"]["extra"] = "field"
    assert module.main(["bundle", str(write(tmp_path, "bad.json", bad)), "--key", KEY]) == 1
    dup = write(
        tmp_path, "dup.json", json.dumps(make_bundle())[:-1] + ', "format": "birthcert-proof-bundle/1"}'
    )
    assert module.main(["bundle", str(dup), "--key", KEY]) == 1
    # a verifier key whose base64 contains "+" (split at the first two "+" only)
    plus = next(
        s
        for s in (Ed25519NoteSigner(ORIGIN, bytes([i]) * 32) for i in range(256))
        if "+" in s.verifier_key()[len(ORIGIN) + 10 :]
    )
    path = write(tmp_path, "plus.json", make_bundle(signer=plus))
    assert module.main(["bundle", str(path), "--key", plus.verifier_key()]) == 0
