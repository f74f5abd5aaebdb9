"""DR activation, failback and emergency rollback through ``dag.test()`` against the real lab.

The lab's two regions are real processes (load balancers on 127.0.0.1 and 127.0.0.2, app
replicas, PostgreSQL restored by pgBackRest), DNS is Route53 served by moto, and the load
generator resolves through the weights, so traffic really moves. Statuspage and Slack cannot
run here: local servers speaking their APIs stand in (tests/fakes).

The tests follow one incident's life and run in file order: a regional failover, a full DR
activation, a failback that completes, a second activation whose failback rolls back when
the primary fails at 50 %, then an emergency rollback.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.integration.dagkit import DR_ACTIVATE as ACTIVATE
from tests.integration.dagkit import DR_FAILBACK as FAILBACK
from tests.integration.dagkit import dr_report_of as report_of
from tests.integration.dagkit import lab_state, load_dag, notification_fakes, route53, weights

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fakes(lab):
    try:
        with notification_fakes() as servers:
            yield servers
    finally:
        # the regional failover moved the primary: later modules get the Connection lab.json has now
        os.environ["AIRFLOW_CONN_RESILIENCE_LAB_APP_DB"] = lab_state(lab)["connections"]["resilience_lab_app_db"]




@pytest.fixture(scope="module")
def dags(airflow_db, lab, fakes):
    return {d: load_dag(d) for d in ("dr_activation", "dr_failback", "emergency_rollback")}


EPISODES: dict[str, int] = {}  # DR episodes of this module's activations (others may have run before)


def run(dag, conf):
    dagrun = dag.test(run_conf=conf)
    return dagrun, {ti.task_id: ti.state for ti in dagrun.get_task_instances()}




def lb_requests(url: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=3) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("http_requests_total{"))


def control_rows(lab, sql: str, args: tuple = ()) -> list[tuple]:
    with psycopg.connect(lab["connections"]["resilience_control_db"], autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()


def post_via(url: str, body: str) -> int:
    import urllib.request

    request = urllib.request.Request(f"{url}/api/posts", data=json.dumps({"body": body}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status




def primary_dsn(lab) -> str:
    """The app database's writable node now (a regional failover moves it)."""
    return lab_state(lab)["app_db"]["read_write_dsn"]

# dag.test() keeps a run's conf in the DAG's params: every run passes every Param
ROLLBACK = {"environment": "lab", "application": False, "app_region": "primary", "database": False,
            "pitr_target": None, "traffic": False, "traffic_to": "previous"}


def test_bad_params_are_refused_before_any_side_effect(dags, lab):
    from airflow.sdk.exceptions import ParamValidationError

    before = weights(lab)
    with pytest.raises(ParamValidationError):
        dags["dr_activation"].test(run_conf={**ACTIVATE, "primary_accessible": "perhaps"})
    with pytest.raises(ParamValidationError):
        dags["dr_failback"].test(run_conf={**FAILBACK, "steps": [50, 0]})
    with pytest.raises(ParamValidationError):  # no dr section: not in the form's list
        dags["dr_activation"].test(run_conf={**ACTIVATE, "environment": "staging"})
    dagrun, states = run(dags["dr_activation"], {**ACTIVATE, "environment": "production"})  # platform refused
    assert states["start_activation"] == "failed" and states["declare_incident"] == "upstream_failed"
    dagrun2, states2 = run(dags["dr_failback"], FAILBACK)  # DR is not active: nothing to fail back
    assert states2["start_failback"] == "failed" and states2["canary_ramp"] == "upstream_failed"
    dagrun3, states3 = run(dags["emergency_rollback"], ROLLBACK)  # nothing selected
    assert states3["start_rollback"] == "failed"
    assert weights(lab) == before
    runs = (dagrun.run_id, dagrun2.run_id, dagrun3.run_id)
    assert control_rows(lab, "SELECT count(*) FROM runs WHERE run_id = ANY(%s)", (list(runs),)) == [(0,)]
    assert control_rows(lab, "SELECT count(*) FROM run_locks") == [(0,)]
    assert all(s == "success" for t, s in states.items() if t in ("release_lock", "ensure_traffic", "write_report"))


