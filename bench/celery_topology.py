"""The Celery topology's figures (issue 12, section 1): triggerer failover, slots held by waits, guards per triggerer.

On the production-shaped topology (``resilience airflow up --executor celery``: PostgreSQL metadata,
Redis broker, api-server, scheduler, dag-processor, two triggerers, two Celery workers of 2 slots)
against a lab of its own:

1. **Triggerer failover.** One s3-5xx campaign (error rate 5 %: the SLOs hold) whose fault stays on
   while the triggerer running its guard is SIGKILLed (it and its trigger runner), ``--failovers`` times:
   failover = the kill -> the guard polling again (the ledger's ``guard_seen_at`` moves) on the other
   triggerer. The victim is restarted between rounds, as a supervisor would.
2. **Worker slots held while waiting.** Sampled every second while the campaign's guard (and then its
   recovery) is deferred: Airflow's running task instances, the Celery workers' active tasks
   (``inspect().active()`` through the broker) and task processes under the workers. Must be 0.
   The failback's stability wait and canary ramp are deferrable sensors of the same kind
   (``resilience.sensors``); they are not run here (they need a DR activation first).
3. **Guards per triggerer.** With triggerer-2 stopped, ``--guards`` K = 10, 25, ... deferred guards
   (``SloGuardTrigger`` at 1 s polling, observe-only: the lab's SLO queries, no fault) started straight
   in the triggerer (a bench DAG whose task has ``start_from_trigger``: no worker slot per guard). Over
   ``--hold-s`` seconds once all K run: Airflow's own loop watchdog (it sleeps 0.1 s and logs
   "Triggerer's async thread was blocked for X seconds" when X > 0.2 s, i.e. a lag > 100 ms), the
   largest lag, and the guards' achieved reading rate (Prometheus' own count of instant queries,
   3 per reading) against K per second.

Usage::

    python bench/celery_topology.py [--failovers 3] [--guards 10,25,50,100] [--hold-s 30]
        [--lab-dir DIR --port-base N --keep-lab] [--airflow-port N]

Figures (2026-12-02, 2 cores shared with other engineers' suites and a Docker build, Debian 12, Airflow
3.3.2, celery provider 3.26.0 / Celery 5.6.3, HA settings of ``resilience.airflow_celery.HA_SETTINGS``:
triggerer heartbeat 2 s, declared dead after 10 s; lab on its own ports):

- Topology up (``db migrate`` + 7 components + broker, until both workers are ready and both triggerers
  heartbeat): 27-44 s; 78-101 s at load average ~10.
- Triggerer failover, kill -> the guard polling again on the other triggerer: 8.6 s (8.0-8.7, 3 kills at
  load 5-7) and 8.2 s (7.5-9.0, 2 kills); in the test 7.3, 8.1, 10.4 s. It is the health threshold
  (10 s) minus the age of the victim's last heartbeat (0-2 s), plus up to one triggerer loop (1 s).
  With Airflow's defaults (5 s / 30 s) a guard would be unwatched for ~25-30 s.
- Worker slots while the guard waits (sampled each second over its whole window, 37-42 samples per run):
  Airflow running task instances 0, task processes under the workers 0; Celery ``active()`` listed the
  guard's own task once, in the 1-2 s after it deferred (its supervisor finishing) and never after.
  The recovery wait lasts ~3 s here (too short to sample apart from its start and end).
- Guards on one triggerer at 1 s polling (readings per second = guards, i.e. no reading late, up to 80):

  | guards | loop lags > 100 ms | largest lag s | readings/s | load average |
  |---|---|---|---|---|
  | 10, 15, 20, 30 | 0 in 60 s | - | 9.9, 15.0, 20.0, 30.0 | 3.1-4.6 |
  | 40 | 1 and 2 in 60 s (two runs) | 0.23, 0.27 | 39.8, 39.9 | 4.7-6.0 |
  | 50, 60, 80 | 3, 4, 6 in 60 s | 0.27, 0.19, 0.28 | 49.9, 59.6, 79.7 | 1.8-4.1 |
  | 25, 50 (a busier run) | 1, 4 in 30 s | 0.44, 0.73 | 24.9, 48.7 | 6.5-7.3 |
  | 100, 200 (a busier run) | 24, 35 in 30 s | 2.52, 1.24 | 46.0, 110.2 | 10-14 |

  One triggerer holds ~30 guards with no loop lag over 100 ms in a minute; from 40 the loop lags
  0.2-0.3 s a few times a minute while readings keep pace up to 80; at 100 on a busy machine the
  readings fall to half rate.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import ROOT, lab_arguments, own_lab, quiet_stdout, wait_for

DAG_ID = "chaos_campaign"
BENCH_DAG_ID = "bench_guards"
BLOCKED = re.compile(r"async thread was blocked for ([0-9.]+) seconds")
QUERY_RATE = 'sum(rate(prometheus_http_requests_total{handler="/api/v1/query"}[%ds]))'

BENCH_DAG = '''"""Bench only: one observe-only SLO guard started straight in the triggerer (no worker slot)."""
import json
from datetime import datetime

from airflow.sdk import BaseOperator, dag
from airflow.triggers.base import StartTriggerArgs

KWARGS = json.loads({kwargs!r})


class ObserveGuard(BaseOperator):
    start_from_trigger = True
    start_trigger_args = StartTriggerArgs(trigger_cls="resilience.triggers.SloGuardTrigger", trigger_kwargs=KWARGS,
                                          next_method="execute_complete", timeout=None)

    def execute_complete(self, context, event=None):
        return event


@dag(dag_id="{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, max_active_runs=1000,
     is_paused_upon_creation=False)
def {dag_id}():
    ObserveGuard(task_id="guard")


{dag_id}()
'''


def log(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", file=sys.stderr, flush=True)


# -- processes ---------------------------------------------------------------------------------------

def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def tree(root: int) -> list[int]:
    parents = {int(p.name): _ppid(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    found, todo = [root], [root]
    while todo:
        current = todo.pop()
        children = [pid for pid, ppid in parents.items() if ppid == current]
        found += children
        todo += children
    return found


def _argv(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def holder(topo: Any, marker: str) -> str | None:
    """The triggerer whose processes have the trigger log of ``marker`` (a task's log path part) open."""
    from resilience import airflow_celery

    for name in airflow_celery.TRIGGERERS:
        root = airflow_celery.component_pid(topo, name)
        for pid in tree(root) if root else []:
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        target = os.readlink(fd)
                        if marker in target and ".trigger." in target:
                            return name
    return None


# -- the topology ------------------------------------------------------------------------------------

class Bench:
    def __init__(self, topo: Any, lab: dict[str, Any], env: dict[str, str]) -> None:
        from resilience import airflow_local

        self.topo, self.lab, self.env = topo, lab, env
        self.api = airflow_local.client(topo.sa)

    def control_db(self, sql: str, args: tuple = ()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.lab["connections"]["resilience_control_db"]) as conn:
            return conn.execute(sql, args).fetchall()

    def metadata_db(self, sql: str, args: tuple = ()) -> list[tuple]:
        import psycopg

        from resilience import airflow_celery

        with psycopg.connect(airflow_celery.metadata_dsn(self.topo, self.lab)) as conn:
            return conn.execute(sql, args).fetchall()

    def ledger(self, run_id: str) -> dict[str, Any] | None:
        rows = self.control_db("SELECT id, state, extract(epoch FROM guard_seen_at)::float8, reverted_by"
                               " FROM fault_ledger WHERE run_id = %s ORDER BY id", (run_id,))
        return dict(zip(("id", "state", "guard_seen_at", "reverted_by"), rows[-1], strict=True)) if rows else None

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]

    def ti_state(self, run_id: str, task_id: str) -> str | None:
        response = self.api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}")
        return response.json().get("state") if response.status_code == 200 else None

    def restart(self, component: str) -> None:
        from unittest import mock

        from resilience import airflow_celery

        with mock.patch.dict(os.environ, self.env, clear=True):
            env = airflow_celery.celery_env(self.topo, self.lab, schedules=False)
        airflow_celery.start_component(self.topo, component, env)

    def slots_held(self, celery: Any) -> dict[str, int]:
        """Task slots in use right now, three ways."""
        from resilience import airflow_celery

        running = self.api.get("/dags/~/dagRuns/~/taskInstances", params={"state": "running", "limit": 100})
        active = celery.control.inspect(timeout=1.0).active() or {}
        runners = 0
        for worker in airflow_celery.WORKERS:
            root = airflow_celery.component_pid(self.topo, worker)
            runners += sum(_argv(p).startswith("airflow worker -- ") for p in (tree(root) if root else []))
        active_tasks = [_celery_task_name(task) for tasks in active.values() for task in tasks]
        if active_tasks:
            log(f"Celery active while sampling: {active_tasks}")
        return {"airflow_running_tis": running.json()["total_entries"], "celery_active": len(active_tasks),
                "task_processes": runners}


