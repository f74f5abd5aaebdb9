"""Plan mode (``dry_run``) of every DR DAG that acts, through ``dag.test()`` against the real lab.

Each run must validate, list in its report the calls it would make (objects, counts, the requests
each would send: pgBackRest arguments, Patroni REST, the exact Route53 ChangeBatch) and change
nothing: DNS weights read through moto, sandbox directories on disk, the Patroni leader, the app's
release, the DR region's app, the region state, Statuspage and the lock are compared before and after.
Each test loads its DAG afresh: ``dag.test()`` keeps a run's conf in the DAG's params, and a plan
run's ``dry_run`` must not leak into another test's run.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.integration.dagkit import (
    DR_ACTIVATE,
    DR_FAILBACK,
    dr_report_of,
    lab_state,
    load_dag,
    notification_fakes,
    weights,
)

pytestmark = pytest.mark.integration

ROLLBACK = {"environment": "lab", "application": False, "app_region": "primary", "database": False,
            "pitr_target": None, "traffic": False, "traffic_to": "previous"}
DRILL = {"environment": "lab", "dr_environment": "lab", "full_drill": True, "rto_target": 30, "rpo_target": 15,
         "pitr_target": None, "no_cleanup": False, "repo": 1}
CLOSING = ("release_lock", "write_report", "notify_slack", "verdict")


@pytest.fixture(scope="module")
def fakes(lab):
    """Statuspage and Slack stand-ins; the control tables made (a fresh session has run no DR DAG yet)."""
    from resilience.config import load_config
    from resilience.control_schema import migrate
    from resilience.controldb import postgres_connect

    migrate(postgres_connect(load_config().control_db_conn_id))
    with notification_fakes() as servers:
        yield servers


def control_rows(lab, sql: str, args: tuple = ()) -> list[tuple]:
    with psycopg.connect(lab["connections"]["resilience_control_db"], autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


def world(lab, statuspage) -> dict:
    """Everything a DR run could change, read from outside the code under test."""
    from resilience.lab import control

    state = lab_state(lab)
    root = Path(lab["sandbox_root"])
    dr_app = control.dr_region_status(state)
    return {
        "dns": weights(lab),
        "sandboxes": sorted(p.name for p in root.iterdir()) if root.exists() else [],
        "patroni_leader": state["app_db"]["roles"]["primary"],
        "releases": {r: releases(control.app_release(state, r)) for r in ("primary", "dr")},
        "dr_app": (dr_app["running"], sorted(dr_app["replicas"])),
        "incidents": json.dumps(statuspage.incidents, sort_keys=True, default=str),
        "dns_changes": control_rows(lab, "SELECT count(*) FROM dns_changes"),
        "dr_regions": control_rows(lab, "SELECT serving, dr_active, run_id, database FROM dr_regions"),
    }


def releases(doc: dict) -> dict:
    """A region's release history as a deploy changes it (a region never deployed to reads as v1 deployed now)."""
    return {"current": {k: v for k, v in doc["current"].items() if k != "deployed_at"}, "revisions": len(doc["history"])}


def run(dag_id: str, conf: dict):
    dagrun = load_dag(dag_id).test(run_conf={**conf, "dry_run": True})
    return dagrun, {ti.task_id: ti.state for ti in dagrun.get_task_instances()}


def assert_planned_and_untouched(lab, dagrun, states, acting: list[str]) -> dict:
    """The run succeeded as a plan: acting tasks skipped, closing tasks ran, no lock left; its report."""
    assert dagrun.state == "success", states
    assert states["plan_gate"] == "success", states
    assert all(states[t] == "skipped" for t in acting), {t: states[t] for t in acting}
    assert all(states[t] == "success" for t in CLOSING), states
    assert control_rows(lab, "SELECT count(*) FROM run_locks") == [(0,)]
    return dr_report_of(dagrun)


def calls_of(report: dict, step: str) -> list[dict]:
    return [c for c in report["planned_calls"] if c["step"] == step]