def test_regional_failover_when_the_primary_region_is_accessible(dags, lab, fakes):
    statuspage, _ = fakes
    roles_before = lab_state(lab)["app_db"]["roles"]["primary"]
    dagrun, states = run(dags["dr_activation"], ACTIVATE)
    assert states["regional_failover"] == "success", states
    assert states["choose_restore"] == "skipped" and states["dns_cutover"] == "skipped"
    assert states["final_validation"] == "success" and states["verdict"] == "success"
    assert lab_state(lab)["app_db"]["roles"]["primary"] != roles_before  # the replica was promoted
    assert weights(lab) == {"primary": 100, "dr": 0}  # DNS untouched
    report = report_of(dagrun)
    assert report["path"]["kind"] == "regional_failover" and report["answers"]["primary_accessible"]["answer"]
    assert report["rto"]["passed"] and all(c["passed"] for c in report["checks"])
    assert {c["name"] for c in report["checks"]} >= {"authentication functional", "file uploads working",
                                                     "webhook processing active", "monitoring operational"}
    assert any(i["name"] == "Service Disruption - Investigating" for i in statuspage.incidents.values())


def isolate_primary(lab) -> None:
    from resilience.lab import control

    control.isolate_region(lab_state(lab), "primary")


def restore_primary(lab) -> None:
    from resilience.lab import control

    control.restore_region(lab_state(lab), "primary")


def fresh_backup(lab) -> None:
    """A full backup now: "data loss acceptable" is detected from the newest backup's age, and this
    test's expectation (a latest restore) must not depend on how long the suite ran before it."""
    from resilience.lab import pgbackrest_setup

    pgbackrest_setup.wait_backup(pgbackrest_setup.start_full_backup(Path(lab_state(lab)["pgbackrest"]["config"])))


def test_full_dr_activation_moves_traffic_to_a_restored_dr_region(dags, lab, fakes):
    statuspage, slack = fakes
    fresh_backup(lab)
    isolate_primary(lab)
    dagrun, states = run(dags["dr_activation"], ACTIVATE)
    assert states["choose_restore"] == "success" and states["regional_failover"] == "skipped", states
    assert states["restore_latest"] == "success"  # fresh backup, small database: latest restore, not fast
    restored = next(s for s in report_of(dagrun)["steps"] if s["step"] == "restore_latest")
    EPISODES["first"] = restored["details"]["dr_episode"]  # 1, or more after an earlier module's activation
    assert states["dns_cutover"] == "success" and states["final_validation"] == "success", states
    assert weights(lab) == {"primary": 0, "dr": 100}
    report = report_of(dagrun)
    assert report["status"] == "passed" and report["path"]["restore"] == "latest"
    assert report["answers"]["primary_accessible"]["answer"] is False
    assert [p["within_budget"] for p in report["phases"]] == [True, True, True, True]
    assert report["rto"]["measured_s"] < 30 * 60
    # users (the load generator) now reach DR through DNS
    dr_url = lab_state(lab)["regions"]["dr"]["url"]
    first = lb_requests(dr_url)
    time.sleep(3)
    assert lb_requests(dr_url) > first + 10
    incident = next(i for i in statuspage.incidents.values() if i["status"] == "monitoring")
    assert incident["incident_updates"][0]["status"] == "investigating"
    assert any("DR activation" in m["text"] for m in slack.messages)


