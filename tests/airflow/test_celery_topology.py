"""Under the production topology (CeleryExecutor, two workers, two triggerers): SIGKILL a part mid-campaign.

One topology for the module (``resilience airflow up --executor celery``, its own home and ports), two
s3-5xx campaigns (the cheapest fault: the S3 fault proxy's error rate):

1. the Celery worker running the inject is SIGKILLed (the worker and every process under it, as a
   node or a pod dies) the moment the inject has written its ledger row; a supervisor restarts the
   worker. The task is failed by its missing heartbeat, the fault never goes on, the verdict says so
   and closes the ledger row the inject left open (the revert teardown needs a successful setup);
2. the scheduler is SIGKILLed while a task of the campaign runs on a worker, and restarted at once; the
   run carries on to the fault. Then the triggerer running the guard is SIGKILLed with the fault on: the
   other triggerer takes the guard over (measured from the ledger's ``guard_seen_at``), the fault is made
   worse (the proxy's error rate to 100 %), and the guard, now on the other triggerer, reverts it.

Each case ends with the ledger row ``reverted`` and the S3 proxy at 0 % errors (the lab itself), and a
verdict that is not "passed". Every wait is on a condition; no fixed sleep.

Port: ``$RESILIENCE_AIRFLOW_PORT`` + 10 (default 28090), and the next five (log servers, broker).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import psycopg
import pytest

from resilience import airflow_celery, airflow_local
from resilience.lab import control
from tests.airflow.airflowkit import airflow_cli
from tests.fakes.slack import SlackWebhookServer

pytestmark = [pytest.mark.airflow, pytest.mark.integration]

PORT = int(os.environ.get(airflow_local.PORT_ENV_VAR) or 28080) + 10
DAG_ID = "chaos_campaign"
LOW_RATE = 0.05  # uploads retry: no 5xx reaches a client, the SLOs hold while the fault is on
TIMINGS: dict[str, float] = {}


def _campaign(duration_s: int) -> dict[str, Any]:
    # a busy 2-core machine's latency noise is not what this test is about: p95 bound 10x baseline
    return {"environment": "lab", "scenarios": ["s3-5xx"], "duration": duration_s, "max_p95_ratio": 10,
            "scenario_options": {"s3-5xx": {"error_rate": LOW_RATE}}}


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s")
        time.sleep(interval_s)
    return value


# -- processes ---------------------------------------------------------------------------------------

def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _argv(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def tree(root: int) -> list[int]:
    """``root`` and every process under it."""
    parents = {int(p.name): _ppid(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    found, todo = [root], [root]
    while todo:
        current = todo.pop()
        children = [pid for pid, ppid in parents.items() if ppid == current]
        found += children
        todo += children
    return found


def sigkill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def task_runner(ti_id: str) -> int | None:
    """The PID of the task process of ``ti_id`` (the task SDK titles it ``airflow worker -- <ti id>``)."""
    title = f"airflow worker -- {ti_id}"
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and _argv(int(p.name)).startswith(title):
            return int(p.name)
    return None


def holder_of(pid: int, roots: dict[str, int]) -> str | None:
    """Which component (by its root PID) ``pid`` runs under."""
    seen = set()
    while pid and pid not in seen:
        seen.add(pid)
        for name, root in roots.items():
            if pid == root:
                return name
        pid = _ppid(pid) or 0
    return None


def trigger_log_holder(roots: dict[str, int], marker: str) -> str | None:
    """The triggerer whose processes have a trigger log of ``marker`` (a task's log path part) open."""
    for name, root in roots.items():
        for pid in tree(root):
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        target = os.readlink(fd)
                        if marker in target and ".trigger." in target:
                            return name
    return None


# -- the topology ----------------------------------------------------------------------------------

@dataclass
class Topology:
    topo: airflow_celery.CeleryTopology
    lab: dict[str, Any]
    env: dict[str, str] = field(repr=False)
    api: httpx.Client = field(repr=False)
    restarted: list[subprocess.Popen] = field(default_factory=list, repr=False)

    def roots(self, components: tuple[str, ...]) -> dict[str, int]:
        pids = {c: airflow_celery.component_pid(self.topo, c) for c in components}
        return {c: pid for c, pid in pids.items() if pid}

    def restart(self, component: str) -> int:
        """What a supervisor does for a dead component: start it again with the same configuration; return
        the size its log had (what it logs from now on comes after)."""
        with mock.patch.dict(os.environ, self.env, clear=True):
            env = airflow_celery.celery_env(self.topo, self.lab, schedules=False)
        offset = self.topo.logfile(component).stat().st_size
        self.restarted.append(airflow_celery.start_component(self.topo, component, env))
        return offset

    def control_db(self, sql: str, args: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.lab["connections"]["resilience_control_db"]) as conn:
            return conn.execute(sql, args).fetchall()

    def metadata_db(self, sql: str, args: tuple = ()) -> list[tuple]:
        with psycopg.connect(airflow_celery.metadata_dsn(self.topo, self.lab)) as conn:
            return conn.execute(sql, args).fetchall()

    def ledger(self, run_id: str) -> list[dict[str, Any]]:
        if not self.control_db("SELECT to_regclass('fault_ledger') IS NOT NULL")[0][0]:
            return []
        keys = ("id", "state", "reverted_by", "revert_reason", "injected_at", "guard_seen_at", "expires_at")
        rows = self.control_db(
            "SELECT id, state, reverted_by, revert_reason, extract(epoch FROM injected_at)::float8,"
            " extract(epoch FROM guard_seen_at)::float8, extract(epoch FROM expires_at)::float8"
            " FROM fault_ledger WHERE run_id = %s ORDER BY id", (run_id,))
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def tis(self, run_id: str, dag_id: str = DAG_ID) -> dict[str, dict[str, Any]]:
        response = self.api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        return {ti["task_id"]: ti for ti in response.json()["task_instances"]}

    def run_state(self, run_id: str, dag_id: str = DAG_ID) -> str:
        return self.api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]

    def xcom(self, run_id: str, task_id: str, dag_id: str = DAG_ID, key: str = "return_value") -> Any:
        response = self.api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")
        return response.json().get("value") if response.status_code == 200 else None

    def wait_run(self, run_id: str, timeout_s: float, dag_id: str = DAG_ID) -> dict[str, Any]:
        return airflow_local.wait_run(self.api, dag_id, run_id, timeout_s)

    def locks(self) -> list[tuple]:
        return self.control_db("SELECT name, run_id FROM run_locks")

    def failure_logs(self, run_id: str, tail_chars: int = 3000) -> str:
        logs = []
        for ti in self.tis(run_id).values():
            if ti["state"] == "failed":
                content = self.api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/"
                                       f"{max(ti['try_number'], 1)}").json().get("content", [])
                text = "\n".join(json.dumps(line, default=str) for line in content)
                logs.append(f"--- {ti['task_id']} ---\n{text[-tail_chars:]}")
        return "\n".join(logs)


