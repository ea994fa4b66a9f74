"""The audit tree read from SQL (projections.audit_tree): the same bytes as the in-memory RFC 9162 tree.

Leaves are written straight into ``audit_leaves`` of a real SQLite database (the audit log's content
does not matter to the tree), their nodes by the same code the follower runs; every root and proof is
compared with ``MerkleTree``'s, which the RFC 9162 vectors pin (tests/unit/test_merkle.py). A store from
before ``audit_nodes`` gets its nodes in batches, resumably, and gives the same proofs afterwards.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from projections.audit_tree import BLOCK, StoredTree, TreeError
from projections.merkle import MerkleTree, verify_consistency, verify_inclusion
from projections.sql import Database

LEAVES = [hashlib.sha256(b"leaf %d" % i).digest() for i in range(300)]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open({"SQLITE_DBNAME": str(tmp_path / "tree.sqlite")})
    yield database
    database.close()


def insert_leaves(db: Database, first: int, hashes: list[bytes]) -> None:
    db.executemany(
        "INSERT INTO audit_leaves (leaf_index, position, aggregate_id, version, leaf_json, leaf_hash) "
        "VALUES (?, ?, 'a', ?, '{}', ?)",
        [(first + i, first + i + 1, first + i + 1, h) for i, h in enumerate(hashes)],
    )


def append(db: Database, tree: StoredTree, hashes: list[bytes]) -> None:
    """What ``AuditLog._append`` does with a page: the leaves, then the nodes they complete."""
    with db.transaction():
        first = tree.size
        insert_leaves(db, first, hashes)
        tree.add_nodes(first, hashes)


def test_roots_and_proofs_are_those_of_the_in_memory_tree_at_every_size(db: Database) -> None:
    tree, reference = StoredTree(db), MerkleTree(LEAVES)
    pages = [1, 2, 13, 16, 1, 31, 64, 100, 72]  # pages that start and end anywhere in a block
    grown = 0
    for page in pages:
        append(db, tree, LEAVES[grown : grown + page])
        grown += page
        assert tree.size == grown
        for size in range(max(1, grown - page), grown + 1):
            assert tree.root(size) == reference.root(size)
            for index in {0, size // 3, size // 2, size - 1}:
                proof = tree.inclusion_proof(index, size)
                assert proof == reference.inclusion_proof(index, size)
                assert verify_inclusion(LEAVES[index], index, size, proof, tree.root(size))
            for size1 in {1, size // 2 or 1, size - 1 or 1, size}:
                proof = tree.consistency_proof(size1, size)
                assert proof == reference.consistency_proof(size1, size)
                assert verify_consistency(size1, size, proof, tree.root(size1), tree.root(size))
    assert grown == len(LEAVES)
    # One node row per 8 leaves or so: only subtrees of 16 leaves and more are stored.
    row = db.fetchone("SELECT COUNT(*) FROM audit_nodes")
    assert row is not None and row[0] == sum(len(LEAVES) >> level for level in range(4, 9))
    with pytest.raises(ValueError):
        tree.inclusion_proof(300, 300)
    with pytest.raises(ValueError):
        tree.root(301)


def test_a_store_from_before_the_stored_tree_gets_its_nodes_in_batches(db: Database) -> None:
    with db.transaction():
        insert_leaves(db, 0, LEAVES[:250])  # leaves only, as a store written before audit_nodes
    tree, reference = StoredTree(db), MerkleTree(LEAVES)
    with pytest.raises(TreeError):
        tree.inclusion_proof(3, 250)
    done = []
    while True:
        with db.transaction():
            covered = tree.complete(limit=40)  # rounded down to whole blocks: 32 leaves a transaction
        if not covered:
            break
        done.append(covered)
    assert done == [32] * 7 + [26]  # the last batch takes the short last block along
    assert tree.covered() == 240
    for size in (17, 128, 249, 250):
        assert tree.root(size) == reference.root(size)
        assert tree.inclusion_proof(size - 1, size) == reference.inclusion_proof(size - 1, size)
        assert tree.consistency_proof(5, size) == reference.consistency_proof(5, size)
    append(db, tree, LEAVES[250:])  # and the follower carries on from there
    assert tree.root() == reference.root()


def test_stored_nodes_are_append_only(db: Database, tmp_path: Path) -> None:
    tree = StoredTree(db)
    append(db, tree, LEAVES[:BLOCK])
    conn = sqlite3.connect(tmp_path / "tree.sqlite", isolation_level=None)
    try:
        for statement in ("UPDATE audit_nodes SET hash = x'00'", "DELETE FROM audit_nodes"):
            with pytest.raises(sqlite3.DatabaseError, match="audit_nodes is append-only"):
                conn.execute(statement)
    finally:
        conn.close()
