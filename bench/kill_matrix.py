"""The kill matrix (issue 8, section 8): SIGKILL a part of Airflow at each point of a fault's life.

For each fault x kill point x victim, under real Airflow (``airflow standalone`` through
``resilience.airflow_local``, the product's own path) against a lab of its own:

1. trigger ``chaos_campaign`` with that one fault (``--duration`` s, harmless options);
2. poll the ledger every 50 ms until the kill point:
   ``injecting``   the ledger row exists, the fault is not applied yet;
   ``active``      the row just became ``active`` (the side effect happened);
   ``guard``       mid-window: ``active`` and half the duration since ``injected_at``;
   ``revert``      after the window, a reverter holds the entry's claim (``claimed_by`` set);
3. SIGKILL the victim:
   ``task``        the task runner of the campaign's running step (``airflow worker -- <ti id>``);
                   at most points the step lives in the triggerer (the guard is deferred):
                   then there is no task process and the case says so;
   ``triggerer``   the triggerer and its trigger runner;
   ``airflow``     every Airflow process of this AIRFLOW_HOME (scheduler, triggerer, API server,
                   DAG processor, executor workers, task processes);
   ``none``        (only when asked: ``--victims none``) nothing: the control case;
4. restart what a supervisor would: the triggerer (``airflow triggerer``), or the whole
   standalone (``airflow_local.up``); a killed task runner is not restarted (its executor
   reports it failed);
5. let ``chaos_abort`` sweep on its own schedule (every 2 minutes, not shortened here);
6. record, from the kill: seconds until the lab is back at baseline (S3 proxy error rate 0,
   Redis answers PING, every replica healthy, app DB primary not in recovery with its replica
   streaming, no memory-hog cgroup) AND the ledger has no open entry; the ledger (each entry
   reverted, by whom; completed reverts counted in the Airflow logs: more than one is a double
   revert); the run's verdict (run journal's ``runs.status``, the scenario's verdict,
   the DAG run's state), which must never be "passed" for a killed run.

A DAG run whose task was running when all of Airflow died stays ``running`` until the
scheduler's task heartbeat timeout (300 s) fails it: the case waits up to ``--case-timeout-s``
for the run to end, then records what it saw and, so the next case can take the chaos/DR
lock, marks the run failed through the REST API (said in the table: "forced failed").

Usage::

    python bench/kill_matrix.py [--faults s3-5xx,...] [--points guard,...] [--victims airflow,...]
        [--failover-mode switchover|crash]
        [--duration 40] [--lab-dir DIR --port-base N --keep-lab] [--airflow-home DIR --airflow-port N]

Results are printed as a markdown table (stdout) and appended, one JSON object per case, to
``--results`` when given.

Figures (2026-12-01, 2 cores, 23 GB RAM, Debian 12; lab base 25600; Airflow 3.3.2 standalone,
LocalExecutor, parallelism 4, metadata on SQLite in the first run and on the lab's PostgreSQL in the
second; duration 40 s; chaos_abort on its default 2-minute schedule): see bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import lab_arguments, own_lab

FAULTS = ("pod-kill", "redis-unavailable", "s3-5xx", "postgres-failover", "memory-pressure")
POINTS = ("injecting", "active", "guard", "revert")
VICTIMS = ("airflow", "triggerer", "task")
CONTROL = "none"  # --victims none: the same case with nothing killed, the baseline the kills are read against
DAG_ID = "chaos_campaign"
POLL_S = 0.05  # ledger polling to catch a kill point
# harmless options and the loosest p95 bound the lab allows: the guard must not end the fault by
# itself before "guard" and "revert" are reached (a 2-core machine under load has noisy latency)
OPTIONS: dict[str, dict[str, Any]] = {"s3-5xx": {"error_rate": 0.05}, "pod-kill": {"count": 1, "grace_period_s": 5}}


@dataclass
class Case:
    fault: str
    point: str
    victim: str
    run_id: str = ""
    reached: bool = False
    note: str = ""
    killed_pids: list[int] = field(default_factory=list)
    kill_epoch_s: float | None = None
    planned_end_epoch_s: float | None = None
    restarted_s: float | None = None  # kill -> what was restarted answers again
    back_s: float | None = None  # kill -> lab at baseline and no open ledger entry
    lab_back_s: float | None = None  # kill -> lab at baseline (a dead-man switch may end the fault first)
    back_vs_planned_end_s: float | None = None
    reverted_vs_planned_end_s: float | None = None  # ledger reverted_at - (injected_at + duration)
    baseline: dict[str, bool] = field(default_factory=dict)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    open_entries: int = 0
    completed_reverts: dict[int, int] = field(default_factory=dict)
    run_state: str = ""
    record_status: str | None = None
    scenario_verdict: str | None = None
    forced_failed: bool = False

    @property
    def ledger_clean(self) -> bool:
        return (self.open_entries == 0 and all(e["state"] == "reverted" and e["reverted_by"] for e in self.ledger)
                and all(n <= 1 for n in self.completed_reverts.values()))

    @property
    def verdict_ok(self) -> bool:
        """Never 'passed' for a killed run (a case whose point was not reached killed nothing)."""
        return not self.reached or "passed" not in (self.record_status, self.scenario_verdict) \
            and self.run_state != "success"


# -- the lab's baseline ------------------------------------------------------------------------------

def lab_health(lab: dict[str, Any]) -> dict[str, bool]:
    """Each baseline condition of the lab, True when it holds."""
    from resilience.lab import control
    from resilience.lab.memhog import own_memory_cgroup
    from resilience.lab.pg_replication import in_recovery, streaming
    from resilience.lab.pg_roles import read_roles
    from resilience.lab.state import layout_of

    layout = layout_of(lab)
    roles = read_roles(layout)
    primary, replica = layout.node(roles.primary), layout.node(roles.replica)
    health = {}
    try:
        health["s3"] = float(control.s3_fault(lab)["error_rate"]) == 0.0
    except OSError:
        health["s3"] = False
    health["redis"] = control.redis_ping(lab)
    health["replicas"] = all(r["healthy"] for r in control.replicas(lab).values())
    health["db"] = in_recovery(primary) is False and streaming(primary, replica)
    health["no_hog"] = not list(own_memory_cgroup().glob(f"resilience-lab-{layout.port_base}-*"))
    return health


# -- the ledger ------------------------------------------------------------------------------------

def ledger_rows(lab: dict[str, Any], run_id: str | None = None) -> list[dict[str, Any]]:
    import psycopg

    sql = ("SELECT id, run_id, scenario, state, reverted_by, revert_reason, claimed_by,"
           " extract(epoch FROM injected_at)::float, extract(epoch FROM reverted_at)::float,"
           " (plan->>'deadline_epoch_s')::float FROM fault_ledger")
    keys = ("id", "run_id", "scenario", "state", "reverted_by", "revert_reason", "claimed_by", "injected_at",
            "reverted_at", "deadline_epoch_s")
    with psycopg.connect(lab["connections"]["resilience_control_db"], connect_timeout=5) as conn:
        if not conn.execute("SELECT to_regclass('fault_ledger') IS NOT NULL").fetchone()[0]:
            return []
        rows = conn.execute(sql + (" WHERE run_id = %s" if run_id else " WHERE state <> 'reverted'")
                            + " ORDER BY id", (run_id,) if run_id else ()).fetchall()
    return [dict(zip(keys, row, strict=True)) for row in rows]


def campaign_record(lab: dict[str, Any], run_id: str, scenario: str) -> tuple[str | None, str | None]:
    """(the run's status, the scenario's verdict status) from the control DB's run journal."""
    import psycopg

    with psycopg.connect(lab["connections"]["resilience_control_db"], connect_timeout=5) as conn:
        run = conn.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,)).fetchone()
        steps = conn.execute("SELECT details FROM run_steps WHERE run_id = %s AND scope = %s AND step = 'verdict'",
                             (run_id, scenario)).fetchone()
    verdict = (steps[0] if steps else None) or {}
    return (run[0] if run else None), verdict.get("status")


