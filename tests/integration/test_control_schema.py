"""The control database's versioned schema, migrated on the lab's control-plane PostgreSQL: an empty database,
one at the previous version, one from before the schema was versioned, and one newer than the package."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from resilience.control_schema import LATEST, MIGRATIONS, V1, migrate
from resilience.ledger import Ledger

pytestmark = pytest.mark.integration


@pytest.fixture
def database(lab) -> Iterator[str]:
    """A throw-away database on the lab's control server: its DSN."""
    server = lab["connections"]["resilience_control_db"]
    name = f"schema_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(server, dbname=name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def indexes(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}


def versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]


EVERY_TABLE = {"fault_ledger", "run_locks", "lock_events", "chaos_runs", "chaos_scenarios", "drill_runs",
               "drill_phases", "dr_operations", "dr_regions", "dns_changes", "incidents", "incident_items",
               "incident_reminders", "schema_version"}


def test_an_empty_database_gets_every_table_once(database):
    assert migrate(lambda: psycopg.connect(database)) == (0, LATEST)
    assert tables(database) == EVERY_TABLE
    assert versions(database) == [m.version for m in MIGRATIONS]
    assert migrate(lambda: psycopg.connect(database)) == (LATEST, LATEST)  # nothing left to do
    assert versions(database) == [m.version for m in MIGRATIONS]


def test_a_database_at_the_previous_version_keeps_its_rows_and_gains_what_came_after(database):
    previous = MIGRATIONS[-2]
    with psycopg.connect(database) as conn:
        for migration in MIGRATIONS[:-1]:
            conn.execute(migration.sql)
        conn.execute("CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL, "
                     "applied_at timestamptz NOT NULL DEFAULT clock_timestamp())")
        conn.execute("INSERT INTO schema_version (version, name) SELECT v, 'earlier' FROM generate_series(1, %s) v",
                     (previous.version,))
    ledger = Ledger(lambda: psycopg.connect(database))  # first use migrates: from the previous version
    assert versions(database) == [m.version for m in MIGRATIONS]
    assert "fault_ledger_run" in indexes(database)
    entry = ledger.record_intent("manual__schema", "chaos_campaign", "lab", "s3-5xx", {"error_rate": 0.1},
                                 expires_in_s=60)
    assert [e.id for e in ledger.entries("manual__schema")] == [entry]


def test_a_database_from_before_versioning_is_taken_as_it_is(database):
    """What the stores created with IF NOT EXISTS before the schema had versions: migration 1 finds its
    tables there and keeps their rows."""
    with psycopg.connect(database) as conn:
        conn.execute(V1)
        conn.execute("INSERT INTO chaos_runs (run_id, dag_id, environment, params, started_at) "
                     "VALUES ('scheduled__old', 'chaos_campaign', 'lab', '{}', now())")
    assert migrate(lambda: psycopg.connect(database)) == (0, LATEST)
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT run_id FROM chaos_runs").fetchall() == [("scheduled__old",)]


def test_a_database_newer_than_the_package_is_refused(database):
    migrate(lambda: psycopg.connect(database))
    with psycopg.connect(database) as conn:
        conn.execute("INSERT INTO schema_version (version, name) VALUES (%s, 'from a newer package')", (LATEST + 1,))
    with pytest.raises(RuntimeError, match=f"schema version {LATEST + 1}, newer than this package's {LATEST}"):
        migrate(lambda: psycopg.connect(database))
