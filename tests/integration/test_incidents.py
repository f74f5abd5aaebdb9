"""Incidents end to end on the session's lab: a DR activation declares one (severity, escalation, drafted
report), and postmortem_followups reminds each incident's channel of its due post-mortem items, once.

The control-plane PostgreSQL is the lab's real one. PagerDuty, Slack and Statuspage cannot run
here: local protocol servers stand in (tests/fakes) — ``PagerdutyEventsServer`` speaks the Events
API v2 (``POST /v2/enqueue`` -> 202 with the dedup key), reached by the PagerDuty provider's hook
through the ``resilience_pagerduty`` Connection's host; one Slack webhook per channel, told apart
by its path.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.fakes.pagerduty import PagerdutyEventsServer
from tests.integration.dagkit import DR_ACTIVATE, dr_report_of, lab_state, load_dag, notification_fakes
from tests.integration.test_dr_plan_mode import region_state

pytestmark = pytest.mark.integration
CHANNEL_CONNS = {"#incident-response": "RESILIENCE_SLACK_INCIDENT_RESPONSE", "#ops-alerts": "RESILIENCE_SLACK_OPS_ALERTS"}


@pytest.fixture
def servers(lab, airflow_db, monkeypatch):
    """Statuspage, Slack (the default webhook and one per escalation channel) and PagerDuty stand-ins."""
    with notification_fakes() as (statuspage, slack), PagerdutyEventsServer() as pagerduty:
        monkeypatch.setenv("AIRFLOW_CONN_RESILIENCE_PAGERDUTY", pagerduty.connection_json())
        for channel, var in CHANNEL_CONNS.items():
            monkeypatch.setenv(f"AIRFLOW_CONN_{var}", json.dumps(
                {"conn_type": "slackwebhook", "password": f"{slack.base_url}/services/{channel.strip('#')}"}))
        yield pagerduty, slack


def channel_messages(slack, channel: str) -> list[str]:
    return [m["text"] for m in slack.messages if m["path"] == f"/services/{channel.strip('#')}"]


def control_rows(lab, sql: str, args: tuple = ()) -> list[tuple]:
    with psycopg.connect(lab["connections"]["resilience_control_db"], autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


@pytest.mark.leaves_alerts_firing  # the regional failover is a real Patroni failover of the shared lab
def test_a_dr_activation_drafts_its_incident_report_and_pages_p0(lab, servers):
    pagerduty, slack = servers
    dag = load_dag("dr_activation")
    try:
        # an earlier module may leave a DR episode on: this activation starts from none
        with region_state(lab, serving="primary", dr_active=False, run_id=None, activated_at=None,
                          recovery_point=None, database=None, app_url=None):
            dagrun = dag.test(run_conf={**DR_ACTIVATE, "severity": "P0", "dry_run": False, "break_lock": False})
    finally:  # the failover moved the primary: later tests get the Connection lab.json has now
        os.environ["AIRFLOW_CONN_RESILIENCE_LAB_APP_DB"] = lab_state(lab)["connections"]["resilience_lab_app_db"]
    states = {ti.task_id: ti.state for ti in dagrun.get_task_instances()}
    assert states["declare_incident"] == "success" and states["write_report"] == "success", states
    report = dr_report_of(dagrun)
    assert report["path"]["kind"] == "regional_failover"
    assert report["severity"] == {"level": "P0", "reason": "param severity P0"}
    incident = report["incident_report"]
    markdown = Path(incident["markdown"]).read_text()
    start = datetime.fromisoformat(report["start"])
    restored = next(s for s in report["steps"] if s["step"] == "final_validation" and s["status"] == "success")
    assert f"- **Start Time**: {start:%Y-%m-%d %H:%M:%S} UTC" in markdown
    assert "Service restored: recovery validation checklist passed" in markdown
    assert f"- **[{datetime.fromisoformat(restored['end']):%Y-%m-%d %H:%M:%S} UTC]**: Service restored" in markdown
    assert "- **Severity**: P0 (param severity P0)" in markdown
    assert "- Primary accessible? **YES** (detected: entry point answers /health" in markdown
    assert "- Path: **regional_failover** — primary region accessible" in markdown
    assert f'<a href="{incident["name"]}">' in Path(dr_report_of_html(dagrun)).read_text()
    # escalation: the P0 page and the incident's channel
    [event] = pagerduty.events
    assert event["dedup_key"] == incident["id"] and event["payload"]["severity"] == "critical"
    assert any(t.startswith("[P0] :rotating_light: DR activation initiated for lab") for t in
               channel_messages(slack, "#incident-response"))
    assert control_rows(lab, "SELECT severity, slack_channel, report_path, pagerduty_dedup_key FROM incidents"
                             " WHERE run_id = %s", (dagrun.run_id,)) == [
        ("P0", "#incident-response", incident["markdown"], incident["id"])]


def dr_report_of_html(dagrun) -> str:
    from resilience.reporting import report_stem

    return str(Path(os.environ["RESILIENCE_REPORT_DIR"]) / dagrun.dag_id / f"{report_stem(dagrun.run_id)}.html")


def test_postmortem_followups_sends_each_due_reminder_once_until_items_are_done(lab, servers):
    from resilience.cli import main
    from resilience.config import load_config
    from resilience.incidents.store import Incident, IncidentStore

    _, slack = servers
    store = IncidentStore.for_conn(load_config().control_db_conn_id)
    now, tag = datetime.now(UTC), datetime.now(UTC).strftime("%H%M%S%f")

    def incident(name: str, age: timedelta, severity: str = "P1", channel: str = "#incident-response") -> str:
        store.declare(Incident(f"inc-test-{tag}-{name}", "dr_activation", f"test-{tag}-{name}", "lab", name, severity,
                               channel, now - age))
        return f"inc-test-{tag}-{name}"

    fresh = incident("fresh", timedelta(hours=2))  # nothing due yet
    day = incident("day", timedelta(hours=25))  # 24 h
    week = incident("week", timedelta(days=8), severity="P2", channel="#ops-alerts")  # 24 h, 3 d, 1 w ...
    for item in ("draft_report", "postmortem_meeting", "action_items"):  # ... of which only 1 w is still open
        assert main(["incident", "done", week, item, "--by", "test"]) == 0
    closed = incident("closed", timedelta(days=4))  # 24 h and 3 d due, every item marked done
    for item in ("draft_report", "postmortem_meeting", "action_items"):
        assert main(["incident", "done", closed, item]) == 0
    dag = load_dag("postmortem_followups")

    def reminders() -> list[tuple[str, str]]:
        return [(m["path"], m["text"].split(" — ")[1].split(":")[0]) for m in slack.messages
                if f"-{tag}-" in m["text"] and m["text"].startswith(":memo:")]

    first = dag.test()
    assert first.state == "success"
    assert sorted(reminders()) == [("/services/incident-response", "Immediate (within 24 hours)"),
                                   ("/services/ops-alerts", "Medium-term (within 1 week)")]
    assert all(fresh not in m["text"] and closed not in m["text"] for m in slack.messages)
    assert sorted(control_rows(lab, "SELECT incident_id, stage FROM incident_reminders WHERE incident_id LIKE %s",
                               (f"inc-test-{tag}-%",))) == [(day, "24h"), (week, "1w")]
    assert dag.test().state == "success"  # the next day's run: each reminder was sent once
    assert len(reminders()) == 2
    assert main(["incident", "done", day, "fixes"]) == 0  # items are marked done ahead of their reminder
    assert main(["incident", "done", day, "runbook_updates"]) == 0
    assert [i.item for i in store.items(day) if i.done_at] == ["fixes", "runbook_updates"]
