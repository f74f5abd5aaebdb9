"""A drill's verdict from its record alone: phases, RTO and RPO against the targets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from resilience.dr.drill.outcome import drill_outcome
from resilience.dr.drill.report import build_report, render_html

T0 = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)


def at(s: float) -> str:
    return (T0 + timedelta(seconds=s)).isoformat()


def phase(name, start, end, status="success", error=None, **details):
    return {"phase": name, "started_at": at(start), "ended_at": at(end), "status": status, "error": error,
            "details": details}


def record(phases, **params):
    return {
        "run_id": "manual__1", "dag_id": "dr_monthly_drill", "environment": "lab", "dr_environment": "lab",
        "params": {"rto_target": 30, "rpo_target": 15, "pitr_target": None, **params},
        "started_at": T0, "ended_at": None, "status": "running", "rto_s": None, "rpo_s": None, "summary": {},
        "phases": phases,
    }


def passing_phases(app_healthy_s=600.0, source_latest_s=100.0, restored_latest_s=40.0):
    return [
        phase("verify_backups", 1, 5),
        phase("create_sandbox", 6, 7),
        phase("restore", 8, 300, source_latest_write=at(source_latest_s)),
        phase("integrity", 301, 400, restored_latest_write=at(restored_latest_s)),
        phase("app_connectivity", 401, app_healthy_s, app_healthy_at=at(app_healthy_s)),
        phase("measure_rto_rpo", app_healthy_s + 1, app_healthy_s + 2),
        phase("cleanup_sandbox", app_healthy_s + 3, app_healthy_s + 4),
    ]


def checks(outcome):
    return {c["name"]: (c["passed"], c["detail"]) for c in outcome["checks"]}


def test_passing_drill():
    out = drill_outcome(record(passing_phases()), now=T0 + timedelta(hours=1))
    assert out["status"] == "passed" and out["deviated"] is False
    assert out["rto"]["measured_s"] == 600.0 and out["rpo"]["measured_s"] == 60.0
    assert checks(out)["RTO within target"] == (True, "10.00 min (600.0 s) vs target 30 min")
    assert checks(out)["RPO within target"] == (True, "1.00 min (60.0 s) vs target 15 min")
    assert out["duration"] == 600.0 and [p["phase"] for p in out["phases"]][0] == "verify_backups"
    assert all(passed for passed, _ in checks(out).values())


def test_rto_over_target_fails_with_the_figures():
    out = drill_outcome(record(passing_phases(app_healthy_s=1801.0)), now=T0 + timedelta(hours=1))
    assert out["status"] == "failed"
    assert checks(out)["RTO within target"] == (False, "30.02 min (1801.0 s) vs target 30 min")


def test_rpo_over_target_fails():
    out = drill_outcome(record(passing_phases(source_latest_s=1000.0, restored_latest_s=99.0)), T0 + timedelta(hours=1))
    assert checks(out)["RPO within target"] == (False, "15.02 min (901.0 s) vs target 15 min")


def test_pitr_measures_rpo_against_the_target():
    out = drill_outcome(record(passing_phases(restored_latest_s=38.0), pitr_target=at(40)), T0 + timedelta(hours=1))
    assert out["rpo"]["measured_s"] == 2.0 and out["rpo"]["reference"] == at(40)


def test_failed_verify_fails_the_drill_and_leaves_rto_unmeasured():
    phases = [phase("verify_backups", 1, 5, "failed", "ChecksFailedError: backup verification failed")]
    out = drill_outcome(record(phases), now=T0 + timedelta(seconds=10))
    assert out["status"] == "failed"
    c = checks(out)
    assert c["step verify_backups"] == (False, "verify_backups failed: ChecksFailedError: backup verification failed")
    assert c["step restore"] == (False, "restore did not report (its task was killed or did not run)")
    assert c["RTO within target"] == (False, "not measured (target 30 min)")
    assert out["rto"]["measured_s"] is None and out["rpo"]["measured_s"] is None


def test_report_renders_every_section():
    rec = record(passing_phases())
    out = drill_outcome(rec, now=T0 + timedelta(hours=1))
    history = [{"run_id": "old", "started_at": T0 - timedelta(days=30), "status": "passed", "rto_s": 700.0,
                "rpo_s": 30.0, "rto_target_min": 30, "rpo_target_min": 15}]
    report = build_report(rec, out, history, {"name": "drill-x", "dsn": "postgresql://postgres@127.0.0.1:1/app"},
                          kept=True)
    html = render_html(report)
    assert report["history"][0]["rto_s"] == 700.0 and report["sandbox"]["kept"] is True
    for fragment in ("DR drill <span class=\"passed\">PASSED", "<h2>Timeline</h2><svg", "RTO target 30 min",
                     "kept (no_cleanup)", "postgresql://postgres@127.0.0.1:1/app"):
        assert fragment in html
    assert "password" not in html.lower()


def without(name):
    return [p for p in passing_phases() if p["phase"] != name]


def test_a_restore_that_never_reported_fails_the_drill_by_name():
    out = drill_outcome(record(without("restore")), now=T0 + timedelta(hours=1))
    assert out["status"] == "failed"
    assert checks(out)["step restore"] == (False, "restore did not report (its task was killed or did not run)")


def test_a_restore_killed_mid_way_leaves_a_running_phase_and_fails_the_drill():
    phases = [dict(p, status="running", ended_at=None) if p["phase"] == "restore" else p for p in passing_phases()]
    out = drill_outcome(record(phases), now=T0 + timedelta(hours=1))
    assert checks(out)["step restore"] == (False, "restore started but never reported its end (its task was killed)")
    assert out["status"] == "failed"


def test_a_sandbox_left_behind_fails_the_drill_unless_no_cleanup():
    assert checks(drill_outcome(record(without("cleanup_sandbox")), T0 + timedelta(hours=1)))["step cleanup_sandbox"] == (
        False, "cleanup_sandbox did not report (its task was killed or did not run)")
    kept = drill_outcome(record(without("cleanup_sandbox"), no_cleanup=True), T0 + timedelta(hours=1))
    assert kept["status"] == "passed" and "step cleanup_sandbox" not in checks(kept)


def test_airflow_task_states_are_the_second_witness():
    states = {p["phase"]: "success" for p in passing_phases()} | {"check_integrity": "success", "check_app": "success"}
    out = drill_outcome(record(passing_phases()), T0 + timedelta(hours=1), {**states, "check_app": "failed"})
    assert out["status"] == "failed"
    assert checks(out)["step check_app"] == (False, "check_app recorded success, but its task ended failed")
    assert drill_outcome(record(passing_phases()), T0 + timedelta(hours=1), states)["status"] == "passed"