def change_batch(call: dict) -> dict:
    """The ChangeBatch a planned Route53 call would send, as JSON."""
    request = call["requests"][0]
    assert request.startswith("route53.change_resource_record_sets(HostedZoneId="), request
    return json.loads(request[request.index("ChangeBatch=") + len("ChangeBatch="):-1])


def batch_weights(batch: dict) -> dict[str, int]:
    assert all(c["Action"] == "UPSERT" for c in batch["Changes"])
    return {c["ResourceRecordSet"]["SetIdentifier"]: c["ResourceRecordSet"]["Weight"] for c in batch["Changes"]}


def test_activation_plan_lists_the_pitr_restore_and_the_cutover_and_changes_nothing(lab, airflow_db, fakes,
                                                                                     dr_inactive):
    statuspage, slack = fakes
    before = world(lab, statuspage)
    target = (datetime.now(UTC) - timedelta(minutes=2)).replace(microsecond=0)
    dagrun, states = run("dr_activation", {**DR_ACTIVATE, "primary_accessible": "no", "data_loss_acceptable": "no",
                                           "time_critical": "no", "pitr_target": target.isoformat(),
                                           "dr_replicas": 3})
    report = assert_planned_and_untouched(lab, dagrun, states, [
        "declare_incident", "primary_region_accessible", "choose_restore", "regional_failover", "restore_pitr",
        "deploy_app", "verify_dr", "dns_cutover", "final_validation", "ensure_traffic"])
    assert report["status"] == "planned" and report["path"]["restore"] == "pitr"
    assert report["required_steps"] == [] and "rto" not in report
    assert [c["step"] for c in report["planned_calls"]] == [
        "declare_incident", "declare_incident", "restore_pitr", "restore_pitr", "restore_pitr", "deploy_app",
        "verify_dr", "dns_cutover", "dns_cutover", "dns_cutover", "final_validation", "notify_slack"]
    assert report["planned_calls"][0]["where"] == "statuspage"
    assert report["planned_calls"][0]["requests"][0].startswith("POST v1/pages/")
    create, restore, sequences = calls_of(report, "restore_pitr")
    assert create["call"].startswith("sandboxes.create_sandbox(sandbox='dr-lab-")
    restore_cmd = restore["requests"][0]
    # the DR region's repository (repo2), a point-in-time restore to the target, never archiving into the source
    for arg in ("pgbackrest --config=", " restore ", "--repo=2", "--type=time", "--archive-mode=off",
                f"--target={target.strftime('%Y-%m-%d %H:%M:%S')}", "--target-action=promote"):
        assert arg in restore_cmd, (arg, restore_cmd)
    assert "setval" in sequences["requests"][1]
    (deploy,) = calls_of(report, "deploy_app")
    assert deploy["call"].startswith("regions.start_dr_app(") and "replicas=3" in deploy["call"]
    assert ":***@" in deploy["call"]  # the DSN's password is never in a plan
    cutover = calls_of(report, "dns_cutover")[0]
    assert batch_weights(change_batch(cutover)) == {"primary": 0, "dr": 100}
    assert f"HostedZoneId={lab['dns']['zone_id']}" in cutover["requests"][0]
    assert "Plan: the 12 call(s) this run would make (none was made)" in report_html(dagrun)
    assert world(lab, statuspage) == before
    assert control_rows(lab, "SELECT status FROM runs WHERE run_id = %s", (dagrun.run_id,)) == [("planned",)]
    assert any("*PLANNED*" in m["text"] and "12 call(s)" in m["text"] for m in slack.messages)


def report_html(dagrun) -> str:
    for path in (Path(os.environ["RESILIENCE_REPORT_DIR"]) / dagrun.dag_id).glob("*.json"):
        if json.loads(path.read_text())["run_id"] == dagrun.run_id:
            return path.with_suffix(".html").read_text()
    raise AssertionError(f"no report for {dagrun.run_id}")


