"""Chaos campaign: inject the runbook's faults one at a time, guarded by Prometheus SLOs.

For each selected scenario (pod-kill, redis-unavailable, s3-5xx, postgres-failover,
memory-pressure), in its own task group:

1. **baseline** — steady state from Prometheus (availability, error rate, p95).
2. **inject_<scenario>** (setup) — the fault is written to the ledger, then caused.
3. **guard_slo** — a deferrable sensor polls the SLOs (every second in the lab). A breach,
   or missing data, reverts the fault at once from the triggerer and fails the guard.
4. **revert_<scenario>** (teardown) — always runs; a no-op when the guard already reverted.
5. **recovery** — waits for the SLOs to be green again; more than 2 minutes fails it.
6. **verdict** — passed / failed (which SLO, by how much) / aborted.

Before any fault, **preflight** takes the chaos/DR lock and checks the runbook's safety
rules (environment allows chaos, >= 80 % of the pods ready, no deployment, no alert firing, no
other chaos or DR run, no fault left open). After the last scenario the lock is released and
**write_report** writes JSON + HTML (error-rate and p95 charts, fault window shaded) with the
weighted resilience score; **notify_slack** posts the summary. `dry_run` is plan mode: it
stops after the baselines and writes into the report every call (and API request) each fault
would make, making none. `chaos_abort` reverts anything a dead run leaves behind.

**Schedule**: a scheduled run acts on the environment environments.yaml's `schedules.chaos_campaign`
names (staging), decided by `start_campaign` (refused, naming that field, when the environment forbids
chaos); a manual run acts on its form.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import TaskGroup, dag, get_current_context, setup, task, teardown

from resilience.chaos.params import campaign_params
from resilience.chaos.tasks import end_of_campaign, preflight
from resilience.context import pulled, run_id
from resilience.faults.base import SCENARIOS
from resilience.sensors import SloGuardSensor, SloRecoverySensor


@dag(
    dag_id=Path(__file__).stem,
    description=__doc__.partition("\n")[0],
    doc_md=__doc__,
    schedule="0 10 * * 2",  # Tuesdays 10:00 UTC, when the team is around
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["chaos", "slo"],
    default_args={"owner": "platform-engineering", "retries": 0},
    params=campaign_params(),
)
def chaos_campaign():
    @task
    def start_campaign() -> dict:
        """Validate Params, config and Connections; open the campaign record."""
        from resilience.chaos import steps
        from resilience.schedules import params_for_run

        ctx = get_current_context()
        started_at = ctx["dag_run"].start_date or ctx["ti"].start_date
        dag_id = ctx["dag"].dag_id  # a scheduled run: the environment from environments.yaml's schedules
        return steps.start_campaign(params_for_run(dag_id, ctx["dag_run"].run_type, ctx["params"]), run_id(), dag_id,
                                    started_at)

    @task(trigger_rule="none_failed")
    def baseline(run: dict, scenario: str) -> dict:
        """Steady state before the fault; the guard's spec."""
        from resilience.chaos import steps

        return steps.baseline(run, run_id(), scenario)

    @setup
    def inject(run: dict, scenario: str) -> dict:
        """Ledger first, then the fault."""
        from resilience.chaos import steps

        return steps.inject(run, run_id(), get_current_context()["dag"].dag_id, scenario)

    @teardown
    def revert(run: dict, scenario: str, fault: dict) -> dict:
        """Undo the fault (always runs; idempotent)."""
        from resilience.chaos import steps

        return steps.revert(run, run_id(), scenario, fault, by=get_current_context()["ti"].task_id)

    @task(trigger_rule="all_done")
    def verdict(run: dict, scenario: str) -> dict:
        """passed / failed / aborted, from what the steps reported."""
        from resilience.chaos import steps

        group = get_current_context()["ti"].task_id.rpartition(".")[0]
        key = group.replace("-", "_")
        return steps.judge(run, run_id(), scenario, fault=pulled(f"{group}.inject_{key}"),
                           guard=pulled(f"{group}.guard_slo", "event"), reverted=pulled(f"{group}.revert_{key}"),
                           recovery=pulled(f"{group}.recovery", "event"))

    run = start_campaign()
    checked = preflight(run)
    previous = checked
    for scenario in SCENARIOS:
        key = scenario.replace("-", "_")
        with TaskGroup(group_id=key, tooltip=scenario):
            spec = baseline(run, scenario)
            fault = inject.override(task_id=f"inject_{key}")(run, scenario)
            guard = SloGuardSensor(task_id="guard_slo", spec=spec, fault=fault, duration_s="{{ params.duration }}")
            undone = revert.override(task_id=f"revert_{key}")(run, scenario, fault)
            recovery = SloRecoverySensor(task_id="recovery", spec=spec, reverted=undone)
            judged = verdict(run, scenario)
            [checked, previous] >> spec >> fault >> guard >> undone >> recovery >> judged
        previous = judged
    previous >> end_of_campaign()


chaos_campaign()
