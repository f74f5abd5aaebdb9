"""The fault ledger: a durable row for every fault, written BEFORE the side effect.

States: ``injecting`` (intent recorded, side effect may have started) -> ``active`` ->
``reverted`` | ``revert_failed``. Anything not ``reverted`` is something to undo: the revert
teardown, the guard (on a breach) and ``chaos_abort`` all revert through this table, and a
revert is idempotent, so whichever comes first wins and the others find nothing to do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from resilience.controldb import ControlDb, postgres_connect

log = logging.getLogger(__name__)

OPEN_STATES = ("injecting", "active", "revert_failed")
RUN_LOCK = "chaos-dr"  # one lock for every chaos and DR run: no chaos during a DR, no two faults at once
LOCK_SPACE = 7361  # first key of the advisory locks that serialise reverts of one entry

SCHEMA = """
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
CREATE INDEX IF NOT EXISTS fault_ledger_open ON fault_ledger (state) WHERE state <> 'reverted';
CREATE TABLE IF NOT EXISTS run_locks (
    name         text PRIMARY KEY,
    run_id       text NOT NULL,
    dag_id       text NOT NULL,
    acquired_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""

COLUMNS = ("id", "run_id", "dag_id", "environment", "scenario", "state", "plan", "revert_info", "error",
           "created_at", "injected_at", "reverted_at", "reverted_by", "observed", "expires_at")


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    run_id: str
    dag_id: str
    environment: str
    scenario: str
    state: str
    plan: dict[str, Any]
    revert_info: dict[str, Any]
    error: str | None
    created_at: datetime
    injected_at: datetime | None
    reverted_at: datetime | None
    reverted_by: str | None
    observed: dict[str, Any]
    expires_at: datetime | None


class Ledger:
    """The ledger and the run lock in the control database (``connect`` = DB-API factory)."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._execute = ControlDb(connect).execute

    @contextmanager
    def revert_lock(self, entry_id: int) -> Iterator[None]:
        """Hold a session advisory lock on the entry while reverting it (released on close)."""
        conn = self._connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_SPACE, entry_id))
            yield
        finally:
            conn.close()

    def ensure_schema(self) -> None:
        self._execute(SCHEMA)

    # -- faults ------------------------------------------------------------------------

    def record_intent(self, run_id: str, dag_id: str, environment: str, scenario: str, plan: dict,
                      expires_in_s: float) -> int:
        """Write the row before anything is touched; returns the ledger id.

        ``expires_in_s``: the fault's whole planned life (duration + revert + grace)."""
        self.ensure_schema()
        rows = self._execute(
            "INSERT INTO fault_ledger (run_id, dag_id, environment, scenario, state, plan, expires_at)"
            " VALUES (%s, %s, %s, %s, 'injecting', %s::jsonb, clock_timestamp() + %s * interval '1 second')"
            " RETURNING id",
            (run_id, dag_id, environment, scenario, json.dumps(plan), expires_in_s),
        )
        return rows[0][0]

    def mark_active(self, entry_id: int, revert_info: dict) -> None:
        self._execute(
            "UPDATE fault_ledger SET state = 'active', revert_info = %s::jsonb, injected_at = clock_timestamp()"
            " WHERE id = %s AND state = 'injecting'",
            (json.dumps(revert_info), entry_id),
        )

    def mark_reverted(self, entry_id: int, by: str, observed: dict | None = None) -> bool:
        """True when this call closed the entry (False: someone else already had)."""
        rows = self._execute(
            "UPDATE fault_ledger SET state = 'reverted', reverted_at = clock_timestamp(), reverted_by = %s,"
            " error = NULL, observed = %s::jsonb WHERE id = %s AND state <> 'reverted' RETURNING id",
            (by, json.dumps(observed or {}), entry_id),
        )
        return bool(rows)

    def mark_revert_failed(self, entry_id: int, error: str) -> None:
        self._execute("UPDATE fault_ledger SET state = 'revert_failed', error = %s WHERE id = %s AND state <> "
                      "'reverted'", (error, entry_id))

    def get(self, entry_id: int) -> LedgerEntry:
        rows = self._execute(f"SELECT {', '.join(COLUMNS)} FROM fault_ledger WHERE id = %s", (entry_id,))
        if not rows:
            raise LookupError(f"no ledger entry #{entry_id}")
        return LedgerEntry(*rows[0])

    def open_entries(self, run_id: str | None = None) -> list[LedgerEntry]:
        """Entries not yet reverted (all runs, or one), oldest first."""
        self.ensure_schema()
        sql = f"SELECT {', '.join(COLUMNS)} FROM fault_ledger WHERE state = ANY(%s)"
        args: tuple = (list(OPEN_STATES),)
        if run_id is not None:
            sql += " AND run_id = %s"
            args += (run_id,)
        return [LedgerEntry(*row) for row in self._execute(sql + " ORDER BY id", args)]

    def expired_entries(self) -> list[LedgerEntry]:
        """Open entries past their planned life: orphans whatever their run's state says."""
        return [e for e in self.open_entries() if e.expires_at is not None and e.expires_at < self.now()]

    def now(self) -> datetime:
        return self._execute("SELECT clock_timestamp()")[0][0]

    # -- the run lock (shared by chaos and DR DAGs) --------------------------------------

    def acquire_lock(self, name: str, run_id: str, dag_id: str) -> tuple[bool, str | None, str | None]:
        """Take ``name`` for ``run_id``: (acquired, holder run_id, holder dag_id). Re-entrant per run."""
        self.ensure_schema()
        rows = self._execute(
            "INSERT INTO run_locks (name, run_id, dag_id) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET run_id = run_locks.run_id RETURNING run_id, dag_id",
            (name, run_id, dag_id),
        )
        holder_run, holder_dag = rows[0]
        return holder_run == run_id, holder_run, holder_dag

    def release_lock(self, name: str, run_id: str) -> bool:
        return bool(self._execute("DELETE FROM run_locks WHERE name = %s AND run_id = %s RETURNING name",
                                  (name, run_id)))

    def locks(self) -> list[tuple[str, str, str, datetime]]:
        self.ensure_schema()
        return self._execute("SELECT name, run_id, dag_id, acquired_at FROM run_locks ORDER BY name")

    def break_lock(self, name: str, run_id: str) -> bool:
        """Free a lock whose holder is gone (chaos_abort's sweep); only if ``run_id`` still holds it."""
        return self.release_lock(name, run_id)


def ledger_for(control_conn_id: str) -> Ledger:
    """The ledger behind an Airflow Postgres Connection."""
    return Ledger(postgres_connect(control_conn_id))


def release_run_lock(control_conn_id: str, run_id: str) -> bool:
    """Give the chaos/DR lock back (a no-op, logged, when ``run_id`` does not hold it)."""
    ledger = ledger_for(control_conn_id)
    ledger.ensure_schema()  # a run refused before it took the lock may be the first to ask
    released = ledger.release_lock(RUN_LOCK, run_id)
    if not released:
        log.warning("Not releasing %s: run %s does not hold it", RUN_LOCK, run_id)
    return released