def test_failback_syncs_dr_writes_and_ramps_back_to_the_primary(dags, lab, fakes):
    dr_url = lab_state(lab)["regions"]["dr"]["url"]
    marker = f"written in DR {uuid.uuid4().hex}"
    assert post_via(dr_url, marker) == 201
    restore_primary(lab)
    time.sleep(12)  # the stability window (0.003 h) must see the primary up
    dagrun, states = run(dags["dr_failback"], {**FAILBACK, "decommission_dr": False})
    assert states["wait_primary_stable"] == "success", states
    assert states["canary_ramp"] == "success" and states["dns_cutover"] == "success", states
    assert states["final_validation"] == "success" and states["verdict"] == "success", states
    assert weights(lab) == {"primary": 100, "dr": 0}
    with psycopg.connect(primary_dsn(lab), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM posts WHERE body = %s", (marker,)).fetchone()[0] == 1
        # the primary's sequences moved past the DR ids it merged: its next insert cannot collide
        last, top = conn.execute("SELECT (SELECT last_value FROM posts_id_seq), (SELECT max(id) FROM posts)").fetchone()
        assert last >= top > 1_000_000_000
    report = report_of(dagrun)
    assert report["sync"]["applied"] >= 1 and report["canary"]["status"] == "completed"
    assert [c["after"]["primary"] for c in report["dns_changes"]][:2] == [50, 100]
    statuspage, _ = fakes  # the incident the activation declared is resolved at the cutover
    resolved = [i for i in statuspage.incidents.values() if i["status"] == "resolved"]
    assert [u["status"] for u in resolved[0]["incident_updates"]] == ["investigating", "monitoring", "resolved"]


def test_failback_rolls_back_to_dr_when_the_primary_fails_at_50(dags, lab):
    # DR again: the previous failback kept its region; a new activation restores afresh
    isolate_primary(lab)
    dagrun, states = run(dags["dr_activation"], {**ACTIVATE, "data_loss_acceptable": "yes", "time_critical": "yes"})
    assert states["restore_fast"] == "success" and states["verdict"] == "success", states
    restored = next(s for s in report_of(dagrun)["steps"] if s["step"] == "restore_fast")
    # its own id band: no clash with the first episode's synced rows
    assert restored["details"]["dr_episode"] == EPISODES.get("first", 1) + 1
    restore_primary(lab)
    time.sleep(12)
    seen_50, done = threading.Event(), threading.Event()
    failed_at = {}

    def fail_primary_at_50() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not done.is_set():
            if weights(lab).get("primary") == 50:
                isolate_primary(lab)
                failed_at["t"] = time.monotonic()
                seen_50.set()
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=fail_primary_at_50, daemon=True)
    watcher.start()
    interval = 20
    dagrun, states = run(dags["dr_failback"], {**FAILBACK, "interval_s": interval})
    done.set()
    watcher.join(5)
    try:
        assert seen_50.is_set()
        assert states["canary_ramp"] == "failed" and states["dns_cutover"] == "upstream_failed", states
        assert weights(lab) == {"primary": 0, "dr": 100}
        report = report_of(dagrun)
        assert report["status"] == "rolled_back" and report["canary"]["step"] == 50
        rollback = report["canary"]["changes"][-1]
        assert rollback["after"] == {"primary": 0, "dr": 100}
        assert rollback["at"] - report["canary"]["changes"][-2]["at"] < interval  # within one analysis interval
        # only the demo account (upserted on both sides) and nothing from episode 1 conflicts
        assert {c["table"] for c in report["sync"]["conflict_rows"]} <= {"public.accounts"}
    finally:
        restore_primary(lab)


def test_emergency_rollback_of_the_app_and_traffic(dags, lab):
    from resilience.lab import control

    state = lab_state(lab)
    control.deploy_release(state, "primary", "v2-broken", fail_rate=1.0)
    primary_url = state["regions"]["primary"]["url"]
    with pytest.raises(Exception, match="500"):
        post_via(primary_url, "during the bad release")
    dagrun, states = run(dags["emergency_rollback"], {**ROLLBACK, "application": True, "traffic": True,
                                                       "traffic_to": "primary"})
    assert states["rollback_application"] == "success" and states["rollback_traffic"] == "success", states
    assert states["rollback_database"] == "skipped" and states["verdict"] == "success", states
    assert control.app_release(lab_state(lab), "primary")["current"]["release"] == "v1"
    assert post_via(primary_url, "after the rollback") == 201
    assert weights(lab) == {"primary": 100, "dr": 0}
    report = report_of(dagrun)
    assert report["plan"]["application"]["to"]["release"] == "v1"


