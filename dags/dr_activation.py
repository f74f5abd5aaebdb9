"""DR activation: the runbook's decision tree, then restore, deploy, verify and cut traffic over to DR.

Trigger it by hand when the primary region is failing. Each question of the runbook's
"DR Activation Decision Tree" is a Param (**yes** / **no**) or **auto** (detected: health
checks of the primary region, the age and size of the newest backup):

```
Is primary region accessible?         YES -> regional_failover (promote the replica; DNS unchanged)
└─ NO -> Full DR activation           data loss acceptable + time critical -> restore_fast
                                      data loss acceptable                 -> restore_latest
                                      time critical                        -> restore_latest
                                      otherwise                            -> restore_pitr
```

Phases and their budgets (scaled to the RTO target; runbook minutes for 30):

1. **Assessment & communication (0-5)** — `start_activation` validates every Param, config
   entry and Connection, answers the questions and takes the chaos/DR lock (no chaos during a
   DR); `declare_incident` records the incident at its severity (`severity`: auto is P0 for a full DR
   activation, P1 for a regional failover), opens a Statuspage incident and escalates as
   `defaults.escalation` says: the severity's Slack channels and, for P0, PagerDuty. The report folder
   gets the runbook's Incident Report drafted from the run's own timeline; `postmortem_followups`
   reminds the incident's channel of its post-mortem items until they are marked done.
2. **DR environment (5-15)** — `restore_*` restores the primary's pgBackRest backups from the DR
   region's repository (repo2: the primary region's is lost with it) into the DR region's new
   database and moves its sequences ahead (DR ids never collide with the primary's, so failback
   can merge). The report names the repository that served the restore.
3. **Application (15-25)** — `deploy_app` starts the app in DR; `verify_dr` checks `/health`,
   `/api/health/database` and every replica. DNS is untouched until this passes.
4. **Traffic cutover (25-30)** — `dns_cutover` sets the Route53 weights primary 0 / DR 100
   (zone and record logged first); `final_validation` runs the runbook's Recovery Validation
   Checklist, one reported check each.

`ensure_traffic` (all_done) leaves DNS on a healthy region whatever failed. The report gives
the path taken, the RTO achieved and each phase against its budget. A Deadline Alert posts
to Slack (the environment's `slack_conn_id` in environments.yaml; absent: logged) when the activation
is still running at its queued time plus its own `rto_target`: a custom deadline reference
(`resilience.deadlines`) the scheduler evaluates from the run's conf when it creates the run.

**Plan mode** (`dry_run`): `start_activation` validates and answers the decision tree as above
(reading only), then lists every call the run would make on its path, with the requests each
would send: the Statuspage incident and Slack post, the restore (repository, method, target,
the `pgbackrest restore` arguments), the sequence moves, the DR app's replicas, the exact
Route53 `ChangeBatch` of the cutover. The list is in its log and the report; it takes no lock,
`plan_gate` skips every acting task and `ensure_traffic` does not touch DNS.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, get_current_context, task

from resilience.context import pulled, run_id
from resilience.deadlines import rto_deadline_alert
from resilience.dr.activation_params import activation_params
from resilience.dr.closing_tasks import closing_tasks
from resilience.dr.plan import plan_gate
from resilience.platforms.types import RESTORE_METHODS, RestoreMethod

RESTORES = tuple(f"restore_{method}" for method in RESTORE_METHODS)
PARAMS = activation_params()


def restored_or_none() -> dict | None:
    """What the restore task of this run's branch returned (None: none did)."""
    return next((r for r in (pulled(t) for t in RESTORES) if r), None)


def restored_database() -> dict:
    """What the restore task of this run's branch returned; a clear error (not StopIteration) when none did."""
    restored = restored_or_none()
    if restored is None:
        raise RuntimeError(f"none of {', '.join(RESTORES)} returned the restored database: nothing to act on")
    return restored


