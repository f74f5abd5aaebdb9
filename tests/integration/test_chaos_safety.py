"""The safety net under a campaign that runs in its own process (dag.test() in a subprocess): the
sweep leaves live runs alone and reverts dead ones, an Immediate Abort stops the campaign for good,
and turning chaos off mid-campaign does not block the revert.

Asserted from outside: ledger rows, the lock table, Redis and the S3 fault proxy, the report.
Under real Airflow (scheduler, triggerer, task processes) the same rules are tested in tests/airflow/.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import redis
import yaml

from tests.integration.dagkit import load_dag

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]




@pytest.fixture(scope="module")
def abort_dag(airflow_db, lab):
    return load_dag("chaos_abort")


def control(lab):
    return psycopg.connect(lab["connections"]["resilience_control_db"], autocommit=True)


def ledger_rows(lab, run_id=None):
    with control(lab) as conn:
        if not conn.execute("SELECT to_regclass('fault_ledger') IS NOT NULL").fetchone()[0]:
            return []  # a fresh lab: the first campaign creates the table
        sql = "SELECT id, run_id, scenario, state, reverted_by, revert_reason FROM fault_ledger"
        if run_id:
            return conn.execute(sql + " WHERE run_id = %s ORDER BY id", (run_id,)).fetchall()
        return conn.execute(sql + " ORDER BY id").fetchall()


def lock_holder(lab):
    with control(lab) as conn:
        row = conn.execute("SELECT run_id FROM run_locks WHERE name = 'chaos-dr'").fetchone()
    return row[0] if row else None


def start_campaign(conf, env=None):
    """chaos_campaign through dag.test() in its own process group (so it can be SIGKILLed whole)."""
    code = ("import json; from airflow.dag_processing.dagbag import DagBag;"
            f"d = DagBag(dag_folder={str(ROOT / 'dags' / 'chaos_campaign.py')!r}).get_dag('chaos_campaign');"
            f"d.test(run_conf=json.loads({json.dumps(conf)!r}))")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, **(env or {})})


def wait_active(lab, runner, scenario, timeout_s=120):
    """The run_id of the campaign once its ``scenario`` fault is active."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = [r for r in ledger_rows(lab) if r[2] == scenario and r[3] == "active"]
        if rows:
            return rows[-1][1], rows[-1][0]
        assert time.monotonic() < deadline and runner.poll() is None, f"{scenario} never became active"
        time.sleep(0.2)


def wait_exit(runner, timeout_s):
    try:
        return runner.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
        raise


