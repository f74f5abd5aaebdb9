"""Emergency rollback: application, database (PITR into a new environment) and traffic, each selectable.

The runbook's "Rollback Procedures" as one form; tick the parts to roll back:

- **application** — the region's app back to its previous release (rolling restart; the
  Kubernetes equivalent of `helm rollback`).
- **database** — point-in-time recovery into a NEW environment `rollback-YYYYMMDD-HHMMSS`
  (default target: 30 minutes ago). The source database is never written; the report gives
  the new environment's DSN.
- **traffic** — the API record's Route53 weights back to what they were before the last
  recorded change (`traffic_to: previous`), or all to one region. The zone and record are
  logged before the change; a region that is not healthy is refused.

`start_rollback` validates every selected part before anything changes (a previous release
exists, backups cover the target, there is a DNS change to go back to) and takes the
chaos/DR lock. `ensure_traffic` (all_done) leaves DNS on a healthy region whatever failed.

**Plan mode** (`dry_run`): `start_rollback` validates every selected part as above, then lists
the calls the run would make: the release it would roll back to and how (`rollout undo`
through the Kubernetes API, or `helm rollback`), the new environment and the `pgbackrest
restore` arguments of the PITR, the exact Route53 `ChangeBatch`. The list is in its log and
the report; it takes no lock, `plan_gate` skips every part and `ensure_traffic` does not touch DNS.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, get_current_context, task

from resilience.context import run_id
from resilience.dr.closing_tasks import closing_tasks
from resilience.dr.plan import plan_gate
from resilience.dr.rollback_params import rollback_params


@dag(
    dag_id=Path(__file__).stem,
    description=__doc__.partition("\n")[0],
    doc_md=__doc__,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["dr", "rollback"],
    default_args={"owner": "platform-engineering", "retries": 0},
    params=rollback_params(),
)
def emergency_rollback():
    @task
    def start_rollback() -> dict:
        """Validate every selected part; take the lock; open the record."""
        from resilience.dr import rollback

        ctx = get_current_context()
        started_at = ctx["dag_run"].start_date or ctx["ti"].start_date
        return rollback.start_rollback(dict(ctx["params"]), run_id(), ctx["dag"].dag_id, started_at)

    @task
    def rollback_application(run: dict) -> dict:
        """Previous release, rolling (skipped unless selected)."""
        from resilience.dr import rollback

        return rollback.rollback_application(run, run_id())

    @task
    def rollback_database(run: dict) -> dict:
        """PITR into a new environment (skipped unless selected)."""
        from resilience.dr import rollback

        return rollback.rollback_database(run, run_id())

    @task
    def rollback_traffic(run: dict) -> dict:
        """Route53 weights back (skipped unless selected)."""
        from resilience.dr import rollback

        return rollback.rollback_traffic(run, run_id())

    run = start_rollback()
    parts = [rollback_application(run), rollback_database(run), rollback_traffic(run)]
    plan_gate()(run) >> parts  # plan mode (dry_run) stops here
    parts >> closing_tasks("start_rollback")


emergency_rollback()