def test_activation_plan_of_a_regional_failover_lists_patroni_requests(lab, airflow_db, fakes, dr_inactive):
    statuspage, _ = fakes
    before = world(lab, statuspage)
    dagrun, states = run("dr_activation", {**DR_ACTIVATE, "primary_accessible": "yes"})
    report = assert_planned_and_untouched(lab, dagrun, states, [
        "declare_incident", "regional_failover", "choose_restore", "final_validation", "ensure_traffic"])
    assert report["path"]["kind"] == "regional_failover"
    failover, wait, rebuild = calls_of(report, "regional_failover")
    assert failover["call"] == "database.failover_database()"
    assert failover["requests"][0].startswith("POST /failover")
    assert rebuild["call"].startswith("database.rebuild_database_replica(replicas=")
    assert any(r.startswith("GET /cluster") for r in rebuild["requests"])
    assert world(lab, statuspage) == before  # the Patroni leader among the rest


@contextmanager
def region_state(lab, **fields):
    """The lab's DR region state set to ``fields`` while the block runs, put back as it was afterwards (an
    earlier module may leave DR active: a plan is judged on the state it is given)."""
    from resilience.config import load_config
    from resilience.dr.region_state import RegionState

    regions = RegionState.for_conn(load_config().control_db_conn_id)
    had = control_rows(lab, "SELECT count(*) FROM dr_regions WHERE environment = 'lab'") == [(1,)]
    saved = regions.get("lab")
    regions.set("lab", **fields)
    try:
        yield
    finally:
        if had:
            regions.set("lab", **saved)
        else:
            control_rows(lab, "DELETE FROM dr_regions WHERE environment = 'lab' RETURNING environment")


@pytest.fixture
def dr_inactive(lab, fakes):
    """No DR episode on: what an activation starts from."""
    with region_state(lab, serving="primary", dr_active=False, run_id=None, activated_at=None, recovery_point=None,
                      database=None, app_url=None):
        yield


@pytest.fixture
def dr_active(lab, fakes):
    """The region state of a DR episode (DR serves lab, its database recorded).
    Planning a failback reads it and nothing else of DR's database."""
    database = {"name": "dr-lab-plan-test", "environment": "lab", "host": "127.0.0.1", "port": 1, "dbname": "app",
                "data_dir": str(Path(lab["sandbox_root"]) / "dr-lab-plan-test" / "pgdata"), "app_url": None}
    with region_state(lab, serving="dr", dr_active=True, run_id="plan-test-activation",
                      activated_at=datetime.now(UTC) - timedelta(hours=1),
                      recovery_point=datetime.now(UTC) - timedelta(hours=1), database=database):
        yield database


def test_failback_plan_lists_each_canary_step_and_changes_nothing(lab, airflow_db, fakes, dr_active):
    statuspage, _ = fakes
    before = world(lab, statuspage)
    dagrun, states = run("dr_failback", {**DR_FAILBACK, "steps": [10, 50, 100]})
    report = assert_planned_and_untouched(lab, dagrun, states, [
        "wait_primary_stable", "sync_dr_writes", "canary_ramp", "dns_cutover", "final_sync", "final_validation",
        "decommission_dr", "ensure_traffic"])
    assert report["status"] == "planned"
    (sync,) = calls_of(report, "sync_dr_writes")
    assert "127.0.0.1:1/app" in sync["requests"][0] and "primary_wins" in sync["requests"][1]
    ramp = [batch_weights(change_batch(c)) for c in calls_of(report, "canary_ramp") if c["where"] == "route53"]
    assert ramp == [{"primary": 10, "dr": 90}, {"primary": 50, "dr": 50}, {"primary": 100, "dr": 0},
                    {"primary": 0, "dr": 100}]  # each step, then the rollback the analysis would send
    assert batch_weights(change_batch(calls_of(report, "dns_cutover")[0])) == {"primary": 100, "dr": 0}
    stop, drop = calls_of(report, "decommission_dr")
    assert stop["call"] == "regions.stop_dr_app()"
    assert drop["call"].startswith("sandboxes.drop_sandbox(sandbox='dr-lab-plan-test'")
    assert any(r.startswith("rm -r ") for r in drop["requests"])
    assert world(lab, statuspage) == before  # the region state too: DR still serves, as the fixture set it


