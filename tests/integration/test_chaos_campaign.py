"""chaos_campaign and chaos_abort through dag.test() against the lab (real faults, real Prometheus).

Asserted from outside the code under test: the ledger rows, Redis and S3 answering again,
the report, the Slack post, and the time the guard took to end a breaking fault.
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

from tests.fakes.slack import SlackWebhookServer

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def load_dag(dag_id):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py")).get_dag(dag_id)


@pytest.fixture(scope="module")
def campaign_dag(airflow_db, lab):
    return load_dag("chaos_campaign")


@pytest.fixture(scope="module")
def abort_dag(airflow_db, lab):
    return load_dag("chaos_abort")


def run(dag, **conf):
    dagrun = dag.test(run_conf=conf)
    return dagrun, {ti.task_id: ti.state for ti in dagrun.get_task_instances()}


def ledger_rows(lab, run_id=None):
    with psycopg.connect(lab["connections"]["resilience_control_db"]) as conn:
        if not conn.execute("SELECT to_regclass('fault_ledger') IS NOT NULL").fetchone()[0]:
            return []
        sql = "SELECT id, scenario, state, reverted_by, injected_at, reverted_at FROM fault_ledger"
        if run_id:
            return conn.execute(sql + " WHERE run_id = %s ORDER BY id", (run_id,)).fetchall()
        return conn.execute(sql + " ORDER BY id").fetchall()


def report_of(dagrun):
    directory = Path(os.environ["RESILIENCE_REPORT_DIR"]) / "chaos_campaign"
    for path in directory.glob("*.json"):
        report = json.loads(path.read_text())
        if report["run_id"] == dagrun.run_id:
            return report, path.with_suffix(".html").read_text()
    raise AssertionError(f"no report for {dagrun.run_id}")


def test_harmless_fault_passes(campaign_dag, lab):
    with SlackWebhookServer() as slack:
        os.environ["AIRFLOW_CONN_RESILIENCE_SLACK"] = slack.connection_json()
        try:
            # a loaded 2-core CI machine's latency noise is not what this test is about: p95 bound 10x
            dagrun, states = run(campaign_dag, environment="lab", scenarios=["pod-kill"], duration=10,
                                 max_p95_ratio=10)
        finally:
            del os.environ["AIRFLOW_CONN_RESILIENCE_SLACK"]
    assert dagrun.state == "success", states
    assert states["redis_unavailable.baseline"] == "skipped"
    [(_, scenario, state, reverted_by, _, _)] = ledger_rows(lab, dagrun.run_id)
    assert (scenario, state, reverted_by) == ("pod-kill", "reverted", "pod_kill.revert_pod_kill")
    report, html = report_of(dagrun)
    assert report["status"] == "completed" and report["deviated"] is False and report["resilience_score"] == 100.0
    [pod_kill] = [s for s in report["scenarios"] if s["scenario"] == "pod-kill"]
    assert pod_kill["verdict"]["status"] == "passed"
    assert pod_kill["series"]["error_rate_pct"], "no error-rate series for the chart"
    assert "<svg" in html and "fill=\"#ffcdd2\"" in html  # the fault window is shaded
    assert len(slack.messages) == 1 and "Chaos campaign *COMPLETED*" in slack.messages[0]["text"]


def test_breaking_fault_is_aborted_early_and_fails(campaign_dag, lab):
    started = time.monotonic()
    dagrun, states = run(campaign_dag, environment="lab", scenarios=["s3-5xx"], duration=120,
                         scenario_options={"s3-5xx": {"error_rate": 1.0}})
    elapsed = time.monotonic() - started
    assert dagrun.state == "failed"
    assert states["s3_5xx.guard_slo"] == "failed" and states["s3_5xx.revert_s3_5xx"] == "success"
    [(_, _, state, reverted_by, injected_at, reverted_at)] = ledger_rows(lab, dagrun.run_id)
    assert (state, reverted_by) == ("reverted", "guard_slo")
    assert (reverted_at - injected_at).total_seconds() < 30, "the guard did not end the fault early"
    assert elapsed < 120
    report, _ = report_of(dagrun)
    [s3] = [s for s in report["scenarios"] if s["scenario"] == "s3-5xx"]
    assert s3["verdict"]["status"] == "failed" and s3["verdict"]["reason"].startswith("SLO breached: ")
    # the proxy answers again: the fault did not outlive the run
    from resilience.config import load_config
    from resilience.platforms.base import get_platform

    assert get_platform(load_config().environment("lab")).object_store_fault()["error_rate"] == 0.0


def test_production_is_refused_before_any_fault(campaign_dag, lab, capfd):
    before = ledger_rows(lab)
    dagrun, states = run(campaign_dag, environment="production", scenarios=["pod-kill"], duration=10)
    assert dagrun.state == "failed" and states["start_campaign"] == "failed"
    assert "environments.production.chaos.enabled is false: chaos refused" in "".join(capfd.readouterr())
    assert ledger_rows(lab) == before


def test_preflight_refuses_while_another_run_holds_the_lock(campaign_dag, lab):
    from resilience.ledger import RUN_LOCK, Ledger

    ledger = Ledger(lambda: psycopg.connect(lab["connections"]["resilience_control_db"]))
    assert ledger.acquire_lock(RUN_LOCK, "drill-run-1", "dr_monthly_drill")[0]
    before = ledger_rows(lab)
    try:
        dagrun, states = run(campaign_dag, environment="lab", scenarios=["redis-unavailable"], duration=10)
    finally:
        ledger.release_lock(RUN_LOCK, "drill-run-1")
    assert states["preflight"] == "failed" and states["redis_unavailable.inject_redis_unavailable"] != "success"
    assert ledger_rows(lab) == before


def test_preflight_refuses_an_unhealthy_system(campaign_dag, lab):
    from resilience.lab import control
    from resilience.lab.state import load_lab_state

    state = load_lab_state()
    stopped = [control.replicas(state)[name]["pid"] for name in ("app-1", "app-2")]
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)  # alive but not answering: not ready
    before = ledger_rows(lab)
    try:
        dagrun, states = run(campaign_dag, environment="lab", scenarios=["pod-kill"], duration=10)
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    assert states["preflight"] == "failed"
    assert ledger_rows(lab) == before


def test_bad_params_are_refused_at_trigger(campaign_dag, lab):
    from airflow.sdk.definitions.param import ParamValidationError

    before = ledger_rows(lab)
    with pytest.raises(ParamValidationError, match="duration"):
        campaign_dag.test(run_conf={"duration": 1})
    with pytest.raises(ParamValidationError, match="scenarios"):
        campaign_dag.test(run_conf={"scenarios": ["dns-chaos"]})
    assert ledger_rows(lab) == before


def test_sigkilled_run_mid_fault_is_swept_by_chaos_abort(abort_dag, lab):
    """The whole runner dies with the fault injected; chaos_abort's scheduled sweep reverts it."""
    client = redis.Redis.from_url(lab["redis"]["url"], socket_timeout=0.5, socket_connect_timeout=0.5)
    code = ("import sys; from airflow.dag_processing.dagbag import DagBag;"
            f"d = DagBag(dag_folder={str(ROOT / 'dags' / 'chaos_campaign.py')!r}).get_dag('chaos_campaign');"
            "d.test(run_conf={'environment': 'lab', 'scenarios': ['redis-unavailable'], 'duration': 10})")
    runner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 90
        while not any(r[1] == "redis-unavailable" and r[2] == "active" for r in ledger_rows(lab)):
            assert time.monotonic() < deadline and runner.poll() is None, "the fault never became active"
            time.sleep(0.2)
    finally:
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()  # the fault outlived its runner
    [entry] = [r for r in ledger_rows(lab) if r[2] == "active"]
    # its run still reads "running" in Airflow's DB; the sweep reverts it once past its planned end
    dagrun, states = run(abort_dag, mode="sweep")
    assert dagrun.state == "success"
    if [r for r in ledger_rows(lab) if r[0] == entry[0]][0][2] == "active":
        time.sleep(max(0.0, 10 + 15 - (time.time() - entry[4].timestamp())) + 1)
        dagrun, states = run(abort_dag, mode="sweep")
    [(_, _, state, reverted_by, _, _)] = [r for r in ledger_rows(lab) if r[0] == entry[0]]
    assert (state, reverted_by) == ("reverted", "chaos_abort:sweep")
    assert client.ping()
    run(abort_dag, mode="abort_all")  # frees the lock the dead run still holds
