"""SQL beside the events: the audit log, the form archive and their tracking positions.

The tables live in the event store's own database — the SQLite file, or the PostgreSQL schema —
so that a backup of the store carries its audit log. Append-only tables are guarded by triggers in
the database itself: an UPDATE or DELETE (or, on PostgreSQL, a TRUNCATE) is refused whoever sends
it. Calls are synchronous: run them on the store executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, TypeVar

import psycopg

from projections.runner import Fence, Fenced, Parked, fenced_term

T = TypeVar("T")

Dialect = Literal["sqlite", "postgres"]
# The one lease of the leader that runs the followers that must run once (projections.leader).
LEASE_NAME = "leader"
APPEND_ONLY = (
    "audit_leaves",
    "audit_nodes",
    "audit_checkpoints",
    "archive_forms",
    "archive_pdfs",
    "elicense_credentials",
    "elicense_status_slots",
    "elicense_status_bits",
    "elicense_verifications",
)

_TABLES = {
    "projection_positions": "name TEXT PRIMARY KEY, position BIGINT NOT NULL",
    # The leader's lease (projections.leader): who holds it, its term (the fencing token), until when (epoch
    # seconds on the database's clock), since when that term began.
    "leader_lease": (
        "name TEXT PRIMARY KEY, holder TEXT NOT NULL, term BIGINT NOT NULL, "
        "expires_at DOUBLE PRECISION NOT NULL, since DOUBLE PRECISION NOT NULL"
    ),
    # Events a follower set aside (projections.runner): never personal data, an exception's class name only.
    "projection_parked": (
        "name TEXT NOT NULL, position BIGINT NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL, "
        "parked_at TEXT NOT NULL, retry_requested INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (name, position)"
    ),
    "audit_leaves": (
        "leaf_index BIGINT PRIMARY KEY, position BIGINT NOT NULL UNIQUE, aggregate_id TEXT NOT NULL, "
        "version BIGINT NOT NULL, leaf_json TEXT NOT NULL, leaf_hash {blob} NOT NULL"
    ),
    # The audit tree's complete subtrees of 2**level leaves, level >= 4 (projections.audit_tree, decision 0029).
    "audit_nodes": "level INTEGER NOT NULL, idx BIGINT NOT NULL, hash {blob} NOT NULL, PRIMARY KEY (level, idx)",
    "audit_checkpoints": "tree_size BIGINT PRIMARY KEY, root_hash {blob} NOT NULL, note TEXT NOT NULL, created_at TEXT NOT NULL",
    # The form's document and PDF are personal data: only sealed (AES-256-GCM, projections.archive).
    "archive_forms": (
        "id TEXT PRIMARY KEY, application_id TEXT NOT NULL, position BIGINT NOT NULL UNIQUE, version BIGINT NOT NULL, "
        "kind TEXT NOT NULL, recorded_at TEXT NOT NULL, form_sha256 TEXT NOT NULL, sealed_document {blob} NOT NULL, "
        "sealed_pdf {blob}"
    ),
    # Each archived form's PDF, rendered behind the archive (decision 0028): sealed here, or in the object
    # store under ``object_key`` (decision 0025); the row is the index either way.
    "archive_pdfs": (
        "form_id TEXT PRIMARY KEY, position BIGINT NOT NULL UNIQUE, pdf_sha256 TEXT NOT NULL, "
        "signature_image TEXT NOT NULL, rendered_at TEXT NOT NULL, object_key TEXT, sealed_pdf {blob}"
    ),
    # The e-licence (decision 0038). Signing keys: the private key sealed, retired ones kept for ever.
    "elicense_keys": (
        "kid TEXT PRIMARY KEY, alg TEXT NOT NULL, public_jwk TEXT NOT NULL, sealed_private {blob} NOT NULL, "
        "created_at TEXT NOT NULL, retired_at TEXT"
    ),
    # Every print of a certificate waits here for its e-licence (projections.elicense); due_at: epoch seconds.
    "elicense_due": (
        "application_id TEXT NOT NULL, version BIGINT NOT NULL, position BIGINT NOT NULL UNIQUE, "
        "number_digest TEXT NOT NULL, printed_at TEXT NOT NULL, due_at DOUBLE PRECISION NOT NULL, "
        "licence_id TEXT NOT NULL UNIQUE, done_at TEXT, outcome TEXT, PRIMARY KEY (application_id, version)"
    ),
    # Each issued credential, sealed (it holds the family's data); the clear columns are ids only, the
    # certificate number a keyed digest (ElicenseStore.number_digest), as in elicense_due.
    "elicense_credentials": (
        "licence_id TEXT PRIMARY KEY, application_id TEXT NOT NULL, version BIGINT NOT NULL, "
        "number_digest TEXT NOT NULL, kid TEXT NOT NULL, status_list TEXT NOT NULL, "
        "status_idx BIGINT NOT NULL, issued_at TEXT NOT NULL, sealed_credential {blob} NOT NULL, "
        "UNIQUE (application_id, version)"
    ),
    # Token Status List indexes handed out: one row per index ever used, so none is used twice.
    "elicense_status_slots": (
        "list_id TEXT NOT NULL, idx BIGINT NOT NULL, licence_id TEXT NOT NULL UNIQUE, allocated_at TEXT NOT NULL, "
        "PRIMARY KEY (list_id, idx)"
    ),
    # Token Status List bits set (decision 0039): one row per credential made invalid, never unset; the number
    # that replaced it sealed (ElicenseStore.seal_text), never in clear.
    "elicense_status_bits": (
        "list_id TEXT NOT NULL, idx BIGINT NOT NULL, licence_id TEXT NOT NULL UNIQUE, reason TEXT NOT NULL, "
        "sealed_replaced_by TEXT, position BIGINT NOT NULL, set_at TEXT NOT NULL, PRIMARY KEY (list_id, idx)"
    ),
    # Each list's last signed token and how many bits it carried (re-signed when that count changes, and daily).
    "elicense_status_tokens": (
        "list_id TEXT PRIMARY KEY, token TEXT NOT NULL, bits_set BIGINT NOT NULL, "
        "signed_at DOUBLE PRECISION NOT NULL"
    ),
    # Every verification as the auditor reads it (from VerificationRecorded events): digests and hashes only.
    "elicense_verifications": (
        "id TEXT PRIMARY KEY, position BIGINT NOT NULL UNIQUE, recorded_at TEXT NOT NULL, kind TEXT NOT NULL, "
        "digest TEXT NOT NULL, result TEXT NOT NULL, licence_id TEXT, source TEXT NOT NULL, verifier TEXT, "
        "institution TEXT, archived INTEGER NOT NULL"
    ),
    # Managers' statistics (projections.statistics, decision 0043): codes, Beijing days, counts and seconds only.
    "statistics_daily": (
        "day TEXT NOT NULL, province TEXT NOT NULL, institution TEXT NOT NULL, figure TEXT NOT NULL, "
        "item TEXT NOT NULL, count BIGINT NOT NULL, PRIMARY KEY (day, province, institution, figure, item)"
    ),
    "statistics_durations": (
        "day TEXT NOT NULL, province TEXT NOT NULL, institution TEXT NOT NULL, kind TEXT NOT NULL, "
        "seconds BIGINT NOT NULL"
    ),
    # What the statistics follower remembers of each application (its random id, codes and times: no person).
    "statistics_applications": (
        "application_id TEXT PRIMARY KEY, province TEXT NOT NULL, institution TEXT NOT NULL, "
        "started_day TEXT NOT NULL, review_days INTEGER, first_submitted_at TEXT, due_at TEXT, "
        "handed_over INTEGER NOT NULL"
    ),
    "statistics_institutions": (
        "code TEXT PRIMARY KEY, record_id TEXT NOT NULL, name TEXT NOT NULL, province TEXT NOT NULL, district TEXT"
    ),
    # 出生一件事's hand-offs not answered yet, with their deadline (0049): ids, codes and times, for overdue counts.
    "statistics_bundle_open": (
        "application_id TEXT NOT NULL, department TEXT NOT NULL, province TEXT NOT NULL, institution TEXT NOT NULL, "
        "sent_at TEXT NOT NULL, due_at TEXT, PRIMARY KEY (application_id, department)"
    ),
    # 出生一件事's hand-offs to the departments (projections.bundle_handoff, decision 0046): ids and bookkeeping
    # only; the message itself is built again from the application whenever it is sent.
    "bundle_handoffs": (
        "message_id TEXT PRIMARY KEY, application_id TEXT NOT NULL, version BIGINT NOT NULL, service TEXT NOT NULL, "
        "department TEXT NOT NULL, position BIGINT NOT NULL, created_at TEXT NOT NULL, state TEXT NOT NULL, "
        "attempts INTEGER NOT NULL, next_attempt_at DOUBLE PRECISION NOT NULL, sent_at TEXT, error TEXT"
    ),
    "audit_access": (
        "id TEXT PRIMARY KEY, position BIGINT NOT NULL UNIQUE, auditor TEXT NOT NULL, application_id TEXT NOT NULL, "
        "what TEXT NOT NULL, recorded_at TEXT NOT NULL"
    ),
}
# Columns added after a table was first released: ALTER TABLE … ADD COLUMN where an older database lacks them
# (adding a column is not an UPDATE: the append-only triggers stay and do not fire).
_ADDED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    # An issuer's revocation (0040): its ground (obtained_by_deception, …), sealed like the replacement number.
    "elicense_status_bits": (("sealed_grounds", "TEXT"),),
    # 出生一件事's time limit (0049): the bundle's working days and the submission its clock counts from.
    "statistics_applications": (("bundle_days", "INTEGER"), ("last_submitted_at", "TEXT")),
}
# Layouts that must never be mixed with the current one: (table, a column only the old layout has, why).
_RETIRED_LAYOUTS = (
    (
        "archive_forms",
        "document",
        "archive_forms has the old plaintext layout (columns document, pdf): this version keeps archived "
        "forms encrypted (docs/decisions/0003-storage-encryption.md) and will not mix the two. No production "
        "data was ever stored that way; in a development or test database drop the old table and the "
        "archive's position (DROP TABLE archive_forms; DELETE FROM projection_positions WHERE name = "
        "'archive') and the archive is written again, encrypted, from the event log at the next start",
    ),
)
_TABLES["birthcert_schema"] = "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL"
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS audit_leaves_aggregate ON audit_leaves (aggregate_id, version)",
    "CREATE INDEX IF NOT EXISTS archive_forms_application ON archive_forms (application_id, version)",
    "CREATE INDEX IF NOT EXISTS elicense_due_open ON elicense_due (done_at, due_at)",
    "CREATE INDEX IF NOT EXISTS elicense_credentials_application ON elicense_credentials (application_id, version)",
    "CREATE INDEX IF NOT EXISTS elicense_credentials_number ON elicense_credentials (number_digest)",
    "CREATE INDEX IF NOT EXISTS elicense_verifications_licence ON elicense_verifications (licence_id)",
    "CREATE INDEX IF NOT EXISTS statistics_daily_scope ON statistics_daily (institution, day)",
    "CREATE INDEX IF NOT EXISTS statistics_daily_province ON statistics_daily (province, day)",
    "CREATE INDEX IF NOT EXISTS statistics_durations_day ON statistics_durations (day)",
    "CREATE INDEX IF NOT EXISTS statistics_applications_due ON statistics_applications (due_at)",
    "CREATE INDEX IF NOT EXISTS bundle_handoffs_due ON bundle_handoffs (state, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS bundle_handoffs_application ON bundle_handoffs (application_id)",
    "CREATE INDEX IF NOT EXISTS statistics_institutions_record ON statistics_institutions (record_id)",
    "CREATE INDEX IF NOT EXISTS statistics_bundle_open_due ON statistics_bundle_open (due_at)",
)


# The layout of our tables that this version reads and writes; ``birthcert db migrate`` records each version it
# brings a database to in ``birthcert_schema`` (decision 0026). Raise it with every table or column added.
# 2: audit_nodes (the audit tree's stored subtrees, 0029), archive_pdfs (0028), leader_lease (0024).
# 3: the e-licence's elicense_keys, elicense_due, elicense_credentials, elicense_status_slots (0038).
# 4: elicense_status_bits, elicense_status_tokens, elicense_verifications (0039).
# 5: statistics_daily, statistics_durations, statistics_applications, statistics_institutions (0043).
# 6: elicense_status_bits.sealed_grounds (an issuer's revocation, 0040).
# 7: bundle_handoffs (出生一件事's hand-off to the departments, 0046).
# 8: statistics_bundle_open, statistics_applications.bundle_days and .last_submitted_at (the bundle's clock, 0049).
SCHEMA_VERSION = 8
# The event store's own tables (the library's, for the application named "Applications").
LIBRARY_TABLES = ("applications_events", "applications_snapshots")


# The PostgreSQL advisory lock (database-wide) under which our tables and the library's are created.
SCHEMA_LOCK = 0x62697274_68636572  # "birthcer"


def _newer(version: int) -> str:
    return (
        f"the database was migrated to schema version {version} by a newer birthcert; this one reads "
        f"version {SCHEMA_VERSION}: upgrade the software, never the other way round"
    )


def creates_tables(env: Mapping[str, str]) -> bool:
    """Whether ``env`` lets a process create tables (the library's ``CREATE_TABLE``, default yes)."""
    return (env.get("CREATE_TABLE") or "yes").strip().lower() in ("y", "yes", "t", "true", "on", "1")


# PostgreSQL ends a session left idle inside a transaction this long (connect_postgres).
IDLE_IN_TRANSACTION_MS = 30_000


def connect_postgres(env: Mapping[str, str]) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection to the PostgreSQL store ``env`` describes, in its schema."""
    pg: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(
        host=env.get("POSTGRES_HOST", "127.0.0.1"),
        port=env.get("POSTGRES_PORT", "5432"),
        dbname=env.get("POSTGRES_DBNAME", "postgres"),
        user=env.get("POSTGRES_USER") or None,
        password=env.get("POSTGRES_PASSWORD") or None,
        connect_timeout=int(env.get("POSTGRES_CONNECT_TIMEOUT", "5") or 5),
        autocommit=True,
    )
    schema = env.get("POSTGRES_SCHEMA")
    if schema:
        pg.execute(f'SET search_path TO "{schema}"')
    # Our transactions last milliseconds. One left open (a process paused by the scheduler or a debugger, a
    # bug) would hold the leader lease's row FOR SHARE and so every renewal and takeover: PostgreSQL ends it.
    pg.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}")
    return pg


def _connect_sqlite(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class SchemaError(RuntimeError):
    """A table of ours exists with a layout this version does not read or write."""


class Database:
    """One connection to the event store's database, shared by the threads that call it (the store executor
    has one thread on SQLite, ``POSTGRES_POOL_SIZE`` on PostgreSQL): a transaction holds the connection for
    itself from BEGIN to COMMIT, and a statement outside one for that statement, so that two threads never
    interleave on it (they did: a checkpoint inside the audit log's append broke both and left a transaction
    open that held the leader lease's row)."""

    def __init__(
        self, dialect: Dialect, connection: Any, *, connect: Callable[[], Any] | None = None
    ) -> None:
        self.dialect = dialect
        self._connection = connection
        self._connect = connect
        self._lock = threading.RLock()
        # Set on the connection of a leader-only follower: every ``move`` and ``advance`` checks the term.
        self.fence: Fence | None = None

    @classmethod
    def open(cls, env: Mapping[str, str], *, prepare: bool = True) -> Database:
        """Connect to the database the event-store ``env`` describes.

        With ``CREATE_TABLE`` on (the library's default, and the embedded SQLite store's) our tables are
        created if missing; with it off (PostgreSQL in production: ``birthcert db migrate`` creates the
        schema, decision 0026) they are only checked, and a missing or older schema is a ``SchemaError``.
        """
        module = env.get("PERSISTENCE_MODULE", "eventsourcing.sqlite")
        if module == "eventsourcing.postgres":
            db = cls("postgres", None, connect=partial(connect_postgres, dict(env)))
        else:
            db = cls("sqlite", _connect_sqlite(env.get("SQLITE_DBNAME") or ":memory:"))
        if not prepare:
            return db
        try:
            if creates_tables(env):
                db.create_tables()
            else:
                db.check_schema()
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        """Close the connection."""
        if self._connection is not None:
            self._connection.close()

    @property
    def connection(self) -> Any:
        """The open connection; on PostgreSQL a connection lost (a failover, a restart, a terminated
        backend) is replaced by a new one at the next statement outside a transaction."""
        if self._connection is None or (self._connect is not None and self._connection.closed):
            if self._connect is None:
                raise RuntimeError("the database connection is closed")
            self._connection = self._connect()
        return self._connection

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.dialect == "postgres" else statement

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement (``?`` placeholders on both dialects); returns the cursor (read it inside the
        transaction, or use ``fetchone``/``fetchall``, when other threads share the connection)."""
        with self._lock:
            if self.dialect == "postgres" and not params:
                # No parameters → None, so that psycopg leaves a literal '%' alone (the trigger function's RAISE).
                return self.connection.execute(statement, None)
            return self.connection.execute(self._sql(statement), params)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row of parameters."""
        with self._lock:
            if self.dialect == "postgres":
                with self.connection.cursor() as cursor:
                    cursor.executemany(self._sql(statement), rows)
            else:
                self.connection.executemany(statement, rows)

    def fetchall(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of a query."""
        with self._lock:
            return list(self.execute(statement, params).fetchall())

    def fetchone(self, statement: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of a query, or None."""
        with self._lock:
            row = self.execute(statement, params).fetchone()
        return None if row is None else tuple(row)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        """BEGIN … COMMIT (ROLLBACK on an exception), the connection this thread's alone meanwhile. SQLite
        takes the write lock at BEGIN."""
        with self._lock:
            if self.dialect == "sqlite":
                self.connection.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                except BaseException:
                    self.connection.execute("ROLLBACK")
                    raise
                self.connection.execute("COMMIT")
            else:
                with self.connection.transaction():
                    yield self

    @contextlib.contextmanager
    def fenced_transaction(self, fence: Fence | None) -> Iterator[Database]:
        """A transaction whose writes are the leader's: ``Fenced`` at its start (nothing written) unless
        ``fence``'s term is the lease's now (no fence: unchecked, as ``transaction``)."""
        with self.transaction():
            self.check_fence(fence)
            yield self

    def check_fence(self, fence: Fence | None) -> None:
        """Inside a transaction: ``Fenced`` unless ``fence``'s term is the lease's term now (no fence: no check).

        On PostgreSQL the lease row is read ``FOR SHARE``: a takeover's UPDATE waits until this transaction
        ends, so what it writes is ordered before the new term; SQLite's ``BEGIN IMMEDIATE`` holds every
        other writer off already."""
        term = fenced_term(fence)
        if term is None:
            return
        lock = " FOR SHARE" if self.dialect == "postgres" else ""
        row = self.fetchone(f"SELECT term FROM leader_lease WHERE name = ?{lock}", (LEASE_NAME,))
        if row is None or int(row[0]) != term:
            raise Fenced(f"term {term} is no longer the leader's (now {None if row is None else row[0]})")

    def position(self, name: str) -> int:
        """The tracked position of a projection (0 before any)."""
        row = self.fetchone("SELECT position FROM projection_positions WHERE name = ?", (name,))
        return 0 if row is None else int(row[0])

    def advance(self, name: str, position: int) -> bool:
        """Inside a transaction: move ``name`` to ``position`` if that is forward; False when it is not."""
        self.check_fence(self.fence)
        current = self.fetchone("SELECT position FROM projection_positions WHERE name = ?", (name,))
        if current is None:
            self.execute("INSERT INTO projection_positions (name, position) VALUES (?, ?)", (name, position))
            return True
        if int(current[0]) >= position:
            return False
        self.execute("UPDATE projection_positions SET position = ? WHERE name = ?", (position, name))
        return True

    def move(self, name: str, start: int, end: int) -> bool:
        """Inside a transaction: move ``name`` from ``start`` to ``end``; False (nothing written) when it
        does not stand at ``start`` (a missing row stands at 0). ``Fenced`` when the connection's fence is
        no longer the leader's."""
        self.check_fence(self.fence)
        current = self.fetchone("SELECT position FROM projection_positions WHERE name = ?", (name,))
        if (0 if current is None else int(current[0])) != start or end < start:
            return False
        # Compare-and-set in the statement itself: under PostgreSQL's READ COMMITTED two transactions can both
        # have read ``start`` above; the second's UPDATE waits for the first and then matches no row.
        if current is None:
            moved = self.execute(
                "INSERT INTO projection_positions (name, position) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (name, end),
            )
        else:
            moved = self.execute(
                "UPDATE projection_positions SET position = ? WHERE name = ? AND position = ?",
                (end, name, start),
            )
        return int(moved.rowcount) == 1

    def _columns(self, table: str) -> set[str]:
        """The column names ``table`` has now."""
        if self.dialect == "sqlite":
            return {str(row[1]) for row in self.fetchall(f"PRAGMA table_info({table})")}
        rows = self.fetchall(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ?",
            (table,),
        )
        return {str(row[0]) for row in rows}

    def create_tables(self) -> None:
        """Our tables, their indexes and the append-only triggers (idempotent)."""
        blob = "BYTEA" if self.dialect == "postgres" else "BLOB"
        with self.transaction():
            if self.dialect == "postgres":
                # Two processes creating the same tables at once race in PostgreSQL's catalogue: one at a time.
                self.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
            if self.schema_version() > SCHEMA_VERSION:
                raise SchemaError(_newer(self.schema_version()))
            self._refuse_retired_layouts()
            for table, columns in _TABLES.items():
                self.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns.format(blob=blob)})")
            for table, added in _ADDED_COLUMNS.items():
                present = self._columns(table)
                for column, kind in added:
                    if column not in present:
                        guard = "IF NOT EXISTS " if self.dialect == "postgres" else ""
                        self.execute(
                            f"ALTER TABLE {table} ADD COLUMN {guard}{column} {kind.format(blob=blob)}"
                        )
            for index in _INDEXES:
                self.execute(index)
            if self.dialect == "sqlite":
                for table in APPEND_ONLY:
                    for op in ("UPDATE", "DELETE"):
                        self.execute(
                            f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                        )
            else:
                self.execute(
                    "CREATE OR REPLACE FUNCTION birthcert_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
                )
                for table in APPEND_ONLY:
                    for name, spec in (
                        ("rows", "BEFORE UPDATE OR DELETE ON {t} FOR EACH ROW"),
                        ("truncate", "BEFORE TRUNCATE ON {t}"),
                    ):
                        trigger = f"{table}_append_only_{name}"
                        exists = self.fetchone(
                            "SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                            "WHERE t.tgname = ? AND c.relname = ? AND c.relnamespace = to_regnamespace(current_schema())",
                            (trigger, table),
                        )
                        if exists is None:
                            self.execute(
                                f"CREATE TRIGGER {trigger} {spec.format(t=table)} "
                                "EXECUTE FUNCTION birthcert_append_only()"
                            )
            if self.fetchone("SELECT 1 FROM birthcert_schema WHERE version = ?", (SCHEMA_VERSION,)) is None:
                self.execute(
                    "INSERT INTO birthcert_schema (version, applied_at) VALUES (?, ?)",
                    (SCHEMA_VERSION, datetime.now(UTC).isoformat(timespec="seconds")),
                )

    def tables(self) -> set[str]:
        """The names of the tables in the store's database (its PostgreSQL schema)."""
        if self.dialect == "sqlite":
            rows = self.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            rows = self.fetchall(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            )
        return {str(row[0]) for row in rows}

    def missing_tables(self) -> list[str]:
        """The tables of this version's schema (the library's and ours) that the database lacks."""
        return sorted((set(_TABLES) | set(LIBRARY_TABLES)) - self.tables())

    def schema_version(self) -> int:
        """The last layout version migrated to (0: never migrated)."""
        if "birthcert_schema" not in self.tables():
            return 0
        row = self.fetchone("SELECT MAX(version) FROM birthcert_schema")
        return 0 if row is None or row[0] is None else int(row[0])

    def _refuse_retired_layouts(self) -> None:
        for table, retired_column, why in _RETIRED_LAYOUTS:
            if retired_column in self._columns(table):
                raise SchemaError(why)

    def check_schema(self) -> None:
        """Refuse (``SchemaError``) a database whose schema is missing, older or newer than this version's."""
        self._refuse_retired_layouts()
        missing = self.missing_tables()
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise SchemaError(_newer(version))
        if missing or version < SCHEMA_VERSION:
            what = f"tables missing: {', '.join(missing)}" if missing else f"schema version {version}"
            raise SchemaError(
                f"the database schema is not ready ({what}; this version needs {SCHEMA_VERSION}): "
                "run `birthcert db migrate` once before starting the service (docs/decisions/0026)"
            )