def point_reached(point: str, rows: list[dict[str, Any]], duration_s: float, now_s: float) -> bool:
    """Pure: whether the run's ledger rows show the kill point now."""
    if not rows:
        return False
    row = rows[-1]
    if point == "injecting":
        return row["state"] == "injecting"
    if point == "active":
        return row["state"] == "active"
    if row["state"] != "active" or row["injected_at"] is None:
        return False
    if point == "guard":
        return now_s >= row["injected_at"] + duration_s / 2
    return now_s >= row["injected_at"] + duration_s and row["claimed_by"] is not None  # revert


def point_missed(point: str, rows: list[dict[str, Any]]) -> bool:
    """Pure: the run's fault has moved past the kill point without it being seen."""
    if not rows:
        return False
    state = rows[-1]["state"]
    return state in ("reverted", "revert_failed") or (point == "injecting" and state == "active")


COMPLETED = re.compile(r"Reverted (\S+) \(ledger #(\d+)\)")


def completed_reverts(home: Path, ids: list[int]) -> dict[int, int]:
    """How many times each entry's revert completed, per the Airflow task and trigger logs
    (the same line in two files, a trigger's log and its copy, counts once)."""
    seen: dict[int, set[str]] = {i: set() for i in ids}
    for path in (home / "logs").rglob("*.log*"):
        for line in path.read_text(errors="replace").splitlines():
            match = COMPLETED.search(line)
            if match and int(match.group(2)) in seen:
                stamp = re.search(r'"timestamp": ?"([^"]+)"', line)
                seen[int(match.group(2))].add(stamp.group(1)[:19] if stamp else line)
    return {i: len(lines) for i, lines in seen.items()}


