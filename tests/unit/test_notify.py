"""Slack messages against a local webhook endpoint (the Deadline Alert callback: test_deadlines.py)."""

from __future__ import annotations

from resilience.notify import drill_message, post_slack

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


def test_post_slack_through_the_provider(slack):
    assert post_slack("resilience_slack", "hello") is True
    assert slack.messages == [{"path": "/services/T000/B000/XXXX", "text": "hello"}]


def test_missing_connection_is_logged_not_raised(caplog):
    assert post_slack("resilience_slack_absent", "hello") is False
    assert "Connection 'resilience_slack_absent' is not defined" in caplog.text