@pytest.fixture(scope="module")
def celery_airflow(lab) -> Iterator[Topology]:
    from resilience.config import load_config

    home = Path(tempfile.mkdtemp(prefix="resilience-celery-"))
    topo = airflow_celery.CeleryTopology(airflow_local.Standalone(home, PORT))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update({"AIRFLOW_HOME": str(home), airflow_local.PORT_ENV_VAR: str(PORT),
                "RESILIENCE_REPORT_DIR": str(home / "reports"), "RESILIENCE_LAB_DIR": lab["lab_dir"]})
    slack = SlackWebhookServer().__enter__()
    env[f"AIRFLOW_CONN_{load_config().slack_conn_id_for('lab')}".upper()] = slack.connection_json()
    if airflow_local.healthy(topo.sa):
        pytest.fail(f"something already answers on {topo.sa.base_url}: set {airflow_local.PORT_ENV_VAR} to a free port")
    started = time.monotonic()
    topology = None
    try:
        up = airflow_cli(env, "up", "--executor", "celery", "--no-schedules", "--lab-dir", lab["lab_dir"], timeout_s=400)
        TIMINGS["up_s"] = time.monotonic() - started
        if up.returncode != 0:
            logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                             for p in sorted(topo.components_dir.glob("*.log")))
            pytest.fail(f"resilience airflow up --executor celery failed ({up.returncode}):\n{up.stdout}\n"
                        f"{up.stderr[-3000:]}\n{logs}")
        with airflow_local.client(topo.sa) as api:
            airflow_local.wait_parsed(api, [DAG_ID, "chaos_abort"])
            topology = Topology(topo, lab, env, api)
            yield topology
    finally:
        slack.__exit__(None, None, None)
        stopping = time.monotonic()
        down = airflow_cli(env, "down", timeout_s=120)
        TIMINGS["down_s"] = time.monotonic() - stopping
        for proc in topology.restarted if topology else []:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)  # reap what this process started
        left = airflow_local.processes(topo.sa)
        broker = airflow_celery.stop_broker(topo)
        if down.returncode == 0 and not left and not broker:
            shutil.rmtree(home, ignore_errors=True)
        assert down.returncode == 0, f"resilience airflow down failed:\n{down.stdout}\n{down.stderr[-3000:]}"
        assert not left, f"Airflow processes {left} of {home} survived `resilience airflow down`"
        assert not broker, "the Celery broker survived `resilience airflow down`"