def test_emergency_rollback_of_the_database_into_a_new_environment(dags, lab):
    from datetime import UTC, datetime

    with psycopg.connect(primary_dsn(lab), autocommit=True) as conn:
        before = f"before target {uuid.uuid4().hex}"
        conn.execute("INSERT INTO accounts (email) VALUES (%s)", (before,))
        conn.execute("SELECT pg_switch_wal()")
        time.sleep(1.5)
        target = datetime.now(UTC)
        time.sleep(1.5)
        after = f"after target {uuid.uuid4().hex}"
        conn.execute("INSERT INTO accounts (email) VALUES (%s)", (after,))
        conn.execute("SELECT pg_switch_wal()")
    time.sleep(3)  # both segments archived
    dagrun, states = run(dags["emergency_rollback"], {**ROLLBACK, "database": True, "pitr_target": target.isoformat()})
    assert states["rollback_database"] == "success", states
    box = report_of(dagrun)["rollback_database"]["database"]
    try:
        with psycopg.connect(host=box["host"], port=box["port"], dbname=box["dbname"], user="postgres",
                             password=lab["app_db"]["password"], autocommit=True) as conn:
            emails = {r[0] for r in conn.execute("SELECT email FROM accounts WHERE email IN (%s, %s)", (before, after))}
        assert emails == {before}
    finally:
        from resilience.config import load_config
        from resilience.platforms.base import get_platform
        from resilience.platforms.types import Sandbox

        get_platform(load_config().environment("lab")).sandboxes.drop_sandbox(Sandbox.from_dict(box))


def test_a_failed_step_leaves_dns_on_a_healthy_region(dags, lab):
    """A run that died after sending traffic to DR, and DR is gone: the safety net moves it back."""
    from resilience.lab import control

    control.stop_dr_region(lab_state(lab))
    client, dns = route53(lab)
    client.change_resource_record_sets(HostedZoneId=dns["zone_id"], ChangeBatch={"Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": {"Name": dns["record"], "Type": "A", "SetIdentifier": region,
                                                    "Weight": weight, "TTL": dns["ttl_s"],
                                                    "ResourceRecords": [{"Value": dns["targets"][region]}]}}
        for region, weight in (("primary", 0), ("dr", 100))]})
    dagrun, states = run(dags["emergency_rollback"], {**ROLLBACK, "traffic": True, "traffic_to": "dr"})
    assert states["rollback_traffic"] == "failed" and states["ensure_traffic"] == "success", states
    assert weights(lab) == {"primary": 100, "dr": 0}
    report = report_of(dagrun)
    assert report["safety_move"]["after"] == {"primary": 100, "dr": 0}
    assert report["dns_changes"][-1]["reason"] == "safety: dr unhealthy, primary healthy"


def test_the_resilience_page_shows_the_incident_history(dags, lab):
    """The UI plugin's page, read from the real control DB after the runs above."""
    import re

    from fastapi.testclient import TestClient

    from resilience.plugin import create_app

    client = TestClient(create_app(access=lambda: None))  # the login is tested under real Airflow (tests/airflow)
    status = client.get("/status.json").json()
    assert {r["environment"] for r in status["regions"]} == {"lab"}
    assert {r["dag_id"] for r in status["runs"]} >= {"dr_activation", "dr_failback", "emergency_rollback"}
    page = client.get("/").text
    links = re.findall(r'href="(reports/dr_failback/[^"]+\.html)"', page)
    assert links and client.get(f"/{links[0]}").status_code == 200
    assert "Return to primary" in client.get(f"/{links[0]}").text
