"""Under real Airflow: the drill's Deadline Alert follows the run's own ``rto_target`` Param.

The scheduler (for the deadline) and the triggerer (for the Slack callback) are the real ones. A plan-mode
drill (``dry_run``: no lock, no sandbox; six tasks run one after the other) keeps the run busy for tens of
seconds. With ``rto_target`` 0.05 min its deadline is queued_at + 3 s: the alert must reach the local Slack
webhook within seconds of it. With a target far past the run's length, the run ends in time and the
scheduler drops its deadline: nothing can post, and nothing did.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.fakes.slack import SlackWebhookServer

pytestmark = [pytest.mark.airflow, pytest.mark.integration]

DAG_ID = "dr_monthly_drill"
PLAN = {"environment": "lab", "dr_environment": "lab", "full_drill": False, "dry_run": True, "pitr_target": None,
        "repo": 1, "no_cleanup": False, "rpo_target": 15}
# scheduler loop (~1 s) + the triggerer's (~1 s) + importing and running the callback: 10 s seen on 2 cores at
# load 14; waiting longer costs nothing when it passes (the run goes on for ~25 s after its deadline anyway)
ALERT_WITHIN_S = 30.0
RTO_TARGET_MIN = 0.05  # 3 s: well inside the plan run (its six tasks took 19-33 s here)


def deadlines(af, run_id: str) -> list[dict[str, Any]]:
    """The run's rows in Airflow's deadline table, as the UI's deadline list shows them."""
    response = af.api.get(f"{af.sa.base_url}/ui/dags/{DAG_ID}/dagRuns/{run_id}/deadlines")
    response.raise_for_status()
    return list(response.json()["deadlines"])


def alarms(slack: SlackWebhookServer, run_id: str) -> list[str]:
    return [m["text"] for m in slack.messages if m["text"].startswith(":alarm_clock:") and run_id in m["text"]]


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_run_past_its_rto_target_is_alerted_within_seconds_of_its_own_deadline(real_airflow):
    af, slack = real_airflow, real_airflow.slack
    run_id = af.trigger(DAG_ID, {**PLAN, "rto_target": RTO_TARGET_MIN})
    [deadline] = af.wait_for(lambda: deadlines(af, run_id), 30, "the run's deadline row")
    queued_at = moment(af.api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}").json()["queued_at"])
    due = moment(deadline["deadline_time"])
    assert due - queued_at == timedelta(minutes=RTO_TARGET_MIN), f"deadline {due} is not queued_at {queued_at} + 3 s"

    [text] = af.wait_for(lambda: alarms(slack, run_id), (due.timestamp() - time.time()) + ALERT_WITHIN_S,
                         f"the Slack alert of {run_id} (deadline {due})", interval_s=0.2)
    late_s = time.time() - due.timestamp()
    assert text == (f":alarm_clock: DR drill {DAG_ID} run {run_id} (lab) is still running past its RTO target "
                    f"of {RTO_TARGET_MIN:g} min")
    run = af.wait_run(DAG_ID, run_id, timeout_s=180)
    print(f"deadline alert: posted {late_s:.1f} s after the deadline; the run ended {run['state']} "
          f"{moment(run['end_date']).timestamp() - due.timestamp():.1f} s after it")
    assert moment(run["end_date"]) > due, f"inconclusive: the run ended before its deadline {due}: {run}"
    assert run["state"] == "success", af.failure_logs(DAG_ID, run_id)
    assert [d["missed"] for d in deadlines(af, run_id)] == [True]
    assert len(alarms(slack, run_id)) == 1


def test_a_run_that_ends_in_time_posts_nothing(real_airflow):
    af, slack = real_airflow, real_airflow.slack
    run_id = af.trigger(DAG_ID, {**PLAN, "rto_target": 10})
    [deadline] = af.wait_for(lambda: deadlines(af, run_id), 30, "the run's deadline row")
    queued_at = moment(af.api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}").json()["queued_at"])
    assert moment(deadline["deadline_time"]) - queued_at == timedelta(minutes=10)

    run = af.wait_run(DAG_ID, run_id, timeout_s=180)
    assert run["state"] == "success", af.failure_logs(DAG_ID, run_id)
    # the scheduler drops the deadline of a run that succeeded before it: no callback can ever fire
    af.wait_for(lambda: not deadlines(af, run_id), 10, "the scheduler dropping the met deadline")
    assert [m for m in slack.messages if "PLANNED" in m["text"] and run_id in m["text"]], (
        f"the run's own summary did not reach the webhook: the test could not have seen an alert either; {slack.messages}")
    assert alarms(slack, run_id) == []
