"""RFC 9162 (Certificate Transparency v2) Merkle trees: hashes, proofs and their verification.

Pure functions and an in-memory tree, no I/O. Definitions (RFC 9162 §2.1):

* leaf hash ``SHA-256(0x00 ‖ d)``, interior node ``SHA-256(0x01 ‖ left ‖ right)``;
* ``MTH({})`` is ``SHA-256("")`` (``EMPTY_ROOT``); for ``n > 1`` leaves the list splits at ``k``, the
  largest power of two smaller than ``n``: ``MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n]))``;
* an inclusion proof is ``PATH(m, D[n])`` (§2.1.3.1), a consistency proof ``PROOF(m, D[n])`` for
  ``0 < m ≤ n`` (§2.1.4.1), both listed from the bottom of the tree up;
* ``verify_inclusion`` and ``verify_consistency`` follow §2.1.3.2 and §2.1.4.2 step by step.

Every hash a root or a proof needs is a fold of *complete subtrees* (``Subtree``: ``2**level`` leaves from
an aligned ``start``). ``root``, ``inclusion_proof`` and ``consistency_proof`` first list the complete
subtrees they need, ask a ``SubtreeSource`` for all of them at once, then fold: the in-memory
``MerkleTree`` below is one source, ``projections.audit_tree.StoredTree`` (hashes in SQL) another, and
both give the same bytes because they share this code.

``MerkleTree`` works over leaf *hashes*. The leaves are append-only: a leaf once read is never
expected to change, which is what makes its cache of complete (power-of-two, aligned) subtree hashes
sound. Every hash of an RFC 9162 tree is built from such complete subtrees plus at most one "ragged"
node per level on the right edge, so after the first pass a root or a proof costs O(log² n) hash
operations at worst and never rehashes the whole tree.

Edge cases, chosen to match RFC 9162 and the transparency-dev test vectors:

* ``verify_inclusion`` rejects ``index >= size`` (so every proof against the empty tree);
* ``verify_consistency`` rejects ``size1 > size2`` and ``size1 == 0`` (RFC 9162 defines consistency
  proofs only for ``0 < m``: the empty tree commits to nothing, so a "proof" from it proves nothing);
  for ``size1 == size2`` it accepts exactly an empty proof with ``root1 == root2``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Protocol, overload

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "MerkleTree",
    "Subtree",
    "SubtreeSource",
    "Tree",
    "consistency_proof",
    "frontier",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "root_of_prefix",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH of the empty list: SHA-256 of the empty string."""


def leaf_hash(data: bytes) -> bytes:
    """The RFC 9162 leaf hash ``SHA-256(0x00 ‖ data)``."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 interior node hash ``SHA-256(0x01 ‖ left ‖ right)``."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


Subtree = tuple[int, int]
"""``(level, start)``: the complete subtree of ``2**level`` leaves from ``start`` (a multiple of ``2**level``)."""


class SubtreeSource(Protocol):
    """Where the hashes of complete subtrees come from (memory, a table)."""

    def subtree_hashes(self, subtrees: Collection[Subtree]) -> Mapping[Subtree, bytes]:
        """The hash of each of ``subtrees`` (level 0 is the leaf hash itself)."""
        ...


def _needed(start: int, end: int, out: set[Subtree]) -> None:
    """Add the complete subtrees ``MTH(D[start:end])`` is folded from (``end > start``)."""
    n = end - start
    if n & (n - 1) == 0 and start % n == 0:
        out.add((n.bit_length() - 1, start))
        return
    k = _split(n)
    _needed(start, start + k, out)
    _needed(start + k, end, out)


def _mth(start: int, end: int, hashes: Mapping[Subtree, bytes]) -> bytes:
    """``MTH(D[start:end])`` folded from the complete subtrees ``_needed`` listed."""
    n = end - start
    if n & (n - 1) == 0 and start % n == 0:
        return hashes[(n.bit_length() - 1, start)]
    k = _split(n)
    return node_hash(_mth(start, start + k, hashes), _mth(start + k, end, hashes))


def _fold(source: SubtreeSource, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """``MTH`` of each range, with one request to ``source`` for every complete subtree they need."""
    needed: set[Subtree] = set()
    for start, end in ranges:
        _needed(start, end, needed)
    hashes = source.subtree_hashes(needed) if needed else {}
    return [_mth(start, end, hashes) for start, end in ranges]


def frontier(size: int) -> list[Subtree]:
    """The complete subtrees covering ``[0, size)``, largest (leftmost) first: a ``CompactRange``'s hashes."""
    subtrees: list[Subtree] = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            subtrees.append((level, start))
            start += 1 << level
    return subtrees


