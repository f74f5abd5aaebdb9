"""The runbook's Incident Report Template drafted from a DR activation's record (pure), and its links."""

from __future__ import annotations

from datetime import timedelta

from resilience.dr.operation_report import build_report, render_html, slack_message
from resilience.incidents.report import incident_report_markdown
from tests.unit.test_dr_operation_report import START, activation_record, step


def declared_record(**changes):
    record = activation_record()
    record["params"]["incident_name"] = "Service Disruption - Investigating"
    record["details"].update(
        severity={"level": "P0", "reason": "auto: primary region lost: complete service outage"},
        escalation={"severity": "P0", "channels": [{"channel": "#incident-response", "posted": True},
                                                 {"channel": "#ops-alerts", "posted": False}],
                    "pagerduty": "inc-20261128-1000-abcdef", "errors": []},
        incident={"id": "sp1", "shortlink": "https://stspg.io/sp1", "status": "investigating"},
        dns_change={"record": "api.resilience.lab.", "before": {"primary": 100, "dr": 0},
                    "after": {"primary": 0, "dr": 100}})
    record["details"]["answers"].update(
        data_loss_acceptable={"answer": True, "param": "yes", "evidence": "newest backup ended 2.0 min ago"},
        time_critical={"answer": True, "param": "auto", "evidence": "estimated restore 4 s"})
    record["steps"][1]["details"] = {"newest_write": "2026-11-28T09:58:00+00:00"}
    record.update(changes)
    return record


def lines(markdown):
    return markdown.splitlines()


def test_the_summary_and_timeline_come_from_the_recorded_times():
    md = lines(incident_report_markdown(declared_record(status="passed"), "inc-1", START + timedelta(minutes=5)))
    assert md[0] == "# Incident Report - 2026-11-28 - Service Disruption - Investigating (lab)"
    summary = md[md.index("## Summary") + 1:md.index("## Timeline") - 1]
    assert summary[:4] == [
        "- **Start Time**: 2026-11-28 10:00:00 UTC",
        "- **End Time**: 2026-11-28 10:00:30 UTC",  # final_validation's end: service restored
        "- **Duration**: 0.5 min (30 s)",
        "- **Severity**: P0 (auto: primary region lost: complete service outage)",
    ]
    assert "primary region NOT accessible (entry down)" in summary[4]
    assert "API traffic moved from {'primary': 100, 'dr': 0} to {'primary': 0, 'dr': 100}" in summary[4]
    assert "data restored up to 2026-11-28T09:58:00+00:00" in summary[4]
    timeline = md[md.index("## Timeline") + 1:md.index("## Decision tree") - 1]
    assert [t.split("**: ")[0] for t in timeline] == [
        "- **[2026-11-28 10:00:00 UTC]", "- **[2026-11-28 10:00:00 UTC]", "- **[time?]",
        "- **[2026-11-28 10:00:26 UTC]", "- **[2026-11-28 10:00:30 UTC]", "- **[time?]"]
    assert timeline[3].endswith("Mitigation deployed: dns_cutover")


def test_the_decision_path_escalation_and_action_items_are_drafted():
    md = incident_report_markdown(declared_record(), "inc-1", START + timedelta(minutes=5))
    assert "- Primary accessible? **NO** (detected: entry down)" in md
    assert "- Data loss acceptable? **YES** (param yes: newest backup ended 2.0 min ago)" in md
    assert "- Path: **full_dr**, restore **fast** — primary region lost, fast" in md
    assert "- Slack #incident-response: posted\n- Slack #ops-alerts: NOT posted (see the run log)" in md
    assert "- PagerDuty: on-call paged (dedup key `inc-20261128-1000-abcdef`)" in md
    assert "- Statuspage incident sp1 https://stspg.io/sp1" in md
    assert "- [ ] Draft the incident report, collect logs and evidence, reconstruct the timeline - Assignee: " \
           "_(to fill in at the post-mortem)_ - Due: 2026-11-29 10:00:00 UTC" in md
    assert "- [ ] Conduct the follow-up test - Assignee: _(to fill in at the post-mortem)_ - Due: " \
           "2026-12-28 10:00:00 UTC" in md
    assert "| 2026-11-28 10:00:01 UTC | restore_fast | dr_environment | success | 19.0 s |  |" in md
    assert md.count("_(to fill in at the post-mortem)_") == 2 + 7 + 1  # root cause, lessons, assignees, timeline


def test_a_run_that_never_restored_service_says_so():
    record = declared_record(status="failed")
    record["steps"] = [step("declare_incident", "assessment", 0, 1),
                       step("restore_fast", "dr_environment", 1, 20, "failed", "TimeoutError: restore")]
    md = incident_report_markdown(record, "inc-1", START + timedelta(minutes=5))
    assert "- **End Time**: not restored by this run (status failed)" in md
    assert "- **Duration**: ongoing: 5.0 min (300 s) when this draft was written" in md
    assert "Mitigation deployed: no mitigation step succeeded" in md and "Service restored: not by this run" in md
    assert "| failed | 19.0 s | TimeoutError: restore |" in md


def test_the_report_links_the_draft_in_html_and_slack():
    report = build_report(declared_record(), [], START + timedelta(seconds=40))
    report["incident_report"] = {"id": "inc-1", "markdown": "/r/dr_activation/manual__1.incident.md",
                                 "name": "manual__1.incident.md"}
    html = render_html(report)
    assert 'Incident report draft: <a href="manual__1.incident.md">manual__1.incident.md</a>' in html
    assert "severity <b>P0</b>" in html and "escalated to #incident-response; PagerDuty paged" in html
    assert "Incident inc-1 (P0) · incident report draft /r/dr_activation/manual__1.incident.md" in \
        slack_message(report, "/r/a.html")
    assert "Incident report" not in render_html(build_report(declared_record(), [], START))  # none declared
