"""chaos_services at scale: N services, one pod-kill each, at most K at once, under real Airflow.

One ``airflow standalone`` (``resilience airflow up``'s path: ``airflow_local.up``, LocalExecutor, parallelism 4,
PostgreSQL metadata DB on the lab's control-plane server) against a lab of its own, with ``staging`` pointed
at a loopback Kubernetes API server (``tests/contract/kubeapi``: kmock plus controller and kubelet fixtures;
no real cluster runs here) holding ``--max`` Deployments ``svc-00``, ``svc-01``, ... of 2 replicas each
(pods labelled ``app=<name>``). staging lists them all as ``services`` (``svc-00`` and ``svc-01`` share
``depends_on: [postgres]``, the others depend on nothing), ``chaos.blast_radius`` K (``--blast-radius``,
default 5), its SLOs the lab's Prometheus, its Patroni the lab's. For each N of ``--counts`` (those <= ``--max``),
one chaos_services run with ``services`` = the first N, scenario pod-kill (1 pod, grace 2 s),
``--duration`` s (default 10). Runs go one after another in the same Airflow; N = 1 runs first: it is the
baseline of the ideal.

Per N:

- **wall s**: the DAG run's start_date -> end_date (Airflow's own).
- **ideal s** = ceil(N / K) x the per-fault time, where the per-fault time is the N = 1 run's *slot time*:
  its ledger row's created_at (admitted) -> reverted_at (the slot freed). That is the work the blast radius
  serialises: N faults in K slots cannot take less. **ratio** = wall / ideal. The N = 1 run's wall time minus
  its slot time is the campaign's fixed part (start, preflight, report...); **ratio w/o fixed** =
  (wall - fixed) / ideal.
- **scheduler CPU s / fault**: CPU seconds (user + system, psutil) of the scheduler's main process over the run
  (not its LocalExecutor workers), per fault; the triggerer's processes likewise (its main process and its
  trigger runner, which runs the blast-radius waits and the guards).
- **metadata DB rows / fault**: rows inserted into Airflow's metadata DB during the run (PostgreSQL's
  ``pg_stat_user_tables.n_tup_ins``, so rows deleted again, e.g. trigger rows, count), per fault; the
  tables that took the most are listed under the table.
- **max open at once**: the largest number of the run's ledger rows open at one instant, two ways: faults
  *on* (injected_at -> reverted_at) and slots *held* (created_at -> reverted_at). Both must be <= K.

Usage::

    python bench/chaos_services.py [--max 50] [--counts 1,5,10,25,50] [--blast-radius 5] [--duration 10]
        [--lab-dir DIR --port-base N --keep-lab] [--airflow-port N]

Ports: ``--airflow-port`` (default ``$RESILIENCE_AIRFLOW_PORT`` or 28380, the next two serve logs) and the lab's
``--port-base`` (default ``$RESILIENCE_TEST_LAB_PORT_BASE`` or 25920).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import ROOT, lab_arguments, own_lab, quiet_stdout, wait_for

sys.path.insert(0, str(ROOT))  # tests.contract.kubeapi: the loopback API server

DAG_ID = "chaos_services"
REPLICAS = 2
SHARED = ("svc-00", "svc-01")  # the two services that share depends_on: [postgres]


def log(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", file=sys.stderr, flush=True)


def service_names(count: int) -> list[str]:
    return [f"svc-{i:02d}" for i in range(count)]


# -- Airflow's processes -------------------------------------------------------------------------------------

def component(sa: Any, name: str) -> list[int]:
    """The PIDs of Airflow component ``name`` (``airflow scheduler``, ``airflow triggerer``): its main process
    first, then those forked from it with the same command line (the triggerer's trigger runner)."""
    from resilience import airflow_local

    found = []
    for pid in airflow_local.processes(sa):
        with contextlib.suppress(OSError):
            argv = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
            starts = [i for i, a in enumerate(argv) if a == "airflow" or a.endswith("/airflow")]
            if starts and argv[starts[0] + 1:] == [name]:
                found.append(pid)
    return sorted(found)


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by ``pids`` (nan when none is alive)."""
    import psutil

    total, alive = 0.0, False
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total, alive = total + times.user + times.system, True
    return total if alive else float("nan")


# -- one run ---------------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, sa: Any, lab: dict[str, Any], kubeapi: Any, namespace: str) -> None:
        from resilience import airflow_local

        self.sa, self.lab, self.kubeapi, self.namespace = sa, lab, kubeapi, namespace
        self.api = airflow_local.client(sa)

    def control_db(self, sql: str, args: tuple = ()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.lab["connections"]["resilience_control_db"]) as conn:
            return conn.execute(sql, args).fetchall()

    def inserted(self) -> dict[str, int]:
        """Rows inserted so far per table of the metadata DB (PostgreSQL's statistics)."""
        import psycopg

        from resilience import airflow_local

        dsn = airflow_local.metadata_db_uri(self.sa, self.lab).replace("postgresql+psycopg2://", "postgresql://")
        with psycopg.connect(dsn) as conn:
            return dict(conn.execute("SELECT relname, n_tup_ins FROM pg_stat_user_tables").fetchall())

    def settled_inserted(self) -> dict[str, int]:
        """The statistics once every backend has flushed its counts (they lag up to ~10 s on idle connections)."""
        last, steady = self.inserted(), 0
        deadline = time.monotonic() + 30
        while steady < 2 and time.monotonic() < deadline:
            time.sleep(3)
            now = self.inserted()
            steady = steady + 1 if now == last else 0
            last = now
        return last

    def not_passed(self, run_id: str) -> list[str]:
        """Why the run did not pass: its failed tasks and the report's verdicts other than passed."""
        tis: list[dict[str, Any]] = []
        while True:  # the API answers at most 100 per page
            page = self.api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances",
                                params={"limit": 100, "offset": len(tis)}).json().get("task_instances", [])
            tis += page
            if len(page) < 100:
                break
        why = [f"task {t['task_id']}[{t['map_index']}] {t['state']}" for t in tis
               if t["state"] in ("failed", "upstream_failed")]
        for path in (Path(os.environ["RESILIENCE_REPORT_DIR"]) / "chaos_campaign").glob("*.json"):
            report = json.loads(path.read_text())
            if report["run_id"] == run_id:
                why += [f"{s.get('service')}: {(s.get('verdict') or {}).get('status')}: "
                        f"{(s.get('verdict') or {}).get('reason', '')[:200]}" for s in report["scenarios"]
                        if (s.get("verdict") or {}).get("status") != "passed"]
        return why

    def pods(self, name: str) -> dict[str, str]:
        return {p["metadata"]["name"]: p["metadata"]["uid"]
                for p in self.kubeapi.list("v1", "pods", self.namespace, f"app={name}")
                if not p["metadata"].get("deletionTimestamp")}

    def ready(self, names: list[str]) -> bool:
        def ready_count(name: str) -> int:
            return sum(any(c["type"] == "Ready" and c["status"] == "True"
                           for c in p.get("status", {}).get("conditions", []))
                       for p in self.kubeapi.list("v1", "pods", self.namespace, f"app={name}")
                       if not p["metadata"].get("deletionTimestamp"))
        return all(ready_count(n) == REPLICAS for n in names)

    def run(self, names: list[str], duration_s: int, timeout_s: float) -> dict[str, Any]:
        from resilience import airflow_local
        from tests.contract.services import most_at_once

        wait_for(lambda: self.ready(names), 120, f"{len(names)} services at {REPLICAS} ready pods", interval_s=0.5)
        before_pods = {n: self.pods(n) for n in names}
        scheduler, triggerer = component(self.sa, "scheduler")[:1], component(self.sa, "triggerer")
        log(f"scheduler {scheduler}, triggerer {triggerer}")
        rows_before = self.settled_inserted()
        cpu_before = (cpu_s(scheduler), cpu_s(triggerer))
        conf = {"environment": "staging", "scenarios": ["pod-kill"], "services": names, "duration": duration_s,
                "max_p95_ratio": 5, "scenario_options": {"pod-kill": {"count": 1, "grace_period_s": 2}}}
        run_id = airflow_local.trigger(self.api, DAG_ID, conf)
        log(f"N={len(names)}: run {run_id}")

        def ended() -> dict[str, Any] | None:
            run = self.api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}").json()
            return run if run["state"] in airflow_local.FINISHED else None

        run = wait_for(ended, timeout_s, f"the N={len(names)} run", interval_s=2)
        cpu_after = (cpu_s(scheduler), cpu_s(triggerer))
        rows_after = self.settled_inserted()
        ledger = self.control_db(
            "SELECT service, state, extract(epoch FROM created_at)::float8, extract(epoch FROM injected_at)::float8,"
            " extract(epoch FROM reverted_at)::float8, reverted_by FROM fault_ledger WHERE run_id = %s ORDER BY id",
            (run_id,))
        def back(n: str) -> dict[str, str]:
            return wait_for(lambda: len(self.pods(n)) == REPLICAS and self.pods(n), 60, f"{n} back", interval_s=0.5)

        replaced = sum(1 for n in names if before_pods[n] and set(before_pods[n].values()) - set(back(n).values()))
        start, end = (datetime.fromisoformat(run[k]).timestamp() for k in ("start_date", "end_date"))
        rows = {t: rows_after.get(t, 0) - rows_before.get(t, 0) for t in rows_after}
        closed = [r for r in ledger if r[2] and r[4]]
        result = {
            "n": len(names), "run_id": run_id, "state": run["state"], "wall_s": end - start, "faults": len(ledger),
            "reverted": sum(1 for r in ledger if r[1] == "reverted"), "replaced": replaced,
            "slot_s": [r[4] - r[2] for r in closed], "on_s": [r[4] - r[3] for r in closed if r[3]],
            "max_on": most_at_once([(r[3], r[4]) for r in closed if r[3]]),
            "max_held": most_at_once([(r[2], r[4]) for r in closed]),
            "scheduler_cpu_s": cpu_after[0] - cpu_before[0], "triggerer_cpu_s": cpu_after[1] - cpu_before[1],
            "rows": {t: n for t, n in rows.items() if n}, "shared_overlap": shared_overlap(ledger),
            "not_passed": self.not_passed(run_id),
        }
        log(f"N={len(names)}: {result['state']} in {result['wall_s']:.0f} s, {result['reverted']}/{result['faults']} "
            f"reverted, {replaced} replaced, max on {result['max_on']}, max held {result['max_held']}")
        return result


