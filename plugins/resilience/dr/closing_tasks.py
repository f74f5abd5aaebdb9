"""The tasks every DR operation DAG ends with (all_done, so they run whatever failed):
ensure_traffic -> release_lock -> write_report -> notify_slack -> verdict.

Called while a DAG file is parsed: this module imports only the SDK; the work is imported
inside each task.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import task

from resilience.context import pulled, run_id


def closing_tasks(start_task_id: str, traffic_home_unless: str | None = None) -> Any:
    """Add the closing tasks to the DAG being defined; returns ``ensure_traffic`` (the first of them).

    ``start_task_id``: the task whose result is the validated run (None when it was refused).
    ``traffic_home_unless``: a task id; when it did not succeed, all traffic goes back to DR if DR
    is healthy (a failback that never reached its cutover).
    """

    @task(trigger_rule="all_done")
    def ensure_traffic() -> dict | None:
        """Whatever failed: DNS must point at a healthy region."""
        from resilience.dr import operation_conclude

        home = "dr" if traffic_home_unless and not pulled(traffic_home_unless) else None
        return operation_conclude.ensure_traffic(pulled(start_task_id), run_id(), home=home)

    @task(trigger_rule="all_done")
    def release_lock() -> bool:
        """Give the chaos/DR lock back."""
        from resilience import journal

        return journal.release_lock(run_id())

    @task(trigger_rule="all_done")
    def write_report() -> dict | None:
        """Close the record; JSON + HTML report: steps, checks, DNS changes and what the DAG adds."""
        from resilience.dr import operation_conclude
        from resilience.dr.task_states import run_task_states

        return operation_conclude.write_report(pulled(start_task_id), run_id(), run_task_states())

    @task(trigger_rule="all_done")
    def notify_slack() -> bool:
        """Post the summary to Slack (logged when the Connection is absent)."""
        from resilience.dr.operation_report import slack_message
        from resilience.notify import post_report

        return post_report(pulled("write_report"), slack_message)

    @task(trigger_rule="all_done")
    def verdict() -> str:
        """Fail the run unless the operation passed (a canary rolled back to DR is a failed run)."""
        from resilience import journal

        return journal.final_verdict(pulled("write_report"), "operation")

    guard = ensure_traffic()
    guard >> release_lock() >> write_report() >> notify_slack() >> verdict()
    return guard
