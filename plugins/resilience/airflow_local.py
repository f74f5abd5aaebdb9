"""Airflow standalone for the laptop: start it against the lab, trigger a DAG, wait, stop.

Used by ``make up`` / ``make demo`` and by the tests under real Airflow. Everything talks to
Airflow through its REST API (``/api/v2``), as a user of the UI would. One ``Standalone`` is one
instance: its AIRFLOW_HOME (metadata DB, logs, generated password) and its API port.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from resilience.config import PROJECT_ROOT

log = logging.getLogger(__name__)

HOST, DEFAULT_PORT = "127.0.0.1", 8080
PORT_ENV_VAR = "RESILIENCE_AIRFLOW_PORT"
USER = "admin"
FINISHED = ("success", "failed")


@dataclass(frozen=True)
class Standalone:
    """Where one ``airflow standalone`` lives: its AIRFLOW_HOME and the port of its API server."""

    home: Path
    port: int = DEFAULT_PORT
    dags_folder: Path | None = None  # default: the project's dags/ (a benchmark may point it at its own)

    def __post_init__(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1024 <= self.port <= 65533:
            raise ValueError(f"{PORT_ENV_VAR}: {self.port!r} must be a port in 1024..65533 (the next two serve logs)")

    @classmethod
    def from_env(cls) -> Standalone:
        """``$AIRFLOW_HOME`` (default ``<project>/.airflow``) and ``$RESILIENCE_AIRFLOW_PORT`` (default 8080)."""
        raw = os.environ.get(PORT_ENV_VAR) or str(DEFAULT_PORT)
        if not raw.isdigit():
            raise ValueError(f"{PORT_ENV_VAR}: {raw!r} must be a port number")
        return cls(Path(os.environ.get("AIRFLOW_HOME") or PROJECT_ROOT / ".airflow"), int(raw))

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def passwords_file(self) -> Path:
        """Where the simple auth manager reads the admin password (Airflow's default path)."""
        return self.home / "simple_auth_manager_passwords.json.generated"

    @property
    def logfile(self) -> Path:
        return self.home / "standalone.log"

    def password(self) -> str:
        return json.loads(self.passwords_file.read_text())[USER]


def airflow_env(sa: Standalone, lab_state: dict[str, Any] | None, schedules: bool = True) -> dict[str, str]:
    """Environment of the Airflow processes: our folders, a small executor, the lab's Connections.

    ``schedules=False`` runs only triggered runs (and so no scheduled ``chaos_abort`` sweep)."""
    env = {
        **os.environ,
        # standalone starts its components as `airflow ...` subprocesses: the venv's bin must come first
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(sa.home),
        # the metadata DB belongs to this home: an inherited one (a test process's own) would be shared
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db_uri(sa, lab_state),
        # scheduler, API server, DAG processor and triggerer each keep a pool: 4 x (2 + 4) connections
        # at most on the lab's control-plane server, which the DAGs' own ledger connections share
        "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "2",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": "4",
        "AIRFLOW__CORE__DAGS_FOLDER": str(sa.dags_folder or PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(sa.port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{sa.base_url}/execution/",
        # the log servers listen on fixed ports (8793, 8794) by default: two instances would collide
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(sa.port + 1),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(sa.port + 2),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(schedules),
        # standalone starts the scheduler before its API server answers (a minute on a busy 2-core
        # machine): a task queued meanwhile waits for the API (backoff) instead of failing at once
        "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "10",
    }
    if lab_state:
        env["RESILIENCE_LAB_DIR"] = lab_state["lab_dir"]
        for conn_id, uri in lab_state["connections"].items():
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = uri
    return env


def metadata_db_name(sa: Standalone) -> str:
    """The metadata database of this home on the lab's control-plane server (one per AIRFLOW_HOME)."""
    return f"airflow_{hashlib.sha1(str(sa.home).encode()).hexdigest()[:12]}"


def metadata_db_uri(sa: Standalone, lab_state: dict[str, Any] | None) -> str:
    """PostgreSQL on the lab's control-plane server; SQLite in the home when there is no lab.

    SQLite takes one writer at a time: on a busy 2-core machine a trigger POST waited more than
    30 s for the lock the scheduler held. PostgreSQL is what Airflow supports for concurrent use."""
    if not lab_state:
        return f"sqlite:///{sa.home / 'airflow.db'}?timeout=30"
    db = lab_state["control_db"]
    return (f"postgresql+psycopg2://{db['user']}:{quote(db['password'], safe='')}@{db['host']}:{db['port']}"
            f"/{metadata_db_name(sa)}")


def ensure_metadata_db(sa: Standalone, lab_state: dict[str, Any] | None) -> None:
    """Create this home's metadata database on the lab's control-plane server if it is missing
    (``airflow standalone`` migrates it; it cannot create it)."""
    if not lab_state:
        return
    import psycopg
    from psycopg import sql

    db, name = lab_state["control_db"], metadata_db_name(sa)
    with psycopg.connect(host=db["host"], port=db["port"], user=db["user"], password=db["password"],
                         dbname="postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            log.info("Created the Airflow metadata database %s on the control-plane PostgreSQL", name)


def ensure_password(sa: Standalone) -> Path:
    """Generate the admin password into the passwords file (0600) before Airflow starts.

    Airflow prints a password it generates itself to stdout, i.e. into standalone.log; one that
    is already in the file it never echoes."""
    if not sa.passwords_file.exists():
        fd = os.open(sa.passwords_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({USER: secrets.token_urlsafe(12)}) + "\n")
    return sa.passwords_file


def ensure_blast_radius_pool(env: dict[str, str]) -> int:
    """The pool of chaos_services' guards, with as many slots as the largest ``chaos.blast_radius`` of
    environments.yaml (deferred tasks count); the ledger bounds each environment to its own K. Returns K."""
    from resilience.chaos.blast_radius import POOL
    from resilience.config import load_config

    slots = max((e.blast_radius for e in load_config().environments.values()), default=1)
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "pools", "set", POOL, str(slots), "chaos_services' guards: at most the largest "
                    "chaos.blast_radius of environments.yaml; the ledger bounds each environment to its own",
                    "--include-deferred"], env=env, check=True, capture_output=True, timeout=120)
    log.info("Pool %s: %d slot(s), deferred tasks included", POOL, slots)
    return slots


def healthy(sa: Standalone) -> bool:
    import httpx

    try:
        return httpx.get(f"{sa.base_url}/api/v2/monitor/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def prepare_home(sa: Standalone, lab_state: dict[str, Any] | None) -> bool:
    """Before starting Airflow in ``sa``'s home, whatever the executor: False when it already answers (left as
    it is); else the home, the admin password and the metadata database made ready."""
    if healthy(sa):
        log.info("Airflow is already up at %s", sa.base_url)
        return False
    sa.home.mkdir(parents=True, exist_ok=True)
    ensure_password(sa)
    ensure_metadata_db(sa, lab_state)
    return True


def up(sa: Standalone, lab_state: dict[str, Any] | None, timeout_s: float = 120, schedules: bool = True) -> None:
    """Start ``airflow standalone`` in the background (idempotent) and wait until it is healthy."""
    if not prepare_home(sa, lab_state):
        return
    env = airflow_env(sa, lab_state, schedules)
    airflow = str(Path(sys.executable).with_name("airflow"))
    log.info("Starting airflow standalone in %s (it migrates its metadata DB first; log %s)", sa.home, sa.logfile)
    with sa.logfile.open("ab") as logfile:
        proc = subprocess.Popen([airflow, "standalone"], env=env, stdout=logfile, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=sa.home)
    deadline = time.monotonic() + timeout_s
    while not healthy(sa):
        if proc.poll() is not None:
            raise RuntimeError(f"airflow standalone exited {proc.returncode}; see {sa.logfile}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Airflow not healthy after {timeout_s:g} s; see {sa.logfile}")
        time.sleep(1)
    ensure_blast_radius_pool(env)
    log.info("Airflow is up at %s: user %s, password in %s", sa.base_url, USER, sa.passwords_file)


# -- stopping: every process of this home, task processes included ------------------------------

def _is_airflow(argv: list[bytes]) -> bool:
    """``.../bin/airflow ...`` (possibly via python), a process titled ``airflow ...`` by setproctitle, or
    a Celery worker's main or pool process (``[celeryd: worker-1@host:MainProcess] ...``)."""
    head = [Path(a.decode(errors="replace")).name for a in argv[:2]]
    return "airflow" in head or (bool(argv) and argv[0].startswith((b"airflow ", b"[celeryd: ")))


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return pids


def _ours(pid: int, home: str) -> bool:
    """An Airflow process started with our AIRFLOW_HOME (LocalExecutor tasks leave the process group)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:  # gone, or a zombie waiting for PID 1
        return False
    # setproctitle overwrites the environ block of titled processes: their cwd (AIRFLOW_HOME,
    # where `up` starts standalone) identifies them instead
    return _is_airflow(argv) and (cwd == home or f"AIRFLOW_HOME={home}".encode() in environ)


def processes(sa: Standalone) -> list[int]:
    """PIDs of every live Airflow process of this home (never the caller or its parents)."""
    home, mine = str(sa.home), _ancestors()
    pids = (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    return [pid for pid in pids if pid not in mine and _ours(pid, home)]


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def down(sa: Standalone, timeout_s: float = 30) -> None:
    """Stop standalone and every task process it left behind (idempotent).

    Processes are found by PID, not by process group: LocalExecutor task processes have their
    own. A scheduler that is still stopping may start one more task: each scan signals new ones."""
    if not (pids := processes(sa)):
        log.info("Airflow is not running (AIRFLOW_HOME %s)", sa.home)
        return
    log.info("Stopping %d Airflow processes (AIRFLOW_HOME %s)", len(pids), sa.home)
    signalled: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while (pids := processes(sa)) and time.monotonic() < deadline:
        _signal(set(pids) - signalled, signal.SIGTERM)
        signalled |= set(pids)
        time.sleep(0.5)
    for _ in range(3):
        if not (pids := processes(sa)):
            return
        log.warning("Airflow processes %s still run %g s after SIGTERM: killing them", pids, timeout_s)
        _signal(pids, signal.SIGKILL)
        time.sleep(0.5)
    raise RuntimeError(f"Airflow processes {pids} of {sa.home} survived SIGKILL")


def pause_report(dags: dict[str, dict[str, Any]], schedules: bool) -> list[str]:
    """One line per DAG (paused or not, its schedule), then what it means for the chaos_abort sweep."""
    lines = [f"  {dag_id:<22} {'PAUSED  ' if d['is_paused'] else 'unpaused'}  {d.get('timetable_summary') or ''}"
             for dag_id, d in sorted(dags.items())]
    sweeper = dags.get("chaos_abort")
    if sweeper is None:
        lines.append("WARNING: chaos_abort is not loaded: nothing reverts the faults a dead run leaves behind.")
    elif sweeper["is_paused"]:
        lines.append("WARNING: chaos_abort is PAUSED: nothing reverts the faults a dead run leaves behind. "
                     "Unpause it in the UI (DAGs > chaos_abort) or with `airflow dags unpause chaos_abort`.")
    elif not schedules:
        lines.append("WARNING: scheduled runs are off (--no-schedules): chaos_abort does not sweep on its own; "
                     "trigger it by hand after a failed run.")
    else:
        lines.append("chaos_abort is on: it sweeps every 2 minutes and reverts faults whose run is gone or "
                     "past its planned end.")
    return lines


# -- the REST API ---------------------------------------------------------------------------------

def client(sa: Standalone) -> Any:
    """An ``httpx.Client`` on ``/api/v2`` with a token of the admin user."""
    import httpx

    token = httpx.post(f"{sa.base_url}/auth/token", json={"username": USER, "password": sa.password()}, timeout=10)
    token.raise_for_status()
    return httpx.Client(base_url=f"{sa.base_url}/api/v2", timeout=30,
                        headers={"Authorization": f"Bearer {token.json()['access_token']}"})


def wait_parsed(api: Any, dag_ids: Iterable[str], timeout_s: float = 120) -> dict[str, dict[str, Any]]:
    """Wait until every DAG in ``dag_ids`` is parsed, or its file has an import error; return the parsed ones."""
    wanted = set(dag_ids)
    deadline = time.monotonic() + timeout_s
    while True:
        dags = {d["dag_id"]: d for d in api.get("/dags", params={"limit": 1000}).json()["dags"]}
        errors = api.get("/importErrors", params={"limit": 1000}).json()["import_errors"]
        broken = {Path(e["filename"]).stem for e in errors}
        if wanted <= set(dags) | broken:
            for e in errors:
                log.warning("DAG file %s does not import: %s", e["filename"], e["stack_trace"].strip().splitlines()[-1])
            return {d: dags[d] for d in wanted if d in dags}
        if time.monotonic() > deadline:
            raise TimeoutError(f"DAGs not parsed within {timeout_s:g} s: {sorted(wanted - set(dags) - broken)}")
        time.sleep(1)


def dag_files() -> list[str]:
    """The DAG ids of the project (each DAG is named after its file, a policy the integrity tests pin)."""
    return sorted(p.stem for p in (PROJECT_ROOT / "dags").glob("*.py") if not p.name.startswith("_"))


def due_logical_date(dag: dict[str, Any], now: datetime) -> str | None:
    """The logical date of the scheduled run that unpausing ``dag`` (a REST API DAG) would start now, if any."""
    run_after = dag.get("next_dagrun_run_after")
    if dag["is_paused"] and run_after and datetime.fromisoformat(run_after) <= now:
        return dag["next_dagrun_logical_date"]
    return None


def trigger(api: Any, dag_id: str, conf: dict[str, Any], now: datetime | None = None) -> str:
    """Unpause ``dag_id`` and trigger one run with ``conf``; return its run id.

    Unpausing a scheduled DAG makes the scheduler start its latest interval at once (a full
    campaign with default Params, ahead of ours). When that interval is due, our run takes its
    logical date: the scheduler finds the run there and skips it."""
    import httpx

    dag = api.get(f"/dags/{dag_id}")
    dag.raise_for_status()
    dag = dag.json()
    logical_date = due_logical_date(dag, now or datetime.now(UTC))
    # our own run id makes a retry safe: a run the failed attempt did create answers 409
    run_id = f"manual__{(now or datetime.now(UTC)).isoformat()}"
    body = {"dag_run_id": run_id, "logical_date": logical_date, "conf": conf}
    for attempt in range(3):
        try:
            response = api.post(f"/dags/{dag_id}/dagRuns", json=body)
        except httpx.TimeoutException:
            if attempt == 2:
                raise
            log.warning("Trigger of %s timed out (attempt %d of 3): retrying", dag_id, attempt + 1)
            continue
        if response.status_code < 500 or attempt == 2:
            break
        log.warning("Trigger of %s answered HTTP %d (attempt %d of 3): retrying", dag_id, response.status_code,
                    attempt + 1)
        time.sleep(2)
    if response.status_code >= 400 and not (attempt and response.status_code == 409):
        raise RuntimeError(f"trigger of {dag_id} refused: HTTP {response.status_code} {response.text}")
    if dag["is_paused"]:
        api.patch(f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
    log.info("Triggered %s run %s with conf %s", dag_id, run_id, conf)
    return run_id


def wait_run(api: Any, dag_id: str, run_id: str, timeout_s: float = 3600,
             until: Callable[[dict[str, Any], dict[str, str]], bool] | None = None) -> dict[str, Any]:
    """Follow a run's task states until it ends (or ``until(run, task_states)`` holds); return the run."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        run = api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()
        tasks = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
        for ti in tasks:
            if ti["state"] and seen.get(ti["task_id"]) != ti["state"]:
                seen[ti["task_id"]] = ti["state"]
                log.info("  %-18s %s", ti["task_id"], ti["state"])
        if (until(run, seen) if until else run["state"] in FINISHED):
            run["task_states"] = dict(seen)
            return run
        if run["state"] in FINISHED:
            raise RuntimeError(f"{dag_id} run {run_id} ended {run['state']} before the awaited condition: {seen}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dag_id} run {run_id} still {run['state']} after {timeout_s:g} s: {seen}")
        time.sleep(1)


def run_dag(sa: Standalone, dag_id: str, conf: dict[str, Any], timeout_s: float = 3600) -> dict[str, Any]:
    """Unpause, trigger with ``conf``, follow the task states until the run ends; return the run."""
    with client(sa) as api:
        wait_parsed(api, [dag_id])
        run_id = trigger(api, dag_id, conf)
        run = wait_run(api, dag_id, run_id, timeout_s)
        tasks = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
        run["xcom"] = _return_values(api, dag_id, run_id, tasks)
        return run


def _return_values(api: Any, dag_id: str, run_id: str, tasks: list[dict]) -> dict[str, Any]:
    values = {}
    for ti in tasks:
        r = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/xcomEntries/return_value")
        if r.status_code == 200:
            values[ti["task_id"]] = r.json().get("value")
    return values
