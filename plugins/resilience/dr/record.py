"""The drill's one record: a row per run and a row per phase in the control database.

Created when the drill starts, filled in by each phase (start, end, outcome, details, even
when the phase raises), completed by the report. Reports and Slack render from it only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from resilience.control_schema import ensure_migrated
from resilience.controldb import ControlDb

log = logging.getLogger(__name__)



def _json(value: Any) -> str:
    return json.dumps(value, default=str)


class DrillRecord:
    """Read and write one drill's record through ``connect`` (a DB-API connection factory)."""

    def __init__(self, connect: Callable[[], Any], run_id: str) -> None:
        ensure_migrated(connect)
        self._execute = ControlDb(connect).execute
        self.run_id = run_id

    def start(self, dag_id: str, environment: str, dr_environment: str, params: dict, started_at: datetime
              ) -> None:
        self._execute(
            """
            INSERT INTO drill_runs (run_id, dag_id, environment, dr_environment, params, started_at)
            VALUES (%s, %s, %s, %s, %s::jsonb, %s)
            ON CONFLICT (run_id) DO UPDATE SET status = 'running', ended_at = NULL
            """,
            (self.run_id, dag_id, environment, dr_environment, _json(params), started_at),
        )

    @contextmanager
    def phase(self, name: str) -> Iterator[dict[str, Any]]:
        """Record a phase around the block; the yielded dict becomes the phase's details."""
        details: dict[str, Any] = {}
        started = datetime.now(UTC)
        self._execute(
            """
            INSERT INTO drill_phases (run_id, phase, started_at, status) VALUES (%s, %s, %s, 'running')
            ON CONFLICT (run_id, phase) DO UPDATE
              SET started_at = EXCLUDED.started_at, ended_at = NULL, status = 'running', error = NULL
            """,
            (self.run_id, name, started),
        )
        status, error = "failed", None
        try:
            yield details
            status = "success"
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._execute(
                "UPDATE drill_phases SET ended_at = %s, status = %s, error = %s, details = %s::jsonb"
                " WHERE run_id = %s AND phase = %s",
                (datetime.now(UTC), status, error, _json(details), self.run_id, name),
            )

    def skip_phase(self, name: str, reason: str) -> None:
        now = datetime.now(UTC)
        self._execute(
            """
            INSERT INTO drill_phases (run_id, phase, started_at, ended_at, status, details)
            VALUES (%s, %s, %s, %s, 'skipped', %s::jsonb)
            ON CONFLICT (run_id, phase) DO UPDATE SET status = 'skipped', details = EXCLUDED.details
            """,
            (self.run_id, name, now, now, _json({"reason": reason})),
        )

    def finish(self, status: str, rto_s: float | None, rpo_s: float | None, summary: dict) -> None:
        self._execute(
            "UPDATE drill_runs SET ended_at = %s, status = %s, rto_s = %s, rpo_s = %s, summary = %s::jsonb"
            " WHERE run_id = %s",
            (datetime.now(UTC), status, rto_s, rpo_s, _json(summary), self.run_id),
        )

    def load(self) -> dict[str, Any]:
        """The run row and its phases (in start order) as plain dicts."""
        runs = self._execute(
            "SELECT run_id, dag_id, environment, dr_environment, params, started_at, ended_at, status,"
            " rto_s, rpo_s, summary FROM drill_runs WHERE run_id = %s",
            (self.run_id,),
        )
        if not runs:
            raise LookupError(f"no drill record for run {self.run_id!r}")
        keys = ("run_id", "dag_id", "environment", "dr_environment", "params", "started_at", "ended_at",
                "status", "rto_s", "rpo_s", "summary")
        record = dict(zip(keys, runs[0], strict=True))
        phases = self._execute(
            "SELECT phase, started_at, ended_at, status, error, details FROM drill_phases"
            " WHERE run_id = %s ORDER BY started_at",
            (self.run_id,),
        )
        record["phases"] = [
            dict(zip(("phase", "started_at", "ended_at", "status", "error", "details"), row, strict=True))
            for row in phases
        ]
        return record

    def history(self, environment: str, limit: int = 12) -> list[dict[str, Any]]:
        """Earlier finished drills of ``environment``, oldest first (for the trend chart; plan runs measured
        nothing and are left out)."""
        rows = self._execute(
            """
            SELECT run_id, started_at, status, rto_s, rpo_s,
                   (params->>'rto_target')::float, (params->>'rpo_target')::float
            FROM drill_runs
            WHERE environment = %s AND status NOT IN ('running', 'planned') AND run_id <> %s
            ORDER BY started_at DESC LIMIT %s
            """,
            (environment, self.run_id, limit),
        )
        keys = ("run_id", "started_at", "status", "rto_s", "rpo_s", "rto_target_min", "rpo_target_min")
        return [dict(zip(keys, r, strict=True)) for r in reversed(rows)]
