"""What every run shares, whichever DAG it is: taking the chaos/DR lock and giving it back, and the final
verdict that fails the Airflow run when the report says it did not pass.

Taking the lock: one rule for every DAG, with staleness and an audited break. A lock whose holder run has
ended (or whose state is unknown past its lease) is stale and is taken over, audited. A live holder keeps
it, unless the caller breaks it on purpose with a reason (DR activation in the middle of an incident): the
break is audited, and any chaos fault still open is reverted first (no fault may run under a DR). The
campaign's preflight asks the ledger itself: a held lock is one of its reported checks.

The first pieces of the run journal (issue 11): each DAG still keeps its own record (chaos/record.py,
dr/record.py, dr/operation.py); its lock and closing steps go through here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from resilience.errors import ChecksFailedError, RefusedError
from resilience.ledger import RUN_LOCK, ledger_for
from resilience.run_state import RunStateReader, liveness, lock_staleness

log = logging.getLogger(__name__)


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
    nothing), so the Airflow UI shows the verdict. ``written``: the write-report task's result; ``what``
    names the run in the error ("DR drill", "chaos campaign in staging")."""
    if not written:
        raise ChecksFailedError(f"the {what} did not complete: no report was written (see the failed task)")
    status = written["status"]
    if status == "planned":
        log.info("Plan run: nothing was changed; the planned calls are in %s", written["report_html"])
        return status
    if status != passing:
        raise ChecksFailedError(f"{what} {status}; see {Path(written['report_html']).name} "
                                f"({written['report_html']})")
    return status