# -- the cases ---------------------------------------------------------------------------------------

def unless_ended(af: Topology, run_id: str, value: Any) -> Any:
    """``value``; when it is falsy and the run has already ended, fail with its failed tasks' logs."""
    if not value and af.run_state(run_id) in airflow_local.FINISHED:
        pytest.fail(f"campaign {run_id} ended before the awaited moment\n{af.failure_logs(run_id)}")
    return value


def _assert_lab_clean(af: Topology) -> None:
    assert control.s3_fault(af.lab)["error_rate"] == 0.0, "the S3 proxy still serves errors"


def test_worker_killed_mid_inject_leaves_no_fault_and_an_honest_verdict(celery_airflow):
    af = celery_airflow
    _assert_lab_clean(af)
    workers = af.roots(airflow_celery.WORKERS)
    assert len(workers) == 2, f"two workers expected: {workers}"
    run_id = airflow_local.trigger(af.api, DAG_ID, _campaign(20))
    inject_ti = wait_for(lambda: af.tis(run_id).get("s3_5xx.inject_s3_5xx", {}).get("id"), 60,
                         "the inject's task instance")

    runner: dict[str, Any] = {}

    def ledger_written_while_inject_runs():
        pid = task_runner(inject_ti)
        if pid and not runner:
            runner.update(pid=pid, worker=holder_of(pid, workers))
        rows = af.ledger(run_id)
        if rows and not runner:
            raise AssertionError(f"the ledger row appeared before the inject's process was seen: {rows}")
        if rows:
            return rows
        if not pid and len(runner) and af.tis(run_id)["s3_5xx.inject_s3_5xx"]["state"] in ("success", "failed"):
            raise AssertionError("the inject ended before its ledger row was seen")
        return None

    wait_for(lambda: unless_ended(af, run_id, ledger_written_while_inject_runs()), 300, "the inject's ledger row",
             interval_s=0.02)
    victim = runner["worker"]
    assert victim in workers, f"inject process {runner['pid']} runs under no worker: {workers}"
    assert task_runner(inject_ti), "the inject finished before the kill: the case was not reached"
    sigkill(tree(workers[victim]))
    killed_at = time.time()
    assert af.ledger(run_id)[0]["state"] == "injecting"
    offset = af.restart(victim)

    run = af.wait_run(run_id, timeout_s=400)
    TIMINGS["worker_case_run_end_after_kill_s"] = time.time() - killed_at
    states = run["task_states"]
    assert states["s3_5xx.inject_s3_5xx"] == "failed", states  # failed by its missing heartbeat
    assert states["s3_5xx.guard_slo"] == "upstream_failed", states
    assert run["state"] == "failed", states
    verdict = af.xcom(run_id, "s3_5xx.verdict")
    assert verdict and verdict["status"] != "passed", verdict
    assert "inject" in verdict["reason"], verdict
    [row] = af.ledger(run_id)
    assert row["injected_at"] is None, f"the fault went on although its inject died: {row}"
    # the revert teardown needs a successful setup, so it did not run: the verdict closed the row it left open
    assert (row["state"], row["reverted_by"]) == ("reverted", "chaos_campaign:verdict"), row
    _assert_lab_clean(af)
    assert run_id not in [lock[1] for lock in af.locks()], af.locks()
    wait_for(lambda: airflow_celery.worker_ready_since(af.topo, victim, offset), 120, f"restarted {victim} ready")


