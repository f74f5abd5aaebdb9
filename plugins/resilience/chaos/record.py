"""The campaign's one record: a row per run and a row per scenario in the control database.

Opened by ``start_campaign``, filled in by each scenario's steps, completed by the report.
The report and the Slack message render from it only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from resilience.control_schema import ensure_migrated
from resilience.controldb import ControlDb


class CampaignRecord:
    def __init__(self, connect: Callable[[], Any], run_id: str) -> None:
        ensure_migrated(connect)
        self._execute = ControlDb(connect).execute
        self.run_id = run_id

    def start(self, dag_id: str, environment: str, params: dict, started_at: datetime) -> None:
        self._execute(
            "INSERT INTO chaos_runs (run_id, dag_id, environment, params, started_at)"
            " VALUES (%s, %s, %s, %s::jsonb, %s)"
            " ON CONFLICT (run_id) DO UPDATE SET status = 'running', ended_at = NULL",
            (self.run_id, dag_id, environment, json.dumps(params), started_at),
        )
        for position, scenario in enumerate(params["scenarios"]):
            self._execute(
                "INSERT INTO chaos_scenarios (run_id, scenario, position) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (self.run_id, scenario, position),
            )

    def step(self, scenario: str, step: str, value: Any) -> None:
        """Record one step's outcome for ``scenario`` (merged into its ``steps`` document)."""
        self._execute(
            "UPDATE chaos_scenarios SET steps = steps || jsonb_build_object(%s::text, %s::jsonb)"
            " WHERE run_id = %s AND scenario = %s",
            (step, json.dumps(value, default=str), self.run_id, scenario),
        )

    def finish(self, status: str, score: float | None, summary: dict) -> None:
        self._execute(
            "UPDATE chaos_runs SET ended_at = clock_timestamp(), status = %s, score = %s, summary = %s::jsonb"
            " WHERE run_id = %s",
            (status, score, json.dumps(summary, default=str), self.run_id),
        )

    def load_scenario(self, scenario: str) -> dict[str, Any]:
        """One scenario's steps so far ({} when it has none)."""
        rows = self._execute("SELECT steps FROM chaos_scenarios WHERE run_id = %s AND scenario = %s",
                             (self.run_id, scenario))
        return dict(rows[0][0]) if rows else {}

    def load(self) -> dict[str, Any]:
        rows = self._execute(
            "SELECT run_id, dag_id, environment, params, started_at, ended_at, status, score, summary"
            " FROM chaos_runs WHERE run_id = %s", (self.run_id,))
        if not rows:
            raise LookupError(f"no campaign record for run {self.run_id!r}")
        keys = ("run_id", "dag_id", "environment", "params", "started_at", "ended_at", "status", "score", "summary")
        record = dict(zip(keys, rows[0], strict=True))
        scenarios = self._execute(
            "SELECT scenario, steps FROM chaos_scenarios WHERE run_id = %s ORDER BY position", (self.run_id,))
        record["scenarios"] = [{"scenario": name, **steps} for name, steps in scenarios]
        return record
