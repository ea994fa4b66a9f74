"""The verifiable log: one RFC 9162 Merkle leaf per stored event, in notification order.

A leaf is the RFC 8785 canonical JSON of ``{position, aggregate_id, version, topic, recorded_at,
actor, state_sha256}`` — ``actor`` a keyed HMAC pseudonym, ``state_sha256`` the SHA-256 of the
event's stored (encrypted) bytes — so a leaf carries no personal data, yet pins the exact bytes in
the store. Leaves and the tracking position are written in one transaction, exactly once. Signed
checkpoints (C2SP signed notes, Ed25519) commit to the tree; ``check()`` recomputes the log from
the event store and compares it with the last checkpoint, naming the first position that differs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import random
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.service import Applications
from projections.audit_tree import (
    MIN_LEVEL,
    PAGE,
    IntegrityError,
    StoredTree,
    TreeError,
    complete_in_batches,
    lock_leaves,
)
from projections.merkle import CompactRange, leaf_hash, verify_consistency, verify_inclusion
from projections.runner import Fence, Page
from projections.signed_note import Ed25519NoteSigner, checkpoint_body, open_note, parse_checkpoint, sign_note
from projections.sql import Database

log = logging.getLogger(__name__)

NAME = "audit_log"
JSON = dict[str, Any]
SAMPLE = 256
"""How many leaves under the checkpoint the start-up check compares with the store (at random, plus both ends)."""
__all__ = ["AuditLog", "CheckResult", "IntegrityError", "canonical", "pseudonym"]


def canonical(leaf: JSON) -> bytes:
    """RFC 8785 canonical JSON of a leaf (only strings and integers: sorted keys, no spaces, UTF-8)."""
    for value in leaf.values():
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            msg = "leaves hold only strings and integers"
            raise TypeError(msg)
    return json.dumps(leaf, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _recorded_at(event: Any) -> str:
    """The event's own time, in UTC."""
    stamp: datetime = event.timestamp
    return stamp.astimezone(UTC).isoformat()