@dag(
    dag_id=Path(__file__).stem,
    description=__doc__.partition("\n")[0],
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["dr", "activation", "route53"],
    default_args={"owner": "platform-engineering", "retries": 0},
    deadline=rto_deadline_alert("resilience.notify.activation_deadline_missed", PARAMS),  # queued_at + rto_target
    params=PARAMS,
)
def dr_activation():
    @task
    def start_activation() -> dict:
        """Validate Params, config and Connections; answer the decision tree; take the lock."""
        from resilience.dr import activation

        ctx = get_current_context()
        started_at = ctx["dag_run"].start_date or ctx["ti"].start_date
        return activation.start_activation(dict(ctx["params"]), run_id(), ctx["dag"].dag_id, started_at)

    @task
    def declare_incident(run: dict) -> dict:
        """The incident recorded at its severity, Statuspage (investigating), the escalation ladder."""
        from resilience.dr import activation

        return activation.declare_incident(run, run_id())

    @task.branch
    def primary_region_accessible(run: dict) -> str:
        """Is the primary region accessible? YES: regional failover. NO: full DR activation."""
        from resilience.dr import activation

        return activation.primary_branch(run)

    @task.branch
    def choose_restore(run: dict) -> str:
        """Data loss acceptable? Time critical? -> fast, latest or complete PITR restore."""
        from resilience.dr import activation

        return activation.restore_branch(run)

    @task
    def regional_failover(run: dict) -> dict:
        """Promote the primary region's replica; wait for the app; rebuild the old primary as replica."""
        from resilience.dr import activation

        return activation.regional_failover(run, run_id())

    def restore_task(method: RestoreMethod):
        @task(task_id=f"restore_{method}")
        def restore(run: dict) -> dict:
            """Restore the primary's backups into the DR region's database."""
            from resilience.dr import activation

            return activation.restore_dr_database(run, run_id(), method)

        return restore

    @task(trigger_rule="none_failed_min_one_success")
    def deploy_app(run: dict) -> dict:
        """Deploy the app in the DR region against the restored database."""
        from airflow.sdk.exceptions import AirflowSkipException

        from resilience.dr import activation
        from resilience.dr.plan import skip_in_plan_mode

        skip_in_plan_mode(run, "nothing was restored to deploy against")  # its trigger rule passes start's success
        restored = restored_or_none()
        if restored is None:  # the regional-failover branch restores nothing in DR
            raise AirflowSkipException("no DR database was restored: nothing to deploy in DR")
        return activation.deploy_app(run, run_id(), restored)

    @task
    def verify_dr(run: dict, deployed: dict) -> dict:
        """Health endpoints and replicas of the DR region (DNS untouched until this passes)."""
        from resilience.dr import activation

        return activation.verify_dr(run, run_id(), deployed)

    @task
    def dns_cutover(run: dict) -> dict:
        """Route53 weights primary 0 / DR 100; DR becomes the serving region."""
        from resilience.dr import activation

        restored = restored_database()
        return activation.dns_cutover(run, run_id(), restored)

    @task(trigger_rule="none_failed_min_one_success")
    def final_validation(run: dict) -> list:
        """The runbook's Recovery Validation Checklist against the serving region."""
        from resilience.dr import operation_conclude
        from resilience.dr.plan import skip_in_plan_mode

        skip_in_plan_mode(run, "nothing was done to validate")  # its trigger rule passes start's success
        if run["path"]["kind"] == "regional_failover":
            return operation_conclude.final_validation(run, run_id(), "primary", None, None, None)
        restored = restored_database()
        return operation_conclude.final_validation(run, run_id(), "dr", restored["database"],
                                                   run["params"]["dr_replicas"], restored["newest_write"])

    run = start_activation()
    declared = declare_incident(run)
    plan_gate()(run) >> declared  # plan mode (dry_run) stops here
    accessible = primary_region_accessible(run)
    declared >> accessible
    failover = regional_failover(run)
    chooser = choose_restore(run)
    accessible >> [failover, chooser]
    restores = [restore_task(m)(run) for m in RESTORE_METHODS]
    chooser >> restores
    deployed = deploy_app(run)
    restores >> deployed
    cutover = dns_cutover(run)
    verify_dr(run, deployed) >> cutover
    validated = final_validation(run)
    [failover, cutover] >> validated
    validated >> closing_tasks("start_activation")


dr_activation()
