"""Monthly DR drill: restore the latest (or a point-in-time) backup into a sandbox and prove it.

Runs the runbook's "Monthly DR Drill" end to end:

1. **verify_backups** — `pgbackrest info` per repository (one per region): stanza ok, a backup
   exists, the WAL archive is continuous and the newest segment *in that repository* is younger
   than the RPO target; `pgbackrest verify` of each on a full drill. A PITR target must lie
   between the oldest backup and the newest WAL of the repository the drill restores from.
2. **create_sandbox** (setup) — an empty database server that is provably not the source.
3. **restore** — latest, or PITR to `pitr_target`, from repository `repo` (1: the primary
   region's, 2: the DR region's; backup and WAL); waits until the sandbox takes writes.
4. **check_integrity** — `pg_amcheck`, the SQL checks in `include/sql/integrity/`, row counts
   against the source at the recovery point; after PITR, no row newer than the target.
5. **check_app** — the application started on the sandbox; `/health` and
   `/api/health/database` must answer.
6. **measure_rto_rpo** — RTO from the drill's start to the app healthy on the sandbox
   (per-phase breakdown), RPO as the data-loss window the restore implies, vs the targets.
7. **cleanup_sandbox** (teardown) — drops the sandbox unless `no_cleanup`.
8. **write_report**, **notify_slack**, **verdict** — JSON + HTML report (timeline, RTO/RPO
   trend of earlier drills, every check), history in the control DB, Slack summary.

**Deadline**: a Deadline Alert posts to Slack when a run is still going at its queued time plus its
own `rto_target` (30 min by default; 10 for a run triggered with `rto_target: 10`). The deadline is
a custom deadline reference (`resilience.deadlines`) that the scheduler evaluates from the run's conf
when it creates the run: an absolute time in Airflow's deadline table, fired and dropped by the
scheduler like the built-in ones (a watchdog task would keep every run open until it was cancelled).
The Slack Connection is the run's environment's `slack_conn_id` (environments.yaml); an absent one is
logged, never fatal.

**Schedule**: a scheduled run acts on the environments environments.yaml's `schedules.dr_monthly_drill`
names (production's backups into `dr-sandbox`), decided by `start_drill`; a manual run acts on its form.
Nothing is written to the source: every write goes to the sandbox.

**Plan mode** (`dry_run`): `start_drill` validates as above and checks where the sandbox would
live against the source, then lists every call the drill would make: `pgbackrest info` (and
`verify`) per repository, the sandbox, the `pgbackrest restore` arguments, the checks, the
cleanup. The list is in its log and the report (status PLANNED, kept out of the RTO/RPO trend);
it takes no lock and `plan_gate` skips every other step: no sandbox is created.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, get_current_context, setup, task, teardown

from resilience.context import pulled, run_id
from resilience.deadlines import rto_deadline_alert
from resilience.dr.drill.params import drill_params
from resilience.dr.plan import plan_gate

PARAMS = drill_params()


@dag(
    dag_id=Path(__file__).stem,
    description=__doc__.partition("\n")[0],
    doc_md=__doc__,
    schedule="0 4 1 * *",  # 04:00 UTC on the 1st of every month
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["dr", "drill", "pgbackrest"],
    default_args={"owner": "platform-engineering", "retries": 0},
    deadline=rto_deadline_alert("resilience.notify.drill_deadline_missed", PARAMS),  # queued_at + the run's rto_target
    params=PARAMS,
)
def dr_monthly_drill():
    @task
    def start_drill() -> dict:
        """Validate Params, environments.yaml and Connections; open the drill record."""
        from resilience.dr.drill import steps
        from resilience.schedules import params_for_run

        ctx = get_current_context()
        started_at = ctx["dag_run"].start_date or ctx["ti"].start_date
        dag_id = ctx["dag"].dag_id  # a scheduled run: environments from environments.yaml's schedules
        params = params_for_run(dag_id, ctx["dag_run"].run_type, ctx["params"])
        return steps.start_drill(params, run_id(), dag_id, started_at)

    @task
    def verify_backups(run: dict) -> dict:
        """Backups exist, are sound, and the WAL archive is fresh enough for the RPO target."""
        from resilience.dr.drill import steps

        return steps.verify_backups(run, run_id())

    @setup
    def create_sandbox(run: dict) -> dict:
        """An empty sandbox that is provably not the source."""
        from resilience.dr.drill import steps

        return steps.create_sandbox(run, run_id())

    @task
    def restore(run: dict, sandbox: dict) -> dict:
        """Restore latest or point-in-time into the sandbox; wait until it takes writes."""
        from resilience.dr.drill import steps

        return steps.restore(run, run_id(), sandbox)

    @task
    def check_integrity(run: dict, sandbox: dict, restored: dict) -> dict:
        """pg_amcheck, SQL integrity checks, row counts against the source."""
        from resilience.dr.drill import steps

        return steps.check_integrity(run, run_id(), sandbox, restored)

    @task
    def check_app(run: dict, sandbox: dict) -> dict:
        """Start the app on the sandbox; its health endpoints must answer."""
        from resilience.dr.drill import steps

        return steps.check_app(run, run_id(), sandbox)

    @task
    def measure_rto_rpo(run: dict) -> dict:
        """RTO and RPO against their targets, with the per-phase breakdown."""
        from resilience.dr.drill import steps

        return steps.measure_rto_rpo(run, run_id())

    @teardown
    def cleanup_sandbox(run: dict, sandbox: dict) -> None:
        """Drop the sandbox (skipped when no_cleanup)."""
        from resilience.dr.drill import steps

        steps.cleanup_sandbox(run, run_id(), sandbox)

    @task(trigger_rule="all_done")
    def release_lock() -> bool:
        """Give the chaos/DR lock back (whatever happened)."""
        from resilience import journal

        return journal.release_lock(run_id())

    @task(trigger_rule="all_done")
    def write_report() -> dict:
        """Complete the record; write the JSON + HTML report, whatever failed before."""
        from resilience.dr.drill import steps
        from resilience.dr.task_states import run_task_states

        return steps.write_drill_report(pulled("start_drill"), run_id(), pulled("create_sandbox"), run_task_states())

    @task(trigger_rule="all_done")
    def notify_slack() -> bool:
        """Post the summary to Slack (logged when the Connection is absent)."""
        from resilience.dr.drill import steps

        return steps.notify_slack(pulled("write_report"))

    @task(trigger_rule="all_done")
    def verdict() -> str:
        """Fail the run when the drill failed."""
        from resilience import journal

        return journal.final_verdict(pulled("write_report"), "DR drill")

    run = start_drill()
    sandbox = create_sandbox(run)
    verified = verify_backups(run)
    plan_gate()(run) >> verified  # plan mode (dry_run) stops here
    verified >> sandbox
    restored = restore(run, sandbox)
    app = check_app(run, sandbox)
    check_integrity(run, sandbox, restored) >> app
    measured = measure_rto_rpo(run)
    app >> measured
    cleanup = cleanup_sandbox(run, sandbox)
    measured >> cleanup
    cleanup >> release_lock() >> write_report() >> notify_slack() >> verdict()


dr_monthly_drill()