def shared_overlap(ledger: list[tuple]) -> bool:
    """Were the two services sharing postgres ever faulted at the same time?"""
    rows = {r[0]: r for r in ledger if r[0] in SHARED and r[3] and r[4]}
    if len(rows) < 2:
        return False
    a, b = rows[SHARED[0]], rows[SHARED[1]]
    return a[3] < b[4] and b[3] < a[4]


# -- the table ----------------------------------------------------------------------------------------------------

def table(results: list[dict[str, Any]], blast_radius: int) -> str:
    base = results[0]
    per_fault = sum(base["slot_s"]) / len(base["slot_s"]) if base["slot_s"] else float("nan")
    fixed = base["wall_s"] - per_fault
    lines = [f"Per-fault time (N = 1 run's slot: admitted -> reverted): {per_fault:.1f} s; the campaign's fixed part "
             f"(N = 1 wall - slot): {fixed:.1f} s; K = {blast_radius}.\n",
             "| N | faults | state | reverted / replaced | wall s | ideal s | ratio | ratio w/o fixed "
             "| scheduler CPU s / fault | triggerer CPU s / fault | metadata rows / fault "
             "| max on / held at once (K) | slot s median (max) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        faults = max(r["faults"], 1)
        ideal = math.ceil(r["n"] / blast_radius) * per_fault
        slots = sorted(r["slot_s"])
        median = slots[len(slots) // 2] if slots else float("nan")
        lines.append(
            f"| {r['n']} | {r['faults']} | {r['state']} | {r['reverted']} / {r['replaced']} | {r['wall_s']:.0f} | "
            f"{ideal:.0f} | {r['wall_s'] / ideal:.2f} | {(r['wall_s'] - fixed) / ideal:.2f} | "
            f"{r['scheduler_cpu_s'] / faults:.1f} | {r['triggerer_cpu_s'] / faults:.1f} | "
            f"{sum(r['rows'].values()) / faults:.0f} | {r['max_on']} / {r['max_held']} ({blast_radius}) | "
            f"{median:.1f} ({max(slots, default=float('nan')):.1f}) |")
    lines.append("\nMetadata DB rows inserted per fault, by table (the largest):\n")
    tables = sorted({t for r in results for t in r["rows"]}, key=lambda t: -results[-1]["rows"].get(t, 0))[:8]
    lines.append("| N | " + " | ".join(tables) + " |")
    lines.append("|---|" + "---|" * len(tables))
    for r in results:
        faults = max(r["faults"], 1)
        lines.append(f"| {r['n']} | " + " | ".join(f"{r['rows'].get(t, 0) / faults:.1f}" for t in tables) + " |")
    for r in results:
        for why in r["not_passed"]:
            lines.append(f"- N={r['n']} not passed: {why}")
    overlapped = [r["n"] for r in results if r["shared_overlap"]]
    lines.append(f"\nThe two services sharing postgres faulted at the same time: {overlapped or 'never'}.")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--max", type=int, default=50, help="the largest N run (default 50)")
    parser.add_argument("--counts", default="1,5,10,25,50", help="the Ns, comma-separated (default 1,5,10,25,50)")
    parser.add_argument("--blast-radius", type=int, default=5, help="staging's chaos.blast_radius K (default 5)")
    parser.add_argument("--duration", type=int, default=10, help="each fault's duration in s (default 10)")
    parser.add_argument("--airflow-port", type=int, default=int(os.environ.get("RESILIENCE_AIRFLOW_PORT") or 28380))
    parser.add_argument("--keep-airflow-home", action="store_true",
                        help="leave AIRFLOW_HOME (task logs, reports) in place for inspection; its path is printed")
    lab_arguments(parser, int(os.environ.get("RESILIENCE_TEST_LAB_PORT_BASE") or 25920))
    args = parser.parse_args()
    counts = sorted({1, *(int(c) for c in args.counts.split(",") if c.strip() and int(c) <= args.max)})

    for key in [k for k in os.environ if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))]:
        del os.environ[key]
    home = Path(tempfile.mkdtemp(prefix="resilience-bench-services-"))
    os.environ.update({"AIRFLOW_HOME": str(home), "RESILIENCE_REPORT_DIR": str(home / "reports")})
    from resilience import airflow_local
    from tests.contract.kubeapi import KubeApi
    from tests.contract.platforms import APP_DEPLOYMENT, APP_SELECTOR, NAMESPACE, cluster_config
    from tests.contract.services import service_deployment, with_services

    sa = airflow_local.Standalone(home, args.airflow_port)
    names = service_names(max(counts))
    results: list[dict[str, Any]] = []
    with own_lab(args.lab_dir, args.port_base, keep=args.keep_lab) as lab, KubeApi() as kubeapi:
        # staging's own app (kubernetes.app): preflight reads its rollout whatever the services
        kubeapi.create(service_deployment(APP_DEPLOYMENT, app=APP_SELECTOR.partition("=")[2], replicas=REPLICAS))
        for name in names:
            kubeapi.create(service_deployment(name, replicas=REPLICAS))
        services = {n: ["postgres"] if n in SHARED else [] for n in names}
        with cluster_config(home, kubeapi.connection_json(namespace=NAMESPACE),
                            with_services(services, args.blast_radius)):
            try:
                started = time.monotonic()
                with quiet_stdout():
                    airflow_local.up(sa, lab, timeout_s=400, schedules=False)
                log(f"Airflow up in {time.monotonic() - started:.0f} s")
                bench = Bench(sa, lab, kubeapi, NAMESPACE)
                airflow_local.wait_parsed(bench.api, [DAG_ID])
                for n in counts:
                    results.append(bench.run(names[:n], args.duration, timeout_s=600 + 60 * n))
                    log(f"N={n}: {json.dumps(results[-1])}")  # a run cut short keeps the rows done
            finally:
                with quiet_stdout():
                    airflow_local.down(sa)
                if args.keep_airflow_home:
                    log(f"AIRFLOW_HOME kept: {home}")
                elif not airflow_local.processes(sa):
                    shutil.rmtree(home, ignore_errors=True)
        errors = kubeapi.controller_errors()
    if results:
        print(f"chaos_services, pod-kill x N services, K = {args.blast_radius}, duration {args.duration} s, "
              f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}\n")
        print(table(results, args.blast_radius))
    if errors:
        print(f"\nloopback API server controller errors: {errors}")
    return 0 if results and all(r["state"] == "success" and r["max_on"] <= args.blast_radius for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
