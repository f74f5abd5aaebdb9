"""Slack messages and the Deadline Alert callback, against a local webhook endpoint."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from resilience.notify import drill_deadline_missed, drill_message, post_slack
from tests.fakes.slack import SlackWebhookServer

REPORT = {"status": "failed", "environment": "lab", "dr_environment": "lab", "run_id": "manual__1",
          "rto": {"measured_s": 2400.0, "target_min": 30}, "rpo": {"measured_s": None, "target_min": 15},
          "checks": [{"name": "RTO within target", "passed": False}, {"name": "phase restore", "passed": True}]}


def test_drill_message_names_the_failures():
    text = drill_message(REPORT, "/r/x.html")
    assert text.splitlines() == [
        ":rotating_light: DR drill *FAILED* — lab -> lab",
        "RTO 40.0 min (target 30 min), RPO n/a (target 15 min)",
        "Failed: RTO within target",
        "Run manual__1 · report /r/x.html",
    ]


@pytest.fixture
def slack():
    with SlackWebhookServer() as server:
        os.environ["AIRFLOW_CONN_RESILIENCE_SLACK"] = server.connection_json()
        yield server
        del os.environ["AIRFLOW_CONN_RESILIENCE_SLACK"]


def test_post_slack_through_the_provider(slack):
    assert post_slack("resilience_slack", "hello") is True
    assert slack.messages == [{"path": "/services/T000/B000/XXXX", "text": "hello"}]


def test_missing_connection_is_logged_not_raised(caplog):
    assert post_slack("resilience_slack_absent", "hello") is False
    assert "Connection 'resilience_slack_absent' is not defined" in caplog.text


def test_deadline_callback_posts_to_slack(slack):
    context = {"dag_run": {"dag_id": "dr_monthly_drill", "dag_run_id": "scheduled__2026-12-01"},
               "deadline": {"id": "x", "deadline_time": "2026-12-01T04:30:00+00:00"}}
    asyncio.run(drill_deadline_missed("resilience_slack", 30, context=context))
    assert len(slack.messages) == 1
    assert slack.messages[0]["text"] == (
        ":alarm_clock: DR drill dr_monthly_drill run scheduled__2026-12-01 is still running past its RTO "
        "target of 30 min")


def test_deadline_callback_without_connection_does_not_raise(caplog):
    asyncio.run(drill_deadline_missed("resilience_slack_absent", 30, context=None))
    assert "Deadline missed but Slack post through 'resilience_slack_absent' failed" in caplog.text


def test_deadline_alert_is_wired_to_the_callback(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    dag_file = Path(__file__).resolve().parents[2] / "dags" / "dr_monthly_drill.py"
    dag = DagBag(dag_folder=str(dag_file)).get_dag("dr_monthly_drill")
    alert = dag.deadline[0] if isinstance(dag.deadline, list) else dag.deadline
    assert alert.interval.total_seconds() == 30 * 60
    assert alert.callback.path == "resilience.notify.drill_deadline_missed"
    assert json.loads(json.dumps(alert.callback.kwargs)) == {"slack_conn_id": "resilience_slack", "rto_target_min": 30}


def test_activation_deadline_posts_to_slack(slack):
    from resilience.notify import activation_deadline_missed

    context = {"dag_run": {"dag_id": "dr_activation", "dag_run_id": "manual__2026-11-28T10:00:00+00:00"}}
    asyncio.run(activation_deadline_missed("resilience_slack", 30, context=context))
    assert slack.messages[-1]["text"] == (
        ":alarm_clock: :rotating_light: DR activation dr_activation run manual__2026-11-28T10:00:00+00:00 is still "
        "running past its RTO target of 30 min")


def test_activation_deadline_alert_is_wired_to_its_callback(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    dag_file = Path(__file__).resolve().parents[2] / "dags" / "dr_activation.py"
    dag = DagBag(dag_folder=str(dag_file)).get_dag("dr_activation")
    alert = dag.deadline[0] if isinstance(dag.deadline, list) else dag.deadline
    assert alert.interval.total_seconds() == 30 * 60
    assert alert.callback.path == "resilience.notify.activation_deadline_missed"
