"""The audit log's Merkle tree read from SQL: proofs and roots in O(log n) indexed reads, nothing kept in memory.

``audit_leaves`` holds every leaf hash (level 0, by ``leaf_index``). ``audit_nodes`` holds the hash of
every complete, aligned subtree of ``2**level`` leaves for ``level >= MIN_LEVEL`` (``idx`` = its first
leaf ``>> level``), written in the transaction that appends the leaf completing it. Any root or proof
of an RFC 9162 tree is a fold of complete subtrees (``projections.merkle``): those of ``MIN_LEVEL`` and
above are one indexed read each, the smaller ones are hashed from at most ``2**MIN_LEVEL`` leaves of
one block. A proof at a million leaves reads ~20 node rows and ≤ 2 blocks of 16 leaves, in 2 queries.

Interior nodes are derived data: the full check (``AuditLog.check``) recomputes each from the
leaves; a signed checkpoint is only made over nodes that prove consistent with the previous one.
Synchronous, like ``projections.sql``: call it on the store executor, inside the caller's transaction
where it writes.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from typing import Final

from projections.merkle import CompactRange, Subtree, Tree, frontier, node_hash
from projections.sql import Database

log = logging.getLogger(__name__)
MIN_LEVEL: Final = 4
"""Subtrees of 16 leaves and more are stored: one node row per 8 leaves, and a block of 16 leaf reads."""
BLOCK: Final = 1 << MIN_LEVEL
PAGE: Final = 4096  # leaves read per query when streaming (a multiple of BLOCK)
MIGRATION_BATCH: Final = 65_536
"""Leaves whose nodes are computed per transaction when an older store is brought up to date."""


class IntegrityError(RuntimeError):
    """The audit log or the event store does not match what was signed."""


class TreeError(IntegrityError):
    """The stored tree lacks a leaf or a node it should have."""


class StoredTree(Tree):
    """The audit log's RFC 9162 tree over ``audit_leaves`` and ``audit_nodes`` (a ``SubtreeSource``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ reading

    @property
    def size(self) -> int:
        """How many leaves the log holds (``MAX`` of the index, never a count)."""
        row = self.db.fetchone("SELECT MAX(leaf_index) FROM audit_leaves")
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def subtree_hashes(self, subtrees: Collection[Subtree]) -> dict[Subtree, bytes]:
        """Each complete subtree's hash: stored nodes in one query, smaller ones from their leaf blocks."""
        found: dict[Subtree, bytes] = {}
        high = sorted({(level, start >> level) for level, start in subtrees if level >= MIN_LEVEL})
        if high:
            rows = self.db.fetchall(
                "SELECT level, idx, hash FROM audit_nodes WHERE "
                + " OR ".join(["(level = ? AND idx = ?)"] * len(high)),
                [value for key in high for value in key],
            )
            for level, idx, digest in rows:
                found[(int(level), int(idx) << int(level))] = bytes(digest)
        low = [(level, start) for level, start in subtrees if level < MIN_LEVEL]
        if low:
            leaves = self._blocks({start >> MIN_LEVEL for _, start in low})
            for level, start in low:
                found[(level, start)] = _hash_of(leaves, level, start)
        missing = [s for s in subtrees if s not in found]
        if missing:
            level, start = min(missing)
            msg = f"the audit tree has no hash for the {1 << level} leaves from {start}"
            raise TreeError(msg)
        return found

    def _blocks(self, blocks: Collection[int]) -> dict[int, bytes]:
        """The leaf hashes of whole blocks of ``BLOCK`` leaves (the last one may be short)."""
        ordered = sorted(blocks)
        rows = self.db.fetchall(
            "SELECT leaf_index, leaf_hash FROM audit_leaves WHERE "
            + " OR ".join(["(leaf_index >= ? AND leaf_index < ?)"] * len(ordered)),
            [bound for block in ordered for bound in (block * BLOCK, (block + 1) * BLOCK)],
        )
        return {int(index): bytes(digest) for index, digest in rows}

    def leaf_hashes(self, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
        """``(leaf_index, leaf_hash)`` from ``start`` to ``stop`` (excluded), streamed a page at a time."""
        while start < stop:
            rows = self.db.fetchall(
                "SELECT leaf_index, leaf_hash FROM audit_leaves WHERE leaf_index >= ? AND leaf_index < ? "
                "ORDER BY leaf_index",
                (start, min(stop, start + PAGE)),
            )
            for index, digest in rows:
                yield int(index), bytes(digest)
            start += PAGE

    def compact_range(self, size: int) -> CompactRange:
        """The complete subtrees covering ``[0, size)``, ready to take the next leaf (O(log n) reads)."""
        subtrees = frontier(size)
        hashes = self.subtree_hashes(subtrees) if subtrees else {}
        return CompactRange(size, [hashes[s] for s in subtrees])

    # ------------------------------------------------------------------ writing (inside a transaction)

    def covered(self) -> int:
        """Leaves ``[0, covered)`` have all their stored nodes: the end of the last stored 16-leaf node."""
        row = self.db.fetchone("SELECT MAX(idx) FROM audit_nodes WHERE level = ?", (MIN_LEVEL,))
        return 0 if row is None or row[0] is None else (int(row[0]) + 1) * BLOCK

    def add_nodes(self, first: int, leaf_hashes: list[bytes]) -> None:
        """Store the nodes that the leaves from ``first`` (just inserted) complete."""
        compact = self.compact_range(first)
        rows: list[tuple[int, int, bytes]] = []
        for leaf in leaf_hashes:
            for level, start, digest in compact.append(leaf):
                if level >= MIN_LEVEL:
                    rows.append((level, start >> level, digest))
        if rows:
            self.db.executemany("INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", rows)

    def complete(self, limit: int | None = None) -> int:
        """Store the nodes of leaves written without them (a store from before ``audit_nodes``), streaming,
        at most ``limit`` leaves' worth (rounded to whole blocks); returns how many leaves were covered."""
        start, size = self.covered(), self.size
        stop = size if limit is None else min(size, start + max(BLOCK, limit // BLOCK * BLOCK))
        if stop - start < BLOCK:
            return 0  # nothing but the short last block, which completes no stored node
        compact = self.compact_range(start)
        rows: list[tuple[int, int, bytes]] = []
        expected = start
        for index, digest in self.leaf_hashes(start, stop):
            if index != expected:
                msg = f"leaf {expected} is missing from the audit log"
                raise TreeError(msg)
            expected += 1
            for level, first, node in compact.append(digest):
                if level >= MIN_LEVEL:
                    rows.append((level, first >> level, node))
            if len(rows) >= PAGE:
                self.db.executemany("INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", rows)
                rows.clear()
        if rows:
            self.db.executemany("INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", rows)
        return stop - start


def _hash_of(leaves: dict[int, bytes], level: int, start: int) -> bytes:
    """The hash of the complete subtree of ``2**level`` leaves from ``start``, from its leaf hashes."""
    if level == 0:
        try:
            return leaves[start]
        except KeyError:
            msg = f"leaf {start} is missing from the audit log"
            raise TreeError(msg) from None
    half = 1 << (level - 1)
    return node_hash(_hash_of(leaves, level - 1, start), _hash_of(leaves, level - 1, start + half))


def lock_leaves(db: Database) -> None:
    """Inside a transaction: one appender (or checkpoint signer, or migration batch) at a time.

    SQLite's ``BEGIN IMMEDIATE`` already serialises writers; on PostgreSQL two followers would
    otherwise both read the old position and the second would fail on the unique constraints.
    Plain reads are not blocked.
    """
    if db.dialect == "postgres":
        db.execute("LOCK TABLE audit_leaves IN EXCLUSIVE MODE")


def complete_in_batches(db: Database, batch: int = MIGRATION_BATCH) -> int:
    """Compute the stored nodes of leaves written before ``audit_nodes`` existed (decision 0029), ``batch``
    leaves per transaction so that commands keep committing meanwhile; how many leaves were covered."""
    tree = StoredTree(db)
    done = 0
    while True:
        with db.transaction():
            lock_leaves(db)
            covered = tree.complete(limit=batch)
        if not covered:
            return done
        done += covered
        log.info("audit tree nodes computed", extra={"leaves": done})
