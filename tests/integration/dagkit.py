"""For dag.test() runs: load one DAG file the way the DAG processor does, the notification fakes
as the DAGs' Connections, and the report a run wrote."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.fakes.slack import SlackWebhookServer
from tests.fakes.statuspage import StatuspageServer

ROOT = Path(__file__).resolve().parents[2]


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py")).get_dag(dag_id)
    dag.deadline = None  # apache/airflow#73428: dag.test() fails after a run with `deadline=`
    return dag


@contextmanager
def notification_fakes() -> Iterator[tuple[StatuspageServer, SlackWebhookServer]]:
    """Statuspage and Slack (local servers speaking their HTTP APIs: no real one can run here),
    set as the ``resilience_statuspage`` / ``resilience_slack`` Connections while in use."""
    with StatuspageServer() as statuspage, SlackWebhookServer() as slack:
        os.environ["AIRFLOW_CONN_RESILIENCE_STATUSPAGE"] = statuspage.connection_json()
        os.environ["AIRFLOW_CONN_RESILIENCE_SLACK"] = slack.connection_json()
        try:
            yield statuspage, slack
        finally:
            os.environ.pop("AIRFLOW_CONN_RESILIENCE_STATUSPAGE", None)
            os.environ.pop("AIRFLOW_CONN_RESILIENCE_SLACK", None)


def dr_report_of(dagrun) -> dict:
    """The JSON report a DR DAG run wrote under ``$RESILIENCE_REPORT_DIR/<dag_id>/``."""
    for path in (Path(os.environ["RESILIENCE_REPORT_DIR"]) / dagrun.dag_id).glob("*.json"):
        doc = json.loads(path.read_text())
        if doc["run_id"] == dagrun.run_id:
            return doc
    raise AssertionError(f"no report for {dagrun.run_id}")


# dr_activation with every decision left to the checks, and the failback that follows it.
DR_ACTIVATE = {"environment": "lab", "primary_accessible": "auto", "data_loss_acceptable": "auto",
               "time_critical": "auto", "pitr_target": None, "rto_target": 30, "rpo_target": 15, "dr_replicas": 2,
               "incident_name": "Service Disruption - Investigating"}
# threshold 5, as make demo: a primary cold from its restore, on a loaded 2-core machine, shows a p95 over the
# 50 ms floor for a few seconds (56.7 ms seen in CI); a dead primary still fails 5 checks in ~5 s
DR_FAILBACK = {"environment": "lab", "stable_hours": 0.003, "stability_timeout_hours": 0.05, "steps": [50, 100],
               "interval_s": 10, "threshold": 5, "max_error_rate_delta_pct": 1.0, "max_p95_ratio": 2.0,
               "conflict_policy": "primary_wins", "decommission_dr": True}


def lab_state(lab) -> dict:
    """lab.json of the session's lab as it is now (database roles as Patroni reports them)."""
    from resilience.lab.state import load_lab_state, with_current_roles

    return with_current_roles(load_lab_state(Path(lab["lab_dir"])))


def route53(lab) -> tuple[Any, dict]:
    """A Route53 client on the lab's moto, and the lab's DNS facts (zone id, record)."""
    import boto3

    dns = lab["dns"]
    client = boto3.client("route53", endpoint_url=dns["aws_endpoint"], region_name="us-east-1",
                          aws_access_key_id=lab["s3"]["access_key"], aws_secret_access_key=lab["s3"]["secret_key"])
    return client, dns


def weights(lab) -> dict[str, int]:
    """The API record's weight per region, read straight from the lab's Route53."""
    client, dns = route53(lab)
    sets = client.list_resource_record_sets(HostedZoneId=dns["zone_id"])["ResourceRecordSets"]
    return {s["SetIdentifier"]: s["Weight"] for s in sets if s.get("SetIdentifier") and s["Name"] == dns["record"]}