def test_rollback_plan_names_the_release_the_pitr_and_the_weights_and_changes_nothing(lab, airflow_db, fakes):
    from resilience.lab import control

    statuspage, _ = fakes
    control.deploy_release(lab_state(lab), "primary", "v2-plan", fail_rate=0.0)
    try:
        before = world(lab, statuspage)
        target = (datetime.now(UTC) - timedelta(seconds=30)).replace(microsecond=0)
        dagrun, states = run("emergency_rollback", {**ROLLBACK, "application": True, "database": True,
                                                    "pitr_target": target.isoformat(), "traffic": True,
                                                    "traffic_to": "primary"})
        report = assert_planned_and_untouched(lab, dagrun, states, [
            "rollback_application", "rollback_database", "rollback_traffic", "ensure_traffic"])
        assert report["status"] == "planned" and report["plan"]["application"]["to"]["release"] != "v2-plan"
        (app,) = calls_of(report, "rollback_application")
        assert "from_release='v2-plan'" in app["call"] and "region='primary'" in app["call"]
        assert app["requests"][0].startswith(f"deploy release {report['plan']['application']['to']['release']} again")
        create, restore = calls_of(report, "rollback_database")
        assert create["call"].startswith("sandboxes.create_sandbox(sandbox='rollback-")
        assert "--type=time" in restore["requests"][0]
        assert f"--target={target.strftime('%Y-%m-%d %H:%M:%S')}" in restore["requests"][0]
        (traffic,) = calls_of(report, "rollback_traffic")
        assert batch_weights(change_batch(traffic)) == {"primary": 100, "dr": 0}
        assert world(lab, statuspage) == before  # the release is still v2-plan
    finally:
        control.rollback_release(lab_state(lab), "primary")


def test_drill_plan_lists_verify_restore_checks_and_cleanup_and_creates_no_sandbox(lab, airflow_db, fakes):
    statuspage, slack = fakes
    before = world(lab, statuspage)
    dagrun, states = run("dr_monthly_drill", DRILL)
    assert dagrun.state == "success", states
    assert states["plan_gate"] == "success"
    assert all(states[t] == "skipped" for t in ("verify_backups", "create_sandbox", "restore", "check_integrity",
                                                 "check_app", "measure_rto_rpo", "cleanup_sandbox")), states
    assert all(states[t] == "success" for t in CLOSING), states
    report = dr_report_of(dagrun)
    assert report["status"] == "planned" and report["checks"] == []
    verify = calls_of(report, "verify_backups")
    assert [c["where"] for c in verify] == ["repo1", "repo1", "repo2", "repo2"]  # info and verify per repository
    assert any(" verify " in c["requests"][0] and "--repo=2" in c["requests"][0] for c in verify)
    (create,) = calls_of(report, "create_sandbox")
    (restore,) = calls_of(report, "restore")
    for arg in (" restore ", "--repo=1", "--type=default", "--archive-mode=off"):
        assert arg in restore["requests"][0], (arg, restore["requests"][0])
    assert [c["call"].split("(")[0] for c in calls_of(report, "check_integrity")] == [
        "sandboxes.amcheck", "the SQL integrity checks and row counts"]
    (cleanup,) = calls_of(report, "cleanup_sandbox")
    assert cleanup["call"].startswith("sandboxes.drop_sandbox(")
    assert world(lab, statuspage) == before  # no sandbox directory
    assert control_rows(lab, "SELECT status FROM runs WHERE run_id = %s", (dagrun.run_id,)) == [("planned",)]
    assert control_rows(lab, "SELECT count(*) FROM run_locks") == [(0,)]
    assert any("DR drill *PLANNED*" in m["text"] for m in slack.messages)