def _celery_task_name(task: dict[str, Any]) -> str:
    """The Airflow task a Celery task runs (its workload's ``ti.task_id``), for the log."""
    text = json.dumps(task.get("args"), default=str)
    found = re.search(r'task_id\W+([\w.]+)', text)
    return f"{task.get('name')}: {found.group(1) if found else text[:120]}"


def failovers_and_slots(bench: Bench, rounds: int) -> dict[str, Any]:
    from celery import Celery

    from resilience import airflow_celery, airflow_local

    duration_s = 40 + 30 * rounds
    conf = {"environment": "lab", "scenarios": ["s3-5xx"], "duration": duration_s, "max_p95_ratio": 10,
            "scenario_options": {"s3-5xx": {"error_rate": 0.05}}}
    run_id = airflow_local.trigger(bench.api, DAG_ID, conf)
    celery = Celery(broker=bench.topo.broker_url)
    samples: dict[str, list[dict[str, int]]] = {"guard": [], "recovery": []}

    def fault_on() -> dict[str, Any] | None:
        entry = bench.ledger(run_id)
        if bench.run_state(DAG_ID, run_id) in airflow_local.FINISHED:
            raise RuntimeError(f"the campaign ended before its fault was on: {entry}")
        return entry if entry and entry["state"] == "active" and entry["guard_seen_at"] else None

    wait_for(fault_on, 400, "the campaign's fault on")
    log(f"fault on; {rounds} failovers")
    failover_s: list[float] = []
    for i in range(rounds):
        samples["guard"].append(bench.slots_held(celery))
        victim = wait_for(lambda: holder(bench.topo, "task_id=s3_5xx.guard_slo"), 30, "the guard's triggerer")
        before = {j for j, _ in airflow_celery.live_jobs(bench.topo, bench.lab, "TriggererJob")}
        root = airflow_celery.component_pid(bench.topo, victim)
        for pid in tree(root) if root else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed = time.time()

        def guard_back(killed: float = killed, i: int = i) -> bool:
            entry = bench.ledger(run_id)
            if entry is None or entry["state"] != "active":
                raise RuntimeError(f"the fault ended during failover {i + 1}: {entry}")
            return bool(entry["guard_seen_at"] and entry["guard_seen_at"] > killed)

        wait_for(guard_back, 120, f"the guard back after failover {i + 1}", interval_s=0.1)
        failover_s.append(time.time() - killed)
        new = holder(bench.topo, "task_id=s3_5xx.guard_slo")
        log(f"failover {i + 1}: {victim} killed, guard polling again after {failover_s[-1]:.1f} s (on {new})")
        bench.restart(victim)
        wait_for(lambda before=before: {j for j, _ in airflow_celery.live_jobs(
            bench.topo, bench.lab, "TriggererJob")} - before, 120, f"restarted {victim} heartbeating")
        samples["guard"].append(bench.slots_held(celery))
    sample_while_deferred(bench, celery, run_id, "s3_5xx.guard_slo", samples["guard"])
    wait_for(lambda: bench.ti_state(run_id, "s3_5xx.recovery") in ("deferred", "success", "failed"), 120,
             "the recovery wait")
    sample_while_deferred(bench, celery, run_id, "s3_5xx.recovery", samples["recovery"])
    run = airflow_local.wait_run(bench.api, DAG_ID, run_id, 600)
    entry = bench.ledger(run_id)
    return {"failover_s": failover_s, "samples": samples, "run_state": run["state"], "ledger": entry}


