"""Chaos abort: revert faults left behind, or every open fault at once (Immediate Abort).

The runbook's "Immediate Abort" (`pkill -f chaos-inject`, delete network policies, scale
back up) made safe: every fault is in the ledger with what its revert needs, so this DAG
reverts from the ledger instead of killing processes.

- **Scheduled (every 2 minutes), `mode=sweep`**: reverts faults whose run has ended, faults
  still open past their planned end (a runner killed with SIGKILL cannot mark its run
  failed), and faults whose revert failed; frees the chaos/DR lock when its holder has ended
  (or, when its state cannot be read, once its lease ran out). A run whose state cannot be
  read is never touched before its fault expires. On by default: a safety net must not wait
  for someone to unpause it.
- **Manual, `mode=abort_all`**: takes the chaos/DR lock away first, so a running campaign
  injects nothing more and ends `aborted`, then reverts every open fault now, whatever its
  run. Use it when chaos causes severe impact.

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
    is_paused_upon_creation=False,  # the safety net runs without anyone unpausing it
    tags=["chaos", "safety"],
    default_args={"owner": "platform-engineering", "retries": 0},
    params={
        "mode": Param("sweep", type="string", enum=["sweep", "abort_all"], title="Mode",
                      values_display={"sweep": "Sweep: revert orphaned faults only",
                                      "abort_all": "Immediate Abort: revert every open fault now"},
                      description="sweep (the schedule) reverts only what a finished or dead run left behind; "
                                  "abort_all reverts every open fault now and frees the chaos/DR lock."),
        "reason": Param("", type="string", maxLength=500, title="Reason",
                        description="Why (abort_all): kept in the lock's audit trail and shown to the aborted "
                                    "campaign. Ignored by sweep."),
    },
)
def chaos_abort():
    @task
    def abort_faults() -> dict:
        """Revert orphaned faults (sweep) or every open fault (abort_all), from the ledger."""
        from resilience.chaos import steps

        ctx = get_current_context()
        return steps.abort_or_sweep(ctx["params"]["mode"], ctx["params"].get("reason") or "", ctx["run_id"])

    abort_faults()


chaos_abort()