def pseudonym(key: bytes, actor_id: str) -> str:
    """The actor as the log shows it: a keyed HMAC, so the log names nobody."""
    if not actor_id:
        return ""
    return hmac.new(key, actor_id.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class CheckResult:
    """What ``check()`` found: ``ok``, the checkpoint's size, and the first position that differs."""

    ok: bool
    checked_size: int
    message: str
    position: int | None = None


class AuditLog:
    """The verifiable log of every event: a ``View`` for ``LogFollower`` plus checkpoints and proofs."""

    def __init__(
        self,
        db: Database,
        applications: Applications,
        executor: Executor,
        *,
        pseudonym_key: bytes,
        origin: str,
        signing_keys: Sequence[Ed25519PrivateKey],
    ) -> None:
        if not signing_keys:
            msg = "the audit log needs a signing key"
            raise ValueError(msg)
        self.db = db
        self.applications = applications
        self.executor = executor
        self._pseudonym_key = pseudonym_key
        self.origin = origin
        self.signers = [Ed25519NoteSigner(origin, key) for key in signing_keys]
        self._tree = StoredTree(db)

    # ------------------------------------------------------------------ View

    async def position(self) -> int:
        """The last notification id turned into a leaf."""
        position: int = await self._run(self.db.position, NAME)
        return position

    # Every event is a leaf, in order: a failing event stops the log (readiness says so), never skipped.
    ordered = True

    async def apply(self, page: Page, start: int, end: int | None = None) -> bool:
        """Append one leaf per event of the page and the new position, in one transaction, if the log
        stands at ``start`` (False otherwise)."""
        if not page:
            return False  # nothing is ever skipped in the audit log
        applied: bool = await self._run(self._append, page, start)
        return applied

    async def reset(self) -> None:
        """The log is append-only: it is never reset (a rebuild would change nothing it holds)."""
        msg = "the audit log is append-only and cannot be rebuilt in place"
        raise RuntimeError(msg)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _append(self, page: Page, start: int) -> bool:
        first, last = page[0][0], page[-1][0]
        stored = {
            n.id: n
            for n in self.applications.recorder.select_notifications(start=first, limit=len(page), stop=last)
        }
        with self.db.transaction():
            self._lock_leaves()
            current = self.db.position(NAME)
            fresh = [(position, event) for position, event in page if position > current]
            if not fresh or not self.db.move(NAME, start, last):
                return False  # applied already, or the log moved on (another follower)
            self._tree.complete()  # leaves an older version wrote without their nodes (none after the start)
            first = self._tree.size
            rows = []
            for index, (position, event) in enumerate(fresh, start=first):
                leaf = self._leaf(stored[position], event)
                data = canonical(leaf)
                rows.append(
                    (index, position, leaf["aggregate_id"], leaf["version"], data.decode(), leaf_hash(data))
                )
            self.db.executemany(
                "INSERT INTO audit_leaves (leaf_index, position, aggregate_id, version, leaf_json, leaf_hash) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._tree.add_nodes(first, [row[5] for row in rows])
        return True

    def _leaf(self, notification: Any, event: Any) -> JSON:
        """The leaf of one stored event (``event`` is its decoded form, for the time and the actor)."""
        actor = getattr(event, "actor", None) or {}
        return {
            "position": int(notification.id),
            "aggregate_id": str(notification.originator_id),
            "version": int(notification.originator_version),
            "topic": notification.topic,
            "recorded_at": _recorded_at(event),
            "actor": pseudonym(self._pseudonym_key, str(actor.get("id") or "")),
            "state_sha256": hashlib.sha256(notification.state).hexdigest(),
        }

    def _lock_leaves(self) -> None:
        """Inside a transaction: one appender (or checkpoint signer) at a time (``lock_leaves``)."""
        lock_leaves(self.db)

    # ------------------------------------------------------------------ the tree, checkpoints, proofs

    def tree(self) -> StoredTree:
        """The Merkle tree over every leaf so far, read from SQL as proofs need it (nothing cached)."""
        return self._tree

    def size(self) -> int:
        """How many leaves the log holds."""
        return self._tree.size

    def complete_tree(self) -> int:
        """Compute the stored tree nodes of leaves written before ``audit_nodes`` existed (decision 0029),
        streamed, a batch per transaction; how many leaves were covered."""
        return complete_in_batches(self.db)

    def make_checkpoint(self, fence: Fence | None = None) -> JSON:
        """Sign a checkpoint of the current tree (if it grew since the last one); returns the latest.

        With a ``fence`` (the leader's checkpoint duty), signed and written only under its term: ``Fenced``,
        nothing written, once another process took the lease. Without one (an auditor's request, the CLI) any
        process may sign: one signer at a time (``lock_leaves``), over the tree every process shares.

        A new checkpoint is signed only over a tree that a consistency proof (read from the stored
        tree, verified here) shows extends the previous signed checkpoint, so a signature only ever
        covers history as it was signed before. Leaves or nodes altered under it (which the triggers
        refuse, but a database owner can drop them) are never laundered: altered nodes make the proof
        fail and nothing is signed; an altered leaf row stays outside every signed root, so its
        inclusion proofs fail and the full check names it.
        """
        with self.db.transaction():
            self._lock_leaves()  # before the lease's row, in the order the leaves' appender takes them
            self.db.check_fence(fence)
            tree = self._tree
            tree.complete()
            size = tree.size
            latest = self.latest_checkpoint()
            if latest is not None and latest["tree_size"] == size:
                return latest
            root = tree.root(size)
            if latest is not None:
                old_size, old_root = self._signed(latest)
                if old_size > size or (
                    old_size > 0
                    and not verify_consistency(
                        old_size, size, tree.consistency_proof(old_size, size), old_root, root
                    )
                ):
                    msg = (
                        f"the audit log's first {old_size} leaves no longer match signed checkpoint "
                        f"{old_size}: refusing to sign a new checkpoint"
                    )
                    raise IntegrityError(msg)
            note = sign_note(checkpoint_body(self.origin, size, root), self.signers)
            now = datetime.now(UTC).isoformat()
            exists = self.db.fetchone("SELECT 1 FROM audit_checkpoints WHERE tree_size = ?", (size,))
            if exists is None:
                self.db.execute(
                    "INSERT INTO audit_checkpoints (tree_size, root_hash, note, created_at) VALUES (?, ?, ?, ?)",
                    (size, root, note, now),
                )
        return self.latest_checkpoint() or {}

    def _signed(self, checkpoint: JSON) -> tuple[int, bytes]:
        """The size and root a stored checkpoint's note carries, once its signature verified."""
        try:
            body, _names = open_note(checkpoint["note"], self.verifier_keys())
            _origin, size, root, _ext = parse_checkpoint(body)
        except ValueError as e:  # NoteError, CheckpointError
            msg = f"checkpoint {checkpoint['tree_size']}: {e}"
            raise IntegrityError(msg) from None
        return size, root

    def unsigned_leaves(self) -> int:
        """Leaves past the latest signed checkpoint: what the next start-up check must verify in full."""
        row = self.db.fetchone("SELECT MAX(tree_size) FROM audit_checkpoints")
        return self._tree.size - (0 if row is None or row[0] is None else int(row[0]))

    def latest_checkpoint(self) -> JSON | None:
        """The most recent signed checkpoint."""
        row = self.db.fetchone(
            "SELECT tree_size, root_hash, note, created_at FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1"
        )
        return None if row is None else self._checkpoint(row)

    def checkpoint_of_size(self, size: int) -> JSON | None:
        """The signed checkpoint at exactly this size, if one was made."""
        row = self.db.fetchone(
            "SELECT tree_size, root_hash, note, created_at FROM audit_checkpoints WHERE tree_size = ?",
            (size,),
        )
        return None if row is None else self._checkpoint(row)

    def _checkpoint(self, row: tuple[Any, ...]) -> JSON:
        return {
            "tree_size": int(row[0]),
            "root_hash": base64.b64encode(bytes(row[1])).decode(),
            "note": row[2],
            "created_at": row[3],
            "verifier_keys": self.verifier_keys(),
        }

    def verifier_keys(self) -> list[str]:
        """The verifier key strings (C2SP note format) of the signing keys."""
        return [s.verifier_key() for s in self.signers]

    def leaves_of(self, aggregate_id: UUID | str) -> list[JSON]:
        """The leaves of one aggregate's events: index, position, version and the leaf JSON."""
        rows = self.db.fetchall(
            "SELECT leaf_index, position, version, leaf_json FROM audit_leaves WHERE aggregate_id = ? ORDER BY version",
            (str(aggregate_id),),
        )
        return [
            {"index": int(r[0]), "position": int(r[1]), "version": int(r[2]), "leaf": json.loads(r[3])}
            for r in rows
        ]

    def proof_bundle(self, aggregate_id: UUID | str) -> JSON:
        """A self-contained bundle: the aggregate's leaves with inclusion proofs against the latest checkpoint.

        Each leaf carries ``event_state``, the event exactly as the store holds it NOW (base64 of the
        encrypted bytes; ``null`` when the store no longer has an event at that position), so that
        the standalone verifier can compare it with the leaf's ``state_sha256``: a store altered
        after the leaf was signed fails verification even though the leaves themselves are intact.
        """
        try:
            checkpoint = self.make_checkpoint()
        except IntegrityError as error:
            # Never sign over altered leaves; hand out the last honest checkpoint, which the
            # proofs below will then fail to reach.
            log.error("proof bundle: %s", error)
            checkpoint = self.latest_checkpoint() or {}
        if not checkpoint:
            msg = "the audit log has no checkpoint yet"
            raise IntegrityError(msg)
        size = checkpoint["tree_size"]
        tree = self.tree()
        size_now = tree.size
        recorder = self.applications.recorder
        leaves = []
        for entry in self.leaves_of(aggregate_id):
            if entry["index"] >= min(size, size_now):
                continue
            data = canonical(entry["leaf"])
            position = entry["position"]
            found = [
                n
                for n in recorder.select_notifications(start=position, limit=1, stop=position)
                if n.id == position
            ]
            leaves.append(
                {
                    "index": entry["index"],
                    "leaf": entry["leaf"],
                    "leaf_hash": base64.b64encode(leaf_hash(data)).decode(),
                    "inclusion_proof": [
                        base64.b64encode(h).decode()
                        for h in tree.inclusion_proof(entry["index"], min(size, size_now))
                    ],
                    "event_state": base64.b64encode(found[0].state).decode() if found else None,
                }
            )
        return {
            "format": "birthcert-proof-bundle/1",
            "origin": self.origin,
            "checkpoint": checkpoint["note"],
            "tree_size": size,
            "verifier_keys": checkpoint["verifier_keys"],
            "leaves": leaves,
        }

    def consistency(self, size1: int, size2: int) -> JSON:
        """A consistency proof between two tree sizes, with the signed checkpoints at those sizes when made."""
        current = self.size()
        if not 0 < size1 <= size2 <= current:
            msg = f"sizes must satisfy 0 < from ≤ to ≤ {current}"
            raise ValueError(msg)
        tree = self.tree()
        return {
            "from": size1,
            "to": size2,
            "root1": base64.b64encode(tree.root(size1)).decode(),
            "root2": base64.b64encode(tree.root(size2)).decode(),
            "proof": [base64.b64encode(h).decode() for h in tree.consistency_proof(size1, size2)],
            "checkpoint1": (self.checkpoint_of_size(size1) or {}).get("note"),
            "checkpoint2": (self.checkpoint_of_size(size2) or {}).get("note"),
        }

    # ------------------------------------------------------------------ self-check

    def check(self, *, thorough: bool = True, sample: int = SAMPLE) -> CheckResult:
        """Compare the log with the event store and with the last signed checkpoint.

        ``thorough`` (``birthcert audit check``, an auditor's full verify) streams every leaf: each must
        match the event stored at its position (aggregate, version, topic, the SHA-256 of the stored
        bytes and, decoded, its time and actor), indexes and positions must run without holes or
        reordering, the root of the first ``size`` leaves recomputed from their content must be the
        signed one, and every stored tree node must be the hash of its leaves. Memory stays bounded.

        ``thorough=False`` (the service's start-up check, decision 0029) costs the same at a million
        leaves as at ten thousand: the checkpoint's signature; its root recomputed from the stored tree
        (O(log n) reads); every leaf past the checkpoint checked in full, decoded; and under the
        checkpoint only the first, the last and ``sample`` leaves drawn at random, each compared with
        its stored event's bytes and proved by inclusion to the signed root (all of them when the log
        is that small). Anything found there runs the thorough check, to name the first position.
        """
        latest = self.latest_checkpoint()
        size, root = 0, b""
        if latest is not None:
            try:
                size, root = self._signed(latest)
            except IntegrityError as e:
                return CheckResult(False, latest["tree_size"], f"the latest checkpoint does not verify ({e})")
        leaves = self._tree.size
        if leaves < size:
            row = self.db.fetchone("SELECT position FROM audit_leaves WHERE leaf_index = ?", (leaves - 1,))
            return CheckResult(
                False,
                size,
                f"the log holds {leaves} leaves but checkpoint {size} was signed",
                None if row is None else int(row[0]),
            )
        if not thorough:
            try:
                found = self._quick_check(size, root, leaves, sample)
            except TreeError:
                found = False
            if found:
                return self._passed(latest, size, leaves)
        return self._full_check(size, root, leaves, latest)

    def _passed(self, latest: JSON | None, size: int, leaves: int) -> CheckResult:
        if latest is None:
            return CheckResult(True, 0, f"no checkpoint yet; the {leaves} leaves match the event store")
        return CheckResult(True, size, f"the event store matches signed checkpoint {size}")

    def _quick_check(self, size: int, root: bytes, leaves: int, sample: int) -> bool:
        """True when the start-up checks find nothing (see ``check``)."""
        if size and self._tree.root(size) != root:
            return False
        if self._verify_span(size, leaves, size, decode_from=size, compact=None) is not None:
            return False  # the tail past the checkpoint, decoded
        if size <= sample + 2:
            compact = CompactRange()
            if self._verify_span(0, size, size, decode_from=size, compact=compact) is not None:
                return False
            return compact.root() == root if size else True
        picks = {0, size - 1, *random.SystemRandom().sample(range(1, size - 1), sample)}
        return all(self._leaf_proved(index, size, root) for index in sorted(picks))

    def _leaf_proved(self, index: int, size: int, root: bytes) -> bool:
        """One leaf under the checkpoint: its content, its stored event's bytes, its inclusion in ``root``."""
        row = self.db.fetchone(
            "SELECT leaf_index, position, leaf_json, leaf_hash FROM audit_leaves WHERE leaf_index = ?",
            (index,),
        )
        if row is None:
            return False
        position = int(row[1])
        stored = self.applications.recorder.select_notifications(start=position, limit=1)
        if not stored or self._leaf_failure(row, stored[0], size, decode=False) is not None:
            return False
        return verify_inclusion(bytes(row[3]), index, size, self._tree.inclusion_proof(index, size), root)

    def _full_check(self, size: int, root: bytes, leaves: int, latest: JSON | None) -> CheckResult:
        compact = CompactRange()
        failure = self._verify_span(0, leaves, size, decode_from=0, compact=compact, signed_root=root)
        if failure is not None:
            return failure
        return self._passed(latest, size, leaves)

    def _verify_span(
        self,
        start: int,
        stop: int,
        size: int,
        *,
        decode_from: int,
        compact: CompactRange | None,
        signed_root: bytes | None = None,
    ) -> CheckResult | None:
        """Compare the leaves ``[start, stop)`` with the store, a page at a time; the first failure or None.

        With ``compact`` (starting empty at ``start == 0``) the leaves' recomputed hashes are folded, the
        root at ``size`` is compared with ``signed_root`` when given, and each stored node is checked.
        """
        after = 0
        if start:
            row = self.db.fetchone("SELECT position FROM audit_leaves WHERE leaf_index = ?", (start - 1,))
            after = 0 if row is None else int(row[0])
        recorder = self.applications.recorder
        offset = start
        while offset < stop:
            chunk = self.db.fetchall(
                "SELECT leaf_index, position, leaf_json, leaf_hash FROM audit_leaves "
                "WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index",
                (offset, min(stop, offset + PAGE)),
            )
            stored = recorder.select_notifications(start=after + 1, limit=len(chunk)) if chunk else []
            completed: list[tuple[int, int, bytes]] = []
            for i, row in enumerate(chunk):
                expected_position = int(row[1])
                if int(row[0]) != offset + i:
                    return CheckResult(
                        False, size, f"leaf {offset + i} is missing from the log", expected_position
                    )
                if i >= len(stored):
                    return CheckResult(
                        False,
                        size,
                        f"position {expected_position}: the event is missing from the store",
                        expected_position,
                    )
                failure = self._leaf_failure(row, stored[i], size, decode=offset + i >= decode_from)
                if failure is not None:
                    return failure
                if compact is not None:
                    completed += compact.append(leaf_hash(canonical(json.loads(row[2]))))
                    if (
                        compact.size == size
                        and signed_root is not None
                        and size
                        and compact.root() != signed_root
                    ):
                        return CheckResult(
                            False,
                            size,
                            f"the recomputed root of {size} leaves differs from signed checkpoint {size}",
                        )
                after = int(stored[i].id)
            if len(chunk) < min(stop, offset + PAGE) - offset:
                missing = offset + len(chunk)
                return CheckResult(False, size, f"leaf {missing} is missing from the log", None)
            wrong = self._wrong_node(completed)
            if wrong is not None:
                return CheckResult(
                    False,
                    size,
                    f"the audit tree's stored hash of leaves {wrong[0]}–{wrong[1] - 1} differs from those leaves",
                )
            offset += PAGE
        return None

    def _wrong_node(self, completed: list[tuple[int, int, bytes]]) -> tuple[int, int] | None:
        """The leaf range of the first stored node that differs from its recomputed hash (missing nodes
        below the covered part count too), or None."""
        wanted = {(level, start >> level): digest for level, start, digest in completed if level >= MIN_LEVEL}
        if not wanted:
            return None
        covered = self._tree.covered()
        stored: dict[tuple[int, int], bytes] = {}
        for level in sorted({level for level, _ in wanted}):
            indexes = [idx for lvl, idx in wanted if lvl == level]
            for _, idx, digest in self.db.fetchall(
                "SELECT level, idx, hash FROM audit_nodes WHERE level = ? AND idx >= ? AND idx <= ?",
                (level, min(indexes), max(indexes)),
            ):
                stored[(level, int(idx))] = bytes(digest)
        for (level, idx), digest in sorted(wanted.items(), key=lambda item: item[0][1] << item[0][0]):
            first, end = idx << level, (idx + 1) << level
            if stored.get((level, idx), digest if end > covered else b"") != digest:
                return first, end
        return None

    def _leaf_failure(self, row: tuple[Any, ...], n: Any, size: int, *, decode: bool) -> CheckResult | None:
        """How one leaf row differs from the stored event ``n`` (decoded when ``decode``), or None."""
        expected_position = int(row[1])
        try:
            leaf = json.loads(row[2])
            data = canonical(leaf)
        except (ValueError, TypeError, AttributeError):
            return CheckResult(
                False, size, f"position {expected_position}: the leaf is not a valid leaf", expected_position
            )
        if n.id != expected_position:
            return CheckResult(
                False,
                size,
                f"position {expected_position}: the store has position {n.id} there instead",
                min(expected_position, n.id),
            )
        found = {
            "position": n.id,
            "aggregate_id": str(n.originator_id),
            "version": int(n.originator_version),
            "topic": n.topic,
            "state_sha256": hashlib.sha256(n.state).hexdigest(),
        }
        changed = [k for k, v in found.items() if leaf.get(k) != v]
        if not changed and decode:
            # The bytes are the logged ones: the time and the actor must be theirs too.
            try:
                event = self.applications.mapper.to_domain_event(n)
                found = self._leaf(n, event)
            except Exception as error:  # undecodable bytes whose hash still matches: a forged leaf
                return CheckResult(
                    False,
                    size,
                    f"position {n.id}: the stored event cannot be decoded ({type(error).__name__})",
                    n.id,
                )
            changed = [k for k in sorted(set(found) | set(leaf)) if leaf.get(k) != found.get(k)]
        if changed:
            return CheckResult(
                False,
                size,
                f"position {n.id}: the stored event differs from its leaf ({', '.join(changed)})",
                n.id,
            )
        if leaf_hash(data) != bytes(row[3]):
            return CheckResult(
                False, size, f"position {n.id}: the leaf's hash does not match its content", n.id
            )
        return None
