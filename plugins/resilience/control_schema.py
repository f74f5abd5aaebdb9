"""The control-plane database's schema, in one place, versioned.

Every table the product keeps (ledger, run lock, run records, region state, incidents) is created here by
numbered migrations, applied in order, each once, in one transaction under an advisory lock (two workers
starting at once do not race). ``schema_version`` holds the version reached. Migration 1 is the schema as
the modules created it before it was versioned (``IF NOT EXISTS`` throughout), so a database from then
migrates like an empty one. A new table or column is a new migration at the end; a migration that has
shipped is never edited.

Applied by ``resilience db migrate`` (a deployment step), by ``lab up`` for the lab's control database, and
on first use by any store (once per process and Connection: :func:`ensure_migrated`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


V1 = """
-- the fault ledger and the chaos/DR run lock (ledger.py)
CREATE TABLE IF NOT EXISTS fault_ledger (
    id            bigserial PRIMARY KEY,
    run_id        text NOT NULL,
    dag_id        text NOT NULL,
    environment   text NOT NULL,
    scenario      text NOT NULL,
    state         text NOT NULL CHECK (state IN ('injecting', 'active', 'reverted', 'revert_failed')),
    plan          jsonb NOT NULL,                 -- what inject will do and what revert needs
    revert_info   jsonb NOT NULL DEFAULT '{}',    -- what inject did (pids, previous values)
    error         text,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    injected_at   timestamptz,
    reverted_at   timestamptz,
    reverted_by   text
);
ALTER TABLE fault_ledger ADD COLUMN IF NOT EXISTS observed jsonb NOT NULL DEFAULT '{}';
-- past this, an open fault is an orphan whatever its run's state says (a SIGKILLed runner
-- cannot update its run): chaos_abort's sweep reverts it
ALTER TABLE fault_ledger ADD COLUMN IF NOT EXISTS expires_at timestamptz;
-- why it was reverted (the guard's breach, an abort), for the verdict
ALTER TABLE fault_ledger ADD COLUMN IF NOT EXISTS revert_reason text;
-- the claim that serialises inject and revert of this entry
ALTER TABLE fault_ledger ADD COLUMN IF NOT EXISTS claim_token text;
ALTER TABLE fault_ledger ADD COLUMN IF NOT EXISTS claimed_by text;
ALTER TABLE fault_ledger ADD COLUMN IF NOT EXISTS claim_until timestamptz;
-- the guard's last reading of this fault: a gap between two is time the fault ran unwatched
ALTER TABLE fault_ledger ADD COLUMN IF NOT EXISTS guard_seen_at timestamptz;
CREATE INDEX IF NOT EXISTS fault_ledger_open ON fault_ledger (state) WHERE state <> 'reverted';
CREATE TABLE IF NOT EXISTS run_locks (
    name         text PRIMARY KEY,
    run_id       text NOT NULL,
    dag_id       text NOT NULL,
    acquired_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
ALTER TABLE run_locks ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz NOT NULL DEFAULT clock_timestamp();
ALTER TABLE run_locks ADD COLUMN IF NOT EXISTS lease_s double precision NOT NULL DEFAULT 1800;
-- every change of hands of a lock, with who and why (breaks are audited)
CREATE TABLE IF NOT EXISTS lock_events (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    name         text NOT NULL,
    action       text NOT NULL CHECK (action IN ('taken', 'released', 'broken')),
    run_id       text NOT NULL,
    dag_id       text NOT NULL,
    by_whom      text NOT NULL,
    reason       text NOT NULL DEFAULT ''
);

-- chaos campaign records (chaos/record.py)
CREATE TABLE IF NOT EXISTS chaos_runs (
    run_id       text PRIMARY KEY,
    dag_id       text NOT NULL,
    environment  text NOT NULL,
    params       jsonb NOT NULL,
    started_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    status       text NOT NULL DEFAULT 'running',   -- running | completed | failed | aborted | refused
    score        double precision,
    summary      jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS chaos_scenarios (
    run_id      text NOT NULL REFERENCES chaos_runs ON DELETE CASCADE,
    scenario    text NOT NULL,
    position    integer NOT NULL,
    steps       jsonb NOT NULL DEFAULT '{}',      -- baseline, fault, guard, revert, recovery, verdict
    PRIMARY KEY (run_id, scenario)
);

-- DR drill records (dr/record.py)
CREATE TABLE IF NOT EXISTS drill_runs (
    run_id          text PRIMARY KEY,
    dag_id          text NOT NULL,
    environment     text NOT NULL,
    dr_environment  text NOT NULL,
    params          jsonb NOT NULL,
    started_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    status          text NOT NULL DEFAULT 'running',   -- running | passed | failed
    rto_s           double precision,
    rpo_s           double precision,
    summary         jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS drill_phases (
    run_id      text NOT NULL REFERENCES drill_runs ON DELETE CASCADE,
    phase       text NOT NULL,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    status      text NOT NULL,                        -- running | success | failed | skipped
    error       text,
    details     jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, phase)
);

-- DR operations, region state and DNS changes (dr/operation.py, since dr/region_state.py)
CREATE TABLE IF NOT EXISTS dr_operations (
    run_id       text PRIMARY KEY,
    dag_id       text NOT NULL,
    environment  text NOT NULL,
    params       jsonb NOT NULL,
    status       text NOT NULL DEFAULT 'running',
    details      jsonb NOT NULL DEFAULT '{}',
    steps        jsonb NOT NULL DEFAULT '[]',
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz
);
CREATE TABLE IF NOT EXISTS dr_regions (
    environment     text PRIMARY KEY,
    serving         text NOT NULL CHECK (serving IN ('primary', 'dr')),
    dr_active       boolean NOT NULL,
    run_id          text,
    activated_at    timestamptz,
    recovery_point  timestamptz,
    database        jsonb,
    app_url         text,
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS dns_changes (
    id       bigserial PRIMARY KEY,
    run_id   text NOT NULL,
    dag_id   text NOT NULL,
    zone     text NOT NULL,
    record   text NOT NULL,
    before   jsonb NOT NULL,
    after    jsonb NOT NULL,
    reason   text NOT NULL,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- incidents and their post-mortem follow-ups (incidents/store.py)
CREATE TABLE IF NOT EXISTS incidents (
    id                   text PRIMARY KEY,
    dag_id               text NOT NULL,
    run_id               text NOT NULL UNIQUE,
    environment          text NOT NULL,
    name                 text NOT NULL,
    severity             text NOT NULL CHECK (severity IN ('P0', 'P1', 'P2', 'P3')),
    slack_channel        text NOT NULL,
    declared_at          timestamptz NOT NULL,
    report_path          text,
    pagerduty_dedup_key  text
);
CREATE TABLE IF NOT EXISTS incident_items (
    incident_id  text NOT NULL REFERENCES incidents ON DELETE CASCADE,
    item         text NOT NULL,
    stage        text NOT NULL,
    due_at       timestamptz NOT NULL,
    done_at      timestamptz,
    done_by      text,
    PRIMARY KEY (incident_id, item)
);
CREATE TABLE IF NOT EXISTS incident_reminders (
    incident_id  text NOT NULL REFERENCES incidents ON DELETE CASCADE,
    stage        text NOT NULL,
    channel      text NOT NULL,
    sent_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (incident_id, stage)
);
"""

# the Resilience page lists recent runs and the sweeper asks for a run's ledger rows: both by index
V2 = """
CREATE INDEX IF NOT EXISTS fault_ledger_run ON fault_ledger (run_id);
CREATE INDEX IF NOT EXISTS chaos_runs_started ON chaos_runs (started_at DESC);
CREATE INDEX IF NOT EXISTS drill_runs_started ON drill_runs (started_at DESC);
CREATE INDEX IF NOT EXISTS dr_operations_started ON dr_operations (started_at DESC);
"""

# one run journal (journal.py) for every DAG in place of the campaign, drill and DR-operation records: their
# rows move over (a DR operation's retried step keeps its last attempt, as a drill phase always did)
V3 = """
CREATE TABLE runs (
    run_id          text PRIMARY KEY,
    dag_id          text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('chaos_campaign', 'dr_drill', 'dr_operation', 'slo_verify')),
    environment     text NOT NULL,
    dr_environment  text,                              -- a drill's restore target
    params          jsonb NOT NULL,
    started_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    status          text NOT NULL DEFAULT 'running',   -- running, then the verdict: passed, failed, completed, ...
    score           double precision,                  -- a campaign's resilience score
    rto_s           double precision,                  -- a drill's measured RTO and RPO
    rpo_s           double precision,
    details         jsonb NOT NULL DEFAULT '{}',       -- what the run learnt on the way (path, DNS change)
    summary         jsonb NOT NULL DEFAULT '{}'        -- what it closed with (verdicts, checks, report)
);
CREATE INDEX runs_started ON runs (started_at DESC);
CREATE TABLE run_steps (
    id          bigserial PRIMARY KEY,
    run_id      text NOT NULL REFERENCES runs ON DELETE CASCADE,
    scope       text NOT NULL DEFAULT '',              -- a campaign's scenario, a DR operation's runbook phase
    step        text NOT NULL,
    status      text NOT NULL,                         -- running | success | failed | skipped
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    duration_s  double precision,
    error       text,
    details     jsonb NOT NULL DEFAULT '{}',           -- the step's evidence
    UNIQUE (run_id, scope, step)
);

INSERT INTO runs (run_id, dag_id, kind, environment, params, started_at, ended_at, status, score, summary)
SELECT run_id, dag_id, 'chaos_campaign', environment, params, started_at, ended_at, status, score, summary
FROM chaos_runs;
INSERT INTO run_steps (run_id, scope, step, status, started_at, ended_at, duration_s, details)
SELECT s.run_id, s.scenario, e.key, 'success', r.started_at, r.started_at, 0, e.value
FROM chaos_scenarios s JOIN chaos_runs r USING (run_id), jsonb_each(s.steps) e;

INSERT INTO runs (run_id, dag_id, kind, environment, dr_environment, params, started_at, ended_at, status, rto_s,
                  rpo_s, summary)
SELECT run_id, dag_id, 'dr_drill', environment, dr_environment, params, started_at, ended_at, status, rto_s, rpo_s,
       summary
FROM drill_runs;
INSERT INTO run_steps (run_id, scope, step, status, started_at, ended_at, duration_s, error, details)
SELECT run_id, '', phase, status, started_at, ended_at, extract(epoch FROM ended_at - started_at), error, details
FROM drill_phases;

INSERT INTO runs (run_id, dag_id, kind, environment, params, started_at, ended_at, status, details)
SELECT run_id, dag_id, 'dr_operation', environment, params, started_at, finished_at, status, details
FROM dr_operations;
INSERT INTO run_steps (run_id, scope, step, status, started_at, ended_at, duration_s, error, details)
SELECT DISTINCT ON (o.run_id, e.value->>'phase', e.value->>'step')
       o.run_id, coalesce(e.value->>'phase', ''), e.value->>'step', e.value->>'status',
       (e.value->>'start')::timestamptz, (e.value->>'end')::timestamptz, (e.value->>'duration_s')::float,
       e.value->>'error', coalesce(e.value->'details', '{}')
FROM dr_operations o, jsonb_array_elements(o.steps) WITH ORDINALITY e(value, n)
ORDER BY o.run_id, e.value->>'phase', e.value->>'step', e.n DESC;

DROP TABLE chaos_scenarios, chaos_runs, drill_phases, drill_runs, dr_operations;
"""

V4 = """
-- the service a fault targets and the shared dependencies it has (e.g. postgres, redis): admission keeps at
-- most the environment's blast radius open at once and never two on one service or one dependency. Rows from
-- before were the single-service campaign's: its app, with no dependencies named.
ALTER TABLE fault_ledger ADD COLUMN service text NOT NULL DEFAULT 'app';
ALTER TABLE fault_ledger ADD COLUMN depends_on jsonb NOT NULL DEFAULT '[]'
    CHECK (jsonb_typeof(depends_on) = 'array');
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "ledger, run lock, run records, region state, incidents", V1),
    Migration(2, "indexes for recent runs and a run's ledger rows", V2),
    Migration(3, "one run journal (runs, run_steps) for every DAG", V3),
    Migration(4, "fault_ledger: the service a fault targets and its dependencies (blast radius)", V4),
)
LATEST = MIGRATIONS[-1].version
LOCK_KEY = 7_426_011  # pg_advisory_xact_lock key: one migration at a time per database

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT clock_timestamp()
)"""


def migrate(connect: Callable[[], Any]) -> tuple[int, int]:
    """Bring the database behind ``connect`` (a DB-API factory) to :data:`LATEST`; returns (from, to)."""
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            cur.execute(VERSION_TABLE)
            cur.execute("SELECT coalesce(max(version), 0) FROM schema_version")
            current = int(cur.fetchone()[0])
            if current > LATEST:
                raise RuntimeError(f"the control database is at schema version {current}, newer than this "
                                   f"package's {LATEST}: upgrade the package on every worker")
            for migration in MIGRATIONS:
                if migration.version > current:
                    cur.execute(migration.sql)
                    cur.execute("INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                                (migration.version, migration.name))
        conn.commit()
    finally:
        conn.close()
    if current < LATEST:
        log.info("Control database schema migrated from version %d to %d", current, LATEST)
    return current, LATEST


_MIGRATED: set[str] = set()  # Connection ids this process has brought to LATEST


def ensure_migrated(connect: Callable[[], Any]) -> None:
    """Migrate on first use: once per process for a Connection's factory (``postgres_connect``), every time
    for an anonymous one (a test's)."""
    key = getattr(connect, "conn_id", None)
    if key is not None and key in _MIGRATED:
        return
    migrate(connect)
    if key is not None:
        _MIGRATED.add(key)
