"""The control database's versioned schema, migrated on the lab's control-plane PostgreSQL: an empty database,
one at the previous version, one from before the schema was versioned, and one newer than the package."""

from __future__ import annotations

from functools import partial

import psycopg
import pytest

from resilience.control_schema import LATEST, MIGRATIONS, V1, migrate
from resilience.journal import Journal
from resilience.ledger import Ledger

pytestmark = pytest.mark.integration


def tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def indexes(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}


def versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]


EVERY_TABLE = {"fault_ledger", "run_locks", "lock_events", "runs", "run_steps", "dr_regions", "dns_changes",
               "incidents", "incident_items", "incident_reminders", "schema_version"}


# one record of each kind as the three record modules wrote them before the journal (migration 3 moves them)
RECORDS_AT_VERSION_2 = (
    "INSERT INTO chaos_runs (run_id, dag_id, environment, params, started_at, ended_at, status, score)"
    " VALUES ('scheduled__campaign', 'chaos_campaign', 'lab', '{\"scenarios\": [\"pod-kill\", \"s3-5xx\"]}',"
    " now(), now(), 'completed', 100)",
    "INSERT INTO chaos_scenarios (run_id, scenario, position, steps) VALUES"
    " ('scheduled__campaign', 'pod-kill', 0, '{\"fault\": {\"ledger_id\": 3}, \"verdict\": {\"status\": \"passed\"}}'),"
    " ('scheduled__campaign', 's3-5xx', 1, '{}')",
    "INSERT INTO drill_runs (run_id, dag_id, environment, dr_environment, params, started_at, status, rto_s)"
    " VALUES ('scheduled__drill', 'dr_monthly_drill', 'production', 'dr-sandbox', '{}', now(), 'failed', 61.5)",
    "INSERT INTO drill_phases (run_id, phase, started_at, ended_at, status, details) VALUES"
    " ('scheduled__drill', 'verify_backups', now() - interval '1 min', now(), 'success', '{\"backups\": 2}'),"
    " ('scheduled__drill', 'restore', now(), now(), 'failed', '{}')",
    "INSERT INTO dr_operations (run_id, dag_id, environment, params, status, details, steps, started_at, finished_at)"
    " VALUES ('manual__failover', 'dr_activation', 'lab', '{}', 'passed', '{\"kind\": \"dr_activation\"}', '["
    "{\"step\": \"declare_incident\", \"phase\": \"assessment\", \"status\": \"success\","
    " \"start\": \"2026-11-28T11:00:00+00:00\", \"end\": \"2026-11-28T11:00:00.5+00:00\", \"duration_s\": 0.5,"
    " \"details\": {}, \"error\": null},"
    "{\"step\": \"dns_cutover\", \"phase\": \"traffic_cutover\", \"status\": \"failed\","
    " \"start\": \"2026-11-28T11:01:00+00:00\", \"end\": \"2026-11-28T11:01:01+00:00\", \"duration_s\": 1,"
    " \"details\": {}, \"error\": \"boom\"},"
    "{\"step\": \"dns_cutover\", \"phase\": \"traffic_cutover\", \"status\": \"success\","
    " \"start\": \"2026-11-28T11:02:00+00:00\", \"end\": \"2026-11-28T11:02:02+00:00\", \"duration_s\": 2,"
    " \"details\": {}, \"error\": null}]', '2026-11-28T11:00:00Z', '2026-11-28T11:03:00Z')",
)


def test_an_empty_database_gets_every_table_once(database):
    assert migrate(lambda: psycopg.connect(database)) == (0, LATEST)
    assert tables(database) == EVERY_TABLE
    assert versions(database) == [m.version for m in MIGRATIONS]
    assert migrate(lambda: psycopg.connect(database)) == (LATEST, LATEST)  # nothing left to do
    assert versions(database) == [m.version for m in MIGRATIONS]