# -- Airflow processes --------------------------------------------------------------------------------

def _argv(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(p.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(_children(current))
    return pids


def victims(sa: Any, victim: str, running_ti_ids: list[str]) -> list[int]:
    from resilience import airflow_local

    ours = airflow_local.processes(sa)
    if victim == "airflow":
        return ours
    if victim == "triggerer":
        # the triggerer and its trigger runner, never a lab daemon a trigger started (a revert's Redis, a
        # memory hog): those are its children here only because the lab runs them as plain processes
        roots = [p for p in ours if " triggerer" in _argv(p)]
        return sorted({q for p in roots for q in _tree(p) if q in ours})
    return [p for p in ours if any(_argv(p).startswith(f"airflow worker -- {ti}") for ti in running_ti_ids)]


def kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start_triggerer(sa: Any, lab: dict[str, Any]) -> subprocess.Popen:
    """What a supervisor does for a dead triggerer: start a new one with the same configuration."""
    from resilience import airflow_local

    log = (sa.home / "triggerer-restarted.log").open("ab")
    return subprocess.Popen([str(Path(sys.executable).with_name("airflow")), "triggerer"],
                            env=airflow_local.airflow_env(sa, lab), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=sa.home)


def triggerer_alive(sa: Any) -> bool:
    from resilience import airflow_local

    return any(" triggerer" in _argv(p) for p in airflow_local.processes(sa))


class Api:
    """The REST client, renewed when a restarted Airflow no longer takes the old token."""

    def __init__(self, sa: Any) -> None:
        self.sa, self._client = sa, None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("get", path, **kwargs)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        from resilience import airflow_local

        for attempt in range(3):
            try:
                if self._client is None:
                    self._client = airflow_local.client(self.sa)
                response = getattr(self._client, method)(path, **kwargs)
                if response.status_code != 401:
                    return response
            except Exception:
                if attempt == 2:
                    raise
            self._client = None
            time.sleep(1)
        return response

    @property
    def client(self) -> Any:
        if self._client is None:
            from resilience import airflow_local

            self._client = airflow_local.client(self.sa)
        return self._client


def run_state(api: Api, run_id: str) -> str:
    try:
        response = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}")
        return response.json()["state"] if response.status_code == 200 else f"http {response.status_code}"
    except Exception as exc:
        return f"unreadable ({type(exc).__name__})"


def running_tis(api: Api, run_id: str) -> list[str]:
    try:
        tis = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    except Exception:
        return []
    return [ti["id"] for ti in tis if ti["state"] == "running"]


# -- one case -----------------------------------------------------------------------------------------

def wait_baseline(lab: dict[str, Any], timeout_s: float) -> dict[str, bool]:
    deadline = time.monotonic() + timeout_s
    while True:
        health = lab_health(lab)
        if all(health.values()) and not ledger_rows(lab):
            return health
        if time.monotonic() > deadline:
            return health
        time.sleep(1)


def run_case(case: Case, sa: Any, api: Api, lab: dict[str, Any], duration_s: int, timeout_s: float) -> Case:
    from resilience import airflow_local

    health = wait_baseline(lab, 300)
    if not all(health.values()):
        case.note = f"lab not at baseline before the case: {health}"
        return case
    conf = {"environment": "lab", "scenarios": [case.fault], "duration": duration_s, "max_p95_ratio": 10,
            "scenario_options": {case.fault: OPTIONS[case.fault]} if case.fault in OPTIONS else {}}
    case.run_id = airflow_local.trigger(api.client, DAG_ID, conf)
    print(f"[{case.fault} x {case.point} x {case.victim}] run {case.run_id}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + 600
    while True:
        rows = ledger_rows(lab, case.run_id)
        if point_reached(case.point, rows, duration_s, time.time()):
            break
        if point_missed(case.point, rows) or time.monotonic() > deadline:
            case.note = f"point not reached (ledger {[(r['state'], r['reverted_by']) for r in rows]})"
            break
        if not rows and int(time.monotonic()) % 5 == 0 and run_state(api, case.run_id) in ("success", "failed"):
            case.note = "the run ended before its ledger row was written"
            break
        time.sleep(POLL_S)
    if not case.note and case.victim == CONTROL:
        case.note = "control: nothing killed"
    elif not case.note:
        pids = victims(sa, case.victim, running_tis(api, case.run_id) if case.victim == "task" else [])
        if not pids:
            case.note = "no such process at this point (the step runs in the triggerer)"
        else:
            kill(pids)
            case.reached, case.killed_pids, case.kill_epoch_s = True, pids, time.time()
            print(f"  SIGKILLed {len(pids)} process(es) at {case.point}", file=sys.stderr, flush=True)
            # the lab may be back while Airflow still restarts: watch it from the kill on
            watcher = threading.Thread(target=watch_back, args=(case, lab, timeout_s), daemon=True)
            watcher.start()
            restart(case, sa, lab)
            watcher.join(timeout_s)
    return observe(case, sa, api, lab, duration_s, timeout_s)


def watch_back(case: Case, lab: dict[str, Any], timeout_s: float) -> None:
    """Set ``case.back_s`` at the first moment after the kill when the lab is at baseline and the
    run has no open ledger entry (checked every 0.5 s, each check taking what it takes)."""
    deadline = case.kill_epoch_s + timeout_s
    while time.time() < deadline:
        at = time.time()
        try:
            clean = not any(r["state"] != "reverted" for r in ledger_rows(lab, case.run_id))
            healthy = all(lab_health(lab).values())
            if healthy and case.lab_back_s is None:
                case.lab_back_s = at - case.kill_epoch_s
            if clean and healthy:
                case.back_s = at - case.kill_epoch_s
                return
        except Exception as exc:  # a check that fails is a "not yet"
            print(f"  baseline check failed: {exc}", file=sys.stderr, flush=True)
        time.sleep(0.5)


def restart(case: Case, sa: Any, lab: dict[str, Any]) -> None:
    from resilience import airflow_local

    if case.victim == "airflow":
        deadline = time.monotonic() + 30
        while (left := airflow_local.processes(sa)) and time.monotonic() < deadline:
            kill(left)  # an executor may have forked one more task before it died
            time.sleep(0.2)
        airflow_local.up(sa, lab, timeout_s=600)
    elif case.victim == "triggerer":
        start_triggerer(sa, lab)
        deadline = time.monotonic() + 120
        while not triggerer_alive(sa) and time.monotonic() < deadline:
            time.sleep(0.2)
    case.restarted_s = time.time() - case.kill_epoch_s


def observe(case: Case, sa: Any, api: Api, lab: dict[str, Any], duration_s: int, timeout_s: float) -> Case:
    start = case.kill_epoch_s or time.time()
    deadline = start + timeout_s
    while time.time() < deadline:
        state = run_state(api, case.run_id) if case.run_id else "none"
        if state in ("success", "failed") and (case.back_s is not None or not case.reached):
            break
        time.sleep(1)
    case.run_state = run_state(api, case.run_id) if case.run_id else "none"
    if case.run_id and case.run_state not in ("success", "failed"):
        api.call("patch", f"/dags/{DAG_ID}/dagRuns/{case.run_id}", json={"state": "failed"})
        case.forced_failed = True
        wait_for_run_end(api, case.run_id, 300)
    rows = ledger_rows(lab, case.run_id) if case.run_id else []
    case.baseline = lab_health(lab)
    case.ledger = [{k: r[k] for k in ("id", "state", "reverted_by", "revert_reason")} for r in rows]
    case.open_entries = len(ledger_rows(lab))
    case.completed_reverts = completed_reverts(sa.home, [r["id"] for r in rows])
    if rows and rows[-1]["injected_at"]:
        case.planned_end_epoch_s = rows[-1]["injected_at"] + duration_s
        if case.back_s is not None:
            case.back_vs_planned_end_s = start + case.back_s - case.planned_end_epoch_s
        if rows[-1]["reverted_at"]:
            case.reverted_vs_planned_end_s = rows[-1]["reverted_at"] - case.planned_end_epoch_s
    if case.run_id:
        case.record_status, case.scenario_verdict = campaign_record(lab, case.run_id, case.fault)
    return case


def wait_for_run_end(api: Api, run_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while run_state(api, run_id) not in ("success", "failed") and time.monotonic() < deadline:
        time.sleep(1)


# -- the table --------------------------------------------------------------------------------------

def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(cases: list[Case]) -> str:
    lines = ["| fault | kill point | victim | killed | lab at baseline (s from kill) "
             "| back at baseline + ledger clean (s from kill) "
             "| back vs planned end (s) | reverted vs planned end (s) | reverted by | completed reverts "
             "| ledger clean | run state / record / scenario verdict | verdict not passed | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cases:
        by = ", ".join(f"#{e['id']} {e['reverted_by']}" for e in c.ledger) or "-"
        reverts = ", ".join(f"#{i}: {n}" for i, n in c.completed_reverts.items()) or "-"
        back = "no" if c.reached and c.back_s is None else fmt(c.back_s)
        run = f"{c.run_state}{' (forced failed)' if c.forced_failed else ''} / {c.record_status} / " \
              f"{c.scenario_verdict}"
        lines.append(f"| {c.fault} | {c.point} | {c.victim} | {len(c.killed_pids) if c.reached else 'n/a'} "
                     f"| {fmt(c.lab_back_s)} | {back} | {fmt(c.back_vs_planned_end_s)} "
                     f"| {fmt(c.reverted_vs_planned_end_s)} "
                     f"| {by} | {reverts} "
                     f"| {'yes' if c.ledger_clean else 'NO'} | {run} | {'yes' if c.verdict_ok else 'NO'} "
                     f"| {c.note} |")
    return "\n".join(lines)


@contextlib.contextmanager
def reused_lab(lab_dir: Path) -> Iterator[dict[str, Any]]:
    """A lab a previous invocation kept (``--keep-lab``), used as it is: ``lab up`` on a lab whose fault
    was just reverted may find a component still coming back and refuse."""
    lab = json.loads((lab_dir / "lab.json").read_text())
    os.environ["RESILIENCE_LAB_DIR"] = str(lab_dir)
    for conn_id, uri in lab["connections"].items():
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = uri
    yield lab


def _pick(raw: str | None, allowed: tuple[str, ...], name: str) -> list[str]:
    if not raw:
        return list(allowed)
    picked = [v.strip() for v in raw.split(",") if v.strip()]
    bad = [v for v in picked if v not in allowed]
    if bad:
        raise SystemExit(f"--{name}: {bad} not in {', '.join(allowed)}")
    return picked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--faults"), parser.add_argument("--points"), parser.add_argument("--victims")
    parser.add_argument("--duration", type=int, default=40, help="fault duration (s) of each campaign")
    parser.add_argument("--case-timeout-s", type=float, default=480,
                        help="longest wait after the kill for the run to end (heartbeat timeout 300 s + margin)")
    lab_arguments(parser, 25600)
    parser.add_argument("--airflow-home"), parser.add_argument("--airflow-port", type=int, default=28180)
    parser.add_argument("--keep-airflow", action="store_true")
    parser.add_argument("--results", help="append each case as one JSON line to this file")
    parser.add_argument("--failover-mode", choices=("switchover", "crash"),
                        help="postgres-failover's mode (default: the scenario's, switchover)")
    args = parser.parse_args()
    if args.failover_mode:
        OPTIONS["postgres-failover"] = {"mode": args.failover_mode}
    faults, points = _pick(args.faults, FAULTS, "faults"), _pick(args.points, POINTS, "points")
    chosen = _pick(args.victims, (*VICTIMS, CONTROL), "victims") if args.victims else list(VICTIMS)
    if not 10 <= args.duration <= 1800:
        raise SystemExit(f"--duration: {args.duration} must be in 10..1800 s")
    # the priority order of the brief: victims as given (airflow first by default), then points, then faults
    cases = [Case(f, p, v) for v in chosen for p in points for f in faults]

    from resilience import airflow_local

    for key in [k for k in os.environ if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))]:
        del os.environ[key]
    home = Path(args.airflow_home or tempfile.mkdtemp(prefix="resilience-kill-matrix-"))
    os.environ.update({"AIRFLOW_HOME": str(home), "RESILIENCE_REPORT_DIR": str(home / "reports")})
    sa = airflow_local.Standalone(home, args.airflow_port)
    done: list[Case] = []
    kept = bool(args.keep_lab and args.lab_dir and (Path(args.lab_dir) / "lab.json").exists())
    with reused_lab(Path(args.lab_dir)) if kept else own_lab(args.lab_dir, args.port_base, keep=args.keep_lab) as lab:
        try:
            airflow_local.up(sa, lab, timeout_s=600)
            api = Api(sa)
            airflow_local.wait_parsed(api.client, [DAG_ID, "chaos_abort"])
            for case in cases:
                done.append(run_case(case, sa, api, lab, args.duration, args.case_timeout_s))
                if args.results:
                    with open(args.results, "a") as out:
                        out.write(json.dumps({"at": datetime.now(UTC).isoformat(timespec="seconds"), **asdict(case),
                                              "ledger_clean": case.ledger_clean, "verdict_ok": case.verdict_ok},
                                             default=str) + "\n")
                print(table(done[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
        finally:
            if not args.keep_airflow:
                airflow_local.down(sa)
    print(table(done))
    return 0 if all(c.ledger_clean and c.verdict_ok and (c.back_s is not None or not c.reached) for c in done) else 1


if __name__ == "__main__":
    sys.exit(main())