def root(source: SubtreeSource, size: int) -> bytes:
    """``MTH`` of the first ``size`` leaves of ``source``; ``EMPTY_ROOT`` for none."""
    return EMPTY_ROOT if size == 0 else _fold(source, [(0, size)])[0]


def inclusion_proof(source: SubtreeSource, index: int, size: int) -> list[bytes]:
    """``PATH(index, D[size])`` (RFC 9162 §2.1.3.1), bottom-up; requires ``0 <= index < size``."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        msg = f"leaf index {index!r} is not in a tree of size {size}"
        raise ValueError(msg)
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return _fold(source, ranges)


def consistency_proof(source: SubtreeSource, size1: int, size2: int) -> list[bytes]:
    """``PROOF(size1, D[size2])`` (RFC 9162 §2.1.4.1), bottom-up; requires ``0 < size1 <= size2``.

    ``size1 == size2`` gives the empty proof. ``size1 == 0`` is refused: RFC 9162 defines no
    consistency proof from the empty tree, and ``verify_consistency`` rejects it.
    """
    if isinstance(size1, bool) or not isinstance(size1, int) or not 0 < size1 <= size2:
        msg = f"a consistency proof needs 0 < size1 <= size2, got {size1!r} and {size2}"
        raise ValueError(msg)
    ranges: list[tuple[int, int]] = []
    start, end, m, complete = 0, size2, size1, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                ranges.append((start, end))
            break
        k = _split(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            complete = False
    ranges.reverse()
    return _fold(source, ranges)


class Tree:
    """Roots and proofs of a tree of ``size`` leaves, from its ``subtree_hashes`` (a ``SubtreeSource``)."""

    @property
    def size(self) -> int:
        """How many leaves the tree holds now."""
        raise NotImplementedError

    def subtree_hashes(self, subtrees: Collection[Subtree]) -> Mapping[Subtree, bytes]:
        """The hash of each complete subtree."""
        raise NotImplementedError

    def _check_size(self, size: int | None) -> int:
        current = self.size
        if size is None:
            return current
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= current:
            msg = f"tree size {size!r} is not between 0 and {current}"
            raise ValueError(msg)
        return size

    def root(self, size: int | None = None) -> bytes:
        """``MTH`` of the first ``size`` leaves (all of them by default); ``EMPTY_ROOT`` for none."""
        return root(self, self._check_size(size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """``PATH(index, D[size])`` (RFC 9162 §2.1.3.1), bottom-up; requires ``0 <= index < size``."""
        return inclusion_proof(self, index, self._check_size(size))

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """``PROOF(size1, D[size2])`` (RFC 9162 §2.1.4.1), bottom-up; requires ``0 < size1 <= size2``."""
        return consistency_proof(self, size1, self._check_size(size2))


class _CallableLeaves(Sequence[bytes]):
    """A read-only sequence view of ``get_leaf(i)`` for ``i < size()``."""

    def __init__(self, get_leaf: Callable[[int], bytes], size: Callable[[], int]) -> None:
        self._get = get_leaf
        self._size = size

    def __len__(self) -> int:
        return self._size()

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(index, slice):
            return [self._get(i) for i in range(*index.indices(len(self)))]
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._get(index)


class MerkleTree(Tree):
    """An RFC 9162 Merkle tree over leaf hashes, with memoised complete subtrees.

    ``leaves`` is any sequence of 32-byte leaf hashes (a list the caller keeps appending to, or a
    lazy view of a store); the tree size is ``len(leaves)`` at the time of each call. With no
    argument the tree holds its own list and grows with ``append``/``extend``.
    """

    def __init__(self, leaves: Sequence[bytes] | None = None) -> None:
        self._own: list[bytes] | None = None
        if leaves is None:
            self._own = []
            leaves = self._own
        self._leaves: Sequence[bytes] = leaves
        # (level, start) -> hash of the complete subtree of 2**level leaves starting at ``start``
        # (``start`` a multiple of 2**level). Level 0 is the leaf itself and is not cached.
        self._cache: dict[tuple[int, int], bytes] = {}

    @classmethod
    def from_callable(cls, get_leaf: Callable[[int], bytes], size: Callable[[], int] | int) -> MerkleTree:
        """A tree whose leaf hash ``i`` is ``get_leaf(i)``; ``size`` is a number or a callable."""
        size_fn: Callable[[], int] = size if callable(size) else (lambda: size)
        return cls(_CallableLeaves(get_leaf, size_fn))

    # ------------------------------------------------------------------ growing

    def append(self, leaf: bytes) -> int:
        """Append one leaf hash (only for a tree that owns its leaves); returns its index."""
        if self._own is None:
            msg = "this tree reads a caller's sequence: append to that sequence instead"
            raise TypeError(msg)
        if not _is_hash(leaf):
            msg = f"a leaf hash is {HASH_SIZE} bytes"
            raise ValueError(msg)
        self._own.append(leaf)
        return len(self._own) - 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append several leaf hashes."""
        for leaf in leaves:
            self.append(leaf)

    def __len__(self) -> int:
        return len(self._leaves)

    @property
    def size(self) -> int:
        """How many leaves the tree holds now."""
        return len(self._leaves)

    # ------------------------------------------------------------------ hashing

    def _leaf(self, index: int) -> bytes:
        value = self._leaves[index]
        if not _is_hash(value):
            msg = f"leaf {index} is not a {HASH_SIZE}-byte hash"
            raise ValueError(msg)
        return value

    def _complete(self, level: int, start: int) -> bytes:
        """The hash of the complete subtree of ``2**level`` leaves from ``start`` (memoised)."""
        if level == 0:
            return self._leaf(start)
        key = (level, start)
        cached = self._cache.get(key)
        if cached is None:
            half = 1 << (level - 1)
            cached = node_hash(self._complete(level - 1, start), self._complete(level - 1, start + half))
            self._cache[key] = cached
        return cached

    def subtree_hashes(self, subtrees: Collection[Subtree]) -> dict[Subtree, bytes]:
        """The hash of each complete subtree (``SubtreeSource``), memoised."""
        return {(level, start): self._complete(level, start) for level, start in subtrees}

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        if not 0 <= index < len(self._leaves):
            raise IndexError(index)
        return self._leaf(index)


