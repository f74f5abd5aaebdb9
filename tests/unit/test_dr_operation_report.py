"""The DR operations' report (pure) and the Statuspage client against a local Statuspage API."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from resilience.dr.operation_report import build_report, render_html, slack_message
from resilience.statuspage_io import incident_body, open_incident, update_incident
from tests.fakes.statuspage import StatuspageServer

START = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def step(name, phase, begin_s, end_s, status="success", error=None):
    return {"step": name, "phase": phase, "status": status, "start": (START + timedelta(seconds=begin_s)).isoformat(),
            "end": (START + timedelta(seconds=end_s)).isoformat(), "duration_s": end_s - begin_s, "details": {},
            "error": error}


def activation_record(checks_pass=True):
    return {
        "run_id": "manual__1", "dag_id": "dr_activation", "environment": "lab", "status": "running",
        "params": {"environment": "lab", "rto_target": 30}, "started_at": START, "finished_at": None,
        "details": {"kind": "dr_activation",
                    "path": {"kind": "full_dr", "restore": "fast", "reason": "primary region lost, fast"},
                    "answers": {"primary_accessible": {"answer": False, "param": "auto", "evidence": "entry down"}},
                    "checks": [{"name": "API responds < 2 s", "passed": checks_pass, "detail": "HTTP 200 in 5 ms"}]},
        "steps": [step("declare_incident", "assessment", 0, 1), step("restore_fast", "dr_environment", 1, 20),
                  step("deploy_app", "application", 20, 24), step("verify_dr", "application", 24, 25),
                  step("dns_cutover", "traffic_cutover", 25, 26),
                  step("final_validation", "traffic_cutover", 26, 30)],
    }


def test_activation_report_measures_rto_to_the_validated_service():
    report = build_report(activation_record(), [], START + timedelta(seconds=40))
    assert report["status"] == "passed" and report["deviated"] is False
    assert report["rto"] == {"measured_s": 30.0, "target_min": 30.0, "passed": True}
    assert [p["within_budget"] for p in report["phases"]] == [True, True, True, True]
    html = render_html(report)
    assert "RTO achieved" in html and "0.50 min" in html and "primary accessible?" in html
    assert "Path: <b>full_dr</b>, restore <b>fast</b>" in html


def test_a_failed_check_fails_the_activation_and_leaves_the_rto_unmeasured():
    report = build_report(activation_record(checks_pass=False), [], START + timedelta(seconds=40))
    assert report["status"] == "failed" and report["rto"]["measured_s"] is None
    assert "Failed checks: API responds < 2 s" in slack_message(report, "/r/a.html")


def test_a_required_step_that_never_reported_fails_the_activation_by_name():
    record = activation_record()
    record["steps"] = [s for s in record["steps"] if s["step"] != "restore_fast"]  # its task was SIGKILLed
    report = build_report(record, [], START + timedelta(seconds=40))
    assert report["status"] == "failed" and report["rto"]["measured_s"] is None
    missing = "restore_fast did not report (its task was killed or did not run)"
    assert {"name": "step restore_fast", "passed": False, "detail": missing} in report["required_steps"]
    assert missing in render_html(report) and f"Steps: {missing}" in slack_message(report, "/r/a.html")


def test_a_required_task_airflow_saw_fail_fails_the_activation():
    record = activation_record()
    states = {s["step"]: "success" for s in record["steps"]}
    record["details"]["task_states"] = {**states, "final_validation": "failed"}
    report = build_report(record, [], START + timedelta(seconds=40))
    assert report["status"] == "failed"
    assert [c["detail"] for c in report["required_steps"] if not c["passed"]] == [
        "final_validation recorded success, but its task ended failed"]
    record["details"]["task_states"] = states
    assert build_report(record, [], START + timedelta(seconds=40))["status"] == "passed"


def failback_record(stability_status="stable", decommission_dr=True):
    steps = [step(n, "x", i, i + 1) for i, n in enumerate(
        ["sync_dr_writes", "canary_ramp", "dns_cutover", "final_sync", "final_validation", "decommission_dr"])]
    return {"run_id": "manual__3", "dag_id": "dr_failback", "environment": "lab", "started_at": START,
            "finished_at": None, "params": {"environment": "lab", "decommission_dr": decommission_dr},
            "steps": steps if decommission_dr else steps[:-1],
            "details": {"kind": "dr_failback", "stability": {"status": stability_status, "checks": [
                {"name": "error rate", "passed": stability_status == "stable", "detail": "0.0 % <= 1 %"}]}}}


@pytest.mark.parametrize(
    ("record", "status", "failing"),
    [
        (failback_record(), "passed", []),
        (failback_record(decommission_dr=False), "passed", []),
        (failback_record(stability_status="timeout"), "failed", ["wait_primary_stable failed: 0.0 % <= 1 %"]),
        ({**failback_record(), "details": {"kind": "dr_failback"}}, "failed",
         ["wait_primary_stable did not report (its task was killed or did not run)"]),
    ],
)
def test_the_failback_needs_its_stability_verdict_and_every_step(record, status, failing):
    report = build_report(record, [], START + timedelta(seconds=40))
    assert report["status"] == status
    assert [c["detail"] for c in report["required_steps"] if not c["passed"]] == failing


def sync_result(deleted_rows, copied=1):
    return {"since": "t0", "policy": "primary_wins", "copied": copied, "applied": copied, "conflicts": 0,
            "unexplained": 0, "deleted_in_dr": len(deleted_rows), "conflict_rows": [], "deleted_rows": deleted_rows,
            "tables": {"public.posts": {"copied": copied, "applied": copied, "conflicts": 0, "unexplained": 0,
                                        "deleted_in_dr": len(deleted_rows)}}}


def test_rows_deleted_in_dr_count_once_over_both_syncs_and_fail_the_failback_by_count():
    from resilience.dr.failback import _merge_sync

    restored, copied_from_dr = {"table": "public.posts", "key": [7]}, {"table": "public.posts", "key": [1_000_000_042]}
    both = _merge_sync(_merge_sync(None, sync_result([restored])), sync_result([restored, copied_from_dr]))
    assert both["copied"] == 2  # rows copied add up; the second pass finds the first one's deletion again
    assert both["deleted_in_dr"] == 2 and both["tables"]["public.posts"]["deleted_in_dr"] == 2
    assert [d["key"] for d in both["deleted_rows"]] == [[7], [1_000_000_042]]
    record = failback_record()
    record["details"]["sync"] = both
    report = build_report(record, [], START + timedelta(seconds=40))
    assert report["status"] == "failed"
    check = next(c for c in report["checks"] if c["name"] == "rows deleted in DR")
    assert not check["passed"] and check["detail"].startswith("2 row(s) DR deleted are still on the primary")
    html = render_html(report)
    assert "Deleted in DR, still on the primary (first 50 of 2)" in html and "<td>[1000000042]</td>" in html
    assert "Sync: 2 row(s) deleted in DR are still on the primary" in slack_message(report, "/r/c.html")
    record["details"]["sync"] = sync_result([])
    assert build_report(record, [], START + timedelta(seconds=40))["status"] == "passed"


def test_an_unreadable_path_fails_the_report_with_the_field():
    record = activation_record()
    del record["details"]["path"]
    report = build_report(record, [], START + timedelta(seconds=40))
    assert report["status"] == "failed"
    assert report["required_steps"] == [{"name": "required steps", "passed": False, "detail": (
        "cannot tell which steps this run needed: details.path: absent: start_activation did not record the path "
        "it chose")}]


def test_a_rolled_back_canary_is_reported_with_its_charts():
    samples = [{"at": 1000.0 + i, "weight": w, "primary": {"error_rate_pct": e, "p95_ms": 5.0},
                "dr": {"error_rate_pct": 0.0, "p95_ms": 5.0}} for i, (w, e) in enumerate([(10, 0), (50, 0), (50, 5)])]
    record = {"run_id": "manual__2", "dag_id": "dr_failback", "environment": "lab", "params": {"environment": "lab"},
              "started_at": START, "finished_at": None, "steps": [step("canary_ramp", "canary", 0, 3, "failed")],
              "details": {"kind": "dr_failback", "canary": {
                  "status": "rolled_back", "plan": [10, 50, 100], "step": 50, "reason": "error rate 5 > 1",
                  "failed_checks": 1, "samples": samples, "changes": [],
                  "analyses": [{"at": 1002.0, "weight": 50, "action": "rollback", "failed_checks": 1,
                                "checks": [{"name": "error_rate_pct", "passed": False, "detail": "5 > 1"}]}]}}}
    report = build_report(record, [{"at": "t", "before": {"primary": 50, "dr": 50}, "after": {"primary": 0, "dr": 100},
                                    "reason": "rollback"}], START + timedelta(seconds=5))
    assert report["status"] == "rolled_back"
    html = render_html(report)
    assert "Canary ramp — rolled_back" in html and html.count("<svg") >= 4 and "rollback" in html
    assert "Canary: rolled_back (error rate 5 &gt; 1)" not in html  # the Slack line is plain text
    assert "Canary: rolled_back (error rate 5 > 1)" in slack_message(report, "/r/b.html")


def test_incident_body_refuses_unknown_status():
    with pytest.raises(ValueError, match=r"status: 'panicking' is not one of"):
        incident_body("x", "panicking", "major", "")


@pytest.fixture
def statuspage(monkeypatch):
    with StatuspageServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_TEST_STATUSPAGE", server.connection_json())
        yield server


def test_incident_opened_and_moved_on_through_the_http_connection(statuspage, airflow_db):
    incident = open_incident("test_statuspage", "page1", "Service Disruption", "DR activation")
    assert incident["status"] == "investigating" and incident["shortlink"].startswith("https://stspg.io/")
    assert update_incident("test_statuspage", "page1", incident["id"], "monitoring", "served from DR")
    stored = statuspage.incidents[incident["id"]]
    assert stored["status"] == "monitoring" and len(stored["incident_updates"]) == 2
    assert statuspage.requests[0]["path"] == "/v1/pages/page1/incidents"


def test_missing_statuspage_connection_is_logged_not_raised(caplog, airflow_db):
    assert "AIRFLOW_CONN_NOPE" not in os.environ
    assert open_incident("nope", "page1", "x", "y") is None
    assert "Not posting to Statuspage" in caplog.text


def test_a_failing_statuspage_never_stops_the_run(statuspage, caplog, airflow_db, monkeypatch):
    import json

    monkeypatch.setenv("AIRFLOW_CONN_TEST_STATUSPAGE",
                       json.dumps({"conn_type": "http", "host": statuspage.url, "password": "wrong key"}))
    assert open_incident("test_statuspage", "page1", "x", "y") is None
    assert update_incident("test_statuspage", "page1", "abc", "resolved", "z") is False
    assert "Statuspage incident not opened" in caplog.text
    assert [r["path"] for r in statuspage.requests] == ["/v1/pages/page1/incidents", "/v1/pages/page1/incidents/abc"]
