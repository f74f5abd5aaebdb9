"""The run journal: what every DAG run records, whichever DAG it is, in one place.

- **Open and close a run**: one ``runs`` row (its DAG, kind, environment, Params, start, end, status, the
  figures its verdict rests on, what it learnt on the way, the summary it closed with).
- **Record a step**: one ``run_steps`` row per step, under a scope (a campaign's scenario, a DR operation's
  runbook phase; none for the drill): start, end, outcome (success, failed, skipped), the error, and the
  evidence the step put in its details. A retried step replaces its row; a step that raises is recorded
  failed (skipped for a skip) and the exception goes on.
- **Take and give back the chaos/DR lock**: one rule for every DAG, with staleness and an audited break. A
  lock whose holder run has ended (or whose state is unknown past its lease) is stale and is taken over,
  audited. A live holder keeps it, unless the caller breaks it on purpose with a reason (DR activation in
  the middle of an incident): the break is audited, and any chaos fault still open is reverted first (no
  fault may run under a DR). The campaign's preflight asks the ledger itself: a held lock is one of its
  reported checks.
- **The final verdict**: the run's last task fails unless its report passed, so the Airflow UI shows it.

Reports, the Slack summaries and the Resilience page read the journal only. Each DAG's report shapes the
rows its own way (``Journal.scenarios``, ``Journal.phases``, ``Journal.operation_steps``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from resilience.control_schema import ensure_migrated
from resilience.controldb import ControlDb, postgres_connect
from resilience.errors import ChecksFailedError, RefusedError
from resilience.ledger import RUN_LOCK, ledger_for
from resilience.run_state import RunStateReader, liveness, lock_staleness

log = logging.getLogger(__name__)

KINDS = ("chaos_campaign", "dr_drill", "dr_operation", "slo_verify")
RUN_COLUMNS = ("run_id", "dag_id", "kind", "environment", "dr_environment", "params", "started_at", "ended_at",
               "status", "score", "rto_s", "rpo_s", "details", "summary")
STEP_COLUMNS = ("scope", "step", "status", "started_at", "ended_at", "duration_s", "error", "details")


def _json(value: Any) -> str:
    return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


class Journal:
    """One run's journal in the control database behind ``connect`` (a DB-API connection factory; the
    schema is migrated on first use)."""

    def __init__(self, connect: Callable[[], Any], run_id: str) -> None:
        ensure_migrated(connect)
        self.db = ControlDb(connect)
        self.run_id = run_id

    @classmethod
    def for_conn(cls, conn_id: str, run_id: str) -> Journal:
        return cls(postgres_connect(conn_id), run_id)

    # -- the run ------------------------------------------------------------------------------

    def open(self, dag_id: str, kind: str, environment: str, params: dict[str, Any], started_at: datetime, *,
             dr_environment: str | None = None) -> None:
        """Open the run (a retried start task opens it again: running, no end, the Params it was given)."""
        if kind not in KINDS:
            raise ValueError(f"journal kind {kind!r}: expected one of {', '.join(KINDS)}")
        self.db.execute(
            "INSERT INTO runs (run_id, dag_id, kind, environment, dr_environment, params, started_at)"
            " VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s)"
            " ON CONFLICT (run_id) DO UPDATE SET status = 'running', ended_at = NULL, params = EXCLUDED.params",
            (self.run_id, dag_id, kind, environment, dr_environment, _json(params), started_at))

    def note(self, **details: Any) -> None:
        """Merge ``details`` into what the run learnt on the way (the path taken, the DNS change, ...)."""
        self.db.execute("UPDATE runs SET details = details || %s::jsonb WHERE run_id = %s",
                        (_json(details), self.run_id))

    def close(self, status: str, summary: dict[str, Any], *, at: datetime | None = None, score: float | None = None,
              rto_s: float | None = None, rpo_s: float | None = None) -> None:
        """Close the run with its verdict's status and figures; ``at``: the moment its report was built, so
        both say the same end (now by default)."""
        self.db.execute(
            "UPDATE runs SET ended_at = %s, status = %s, score = %s, rto_s = %s, rpo_s = %s, summary = %s::jsonb"
            " WHERE run_id = %s",
            (at or datetime.now(UTC), status, score, rto_s, rpo_s, _json(summary), self.run_id))

    # -- steps --------------------------------------------------------------------------------

    def _write_step(self, scope: str, name: str, status: str, started_at: datetime, ended_at: datetime | None,
                    duration_s: float | None, error: str | None, details: Any) -> None:
        written = self.db.execute(
            "INSERT INTO run_steps (run_id, scope, step, status, started_at, ended_at, duration_s, error, details)"
            " SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb WHERE EXISTS (SELECT FROM runs WHERE run_id = %s)"
            " ON CONFLICT (run_id, scope, step) DO UPDATE SET"
            " status = EXCLUDED.status, started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at,"
            " duration_s = EXCLUDED.duration_s, error = EXCLUDED.error, details = EXCLUDED.details RETURNING id",
            (self.run_id, scope, name, status, started_at, ended_at, duration_s, error, _json(details), self.run_id))
        if not written:  # bookkeeping never fails a step (a revert above all): say what was not kept
            log.warning("Run %s has no journal (it was never opened): step %s%s (%s) not recorded", self.run_id,
                        f"{scope}/" if scope else "", name, status)

    @contextmanager
    def step(self, name: str, scope: str = "") -> Iterator[dict[str, Any]]:
        """Record the block as a step: running while it runs, then success, failed (the error kept) or
        skipped; what the block puts in the yielded dict is the step's evidence."""
        details: dict[str, Any] = {}
        started, clock = datetime.now(UTC), time.monotonic()
        self._write_step(scope, name, "running", started, None, None, None, details)
        status, error = "success", None
        try:
            yield details
        except BaseException as exc:
            status = "skipped" if type(exc).__name__ == "AirflowSkipException" else "failed"
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._write_step(scope, name, status, started, datetime.now(UTC), round(time.monotonic() - clock, 3),
                             error, details)

    def add_step(self, name: str, scope: str, status: str, started_at: datetime, ended_at: datetime,
                 details: dict[str, Any], error: str | None = None) -> None:
        """A step timed elsewhere (a wait the triggerer ran)."""
        self._write_step(scope, name, status, started_at, ended_at,
                         round((ended_at - started_at).total_seconds(), 3), error, details)

    def skip(self, name: str, scope: str, reason: str) -> None:
        now = datetime.now(UTC)
        self._write_step(scope, name, "skipped", now, now, 0.0, None, {"reason": reason})

    def put(self, scope: str, name: str, value: Any) -> None:
        """A step's outcome with no duration of its own (a campaign scenario's baseline, fault, verdict)."""
        now = datetime.now(UTC)
        self._write_step(scope, name, "success", now, now, 0.0, None, value)

    def values(self, scope: str) -> dict[str, Any]:
        """The evidence of each step under ``scope``, by step ({} when it has none)."""
        rows = self.db.execute("SELECT step, details FROM run_steps WHERE run_id = %s AND scope = %s",
                               (self.run_id, scope))
        return {step: details for step, details in rows}

    # -- reading ------------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        """The run and its steps, shaped for its kind's report: a campaign's ``scenarios`` (in the order of its
        Params, each with its steps' evidence by name), a drill's ``phases``, a DR operation's ``steps`` (each
        with its runbook ``phase``)."""
        rows = self.db.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE run_id = %s", (self.run_id,))
        if not rows:
            raise LookupError(f"no run recorded in the journal for run {self.run_id!r}")
        run = dict(zip(RUN_COLUMNS, rows[0], strict=True))
        steps = [dict(zip(STEP_COLUMNS, r, strict=True)) for r in self.db.execute(
            f"SELECT {', '.join(STEP_COLUMNS)} FROM run_steps WHERE run_id = %s ORDER BY started_at, id",
            (self.run_id,))]
        return {**run, **shaped(run, steps)}

    def earlier(self, environment: str, limit: int = 12) -> list[dict[str, Any]]:
        """Earlier finished runs of this run's DAG in ``environment``, oldest first (plan runs changed
        nothing and are left out): the trend of the drill's report."""
        rows = self.db.execute(
            "SELECT run_id, started_at, status, score, rto_s, rpo_s, params FROM runs"
            " WHERE environment = %s AND dag_id = (SELECT dag_id FROM runs WHERE run_id = %s)"
            " AND status NOT IN ('running', 'planned') AND run_id <> %s ORDER BY started_at DESC LIMIT %s",
            (environment, self.run_id, self.run_id, limit))
        keys = ("run_id", "started_at", "status", "score", "rto_s", "rpo_s", "params")
        return [dict(zip(keys, r, strict=True)) for r in reversed(rows)]