# ---------------------------------------------------------------------- incremental roots


class CompactRange:
    """The roots of the complete subtrees covering ``[0, size)``: O(log n) memory, O(1) amortised append.

    ``root()`` equals ``MerkleTree(leaves).root()`` for the leaves appended so far, so a log can keep
    its current root while it grows without holding every leaf.
    """

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            msg = f"a range of {size} leaves has {size.bit_count()} complete subtrees, not {len(hashes)}"
            raise ValueError(msg)
        self.size = size
        self.hashes: list[bytes] = list(hashes)  # complete subtree roots, largest (leftmost) first

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add the next leaf hash; returns the interior subtrees it completed as ``(level, start, hash)``."""
        if not _is_hash(leaf):
            msg = f"a leaf hash is {HASH_SIZE} bytes"
            raise ValueError(msg)
        node = leaf
        size = self.size
        level = 0
        completed: list[tuple[int, int, bytes]] = []
        while size & 1:  # every trailing 1 bit is a complete subtree of the same height to merge
            node = node_hash(self.hashes.pop(), node)
            size >>= 1
            level += 1
            completed.append((level, (self.size >> level) << level, node))
        self.hashes.append(node)
        self.size += 1
        return completed

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Add several leaf hashes."""
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """``MTH`` of the leaves so far: the complete subtrees folded from the right."""
        if not self.hashes:
            return EMPTY_ROOT
        node = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            node = node_hash(left, node)
        return node


def root_of_prefix(leaves: Iterable[bytes]) -> bytes:
    """``MTH`` of an iterable of leaf hashes, streamed through a ``CompactRange``."""
    compact = CompactRange()
    compact.extend(leaves)
    return compact.root()


# ---------------------------------------------------------------------- verification


def _equal(a: bytes, b: bytes) -> bool:
    return isinstance(a, bytes) and isinstance(b, bytes) and hmac.compare_digest(a, b)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """True when ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree of ``size`` with ``root``.

    RFC 9162 §2.1.3.2; every proof element and the leaf hash must be 32 bytes.
    """
    if (
        isinstance(index, bool)
        or isinstance(size, bool)
        or not isinstance(index, int)
        or not isinstance(size, int)
    ):
        return False
    if not 0 <= index < size:
        return False
    if not _is_hash(leaf) or not all(_is_hash(p) for p in proof):
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and _equal(r, root)


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> bool:
    """True when ``proof`` shows the tree ``(size1, root1)`` is a prefix of ``(size2, root2)``.

    RFC 9162 §2.1.4.2, plus its boundaries: ``size1 > size2`` and ``size1 == 0`` are rejected;
    ``size1 == size2`` needs an empty proof and identical roots.
    """
    if (
        isinstance(size1, bool)
        or isinstance(size2, bool)
        or not isinstance(size1, int)
        or not isinstance(size2, int)
    ):
        return False
    if size1 <= 0 or size1 > size2:
        return False
    if size1 == size2:
        return len(proof) == 0 and _equal(root1, root2)
    if not proof or not _is_hash(root1) or not _is_hash(root2) or not all(_is_hash(p) for p in proof):
        return False
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: the old root is itself a node of the new tree
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
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and _equal(fr, root1) and _equal(sr, root2)