def test_scheduler_and_guard_triggerer_killed_the_other_triggerer_reverts_a_breach(celery_airflow):
    af = celery_airflow
    _assert_lab_clean(af)
    assert not [r for r in af.control_db("SELECT id FROM fault_ledger WHERE state <> 'reverted'")], \
        "a fault is open before the campaign"
    run_id = airflow_local.trigger(af.api, DAG_ID, _campaign(90))

    # (c) the scheduler dies while a task of the campaign runs on a worker; a supervisor restarts it
    wait_for(lambda: unless_ended(af, run_id, af.tis(run_id).get("s3_5xx.baseline", {}).get("state") == "running"),
             300, "the s3-5xx baseline running on a worker")
    before = {job for job, _ in airflow_celery.live_jobs(af.topo, af.lab, "SchedulerJob")}
    [scheduler] = af.roots(("scheduler",)).values()
    sigkill(tree(scheduler))
    killed_at = time.monotonic()
    af.restart("scheduler")
    wait_for(lambda: {j for j, _ in airflow_celery.live_jobs(af.topo, af.lab, "SchedulerJob")} - before, 120,
             "the restarted scheduler heartbeating")
    TIMINGS["scheduler_restart_to_heartbeat_s"] = time.monotonic() - killed_at

    # the run goes on to the fault: the guard applies it on a triggerer
    def fault_on():
        rows = af.ledger(run_id)
        if af.run_state(run_id) in airflow_local.FINISHED:
            raise AssertionError(f"the campaign ended before its fault was on: {rows}\n{af.failure_logs(run_id)}")
        return rows if rows and rows[0]["state"] == "active" and rows[0]["guard_seen_at"] else None

    [entry] = wait_for(fault_on, 300, "the s3-5xx fault on, guarded")
    assert control.s3_fault(af.lab)["error_rate"] == LOW_RATE
    TIMINGS["scheduler_kill_to_fault_on_s"] = time.monotonic() - killed_at

    # (b) the triggerer running the guard dies; the other one must take the guard over
    triggerers = af.roots(airflow_celery.TRIGGERERS)
    assert len(triggerers) == 2, triggerers
    victim = wait_for(lambda: trigger_log_holder(triggerers, "task_id=s3_5xx.guard_slo"), 30,
                      "the triggerer holding the guard")
    sigkill(tree(triggerers[victim]))
    killed = time.time()
    survivor = next(t for t in triggerers if t != victim)

    def guard_back():
        row = af.ledger(run_id)[0]
        assert row["state"] == "active", f"the fault ended while its guard was moving: {row}"
        return row if row["guard_seen_at"] and row["guard_seen_at"] > killed + 0.05 else None

    wait_for(guard_back, 90, "the guard polling again after its triggerer died")
    failover_s = time.time() - killed
    TIMINGS["triggerer_failover_s"] = failover_s
    assert trigger_log_holder({survivor: triggerers[survivor]}, "task_id=s3_5xx.guard_slo") == survivor
    af.restart(victim)  # a supervisor brings it back; the guard stays where it is

    # the fault gets worse than the SLOs allow: every S3 request fails, uploads fail, clients see 5xx
    control.set_s3_fault(af.lab, 1.0, expires_at=entry["expires_at"])
    worsened = time.time()
    reverted = wait_for(lambda: (r := af.ledger(run_id)[0])["state"] == "reverted" and r, 60,
                        "the guard reverting the breach")
    TIMINGS["breach_to_revert_s"] = time.time() - worsened
    assert reverted["reverted_by"] == "guard_slo", reverted
    _assert_lab_clean(af)

    run = af.wait_run(run_id, timeout_s=300)
    assert run["state"] == "failed", run["task_states"]
    assert run["task_states"]["s3_5xx.guard_slo"] == "failed", run["task_states"]
    event = af.xcom(run_id, "s3_5xx.guard_slo", key="event")
    assert event["status"] == "breach" and event.get("unguarded_s", 0) > 0, event
    verdict = af.xcom(run_id, "s3_5xx.verdict")
    assert verdict["status"] == "failed" and "SLO" in verdict["reason"], verdict
    [row] = af.ledger(run_id)
    assert (row["state"], row["reverted_by"]) == ("reverted", "guard_slo"), row
    _assert_lab_clean(af)
    assert run_id not in [lock[1] for lock in af.locks()], af.locks()


@pytest.fixture(scope="module", autouse=True)
def _report_timings(request):
    """The measured seconds, one line in pytest's output after the module."""
    yield
    if TIMINGS:
        with request.config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
            print("\ncelery topology (tests/airflow/test_celery_topology.py), s: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in TIMINGS.items()))
