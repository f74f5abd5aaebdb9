"""Chaos across services: each fault on each of the environment's services, in parallel within the blast radius.

The environment lists its services in environments.yaml (`services`: name, pod selector, SLO queries,
`depends_on`). One **mapped task group per service x scenario** (dynamic task mapping), each:

1. **inject** (setup) — plans the fault and writes its ledger row when the **blast radius** admits it:
   at most `chaos.blast_radius` (K) faults open at once across all runs, never two on one service, never
   two on services that share a dependency. Until then it waits in the triggerer, holding no worker slot.
   Once admitted it measures the service's **baseline** (its steady state, its own SLO queries), so no other
   fault starts on the service meanwhile.
2. **guard_slo** — the deferrable guard applies the fault after a healthy first reading and reverts it
   at once on a breach. It runs in the `resilience_blast_radius` pool (K slots, deferred tasks count):
   the pool spreads the work, the ledger is the bound (a pool set too large cannot exceed K).
3. **revert** (teardown) — always runs; **recovery**; **verdict**.

`dry_run` plans each fault (the calls and API requests it would make, in the report) and takes no slot,
no baseline and no lock beyond preflight's.

Preflight is the campaign's (lock, safety checks); the report groups verdicts per service with each
service's resilience score. The chaos/DR lock is one for all environments: one campaign (of either DAG)
or DR operation at a time, so K bounds the faults of that one run.

**Trigger**: manual, from the form (no schedule: a campaign across every service is planned, not routine).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, get_current_context, task, task_group, teardown

from resilience.chaos.blast_radius import POOL
from resilience.chaos.params import campaign_params
from resilience.chaos.tasks import end_of_campaign, preflight
from resilience.context import pulled, run_id
from resilience.sensors import InjectFault, SloGuardSensor, SloRecoverySensor


@dag(
    dag_id=Path(__file__).stem,
    description=__doc__.partition("\n")[0],
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=64,  # the mapped groups' waits are deferred: they hold no worker slot
    tags=["chaos", "slo", "services"],
    # a group's later steps before other groups' injects: with "downstream" (the default) every waiting inject
    # outranked the baselines, reverts and recoveries of the faults already admitted, which then started too
    # late for their planned window or their recovery bound when worker slots were few
    default_args={"owner": "platform-engineering", "retries": 0, "weight_rule": "upstream"},
    params=campaign_params(across_services=True),
)
def chaos_services():
    @task
    def start_campaign() -> dict:
        """Validate Params (services among the environment's), config and Connections; open the record."""
        from resilience.chaos import steps

        ctx = get_current_context()
        started_at = ctx["dag_run"].start_date or ctx["ti"].start_date
        return steps.start_campaign(ctx["params"], run_id(), ctx["dag"].dag_id, started_at, every_service=True)

    @task
    def targets(run: dict) -> list[dict]:
        """One mapped group per (service, scenario)."""
        from resilience.chaos.params import parse_campaign_params
        from resilience.config import load_config

        params = parse_campaign_params(run, load_config())
        return [{"service": service, "scenario": scenario} for service, scenario in params.targets()]

    @teardown
    def revert(run: dict, scenario: str, service: str, fault: dict) -> dict:
        """Undo the fault (always runs; idempotent)."""
        from resilience.chaos import steps

        return steps.revert(run, run_id(), scenario, fault, by=get_current_context()["ti"].task_id, service=service)

    @task(trigger_rule="all_done")
    def verdict(run: dict, scenario: str, service: str) -> dict:
        """passed / failed / aborted, from what the steps reported."""
        from resilience.chaos import steps

        def here(task_id: str, key: str = "return_value") -> dict | None:
            return pulled(f"fault.{task_id}", key, same_map_index=True)

        return steps.judge(run, run_id(), scenario, fault=here("inject"), guard=here("guard_slo", "event"),
                           reverted=here("revert"), recovery=here("recovery", "event"), service=service)

    run = start_campaign()
    checked = preflight(run)

    @task_group(group_id="fault")
    def fault_on_service(service: str, scenario: str):
        fault = InjectFault(task_id="inject", run=run, scenario=scenario, service=service).as_setup()
        spec = fault.output["spec"]  # the baseline the inject measured once admitted: the guard's spec
        guard = SloGuardSensor(task_id="guard_slo", spec=spec, fault=fault.output, duration_s="{{ params.duration }}",
                               pool=POOL)
        undone = revert(run, scenario, service, fault.output)
        recovery = SloRecoverySensor(task_id="recovery", spec=spec, reverted=undone)
        judged = verdict(run, scenario, service)
        fault >> guard >> undone >> recovery >> judged
        return judged

    chosen = targets(run)
    checked >> chosen  # the groups start only after preflight
    faults = fault_on_service.expand_kwargs(chosen)
    faults >> end_of_campaign()


chaos_services()
