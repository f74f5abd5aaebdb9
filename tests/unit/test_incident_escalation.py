"""Escalation of a declared incident through the real PagerDuty and Slack providers, against local servers.

PagerDuty and Slack cannot run here: ``tests/fakes/pagerduty.py`` is a local protocol server
speaking the Events API v2 (``POST /v2/enqueue`` -> 202 with the dedup key) and
``tests/fakes/slack.py`` an incoming-webhook endpoint; the providers' hooks reach them through
the Connections, as they would reach the real services.
"""

from __future__ import annotations

import json
import os

import pytest

from resilience.config import DEFAULT_ESCALATION
from resilience.notify import escalate, page_pagerduty
from tests.fakes.pagerduty import ROUTING_KEY, PagerdutyEventsServer
from tests.fakes.slack import SlackWebhookServer

CHANNELS = {"#incident-response": "RESILIENCE_SLACK_INCIDENT_RESPONSE", "#ops-alerts": "RESILIENCE_SLACK_OPS_ALERTS"}


@pytest.fixture
def servers(monkeypatch):
    with PagerdutyEventsServer() as pagerduty, SlackWebhookServer() as slack:
        monkeypatch.setenv("AIRFLOW_CONN_RESILIENCE_PAGERDUTY", pagerduty.connection_json())
        for channel, var in CHANNELS.items():  # one webhook per channel, told apart by its path
            monkeypatch.setenv(f"AIRFLOW_CONN_{var}", json.dumps(
                {"conn_type": "slackwebhook", "password": f"{slack.base_url}/services/{channel.strip('#')}"}))
        yield pagerduty, slack


def test_p0_posts_to_every_channel_of_its_severity_and_pages(servers):
    pagerduty, slack = servers
    escalated = escalate(DEFAULT_ESCALATION, "P0", "DR activation initiated for lab", "inc-1", "resilience/test",
                         {"incident": "inc-1"})
    assert escalated.to_dict() == {"severity": "P0", "channels": [{"channel": "#incident-response", "posted": True},
                                                                  {"channel": "#ops-alerts", "posted": True}],
                                   "pagerduty": "inc-1", "errors": []}
    assert [(m["path"], m["text"]) for m in slack.messages] == [
        ("/services/incident-response", "[P0] DR activation initiated for lab"),
        ("/services/ops-alerts", "[P0] DR activation initiated for lab")]
    [event] = pagerduty.events
    assert event["routing_key"] == ROUTING_KEY and event["event_action"] == "trigger"
    assert event["payload"] == {"summary": "[P0] DR activation initiated for lab", "severity": "critical",
                                "source": "resilience/test", "custom_details": {"incident": "inc-1"}}


def test_p2_does_not_page(servers):
    pagerduty, slack = servers
    escalated = escalate(DEFAULT_ESCALATION, "P2", "minor", "inc-2", "resilience/test", {})
    assert escalated.pagerduty is None and escalated.channels == {"#ops-alerts": True}
    assert pagerduty.events == [] and [m["path"] for m in slack.messages] == ["/services/ops-alerts"]


def test_absent_connections_are_logged_never_fatal(monkeypatch, caplog):
    for var in ("AIRFLOW_CONN_RESILIENCE_PAGERDUTY", *(f"AIRFLOW_CONN_{v}" for v in CHANNELS.values())):
        monkeypatch.delenv(var, raising=False)
    escalated = escalate(DEFAULT_ESCALATION, "P0", "outage", "inc-3", "resilience/test", {})
    assert escalated.to_dict() == {"severity": "P0", "channels": [{"channel": "#incident-response", "posted": False},
                                                                  {"channel": "#ops-alerts", "posted": False}],
                                   "pagerduty": None, "errors": []}
    assert "Not paging PagerDuty: Connection 'resilience_pagerduty' is not defined" in caplog.text


def test_a_refused_event_is_reported_with_pagerduty_s_answer_and_no_key(servers, monkeypatch):
    pagerduty, _ = servers
    doc = json.loads(pagerduty.connection_json())
    monkeypatch.setenv("AIRFLOW_CONN_RESILIENCE_PAGERDUTY", json.dumps({**doc, "password": "wrong-key-wrong-key"}))
    escalated = escalate(DEFAULT_ESCALATION, "P0", "outage", "inc-4", "resilience/test", {})
    assert escalated.pagerduty is None and pagerduty.events == []
    assert len(escalated.errors) == 1 and escalated.errors[0].startswith("pagerduty: ")
    assert "wrong-key" not in escalated.errors[0]  # the integration key is a secret
    assert os.environ["AIRFLOW_CONN_RESILIENCE_PAGERDUTY"]  # (the fixture's Connection is still set)


def test_page_pagerduty_returns_the_dedup_key_pagerduty_answered(servers):
    pagerduty, _ = servers
    assert page_pagerduty("resilience_pagerduty", "summary", "inc-5", "src", {}) == "inc-5"
    assert [e["dedup_key"] for e in pagerduty.events] == ["inc-5"]
