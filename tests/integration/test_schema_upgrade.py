"""A store at schema version 4 (decision 0039) is brought to the current version at the next start on SQLite (``birthcert db migrate``
on PostgreSQL): ``elicense_status_bits`` gains ``sealed_grounds`` (an issuer's revocation, decision 0040) without
losing or changing a bit already set, and the append-only guard still stands. A version 7 store's statistics gain
出生一件事's clock (decision 0049): the two columns of ``statistics_applications`` and the open parts' table, its
rows kept."""

from __future__ import annotations

import sqlite3

import pytest

from projections.sql import SCHEMA_VERSION, Database

V4_BITS = (
    "CREATE TABLE elicense_status_bits (list_id TEXT NOT NULL, idx BIGINT NOT NULL, licence_id TEXT NOT NULL UNIQUE, "
    "reason TEXT NOT NULL, sealed_replaced_by TEXT, position BIGINT NOT NULL, set_at TEXT NOT NULL, "
    "PRIMARY KEY (list_id, idx))"
)


def test_a_version_4_store_gains_the_ground_column_and_keeps_its_bits(sqlite_env: dict[str, str]) -> None:
    assert SCHEMA_VERSION == 8
    conn = sqlite3.connect(sqlite_env["SQLITE_DBNAME"])
    conn.execute(V4_BITS)
    conn.execute(
        "INSERT INTO elicense_status_bits VALUES ('1', 42, 'L-OLD', 'reissued', NULL, 7, '2026-12-01')"
    )
    conn.execute("CREATE TABLE birthcert_schema (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    conn.execute("INSERT INTO birthcert_schema VALUES (4, '2026-12-01')")
    conn.commit()
    conn.close()

    db = Database.open({**sqlite_env, "CREATE_TABLE": "y"})
    try:
        assert db.schema_version() == SCHEMA_VERSION
        assert db.fetchall("SELECT licence_id, reason, sealed_grounds FROM elicense_status_bits") == [
            ("L-OLD", "reissued", None)
        ]
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE elicense_status_bits SET sealed_grounds = 'x'")
    finally:
        db.close()


V7_APPLICATIONS = (
    "CREATE TABLE statistics_applications (application_id TEXT PRIMARY KEY, province TEXT NOT NULL, "
    "institution TEXT NOT NULL, started_day TEXT NOT NULL, review_days INTEGER, first_submitted_at TEXT, "
    "due_at TEXT, handed_over INTEGER NOT NULL)"
)


def test_a_version_7_store_gains_the_bundle_clock_and_keeps_what_it_remembered(
    sqlite_env: dict[str, str],
) -> None:
    conn = sqlite3.connect(sqlite_env["SQLITE_DBNAME"])
    conn.execute(V7_APPLICATIONS)
    conn.execute(
        "INSERT INTO statistics_applications VALUES ('a-1', 'HE', 'SJZFY01', '2026-12-01', 6, NULL, NULL, 0)"
    )
    conn.execute("CREATE TABLE birthcert_schema (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    conn.execute("INSERT INTO birthcert_schema VALUES (7, '2026-12-01')")
    conn.commit()
    conn.close()

    db = Database.open({**sqlite_env, "CREATE_TABLE": "y"})
    try:
        assert db.schema_version() == SCHEMA_VERSION
        assert db.fetchall(
            "SELECT application_id, review_days, bundle_days, last_submitted_at FROM statistics_applications"
        ) == [("a-1", 6, None, None)]
        assert db.fetchall("SELECT * FROM statistics_bundle_open") == []
    finally:
        db.close()