def sample_while_deferred(bench: Bench, celery: Any, run_id: str, task_id: str, into: list[dict[str, int]]) -> None:
    """Slots held, once a second while ``task_id`` waits deferred (a sample counts only when the task was
    deferred both before and after it: its resumption is a task like any other)."""
    while bench.ti_state(run_id, task_id) == "deferred":
        sample = bench.slots_held(celery)
        if bench.ti_state(run_id, task_id) == "deferred":
            into.append(sample)
        time.sleep(1)


def guard_capacity(bench: Bench, counts: list[int], hold_s: float) -> list[dict[str, Any]]:
    """K observe-only guards on triggerer-1 alone: loop lag per Airflow's watchdog, achieved reading rate."""
    from resilience import airflow_celery
    from resilience.lab.daemons import is_alive

    other = airflow_celery.component_pid(bench.topo, "triggerer-2")
    if other:
        os.kill(other, signal.SIGTERM)
        wait_for(lambda: not is_alive(other), 60, "triggerer-2 stopped")
    logfile = bench.topo.logfile("triggerer-1")
    results = []
    for count in counts:
        run_ids = []
        for i in range(count):
            body = {"dag_run_id": f"bench_{count}_{i}_{time.time():.0f}", "logical_date": None, "conf": {}}
            response = bench.api.post(f"/dags/{BENCH_DAG_ID}/dagRuns", json=body)
            response.raise_for_status()
            run_ids.append(body["dag_run_id"])
        started = time.monotonic()

        def running(count: int = count) -> bool:
            [(n,)] = bench.metadata_db("SELECT count(*) FROM trigger t JOIN task_instance ti ON ti.trigger_id = t.id"
                                       " WHERE ti.dag_id = %s AND ti.state = 'deferred'"
                                       " AND t.triggerer_id IS NOT NULL", (BENCH_DAG_ID,))
            return n >= count

        wait_for(running, 300, f"{count} guards deferred and assigned", interval_s=1)
        ramp_s = time.monotonic() - started
        time.sleep(5)  # past the triggers' start (imports, first readings): the steady state is measured
        offset = logfile.stat().st_size
        window_start = time.time()
        time.sleep(hold_s)
        with logfile.open("rb") as f:
            f.seek(offset)
            lags = [float(x) - 0.1 for x in BLOCKED.findall(f.read().decode(errors="replace"))]
        rate = query_rate(bench.lab, int(time.time() - window_start))
        results.append({"guards": count, "ramp_s": ramp_s, "lags_over_100ms": len(lags), "load1": os.getloadavg()[0],
                        "max_lag_s": max(lags) if lags else 0.0, "window_s": hold_s,
                        "readings_per_s": rate / 3 if rate is not None else None})
        log(f"{count} guards: {results[-1]}")
        for run_id in run_ids:
            bench.api.patch(f"/dags/{BENCH_DAG_ID}/dagRuns/{run_id}", json={"state": "failed"})
        wait_for(lambda: not bench.metadata_db("SELECT 1 FROM trigger LIMIT 1"), 300, "the guards' triggers gone",
                 interval_s=1)
    bench.restart("triggerer-2")
    return results


