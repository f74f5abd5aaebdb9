"""The tasks chaos_campaign and chaos_services share: preflight, and the end of the run (lock, report, Slack,
verdict). TaskFlow definitions: calling one inside a DAG adds the task to it."""

from __future__ import annotations

from airflow.sdk import get_current_context, task
from airflow.sdk.definitions.xcom_arg import XComArg

from resilience.context import pulled, run_id


@task
def preflight(run: dict) -> dict:
    """Take the chaos/DR lock; refuse unless every safety check passes."""
    from resilience.chaos import steps

    return steps.preflight(run, run_id(), get_current_context()["dag"].dag_id)


@task(trigger_rule="all_done")
def release_lock() -> bool:
    """Give the chaos/DR lock back (whatever happened; a no-op unless this run holds it)."""
    from resilience import journal

    return journal.release_lock(run_id())


@task(trigger_rule="all_done")
def write_report() -> dict:
    """JSON + HTML report with charts and the resilience score (per service across services)."""
    from resilience.chaos import steps

    return steps.write_campaign_report(pulled("start_campaign"), run_id())


@task(trigger_rule="all_done")
def notify_slack() -> bool:
    """Summary to Slack (logged when the Connection is absent)."""
    from resilience.chaos import steps
    from resilience.notify import post_report

    return post_report(pulled("write_report"), steps.slack_message)


@task(trigger_rule="all_done")
def campaign_verdict() -> str:
    """Fail the run unless every scenario passed."""
    from resilience import journal

    return journal.final_verdict(pulled("write_report"), "chaos campaign", passing="completed")


def end_of_campaign() -> XComArg:
    """release_lock >> write_report >> notify_slack >> campaign_verdict in the DAG being defined; returns the
    first, for the scenarios to come before it."""
    first = release_lock()
    first >> write_report() >> notify_slack() >> campaign_verdict()
    return first
