"""Post-mortem follow-ups: remind each incident's Slack channel of the runbook's Post-Mortem Process until it is done.

Every incident a run declares (dr_activation) is recorded in the control DB with the
runbook's post-mortem items. Once a day this DAG posts, to the incident's own channel (the
first channel of its severity in `defaults.escalation`), each reminder whose time has come:

| after | runbook stage | items |
|---|---|---|
| 24 h | Immediate | `draft_report` (the run drafted `<run>.incident.md`: complete it) |
| 3 days | Short-term | `postmortem_meeting`, `action_items` |
| 1 week | Medium-term | `fixes`, `runbook_updates` |
| 1 month | Long-term | `action_items_closed`, `followup_test` |

Each reminder is sent once (recorded in `incident_reminders`), and not at all when its items
are already done. Mark an item done from a shell with the lab's or the deployment's
Connections: `resilience incident done <incident-id> <item>`; `resilience incident list`
shows the open incidents and their items. A missing Slack Connection is logged and the
reminder is tried again on the next run.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import dag, task


@dag(
    dag_id=Path(__file__).stem,
    description=__doc__.partition("\n")[0],
    doc_md=__doc__,
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["incidents", "postmortem"],
    default_args={"owner": "platform-engineering", "retries": 1},
)
def postmortem_followups():
    @task
    def remind_followups() -> dict[str, list[str]]:
        """Post every due post-mortem reminder to its incident's channel, once."""
        from datetime import UTC

        from resilience.incidents.remind import send_due_reminders

        return send_due_reminders(datetime.now(UTC))

    remind_followups()


postmortem_followups()
