"""What the manual DR DAGs (activation, failback, emergency rollback) record in the control DB.

- ``dr_operations``: one row per run: its params, the path taken, each step with its phase,
  timings, details and error, and the final status. Reports are built from it.
- ``dr_regions``: which region serves an environment now and, while DR is active, where the
  DR database is and from which moment its data starts (what failback syncs back).
- ``dns_changes``: every weight change of the API record, before and after, by which run:
  the audit trail, and what a traffic rollback goes back to.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from resilience.control_schema import ensure_migrated
from resilience.controldb import ControlDb, postgres_connect

log = logging.getLogger(__name__)



def _json(value: Any) -> str:
    return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))


class ControlTables:
    """The three tables over one connection factory (the schema migrated on first use)."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        ensure_migrated(connect)
        self.db = ControlDb(connect)

    @classmethod
    def for_conn(cls, conn_id: str) -> ControlTables:
        return cls(postgres_connect(conn_id))


class OperationRecord:
    """The ``dr_operations`` row of one run."""

    def __init__(self, tables: ControlTables, run_id: str) -> None:
        self.db = tables.db
        self.run_id = run_id

    def start(self, dag_id: str, environment: str, params: dict[str, Any], started_at: datetime) -> None:
        self.db.execute(
            "INSERT INTO dr_operations (run_id, dag_id, environment, params, started_at) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (run_id) DO UPDATE SET params = EXCLUDED.params",
            (self.run_id, dag_id, environment, _json(params), started_at))

    def update(self, **details: Any) -> None:
        """Merge ``details`` into the run's details (the path taken, the DNS change, ...)."""
        self.db.execute("UPDATE dr_operations SET details = details || %s::jsonb WHERE run_id = %s",
                        (_json(details), self.run_id))

    def add_step(self, step: dict[str, Any]) -> None:
        self.db.execute("UPDATE dr_operations SET steps = steps || %s::jsonb WHERE run_id = %s",
                        (_json([step]), self.run_id))

    @contextmanager
    def step(self, name: str, phase: str) -> Iterator[dict[str, Any]]:
        """Time a step of ``phase``; what the body puts in the yielded dict is kept; errors are recorded."""
        details: dict[str, Any] = {}
        start, clock = datetime.now(UTC), time.monotonic()
        status, error = "success", None
        try:
            yield details
        except BaseException as exc:
            status = "skipped" if type(exc).__name__ == "AirflowSkipException" else "failed"
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.add_step({"step": name, "phase": phase, "status": status, "start": start,
                          "end": datetime.now(UTC), "duration_s": round(time.monotonic() - clock, 3),
                          "details": details, "error": error})

    def skip(self, name: str, phase: str, reason: str) -> None:
        now = datetime.now(UTC)
        self.add_step({"step": name, "phase": phase, "status": "skipped", "start": now, "end": now,
                      "duration_s": 0.0, "details": {"reason": reason}, "error": None})

    def dr_episode(self, environment: str) -> int:
        """How many full DR activations of ``environment`` have restored a database, this one included."""
        rows = self.db.execute(
            "SELECT count(*) FROM dr_operations WHERE environment = %s AND dag_id = 'dr_activation'"
            " AND details -> 'path' ->> 'kind' = 'full_dr' AND (run_id = %s OR details ? 'restored')",
            (environment, self.run_id))
        return int(rows[0][0])

    def finish(self, status: str, at: datetime) -> None:
        """Close the run at ``at`` (the moment its report was built, so both say the same end)."""
        self.db.execute("UPDATE dr_operations SET status = %s, finished_at = %s WHERE run_id = %s",
                        (status, at, self.run_id))

    def load(self) -> dict[str, Any]:
        rows = self.db.execute(
            "SELECT run_id, dag_id, environment, params, status, details, steps, started_at, finished_at"
            " FROM dr_operations WHERE run_id = %s", (self.run_id,))
        if not rows:
            raise LookupError(f"no DR operation recorded for run {self.run_id}")
        keys = ("run_id", "dag_id", "environment", "params", "status", "details", "steps", "started_at",
                "finished_at")
        return dict(zip(keys, rows[0], strict=True))


class RegionState:
    """Which region serves an environment (``dr_regions``); no row means the primary, DR inactive."""

    def __init__(self, tables: ControlTables) -> None:
        self.db = tables.db

    def get(self, environment: str) -> dict[str, Any]:
        rows = self.db.execute(
            "SELECT serving, dr_active, run_id, activated_at, recovery_point, database, app_url"
            " FROM dr_regions WHERE environment = %s", (environment,))
        if not rows:
            return {"serving": "primary", "dr_active": False, "run_id": None, "activated_at": None,
                    "recovery_point": None, "database": None, "app_url": None}
        keys = ("serving", "dr_active", "run_id", "activated_at", "recovery_point", "database", "app_url")
        return dict(zip(keys, rows[0], strict=True))

    def set(self, environment: str, **fields: Any) -> None:
        current = {**self.get(environment), **fields}
        self.db.execute(
            "INSERT INTO dr_regions (environment, serving, dr_active, run_id, activated_at, recovery_point, database,"
            " app_url) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (environment) DO UPDATE SET"
            " serving = EXCLUDED.serving, dr_active = EXCLUDED.dr_active, run_id = EXCLUDED.run_id,"
            " activated_at = EXCLUDED.activated_at, recovery_point = EXCLUDED.recovery_point,"
            " database = EXCLUDED.database, app_url = EXCLUDED.app_url, updated_at = clock_timestamp()",
            (environment, current["serving"], current["dr_active"], current["run_id"], current["activated_at"],
             current["recovery_point"], _json(current["database"]) if current["database"] else None,
             current["app_url"]))
        log.info("Region state of %s: serving=%s dr_active=%s", environment, current["serving"], current["dr_active"])


class DnsLog:
    """``dns_changes``: each weight change, written right after Route53 accepted it."""

    def __init__(self, tables: ControlTables) -> None:
        self.db = tables.db

    def record(self, run_id: str, dag_id: str, zone: str, record: str, before: dict[str, int],
               after: dict[str, int], reason: str) -> None:
        self.db.execute(
            "INSERT INTO dns_changes (run_id, dag_id, zone, record, before, after, reason)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (run_id, dag_id, zone, record, _json(before), _json(after), reason))

    def for_run(self, run_id: str) -> list[dict[str, Any]]:
        """The changes one run made, oldest first (for its report)."""
        rows = self.db.execute(
            "SELECT at, before, after, reason FROM dns_changes WHERE run_id = %s ORDER BY id", (run_id,))
        return [{"at": at.isoformat(), "before": before, "after": after, "reason": reason}
                for at, before, after, reason in rows]

    def last(self, record: str) -> dict[str, Any] | None:
        rows = self.db.execute(
            "SELECT id, run_id, dag_id, zone, before, after, reason, at FROM dns_changes WHERE record = %s"
            " ORDER BY id DESC LIMIT 1", (record,))
        if not rows:
            return None
        return dict(zip(("id", "run_id", "dag_id", "zone", "before", "after", "reason", "at"), rows[0], strict=True))


def take_run_lock(control_conn_id: str, run_id: str, dag_id: str, what: str, break_reason: str | None = None) -> None:
    """The chaos/DR lock: no chaos, drill or other DR operation while this one runs (stale locks are taken over)."""
    from resilience.journal import take_run_lock as take

    take(control_conn_id, run_id, dag_id, what, break_reason=break_reason)
