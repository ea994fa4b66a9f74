"""``birthcert db migrate | status``: the store's schema, created by one command rather than by every process.

On PostgreSQL the service starts with ``CREATE_TABLE=n``: processes that race to create the same tables at start
collide in PostgreSQL's catalogue (``tuple concurrently updated``), and a production role that can run DDL is a
role that can drop the audit log. So the schema — the library's event and snapshot tables and ours beside them
(projections/sql.py) — is created, and brought to this version's layout, by ``birthcert db migrate``, run once per
release by the operator (or the deployment's job), under a PostgreSQL advisory lock so that two runs at once are
safe. A process that finds the schema missing or older refuses to start and says to run it. The embedded SQLite
store (one host) still migrates itself at start: its DDL runs under SQLite's write lock (docs/decisions/0026).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from backend.config import PRODUCTION, Config
from domain.service import Applications
from projections.sql import SCHEMA_LOCK, SCHEMA_VERSION, Database, SchemaError, connect_postgres

# The session-level lock one `db migrate` holds for its whole run (another key than the one our own DDL takes in
# its transaction, so that the run does not wait for itself).
MIGRATE_LOCK = SCHEMA_LOCK + 1


@dataclass(frozen=True)
class SchemaStatus:
    """What a database holds: its layout version, our tables and the library's, and the log's end."""

    version: int
    missing: tuple[str, ...]
    events: int | None

    @property
    def ready(self) -> bool:
        return self.version == SCHEMA_VERSION and not self.missing


@contextlib.contextmanager
def _migration_lock(env: Mapping[str, str]) -> Iterator[None]:
    """On PostgreSQL, one migration at a time (a session advisory lock); SQLite serialises its DDL itself."""
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.postgres":
        yield
        return
    with connect_postgres(env) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATE_LOCK,))


def migrate(env: Mapping[str, str]) -> SchemaStatus:
    """Create the event store's tables and ours, or bring them to this version (idempotent, safe concurrently)."""
    creating = {**env, "CREATE_TABLE": "y"}
    with _migration_lock(creating):
        Applications(creating).close()  # the library creates its tables (events, snapshots) when asked to
        Database.open(creating).close()  # ours, their triggers, and the version recorded
    return schema_status(env)


def schema_status(env: Mapping[str, str]) -> SchemaStatus:
    """The schema as it stands, creating nothing."""
    db = Database.open(env, prepare=False)
    try:
        events = None
        if "applications_events" in db.tables():
            column = "notification_id" if db.dialect == "postgres" else "rowid"
            row = db.fetchone(f"SELECT MAX({column}) FROM applications_events")
            events = 0 if row is None or row[0] is None else int(row[0])
        return SchemaStatus(db.schema_version(), tuple(db.missing_tables()), events)
    finally:
        db.close()


def register_db(subparsers: Any) -> None:
    """Add ``db migrate`` and ``db status`` to the ``birthcert`` command line."""
    p = subparsers.add_parser(
        "db", help="the event store's schema (PostgreSQL: run `db migrate` before serving)"
    )
    commands = p.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    commands.add_parser(
        "migrate", help="create the store's tables or bring them to this version (idempotent)"
    ).set_defaults(handler=run_migrate)
    commands.add_parser("status", help="the schema version, missing tables and the log's end").set_defaults(
        handler=run_status
    )


def _config() -> Config:
    return Config.from_env(default_environment=PRODUCTION)


def run_migrate(args: argparse.Namespace) -> int:
    """Migrate the configured store and print where it stands."""
    env = _config().event_store_env()
    try:
        status = migrate(env)
    except SchemaError as e:
        print(f"birthcert: {e}")
        return 1
    _print(status, env)
    return 0 if status.ready else 1


def run_status(args: argparse.Namespace) -> int:
    """Print the schema version and what is missing; exit 1 when the service would refuse to start."""
    env = _config().event_store_env()
    status = schema_status(env)
    _print(status, env)
    return 0 if status.ready else 1


def _print(status: SchemaStatus, env: Mapping[str, str]) -> None:
    where = (
        f"PostgreSQL {env.get('POSTGRES_HOST', '127.0.0.1')}:{env.get('POSTGRES_PORT', '5432')}"
        f"/{env.get('POSTGRES_DBNAME', 'postgres')} schema {env.get('POSTGRES_SCHEMA') or 'public'}"
        if env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres"
        else f"SQLite {env.get('SQLITE_DBNAME')}"
    )
    print(f"store:           {where}")
    print(f"schema version:  {status.version} (this software: {SCHEMA_VERSION})")
    print(f"missing tables:  {', '.join(status.missing) or 'none'}")
    print(f"events:          {'-' if status.events is None else status.events}")
    print("ready" if status.ready else "NOT READY: run `birthcert db migrate`")
