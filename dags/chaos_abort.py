"""Chaos abort: revert faults left behind, or every open fault at once (Immediate Abort).

The runbook's "Immediate Abort" (`pkill -f chaos-inject`, delete network policies, scale
back up) made safe: every fault is in the ledger with what its revert needs, so this DAG
reverts from the ledger instead of killing processes.

- **Scheduled (every 2 minutes), `mode=sweep`**: reverts faults whose run is no longer
  running, faults still open past their planned end (a runner killed with SIGKILL cannot
  mark its run failed), and faults whose revert failed; frees the chaos/DR lock when its
  holder no longer runs.
- **Manual, `mode=abort_all`**: reverts every open fault now, whatever its run, and frees the
  lock. Use it when chaos causes severe impact.

Each revert is idempotent and serialised per fault, so racing the campaign's own revert
teardown is safe. The run fails when a revert fails (the fault stays open for the next sweep).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import Param, dag, get_current_context, task


@dag(
    dag_id=Path(__file__).stem,
    description=__doc__.partition("\n")[0],
    doc_md=__doc__,
    schedule="*/2 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["chaos", "safety"],
    default_args={"owner": "platform-engineering", "retries": 0},
    params={
        "mode": Param("sweep", type="string", enum=["sweep", "abort_all"], title="Mode",
                      values_display={"sweep": "Sweep: revert orphaned faults only",
                                      "abort_all": "Immediate Abort: revert every open fault now"},
                      description="sweep (the schedule) reverts only what a finished or dead run left behind; "
                                  "abort_all reverts every open fault now and frees the chaos/DR lock."),
    },
)
def chaos_abort():
    @task
    def abort_faults() -> dict:
        """Revert orphaned faults (sweep) or every open fault (abort_all), from the ledger."""
        from resilience.chaos import steps
        from resilience.config import load_config
        from resilience.errors import ChecksFailedError
        from resilience.ledger import ledger_for

        ctx = get_current_context()
        control = load_config().control_db_conn_id
        ledger = ledger_for(control)
        abort_all = ctx["params"]["mode"] == "abort_all"

        def run_state(dag_id: str, run_id: str) -> str | None:
            try:
                return str(ctx["ti"].get_dagrun_state(dag_id=dag_id, run_id=run_id))
            except Exception:
                return None

        entries = [(e, "immediate abort") for e in ledger.open_entries()] if abort_all else \
            steps.orphans(ledger, run_state)
        done = steps.revert_all(control, entries, by=f"chaos_abort:{ctx['params']['mode']}")
        done["lock_released_from"] = steps.release_stale_lock(ledger, run_state, force=abort_all)
        if done["failed"]:
            raise ChecksFailedError(f"{len(done['failed'])} revert(s) failed: {done['failed']}")
        return done

    abort_faults()


chaos_abort()