def target_scope(service: str | None, scenario: str) -> str:
    """A campaign scenario's scope: its name, or ``<service>/<scenario>`` in a campaign across services."""
    return f"{service}/{scenario}" if service else scenario


def shaped(run: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Pure: the steps of ``run`` in the shape its kind's report reads."""
    if run["kind"] == "chaos_campaign":
        by_scope: dict[str, dict[str, Any]] = {}
        for s in steps:
            by_scope.setdefault(s["scope"], {})[s["step"]] = s["details"]
        names = run["params"].get("scenarios", [])
        services = run["params"].get("services")
        if not services:
            return {"scenarios": [{"scenario": name, **by_scope.get(name, {})} for name in names]}
        # a campaign across services: one scope per (service, scenario), "<service>/<scenario>"
        return {"scenarios": [{"scenario": name, "service": service, **by_scope.get(target_scope(service, name), {})}
                              for service in services for name in names]}
    if run["kind"] == "dr_drill":
        return {"phases": [{"phase": s["step"], "started_at": s["started_at"], "ended_at": s["ended_at"],
                            "status": s["status"], "error": s["error"], "details": s["details"]} for s in steps]}
    if run["kind"] == "dr_operation":
        return {"finished_at": run["ended_at"],
                "steps": [{"step": s["step"], "phase": s["scope"], "status": s["status"],
                           "start": _iso(s["started_at"]), "end": _iso(s["ended_at"]),
                           "duration_s": s["duration_s"], "details": s["details"], "error": s["error"]}
                          for s in steps]}
    return {"steps": steps}


def report_header(record: dict[str, Any], kind: str) -> dict[str, Any]:
    """Pure: the keys every report opens with, from the run's journal (each DAG adds its status, times and
    evidence)."""
    return {"kind": kind, "run_id": record["run_id"], "dag_id": record["dag_id"],
            "environment": record["environment"], "params": record["params"]}


# -- the chaos/DR lock and the verdict ----------------------------------------------------------

def take_run_lock(control_conn_id: str, run_id: str, dag_id: str, what: str, *,
                  run_state: RunStateReader | None = None, break_reason: str | None = None) -> None:
    """Hold the chaos/DR lock for ``run_id`` or raise :class:`RefusedError` naming the holder and the way out."""
    ledger = ledger_for(control_conn_id)
    acquired, holder_run, holder_dag = ledger.acquire_lock(RUN_LOCK, run_id, dag_id)
    if acquired:
        log.info("Lock %s held by this run", RUN_LOCK)
        return
    lock = next((h for h in ledger.held_locks() if h.name == RUN_LOCK and h.run_id == holder_run), None)
    if lock is not None:
        if run_state is None:
            from resilience.run_state import airflow_run_state

            run_state = airflow_run_state()
        state = run_state(lock.dag_id, lock.run_id)
        staleness = lock_staleness(liveness(state), state, lock.heartbeat_age_s, lock.lease_s)
        by = f"{dag_id} run {run_id}"
        if staleness.stale:
            log.warning("Taking over %s from %s run %s: %s", RUN_LOCK, lock.dag_id, lock.run_id, staleness.reason)
            ledger.break_lock(RUN_LOCK, lock.run_id, by=by, reason=f"stale: {staleness.reason}")
        elif break_reason:
            from resilience.chaos.abort import abort_everything

            log.warning("Breaking %s held by %s run %s (%s) on purpose: %s", RUN_LOCK, lock.dag_id, lock.run_id,
                        staleness.reason, break_reason)
            abort_everything(control_conn_id, ledger, by=f"break_lock:{dag_id}",
                             reason=f"break_lock by {by}: {break_reason}")
        else:
            raise RefusedError(
                f"{lock.dag_id} run {lock.run_id} holds the {RUN_LOCK} lock ({staleness.reason}): no {what} while "
                "chaos, a drill or another DR operation runs" + (
                    "; set break_lock with a reason to take it (audited)" if what == "DR activation" else ""))
    acquired, holder_run, holder_dag = ledger.acquire_lock(RUN_LOCK, run_id, dag_id)
    if not acquired:
        raise RefusedError(f"{holder_dag} run {holder_run} took the {RUN_LOCK} lock first: no {what}")
    log.info("Lock %s held by this run", RUN_LOCK)


def release_lock(run_id: str) -> bool:
    """Give the chaos/DR lock back (a no-op, logged, when ``run_id`` does not hold it)."""
    from resilience.config import load_config
    from resilience.ledger import release_run_lock

    return release_run_lock(load_config().control_db_conn_id, run_id)


def final_verdict(written: dict[str, Any] | None, what: str, passing: str = "passed") -> str:
    """The run's last task: fail it unless its report's status is ``passing`` (a plan run passes: it changed
    nothing), so the Airflow UI shows the verdict. ``written``: the write-report task's result (its
    environment, when it says, is named too); ``what`` names the run in the error ("DR drill")."""
    if not written:
        raise ChecksFailedError(f"the {what} did not complete: no report was written (see the failed task)")
    status = written["status"]
    if status == "planned":
        log.info("Plan run: nothing was changed; the planned calls are in %s", written["report_html"])
        return status
    if "environment" in written:
        what = f"{what} in {written['environment']}"
    if status != passing:
        raise ChecksFailedError(f"{what} {status}; see {Path(written['report_html']).name} "
                                f"({written['report_html']})")
    return status