def set_run_state(run_id, state):
    """What the scheduler does to a run whose task stopped heartbeating (after 5 minutes by default)."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        assert session.query(DagRun).filter(DagRun.run_id == run_id).update({"state": state}) == 1


def test_sweep_leaves_a_live_run_alone_and_reverts_it_once_its_run_has_ended(abort_dag, lab):
    """The whole runner dies with the fault injected. While Airflow still says "running", the sweep
    touches nothing (the old code reverted every live run); once the run is failed, it reverts."""
    client = redis.Redis.from_url(lab["redis"]["url"], socket_timeout=0.5, socket_connect_timeout=0.5)
    runner = start_campaign({"environment": "lab", "scenarios": ["redis-unavailable"], "duration": 60})
    try:
        run_id, entry_id = wait_active(lab, runner, "redis-unavailable")
    finally:
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()  # the fault outlived its runner
    dagrun = abort_dag.test(run_conf={"mode": "sweep"})
    assert dagrun.state == "success"
    assert [r[3] for r in ledger_rows(lab, run_id)] == ["active"], "the sweep reverted a run Airflow says is live"
    assert lock_holder(lab) == run_id, "the sweep freed the lock of a live run"
    set_run_state(run_id, "failed")
    dagrun = abort_dag.test(run_conf={"mode": "sweep"})
    assert dagrun.state == "success"
    [(_, _, _, state, reverted_by, reason)] = ledger_rows(lab, run_id)
    assert (state, reverted_by, reason) == ("reverted", "chaos_abort:sweep", "its run is failed")
    assert client.ping()
    assert lock_holder(lab) is None


def test_immediate_abort_stops_the_campaign_for_good(lab):
    """abort_all while the first of two scenarios is on: that fault is reverted at once, the second is
    never injected, and the campaign ends aborted, saying why."""
    from resilience.chaos.abort import abort_everything
    from resilience.ledger import Ledger

    runner = start_campaign({"environment": "lab", "scenarios": ["redis-unavailable", "s3-5xx"], "duration": 20,
                             "scenario_options": {"s3-5xx": {"error_rate": 0.05}}})
    try:
        run_id, entry_id = wait_active(lab, runner, "redis-unavailable")
        ledger = Ledger(lambda: psycopg.connect(lab["connections"]["resilience_control_db"]))
        done = abort_everything("resilience_control_db", ledger, by="chaos_abort:abort_all",
                                reason="Immediate Abort: test")
        assert done["reverted"] == [entry_id] and done["lock_released_from"] == run_id
        wait_exit(runner, 240)  # the campaign ends by itself
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
    rows = ledger_rows(lab, run_id)
    assert [(r[2], r[3], r[4]) for r in rows] == [("redis-unavailable", "reverted", "chaos_abort:abort_all")]
    with control(lab) as conn:
        status, summary = conn.execute("SELECT status, summary FROM runs WHERE run_id = %s",
                                       (run_id,)).fetchone()
    verdicts = {v["scenario"]: v for v in summary["verdicts"]}
    assert status == "aborted"
    assert verdicts["redis-unavailable"]["status"] == "aborted"
    assert verdicts["redis-unavailable"]["reason"].startswith("reverted early by chaos_abort:abort_all")
    assert verdicts["s3-5xx"]["status"] == "aborted"
    assert "taken from this run" in verdicts["s3-5xx"]["reason"], verdicts["s3-5xx"]
    assert redis.Redis.from_url(lab["redis"]["url"], socket_timeout=1).ping()


def test_turning_chaos_off_mid_fault_does_not_block_the_revert_teardown(lab, tmp_path, monkeypatch):
    """The kill switch (chaos.enabled: false) is flipped while a fault is on: the revert teardown
    still reverts it (it used to re-validate the campaign and fail before reverting)."""
    from resilience.chaos.scenario_steps import revert
    from resilience.config import DEFAULT_CONFIG_PATH, load_config
    from resilience.ledger import Ledger
    from resilience.platforms.base import get_platform

    ledger = Ledger(lambda: psycopg.connect(lab["connections"]["resilience_control_db"]))  # migrates the schema
    run_id = f"kill-switch-{time.time_ns()}"
    platform = get_platform(load_config().environment("lab"))
    entry_id = ledger.record_intent(run_id, "chaos_campaign", "lab", "redis-unavailable", {}, 120)
    platform.cache.stop_cache()
    ledger.mark_active(entry_id, {})
    config = tmp_path / "environments.yaml"
    doc = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    doc["environments"]["lab"]["chaos"]["enabled"] = False  # the kill switch, mid-fault
    config.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("RESILIENCE_ENVIRONMENTS", str(config))
    params = {"environment": "lab", "scenarios": ["redis-unavailable"], "duration": 10}
    result = revert(params, run_id, "redis-unavailable", None, by="redis_unavailable.revert_redis_unavailable")
    assert result["reverted_by"] == "redis_unavailable.revert_redis_unavailable"
    [(_, _, _, state, reverted_by, _)] = ledger_rows(lab, run_id)
    assert (state, reverted_by) == ("reverted", "redis_unavailable.revert_redis_unavailable")
    assert redis.Redis.from_url(lab["redis"]["url"], socket_timeout=1).ping()
