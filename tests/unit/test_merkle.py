"""RFC 9162 Merkle trees: the published test vectors, a naive reference, exhaustive round trips, tampering."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_of_prefix,
    verify_consistency,
    verify_inclusion,
)

# Vendored unchanged from ../shared/testdata (transparency-dev/merkle, Apache-2.0): always present.
VECTORS = Path(__file__).resolve().parents[1] / "data" / "rfc9162"
MAX = 300
LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(2048)]
TREE = MerkleTree(LEAVES)


# ---------------------------------------------------------------------- a naive reference (RFC 9162 §2.1, literally)


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return node_hash(ref_mth(d[:k]), ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


# ---------------------------------------------------------------------- vectors


def _vector_files() -> list[Path]:
    return sorted(VECTORS.rglob("*.json"))


def _b64(value: Any) -> bytes:
    return base64.b64decode(value or "")


def _run_vector(case: dict[str, Any]) -> bool:
    proof = [_b64(h) for h in case["proof"] or []]
    if "leafIdx" in case:
        return verify_inclusion(
            _b64(case["leafHash"]), case["leafIdx"], case["treeSize"], proof, _b64(case["root"])
        )
    return verify_consistency(case["size1"], case["size2"], proof, _b64(case["root1"]), _b64(case["root2"]))


def test_vector_counts() -> None:
    cases = [json.loads(f.read_text()) for f in _vector_files()]
    assert sum(1 for c in cases if not c["wantErr"]) == 12
    assert sum(1 for c in cases if c["wantErr"]) == 184


def test_every_vector() -> None:
    wrong = []
    for file in _vector_files():
        case = json.loads(file.read_text())
        if _run_vector(case) == case["wantErr"]:
            wrong.append(f"{file.relative_to(VECTORS)}: wantErr={case['wantErr']}")
    assert not wrong, "\n".join(wrong)


def test_happy_path_vectors_match_generated_proofs() -> None:
    """The vectors' trees are over the RFC 6962 reference leaves; our generator reproduces their proofs."""
    inputs = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
    ]
    inputs.append(b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f")
    tree = MerkleTree([leaf_hash(d) for d in inputs])
    checked = 0
    for file in _vector_files():
        case = json.loads(file.read_text())
        if case["wantErr"] or "additional" in file.parts or "single-entry" in file.parts:
            continue
        proof = [_b64(h) for h in case["proof"] or []]
        if "leafIdx" in case:
            assert tree.root(case["treeSize"]) == _b64(case["root"])
            assert tree.inclusion_proof(case["leafIdx"], case["treeSize"]) == proof
        else:
            assert tree.root(case["size1"]) == _b64(case["root1"])
            assert tree.root(case["size2"]) == _b64(case["root2"])
            assert tree.consistency_proof(case["size1"], case["size2"]) == proof
        checked += 1
    assert checked == 10


def test_hasher_vectors() -> None:
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert leaf_hash(b"L123456").hex() == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    assert (
        node_hash(b"N123", b"N456").hex()
        == "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MerkleTree().root() == EMPTY_ROOT == root_of_prefix([])


# ---------------------------------------------------------------------- generation against the reference


def test_roots_match_reference_and_compact_range() -> None:
    compact = CompactRange()
    for size in range(MAX + 1):
        assert TREE.root(size) == ref_mth(LEAVES[:size]), size
        assert compact.root() == TREE.root(size), size
        compact.append(LEAVES[size])


def test_proofs_match_reference_for_small_trees() -> None:
    for size in range(1, 41):
        d = LEAVES[:size]
        for i in range(size):
            assert TREE.inclusion_proof(i, size) == ref_path(i, d)
        for m in range(1, size + 1):
            assert TREE.consistency_proof(m, size) == ref_subproof(m, d, True)


def test_inclusion_round_trip_every_index_every_size() -> None:
    for size in range(1, MAX + 1):
        root = TREE.root(size)
        for i in range(size):
            proof = TREE.inclusion_proof(i, size)
            assert verify_inclusion(LEAVES[i], i, size, proof, root), (i, size)


def test_consistency_round_trip_all_pairs_to_64_and_sampled_to_300() -> None:
    rng = random.Random(9162)
    pairs = [(m, n) for n in range(1, 65) for m in range(1, n + 1)]
    pairs += [(m, n) for n in range(65, MAX + 1) for m in {1, n - 1, n, *rng.sample(range(1, n + 1), 12)}]
    for m, n in pairs:
        proof = TREE.consistency_proof(m, n)
        assert verify_consistency(m, n, proof, TREE.root(m), TREE.root(n)), (m, n)
        if m < n:
            assert not verify_consistency(m, n, proof, TREE.root(m), TREE.root(n - 1)), (m, n)


def _flips(proof: list[bytes]) -> list[list[bytes]]:
    """Every proof with one byte of one hash changed."""
    out = []
    for i, h in enumerate(proof):
        for j in range(len(h)):
            changed = bytearray(h)
            changed[j] ^= 0x01 << (j % 8)
            out.append([*proof[:i], bytes(changed), *proof[i + 1 :]])
    return out


@pytest.mark.parametrize(
    ("index", "size"), [(0, 2), (5, 8), (6, 7), (12, 13), (100, 300), (299, 300), (255, 256)]
)
def test_tampering_any_inclusion_byte_fails(index: int, size: int) -> None:
    proof, root = TREE.inclusion_proof(index, size), TREE.root(size)
    assert verify_inclusion(LEAVES[index], index, size, proof, root)
    for bad in _flips(proof):
        assert not verify_inclusion(LEAVES[index], index, size, bad, root)
    for bad_leaf in _flips([LEAVES[index]]):
        assert not verify_inclusion(bad_leaf[0], index, size, proof, root)
    for bad_root in _flips([root]):
        assert not verify_inclusion(LEAVES[index], index, size, proof, bad_root[0])
    assert not verify_inclusion(LEAVES[index], index, size, proof[:-1], root)
    assert not verify_inclusion(LEAVES[index], index, size, [*proof, proof[0]], root)
    # the size is bound by the root: the proof does not prove the leaf in the next tree
    assert not verify_inclusion(LEAVES[index], index, size + 1, proof, TREE.root(size + 1))
    assert not verify_inclusion(LEAVES[index], size, size, proof, root)


@pytest.mark.parametrize(
    ("m", "n"), [(1, 2), (2, 5), (3, 7), (4, 8), (6, 8), (7, 300), (128, 300), (299, 300)]
)
def test_tampering_any_consistency_byte_fails(m: int, n: int) -> None:
    proof, r1, r2 = TREE.consistency_proof(m, n), TREE.root(m), TREE.root(n)
    assert verify_consistency(m, n, proof, r1, r2)
    for bad in _flips(proof):
        assert not verify_consistency(m, n, bad, r1, r2)
    for bad in _flips([r1]):
        assert not verify_consistency(m, n, proof, bad[0], r2)
    for bad in _flips([r2]):
        assert not verify_consistency(m, n, proof, r1, bad[0])
    assert not verify_consistency(m, n, proof[:-1], r1, r2)
    assert not verify_consistency(m, n, [*proof, proof[0]], r1, r2)
    assert not verify_consistency(n, m, proof, r2, r1)


def test_edge_cases() -> None:
    r1 = TREE.root(1)
    # equal sizes: empty proof and identical roots only
    assert TREE.consistency_proof(5, 5) == []
    assert verify_consistency(5, 5, [], TREE.root(5), TREE.root(5))
    assert not verify_consistency(5, 5, [], TREE.root(5), TREE.root(4))
    assert not verify_consistency(5, 5, [r1], TREE.root(5), TREE.root(5))
    # size1 == 0 is not a consistency proof RFC 9162 defines
    assert not verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    assert not verify_consistency(0, 3, [], EMPTY_ROOT, TREE.root(3))
    with pytest.raises(ValueError):
        TREE.consistency_proof(0, 3)
    with pytest.raises(ValueError):
        TREE.consistency_proof(4, 3)
    # index >= size, the empty tree
    assert not verify_inclusion(LEAVES[3], 3, 3, [], TREE.root(3))
    assert not verify_inclusion(EMPTY_ROOT, 0, 0, [], EMPTY_ROOT)
    assert not verify_inclusion(LEAVES[0], -1, 3, [], TREE.root(3))
    assert verify_inclusion(LEAVES[0], 0, 1, [], r1)
    with pytest.raises(ValueError):
        TREE.inclusion_proof(3, 3)
    with pytest.raises(ValueError):
        TREE.root(len(LEAVES) + 1)
    # proof elements must be hashes
    assert not verify_inclusion(LEAVES[0], 0, 2, [LEAVES[1] + b"\x00"], TREE.root(2))


def test_growing_tree_and_callable_source() -> None:
    tree = MerkleTree()
    for i in range(70):
        assert tree.append(LEAVES[i]) == i
        assert tree.root() == TREE.root(i + 1)
    with pytest.raises(ValueError):
        tree.append(b"short")
    with pytest.raises(TypeError):
        TREE.append(LEAVES[0])
    reads: list[int] = []

    def get(i: int) -> bytes:
        reads.append(i)
        return LEAVES[i]

    lazy = MerkleTree.from_callable(get, 1000)
    assert lazy.root() == TREE.root(1000)
    first = len(reads)
    assert lazy.root(999) == TREE.root(999)
    assert lazy.inclusion_proof(500, 1000) == TREE.inclusion_proof(500, 1000)
    assert len(reads) - first < 50  # cached complete subtrees: no rehashing of the whole tree


def test_large_tree_proofs_are_cheap() -> None:
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(100_000)]
    tree = MerkleTree(leaves)
    root = tree.root()
    cache_size = len(tree._cache)
    for i in range(0, 100_000, 4999):
        assert verify_inclusion(leaves[i], i, 100_000, tree.inclusion_proof(i, 100_000), root)
        assert verify_consistency(
            i + 1, 100_000, tree.consistency_proof(i + 1, 100_000), tree.root(i + 1), root
        )
    assert len(tree._cache) - cache_size < 1000


# ---------------------------------------------------------------------- properties


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_property_inclusion(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, len(LEAVES)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    proof, root = TREE.inclusion_proof(index, size), TREE.root(size)
    assert verify_inclusion(LEAVES[index], index, size, proof, root)
    other = (
        data.draw(st.integers(0, size - 1).filter(lambda j: j != index), label="other") if size > 1 else None
    )
    if other is not None:
        assert not verify_inclusion(LEAVES[index], other, size, proof, root)
        assert not verify_inclusion(LEAVES[other], index, size, proof, root)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_property_consistency(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, len(LEAVES)), label="size2")
    m = data.draw(st.integers(1, n), label="size1")
    proof = TREE.consistency_proof(m, n)
    assert verify_consistency(m, n, proof, TREE.root(m), TREE.root(n))
    forged = [leaf_hash(b"forged %d" % i) for i in range(n)]
    if m < n:  # a different tree of the same size2 is not an extension of the first
        other = MerkleTree([*LEAVES[:m], *forged[m:n]]) if m < n - 1 else None
        if other is not None and data.draw(st.booleans()):
            assert not verify_consistency(m, n, proof, TREE.root(m), other.root(n))
        assert not verify_consistency(m, n, proof, MerkleTree(forged).root(m), TREE.root(n))