def query_rate(lab: dict[str, Any], window_s: int) -> float | None:
    """Instant queries per second Prometheus answered over the last ``window_s`` (its own counter)."""
    import httpx

    answer = httpx.get(f"{lab['prometheus']['url']}/api/v1/query", params={"query": QUERY_RATE % max(window_s, 5)},
                       timeout=5).json()
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def dags_folder(kwargs: dict[str, Any]) -> Path:
    """The project's DAG files (symlinked) and the bench DAG, in a folder of the bench's own."""
    folder = Path(tempfile.mkdtemp(prefix="resilience-bench-dags-"))
    for dag_file in (ROOT / "dags").glob("*.py"):
        (folder / dag_file.name).symlink_to(dag_file)
    (folder / f"{BENCH_DAG_ID}.py").write_text(BENCH_DAG.format(kwargs=json.dumps(kwargs), dag_id=BENCH_DAG_ID))
    return folder


def guard_kwargs() -> dict[str, Any]:
    """An observe-only guard on the lab's SLO queries, 1 s polling, a policy loose enough never to halt."""
    from resilience.config import load_config

    slo = load_config().environment("lab").slo_source()
    return {"prometheus_conn_id": slo.prometheus_conn_id, "queries": dict(slo.queries), "window": slo.window,
            "baseline": {"availability_pct": 100.0, "error_rate_pct": 0.0, "p95_ms": 20.0},
            "policy": {"min_availability_pct": 0.0, "max_error_rate_increase_pct": 100.0, "max_p95_ratio": 1000.0,
                       "missing_data_is_breach": False},
            "until": (datetime.now(UTC) + timedelta(hours=2)).isoformat(), "poll_interval_s": 1.0,
            "query_timeout_s": slo.query_timeout_s}