class DurablePosition:
    """A process's position kept in ``projection_positions`` beside the events, as a floor for a position
    kept elsewhere (the notifications outbox in Redis): never goes back. With a ``fence``, written only
    under the leader's term (``Fenced`` otherwise)."""

    def __init__(self, db: Database, executor: Executor, name: str, *, fence: Fence | None = None) -> None:
        self.db, self.executor, self.name, self.fence = db, executor, name, fence

    async def get(self) -> int | None:
        """The last position recorded, or None before any."""
        row = await asyncio.get_running_loop().run_in_executor(
            self.executor,
            self.db.fetchone,
            "SELECT position FROM projection_positions WHERE name = ?",
            (self.name,),
        )
        return None if row is None else int(row[0])

    async def set(self, position: int) -> None:
        """Record ``position`` if it is beyond the one recorded."""
        await asyncio.get_running_loop().run_in_executor(self.executor, self._set, position)

    def _set(self, position: int) -> None:
        with self.db.fenced_transaction(self.fence):
            self.db.advance(self.name, position)


class SqlParkingLot:
    """Parked events (``projections.runner.ParkingLot``) in ``projection_parked``, beside the events.

    Its own connection, used from one thread (``executor``); the CLI uses the synchronous methods.
    """

    def __init__(self, db: Database, executor: Executor) -> None:
        self.db = db
        self.executor = executor

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def park(self, follower: str, position: int, error: str, attempts: int) -> None:
        """Record (or update) a parked event."""
        await self._run(self.park_now, follower, position, error, attempts)

    async def parked(self, follower: str | None = None) -> list[Parked]:
        """The parked events (of one follower, or all), oldest first."""
        return await self._run(self.list_now, follower)

    async def release(self, follower: str, position: int) -> None:
        """Forget a parked event that has now been applied."""
        await self._run(self.release_now, follower, position)

    def park_now(self, follower: str, position: int, error: str, attempts: int) -> None:
        """Record (or update) a parked event (blocking)."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self.db.transaction():
            found = self.db.fetchone(
                "SELECT 1 FROM projection_parked WHERE name = ? AND position = ?", (follower, position)
            )
            if found is None:
                self.db.execute(
                    "INSERT INTO projection_parked (name, position, error, attempts, parked_at, retry_requested) "
                    "VALUES (?, ?, ?, ?, ?, 0)",
                    (follower, position, error, attempts, now),
                )
            else:
                self.db.execute(
                    "UPDATE projection_parked SET error = ?, attempts = ?, parked_at = ?, retry_requested = 0 "
                    "WHERE name = ? AND position = ?",
                    (error, attempts, now, follower, position),
                )

    def list_now(self, follower: str | None = None) -> list[Parked]:
        """The parked events (blocking)."""
        query = "SELECT name, position, error, attempts, parked_at, retry_requested FROM projection_parked"
        params: tuple[Any, ...] = ()
        if follower is not None:
            query += " WHERE name = ?"
            params = (follower,)
        rows = self.db.fetchall(query + " ORDER BY name, position", params)
        return [Parked(str(r[0]), int(r[1]), str(r[2]), int(r[3]), str(r[4]), bool(r[5])) for r in rows]

    def request_retry(self, follower: str | None = None, position: int | None = None) -> int:
        """Ask the running followers to apply parked events again (all, one follower's, or one): how many."""
        query = "UPDATE projection_parked SET retry_requested = 1 WHERE 1 = 1"
        params: list[Any] = []
        if follower is not None:
            query += " AND name = ?"
            params.append(follower)
        if position is not None:
            query += " AND position = ?"
            params.append(position)
        with self.db.transaction():
            return int(self.db.execute(query, params).rowcount)

    def release_now(self, follower: str, position: int) -> None:
        """Forget a parked event (blocking)."""
        with self.db.transaction():
            self.db.execute(
                "DELETE FROM projection_parked WHERE name = ? AND position = ?", (follower, position)
            )
