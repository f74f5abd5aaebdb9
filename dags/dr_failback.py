"""Return to primary: stability, data sync, a gated canary ramp with automatic rollback, DNS cutover.

The runbook's "DR Recovery (Returning to Primary)", run once the primary region is back:

1. **start_failback** — validates Params, config and Connections, refuses unless DR serves
   the environment, takes the chaos/DR lock.
2. **wait_primary_stable** — deferrable: Prometheus must show the primary up for the whole
   window (default 2 hours), with metrics covering it and a low error rate.
3. **sync_dr_writes** — rows created or updated in DR since it took over are copied to the
   primary (`COPY` into a staging table, applied as upserts, one transaction); rows both sides
   changed are conflicts, resolved by `conflict_policy` and listed in the report. Rows DR
   deleted are listed too but not deleted on the primary: the report fails while any is left.
4. **canary_ramp** — deferrable, Flagger-style: for each step (default 10/25/50/75/100 % to
   the primary) set the Route53 weights, then analyse for `interval_s`: the primary's error
   rate and p95 against DR's. No data is a failed check; `threshold` failed checks move all
   traffic back to DR (0/100) at once, in the trigger, and stop the run.
5. **dns_cutover** — primary 100 / DR 0 confirmed; **final_sync** copies what DR took during
   the ramp; **final_validation** runs the Recovery Validation Checklist on the primary;
   **decommission_dr** stops the DR app and drops its database.

`ensure_traffic` (all_done) leaves DNS on a healthy region whatever failed, and a run that did
not reach the cutover (a failed step, a lost triggerer) puts all traffic back on DR. The report
charts the weights and both regions' gate metrics over the ramp.

**Plan mode** (`dry_run`): `start_failback` validates as above, then lists every call the run
would make: the data sync (which DR database, into which primary), the exact Route53
`ChangeBatch` of each canary step (and of the rollback to DR), the cutover, the final sync and
the decommission. The list is in its log and the report; it takes no lock, `plan_gate` skips
every acting task (the sensors included) and `ensure_traffic` does not touch DNS.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, get_current_context, task

from resilience.context import run_id
from resilience.dr.closing_tasks import closing_tasks
from resilience.dr.failback_params import failback_params
from resilience.dr.plan import plan_gate
from resilience.sensors import CanaryRampSensor, PrimaryStableSensor


@dag(
    dag_id=Path(__file__).stem,
    description=__doc__.partition("\n")[0],
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["dr", "failback", "canary", "route53"],
    default_args={"owner": "platform-engineering", "retries": 0},
    params=failback_params(),
)
def dr_failback():
    @task
    def start_failback() -> dict:
        """Validate; refuse unless DR serves; take the lock; build the sensors' specs."""
        from resilience.dr import failback

        ctx = get_current_context()
        started_at = ctx["dag_run"].start_date or ctx["ti"].start_date
        return failback.start_failback(dict(ctx["params"]), run_id(), ctx["dag"].dag_id, started_at)

    @task
    def sync_dr_writes(run: dict) -> dict:
        """Rows written in DR since it took over -> primary (COPY + upsert, conflicts reported)."""
        from resilience.dr import failback

        return failback.sync_dr_writes(run, run_id())

    @task
    def dns_cutover(run: dict) -> dict:
        """Primary 100 / DR 0, confirmed; the primary serves again."""
        from resilience.dr import failback

        return failback.dns_cutover(run, run_id())

    @task
    def final_sync(run: dict) -> dict:
        """What DR took during the ramp, copied back once it takes no more traffic."""
        from resilience.dr import failback

        return failback.sync_dr_writes(run, run_id(), step="final_sync")

    @task
    def final_validation(run: dict) -> list:
        """The runbook's Recovery Validation Checklist on the primary region."""
        from resilience.dr import operation_conclude

        return operation_conclude.final_validation(run, run_id(), "primary", None, None, None)

    @task
    def decommission_dr(run: dict) -> dict:
        """Stop the DR app and drop the DR database (skipped when decommission_dr is false)."""
        from resilience.dr import failback

        return failback.decommission_dr(run, run_id())

    run = start_failback()
    stable = PrimaryStableSensor(task_id="wait_primary_stable", spec=run["stability"])
    ramp = CanaryRampSensor(task_id="canary_ramp", spec=run["canary"])
    synced = sync_dr_writes(run)
    plan_gate()(run) >> stable  # plan mode (dry_run) stops here
    stable >> synced >> ramp
    cutover = dns_cutover(run)
    ramp >> cutover
    final = final_sync(run)
    validated = final_validation(run)
    closing = closing_tasks("start_failback", traffic_home_unless="dns_cutover")
    cutover >> final >> validated >> decommission_dr(run) >> closing


dr_failback()