def test_a_database_at_version_2_keeps_its_rows_and_gains_what_came_after(database):
    previous = MIGRATIONS[1]  # version 2: the record tables migration 3 moves into the journal
    with psycopg.connect(database) as conn:
        for migration in MIGRATIONS[:2]:
            conn.execute(migration.sql)
        conn.execute("CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL, "
                     "applied_at timestamptz NOT NULL DEFAULT clock_timestamp())")
        conn.execute("INSERT INTO schema_version (version, name) SELECT v, 'earlier' FROM generate_series(1, %s) v",
                     (previous.version,))
        for statement in RECORDS_AT_VERSION_2:
            conn.execute(statement)
        conn.execute("INSERT INTO fault_ledger (run_id, dag_id, environment, scenario, state, plan) VALUES"
                     " ('scheduled__campaign', 'chaos_campaign', 'lab', 'pod-kill', 'reverted', '{}')")
    ledger = Ledger(lambda: psycopg.connect(database))  # first use migrates: from the previous version
    assert versions(database) == [m.version for m in MIGRATIONS]
    assert "fault_ledger_run" in indexes(database)
    journal = partial(Journal, lambda: psycopg.connect(database))
    campaign = journal("scheduled__campaign").load()
    assert (campaign["kind"], campaign["status"], campaign["score"]) == ("chaos_campaign", "completed", 100.0)
    assert campaign["scenarios"] == [{"scenario": "pod-kill", "verdict": {"status": "passed"}, "fault": {"ledger_id": 3}},
                                     {"scenario": "s3-5xx"}]  # in the Params' order, one that never ran included
    drill = journal("scheduled__drill").load()
    assert (drill["kind"], drill["dr_environment"], drill["rto_s"]) == ("dr_drill", "dr-sandbox", 61.5)
    assert [(p["phase"], p["status"], p["details"]) for p in drill["phases"]] == [
        ("verify_backups", "success", {"backups": 2}), ("restore", "failed", {})]
    operation = journal("manual__failover").load()
    assert (operation["kind"], operation["details"]["kind"]) == ("dr_operation", "dr_activation")
    # a step the old record kept twice (a retried task) keeps its last attempt, as a drill phase always did
    assert [(s["step"], s["phase"], s["status"], s["duration_s"]) for s in operation["steps"]] == [
        ("declare_incident", "assessment", "success", 0.5), ("dns_cutover", "traffic_cutover", "success", 2.0)]
    assert operation["steps"][1]["start"] == "2026-11-28T11:02:00+00:00"
    assert operation["finished_at"] is not None
    entry = ledger.record_intent("manual__schema", "chaos_campaign", "lab", "s3-5xx", {"error_rate": 0.1},
                                 expires_in_s=60)
    assert [e.id for e in ledger.entries("manual__schema")] == [entry]
    # migration 4: a fault from before it was the single-service campaign's (its app, no dependencies named)
    [old] = ledger.entries("scheduled__campaign")
    assert (old.scenario, old.service, old.depends_on) == ("pod-kill", "app", [])


def test_a_database_from_before_versioning_is_taken_as_it_is(database):
    """What the stores created with IF NOT EXISTS before the schema had versions: migration 1 finds its
    tables there and keeps their rows."""
    with psycopg.connect(database) as conn:
        conn.execute(V1)
        conn.execute("INSERT INTO chaos_runs (run_id, dag_id, environment, params, started_at) "
                     "VALUES ('scheduled__old', 'chaos_campaign', 'lab', '{}', now())")
    assert migrate(lambda: psycopg.connect(database)) == (0, LATEST)
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT run_id, kind FROM runs").fetchall() == [("scheduled__old", "chaos_campaign")]


def test_a_database_newer_than_the_package_is_refused(database):
    migrate(lambda: psycopg.connect(database))
    with psycopg.connect(database) as conn:
        conn.execute("INSERT INTO schema_version (version, name) VALUES (%s, 'from a newer package')", (LATEST + 1,))
    with pytest.raises(RuntimeError, match=f"schema version {LATEST + 1}, newer than this package's {LATEST}"):
        migrate(lambda: psycopg.connect(database))
