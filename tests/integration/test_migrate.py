"""``birthcert db migrate | status`` and a service that only checks the schema on PostgreSQL (decision 0026)."""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from backend.migrate import migrate, schema_status
from projections.sql import SCHEMA_VERSION, Database, SchemaError
from tests.e2e.serving import BIRTHCERT

pytestmark = pytest.mark.postgres


def birthcert(env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line, as an operator runs it, with the store's variables."""
    environ = {
        **os.environ,
        **env,
        "BIRTHCERT_ENV": "development",
        "BIRTHCERT_DATA_DIR": str(tmp_path / "var"),
    }
    environ.pop("REDIS_URL", None)
    return subprocess.run(
        [*BIRTHCERT, *args], env=environ, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_service_on_an_empty_database_refuses_to_start_and_says_to_migrate(
    unmigrated_postgres_env: dict[str, str], tmp_path: Path
) -> None:
    env = unmigrated_postgres_env
    status = birthcert(env, tmp_path, "db", "status")
    assert status.returncode == 1 and "NOT READY: run `birthcert db migrate`" in status.stdout
    assert "applications_events" in status.stdout  # named among the missing tables

    served = birthcert(env, tmp_path, "serve", "--port", "0")
    assert served.returncode == 2, served.stderr
    assert "run `birthcert db migrate` once before starting the service" in served.stderr
    assert "Traceback" not in served.stderr
    # Starting created nothing: the schema is still empty.
    assert schema_status(env).missing and schema_status(env).version == 0

    done = birthcert(env, tmp_path, "db", "migrate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"schema version:  {SCHEMA_VERSION}" in done.stdout and "missing tables:  none" in done.stdout
    assert birthcert(env, tmp_path, "db", "status").returncode == 0


def test_migrations_run_at_once_from_several_hosts_all_succeed(
    unmigrated_postgres_env: dict[str, str],
) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: migrate(unmigrated_postgres_env), range(4)))
    assert all(r.ready for r in results)
    db = Database.open(unmigrated_postgres_env)  # CREATE_TABLE=n: only checked, and found ready
    try:
        assert db.fetchall("SELECT version FROM birthcert_schema") == [(SCHEMA_VERSION,)]
    finally:
        db.close()


def test_a_database_migrated_by_a_newer_version_is_refused_not_rewritten(
    postgres_env: dict[str, str],
) -> None:
    db = Database.open(postgres_env)
    try:
        db.execute(
            "INSERT INTO birthcert_schema (version, applied_at) VALUES (?, 'later')", (SCHEMA_VERSION + 1,)
        )
    finally:
        db.close()
    with pytest.raises(SchemaError, match="newer birthcert"):
        Database.open(postgres_env)
    with pytest.raises(SchemaError, match="newer birthcert"):
        migrate(postgres_env)


def test_a_connection_lost_to_a_failover_is_replaced_at_the_next_statement(
    postgres_env: dict[str, str],
) -> None:
    db = Database.open(postgres_env)
    try:
        pid = db.fetchone("SELECT pg_backend_pid()")
        assert pid is not None
        with psycopg.connect(
            host=postgres_env["POSTGRES_HOST"],
            port=postgres_env["POSTGRES_PORT"],
            dbname=postgres_env["POSTGRES_DBNAME"],
            user=postgres_env["POSTGRES_USER"] or None,
            autocommit=True,
        ) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid[0],))
        # The statement in flight fails as the service's dependencies do: answered 503, retried by followers.
        with pytest.raises(psycopg.OperationalError):
            db.position("status")
        assert db.position("status") == 0  # a new connection, in the same schema
        assert db.fetchone("SELECT pg_backend_pid()") != pid
    finally:
        db.close()
