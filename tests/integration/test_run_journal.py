"""The run journal on the lab's control-plane PostgreSQL (a throw-away database): what each DAG's report
reads back, retried and failing steps, and bookkeeping that never fails the step it records."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from resilience.journal import Journal

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


class AirflowSkipException(Exception):  # matched by name, as the SDK's is
    pass


def journal(database: str, run_id: str) -> Journal:
    return Journal(lambda: psycopg.connect(database), run_id)


def test_a_campaign_reads_back_its_scenarios_in_the_order_of_its_params(database):
    run = journal(database, "manual__campaign")
    run.open("chaos_campaign", "chaos_campaign", "lab", {"scenarios": ["s3-5xx", "pod-kill"]}, T0)
    run.put("pod-kill", "fault", {"ledger_id": 4})
    run.put("pod-kill", "verdict", {"status": "failed"})
    run.put("pod-kill", "verdict", {"status": "passed"})  # a retried judge replaces its verdict
    assert run.values("pod-kill") == {"fault": {"ledger_id": 4}, "verdict": {"status": "passed"}}
    run.close("completed", {"verdicts": []}, score=100.0)
    record = run.load()
    assert record["scenarios"] == [{"scenario": "s3-5xx"},
                                   {"scenario": "pod-kill", "fault": {"ledger_id": 4}, "verdict": {"status": "passed"}}]
    assert (record["status"], record["score"], record["ended_at"] is not None) == ("completed", 100.0, True)


def test_a_step_that_raises_is_recorded_failed_and_the_error_goes_on(database):
    run = journal(database, "scheduled__drill")
    run.open("dr_monthly_drill", "dr_drill", "production", {"rto_target": 30}, T0, dr_environment="dr-sandbox")
    with run.step("verify_backups") as details:
        details["backups"] = 2
    with pytest.raises(RuntimeError, match="restore died"), run.step("restore") as details:
        details["restored_bytes"] = 10
        raise RuntimeError("restore died")
    run.skip("cleanup_sandbox", "", "no_cleanup: the sandbox is kept")
    phases = {p["phase"]: p for p in run.load()["phases"]}
    assert phases["verify_backups"]["status"] == "success" and phases["verify_backups"]["details"] == {"backups": 2}
    assert (phases["restore"]["status"], phases["restore"]["error"]) == ("failed", "RuntimeError: restore died")
    assert phases["restore"]["details"] == {"restored_bytes": 10}  # the evidence up to the failure is kept
    assert phases["cleanup_sandbox"]["status"] == "skipped"
    assert [h["run_id"] for h in run.earlier("production")] == []  # a running drill is no history


def test_a_dr_operation_keeps_its_phases_timings_and_notes(database):
    run = journal(database, "manual__failover")
    run.open("dr_activation", "dr_operation", "lab", {"rto_target": 30}, T0)
    run.note(kind="dr_activation", path={"kind": "full_dr"})
    run.note(dns_change={"after": {"primary": 0, "dr": 100}})
    with pytest.raises(AirflowSkipException), run.step("deploy_app", "application"):
        raise AirflowSkipException("plan mode")
    run.add_step("canary_ramp", "canary", "success", T0, T0 + timedelta(seconds=42), {"plan": [10, 50, 100]})
    record = run.load()
    assert record["details"] == {"kind": "dr_activation", "path": {"kind": "full_dr"},
                                 "dns_change": {"after": {"primary": 0, "dr": 100}}}
    steps = {s["step"]: s for s in record["steps"]}
    assert (steps["deploy_app"]["phase"], steps["deploy_app"]["status"]) == ("application", "skipped")
    assert steps["canary_ramp"] | {"details": None} == {
        "step": "canary_ramp", "phase": "canary", "status": "success", "start": T0.isoformat(),
        "end": (T0 + timedelta(seconds=42)).isoformat(), "duration_s": 42.0, "details": None, "error": None}
    assert [s["step"] for s in record["steps"]] == ["canary_ramp", "deploy_app"]  # by start time


def test_a_step_of_a_run_never_opened_is_logged_not_raised(database, caplog):
    """A revert teardown records its result: the revert must stand even when the run has no journal."""
    run = journal(database, "manual__never_opened")
    with caplog.at_level(logging.WARNING, logger="resilience.journal"):
        run.put("redis-unavailable", "revert", {"ledger_id": 9})
    assert "manual__never_opened has no journal" in caplog.text and "redis-unavailable/revert" in caplog.text
    with pytest.raises(LookupError, match="no run recorded in the journal for run 'manual__never_opened'"):
        run.load()


def test_a_drills_history_is_its_earlier_finished_runs_of_the_same_dag(database):
    for n, status in enumerate(("passed", "planned", "failed")):
        old = journal(database, f"scheduled__{n}")
        old.open("dr_monthly_drill", "dr_drill", "production", {}, T0 + timedelta(days=n), dr_environment="dr")
        old.close(status, {}, rto_s=60.0 + n)
    other = journal(database, "manual__activation")
    other.open("dr_activation", "dr_operation", "production", {}, T0)
    other.close("passed", {})
    now = journal(database, "scheduled__now")
    now.open("dr_monthly_drill", "dr_drill", "production", {}, T0 + timedelta(days=5), dr_environment="dr")
    assert [(h["run_id"], h["status"], h["rto_s"]) for h in now.earlier("production")] == [
        ("scheduled__0", "passed", 60.0), ("scheduled__2", "failed", 62.0)]