def summary(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--failovers", type=int, default=3, help="triggerer kills during one fault (default 3)")
    parser.add_argument("--guards", default="10,25,50,100", help="concurrent guards on one triggerer, comma-separated")
    parser.add_argument("--hold-s", type=float, default=30, help="seconds measured at each guard count")
    parser.add_argument("--airflow-port", type=int, default=28290)
    lab_arguments(parser, 25720)
    args = parser.parse_args()
    counts = [int(c) for c in args.guards.split(",") if c.strip()]

    for key in [k for k in os.environ if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))]:
        del os.environ[key]
    home = Path(tempfile.mkdtemp(prefix="resilience-bench-celery-"))
    os.environ.update({"AIRFLOW_HOME": str(home), "RESILIENCE_REPORT_DIR": str(home / "reports")})
    from resilience import airflow_celery, airflow_local

    topo = airflow_celery.CeleryTopology(airflow_local.Standalone(home, args.airflow_port))
    with own_lab(args.lab_dir, args.port_base, keep=args.keep_lab) as lab:
        env = dict(os.environ)
        folder = dags_folder(guard_kwargs())
        env["AIRFLOW__CORE__DAGS_FOLDER"] = str(folder)
        try:
            started = time.monotonic()
            with quiet_stdout():
                airflow_celery.up(topo, lab, schedules=False, extra_env={"AIRFLOW__CORE__DAGS_FOLDER": str(folder)})
            up_s = time.monotonic() - started
            log(f"topology up in {up_s:.0f} s")
            bench = Bench(topo, lab, {**env})
            airflow_local.wait_parsed(bench.api, [DAG_ID, BENCH_DAG_ID])
            failover = failovers_and_slots(bench, args.failovers) if args.failovers else None
            capacity = guard_capacity(bench, counts, args.hold_s) if counts else []
        finally:
            with quiet_stdout():
                airflow_celery.down(topo)
            if not airflow_local.processes(topo.sa):
                shutil.rmtree(home, ignore_errors=True)
            shutil.rmtree(folder, ignore_errors=True)
    print(f"Celery topology up in {up_s:.0f} s (api-server, scheduler, dag-processor, 2 triggerers, 2 workers)\n")
    if failover:
        print("| measure | value |\n|---|---|")
        print(f"| triggerer failover (kill -> guard polling again), s, median (min-max) of "
              f"{len(failover['failover_s'])} | {summary(failover['failover_s'])} |")
        for wait, rows in failover["samples"].items():
            worst = {k: max(r[k] for r in rows) for k in rows[0]} if rows else {}
            held = sum(1 for r in rows if any(r.values()))
            print(f"| slots held while the {wait} waits: max Airflow running TIs / Celery active / task processes; "
                  f"samples with any held | {worst.get('airflow_running_tis', '-')} / {worst.get('celery_active', '-')}"
                  f" / {worst.get('task_processes', '-')}; {held} of {len(rows)} |")
        print(f"| campaign | {failover['run_state']}, ledger {failover['ledger']} |\n")
    if capacity:
        print("| guards on one triggerer | ramp s | loop lags > 100 ms in window | max lag s | readings/s "
              "(ideal = guards) | load average (1 min) |\n|---|---|---|---|---|---|")
        for r in capacity:
            rate = "-" if r["readings_per_s"] is None else f"{r['readings_per_s']:.1f}"
            print(f"| {r['guards']} | {r['ramp_s']:.0f} | {r['lags_over_100ms']} in {r['window_s']:.0f} s "
                  f"| {r['max_lag_s']:.2f} | {rate} | {r['load1']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
