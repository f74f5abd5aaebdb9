"""Deadline Alerts that follow the run: the reference (queued_at + the run's rto_target), its Airflow
serialization, the callback's choice of environment and Slack Connection, and the DAGs' wiring.

Under the real scheduler and triggerer: tests/airflow/test_deadline_alerts.py."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from resilience.config import DEFAULT_CONFIG_PATH, parse_config
from resilience.deadlines import QueuedAtPlusParamMinutes, deadline_at, ended_before_deadline, target_minutes
from resilience.notify import MissedDeadline, drill_deadline_missed, missed_deadline

ROOT = Path(__file__).resolve().parents[2]
QUEUED = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)
DEFAULTS = {"environment": "lab", "rto_target": 30}


@pytest.mark.parametrize(("conf", "expected"), [
    ({"rto_target": 10}, 10.0),
    ({"rto_target": 0.1}, 0.1),  # a fraction of a minute: the schema's exclusiveMinimum is 0
    ({}, 30.0),  # a scheduled run's conf is empty: the Param's default
    (None, 30.0),
    ({"rto_target": None}, 30.0),
    ({"rto_target": 0}, 30.0),  # not a target: the schema refuses it at trigger time; never "no deadline"
    ({"rto_target": -5}, 30.0),
    ({"rto_target": True}, 30.0),
    ({"rto_target": "10"}, 30.0),
    ({"rto_target": float("nan")}, 30.0),
])
def test_the_target_is_the_runs_param_else_its_default(conf, expected):
    assert target_minutes(conf, "rto_target", 30) == expected


def test_the_deadline_is_queued_at_plus_the_target():
    assert deadline_at(QUEUED, 10) == datetime(2026, 12, 1, 4, 10, tzinfo=UTC)
    assert deadline_at(QUEUED, 0.1) == QUEUED + timedelta(seconds=6)


@pytest.mark.parametrize(("end_date", "deadline_time", "ended"), [
    (None, QUEUED, False),  # still running
    ("2026-12-01T03:59:59Z", QUEUED, True),  # failed before its deadline: Airflow fires it anyway
    (QUEUED, "2026-12-01T04:00:00+00:00", True),  # at the deadline exactly: in time
    ("2026-12-01T04:00:01.5Z", QUEUED, False),  # ran past it
    ("2026-12-01T03:00:00Z", None, False),  # no deadline time handed over: alert rather than stay silent
])
def test_a_run_that_ended_before_its_deadline_is_not_alerted(end_date, deadline_time, ended):
    assert ended_before_deadline(end_date, deadline_time) is ended


def test_the_reference_round_trips_through_airflows_serialization(airflow_db):
    """The DAG processor encodes it with its class path; the scheduler finds the class among the plugins'
    ``deadline_references`` and evaluates the wrapped reference."""
    from airflow.serialization.decoders import decode_deadline_reference
    from airflow.serialization.definitions.deadline import SerializedReferenceModels
    from airflow.serialization.encoders import encode_deadline_reference

    encoded = encode_deadline_reference(QueuedAtPlusParamMinutes("rto_target", 30.0))
    assert json.loads(json.dumps(encoded)) == {
        "reference_type": "QueuedAtPlusParamMinutes", "param": "rto_target", "default_min": 30.0,
        "__class_path": "resilience.deadlines.QueuedAtPlusParamMinutes"}
    decoded = decode_deadline_reference(encoded)
    assert isinstance(decoded, SerializedReferenceModels.SerializedCustomReference)
    assert isinstance(decoded, SerializedReferenceModels.TYPES.DAGRUN)  # evaluated when the run is created
    assert decoded.inner_ref == QueuedAtPlusParamMinutes("rto_target", 30.0)


def _dagrun(session, run_id: str, conf: dict[str, Any] | None, queued_at: datetime | None) -> None:
    from airflow.models import DagRun
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunType

    run = DagRun(dag_id="dr_monthly_drill", run_id=run_id, run_type=DagRunType.MANUAL, conf=conf,
                 state=DagRunState.QUEUED, run_after=QUEUED)
    run.queued_at = queued_at
    session.add(run)
    session.flush()


@pytest.mark.parametrize(("run_id", "conf", "queued_at", "expected"), [
    ("manual__ten", {"rto_target": 10}, QUEUED, QUEUED + timedelta(minutes=10)),
    ("scheduled__default", {}, QUEUED, QUEUED + timedelta(minutes=30)),
    ("manual__unqueued", {"rto_target": 10}, None, None),  # no deadline yet (skipped, as for DAGRUN_QUEUED_AT)
])
def test_the_reference_evaluates_from_the_runs_row(airflow_db, run_id, conf, queued_at, expected):
    from airflow.serialization.decoders import decode_deadline_reference
    from airflow.serialization.encoders import encode_deadline_reference
    from airflow.utils.session import create_session

    reference = decode_deadline_reference(encode_deadline_reference(QueuedAtPlusParamMinutes("rto_target", 30.0)))
    with create_session() as session:
        _dagrun(session, run_id, conf, queued_at)
        found = reference.evaluate_with(session=session, interval=timedelta(0), dag_id="dr_monthly_drill",
                                        run_id=run_id)
        session.rollback()
    assert found == expected


def config(edit=None):
    doc = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    if edit:
        edit(doc)
    return parse_config(doc)


def _with_production_channel(doc: dict[str, Any]) -> None:
    doc["environments"]["production"]["slack_conn_id"] = "slack_production"


def _staging_without_chaos(doc: dict[str, Any]) -> None:
    doc["environments"]["staging"]["chaos"]["enabled"] = False


def run(dag_id: str = "dr_monthly_drill", run_type: str = "manual", conf: dict[str, Any] | None = None):
    return {"dag_id": dag_id, "dag_run_id": f"{run_type}__x", "run_type": run_type, "conf": conf or {}}


@pytest.mark.parametrize(("the_run", "edit", "expected"), [
    (run(conf={"environment": "lab", "rto_target": 10}), None,
     MissedDeadline("dr_monthly_drill", "manual__x", "lab", 10.0, "resilience_slack")),
    (run(), None,  # nothing in the conf: the form's defaults
     MissedDeadline("dr_monthly_drill", "manual__x", "lab", 30.0, "resilience_slack")),
    (run(conf={"environment": "production"}), _with_production_channel,  # the environment's own Connection
     MissedDeadline("dr_monthly_drill", "manual__x", "production", 30.0, "slack_production")),
    (run(run_type="scheduled"), _with_production_channel,  # schedules.dr_monthly_drill: production's backups
     MissedDeadline("dr_monthly_drill", "scheduled__x", "production", 30.0, "slack_production")),
    (run("chaos_campaign", "scheduled"), _staging_without_chaos,  # refused at its start; the alert still goes out
     MissedDeadline("chaos_campaign", "scheduled__x", "staging", 30.0, "resilience_slack")),
    (run("dr_activation", conf={"environment": "nosuch", "rto_target": 5}), None,  # unknown: the default channel
     MissedDeadline("dr_activation", "manual__x", "nosuch", 5.0, "resilience_slack")),
])
def test_the_alert_goes_to_the_runs_environment(the_run, edit, expected):
    assert missed_deadline(the_run, DEFAULTS, config(edit)) == expected


def test_a_run_type_given_as_airflows_enum_counts_as_scheduled():
    from airflow.sdk.api.datamodels._generated import DagRunType

    the_run = {**run(), "run_type": DagRunType.SCHEDULED}
    assert missed_deadline(the_run, DEFAULTS, config()).environment == "production"


def test_the_callback_posts_the_runs_target_to_its_environments_slack(slack):
    context = {"dag_run": run(conf={"environment": "lab", "rto_target": 10}),
               "deadline": {"id": "x", "deadline_time": "2026-12-01T04:10:00+00:00"}}
    asyncio.run(drill_deadline_missed(DEFAULTS, context=context))
    assert [m["text"] for m in slack.messages] == [
        ":alarm_clock: DR drill dr_monthly_drill run manual__x (lab) is still running past its RTO target of 10 min"]


def test_the_callback_says_nothing_of_a_run_that_failed_before_its_deadline(slack, caplog):
    context = {"dag_run": {**run(), "state": "failed", "end_date": "2026-12-01T04:05:00Z"},
               "deadline": {"id": "x", "deadline_time": datetime(2026, 12, 1, 4, 30, tzinfo=UTC)}}
    asyncio.run(drill_deadline_missed(DEFAULTS, context=context))
    assert slack.messages == []
    assert "Not alerting: dr_monthly_drill run manual__x ended failed" in caplog.text


def test_the_callback_without_its_connection_logs_and_returns(caplog):
    asyncio.run(drill_deadline_missed(DEFAULTS, context={"dag_run": run()}))  # no resilience_slack Connection
    assert "Deadline missed but Slack post through 'resilience_slack' failed" in caplog.text
    assert "is still running past its RTO target of 30 min" in caplog.text


@pytest.mark.parametrize(("dag_id", "callback"), [
    ("dr_monthly_drill", "resilience.notify.drill_deadline_missed"),
    ("dr_activation", "resilience.notify.activation_deadline_missed"),
])
def test_the_dags_deadline_follows_the_rto_target_param(airflow_db, dag_id, callback):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py")).get_dag(dag_id)
    [alert] = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]
    assert alert.reference == QueuedAtPlusParamMinutes("rto_target", dag.params["rto_target"])
    assert alert.interval == timedelta(0)
    assert alert.callback.path == callback
    assert json.loads(json.dumps(alert.callback.kwargs)) == {"param_defaults": {"environment": "lab",
                                                                                "rto_target": 30}}
