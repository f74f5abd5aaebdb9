"""Airflow standalone for the laptop: start it against the lab, trigger a DAG, wait, stop.

Used by ``make up`` / ``make demo``. Everything talks to Airflow through its REST API
(``/api/v2``), as a user of the UI would.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from resilience.config import PROJECT_ROOT

log = logging.getLogger(__name__)

HOST, PORT = "127.0.0.1", int(os.environ.get("RESILIENCE_AIRFLOW_PORT", "8080"))
BASE_URL = f"http://{HOST}:{PORT}"
USER = "admin"


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or PROJECT_ROOT / ".airflow")


def airflow_env(lab_state: dict[str, Any] | None, schedules: bool = True) -> dict[str, str]:
    """Environment of the Airflow processes: our folders, a small executor, the lab's Connections.

    ``schedules=False`` runs only triggered runs: unpausing a DAG would otherwise first start
    its latest scheduled interval (a full campaign) ahead of the run the demo asked for."""
    env = {
        **os.environ,
        # standalone starts its components as `airflow ...` subprocesses: the venv's bin must come first
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(airflow_home()),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API__HOST": HOST,
        "AIRFLOW__API__PORT": str(PORT),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{BASE_URL}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(schedules),
    }
    if lab_state:
        env["RESILIENCE_LAB_DIR"] = lab_state["lab_dir"]
        for conn_id, uri in lab_state["connections"].items():
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = uri
    return env


def _pid_file() -> Path:
    return airflow_home() / "standalone.pid"


def password() -> str:
    generated = airflow_home() / "simple_auth_manager_passwords.json.generated"
    return json.loads(generated.read_text())[USER]


def _healthy() -> bool:
    import httpx

    try:
        return httpx.get(f"{BASE_URL}/api/v2/monitor/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def up(lab_state: dict[str, Any] | None, timeout_s: float = 120, schedules: bool = True) -> None:
    """Start ``airflow standalone`` in the background (idempotent) and wait until it is healthy."""
    if _healthy():
        log.info("Airflow is already up at %s", BASE_URL)
        return
    home = airflow_home()
    home.mkdir(parents=True, exist_ok=True)
    env = airflow_env(lab_state, schedules)
    airflow = str(Path(sys.executable).with_name("airflow"))
    log.info("Migrating the Airflow metadata DB in %s", home)
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    logfile = (home / "standalone.log").open("ab")
    proc = subprocess.Popen([airflow, "standalone"], env=env, stdout=logfile, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=home)
    _pid_file().write_text(str(proc.pid))
    deadline = time.monotonic() + timeout_s
    while not _healthy():
        if proc.poll() is not None:
            raise RuntimeError(f"airflow standalone exited {proc.returncode}; see {home / 'standalone.log'}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Airflow not healthy after {timeout_s:g} s; see {home / 'standalone.log'}")
        time.sleep(1)
    log.info("Airflow is up at %s — login %s / %s", BASE_URL, USER, password())


def _is_airflow(argv: list[bytes]) -> bool:
    """``.../bin/airflow ...`` (possibly via python) or a process titled ``airflow ...`` by setproctitle."""
    head = [Path(a.decode(errors="replace")).name for a in argv[:2]]
    return "airflow" in head or (bool(argv) and argv[0].startswith(b"airflow "))


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
    except OSError:
        return False
    # setproctitle overwrites the environ block of titled processes: their cwd (AIRFLOW_HOME,
    # where `up` starts standalone) identifies them instead
    return _is_airflow(argv) and (cwd == home or f"AIRFLOW_HOME={home}".encode() in environ)


def down(timeout_s: float = 30) -> None:
    """Stop standalone and every task process it left behind (idempotent)."""
    home = str(airflow_home())
    mine = _ancestors()  # never the shell (or make) that runs us
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and int(p.name) not in mine]
    ours = [pid for pid in pids if _ours(pid, home)]
    if not ours:
        log.info("Airflow is not running (AIRFLOW_HOME %s)", home)
        return
    log.info("Stopping %d Airflow processes (AIRFLOW_HOME %s)", len(ours), home)
    for pid in ours:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_ours(pid, home) for pid in ours):
        time.sleep(0.5)
    for pid in ours:
        if _ours(pid, home):
            log.warning("Airflow process %d ignored SIGTERM: killing it", pid)
            os.kill(pid, signal.SIGKILL)
    _pid_file().unlink(missing_ok=True)


def _client():
    import httpx

    token = httpx.post(f"{BASE_URL}/auth/token", json={"username": USER, "password": password()}, timeout=10)
    token.raise_for_status()
    return httpx.Client(base_url=f"{BASE_URL}/api/v2", timeout=30,
                        headers={"Authorization": f"Bearer {token.json()['access_token']}"})


def run_dag(dag_id: str, conf: dict[str, Any], timeout_s: float = 3600) -> dict[str, Any]:
    """Unpause, trigger with ``conf``, follow the task states until the run ends; return the run."""
    with _client() as api:
        deadline = time.monotonic() + 120
        while api.get(f"/dags/{dag_id}").status_code == 404:
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAG {dag_id} was not parsed within 120 s")
            time.sleep(2)
        api.patch(f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
        response = api.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        if response.status_code >= 400:
            raise RuntimeError(f"trigger of {dag_id} refused: HTTP {response.status_code} {response.text}")
        run_id = response.json()["dag_run_id"]
        log.info("Triggered %s run %s with conf %s", dag_id, run_id, conf)
        seen: dict[str, str] = {}
        deadline = time.monotonic() + timeout_s
        while True:
            run = api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()
            tasks = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
            for ti in tasks:
                if ti["state"] and seen.get(ti["task_id"]) != ti["state"]:
                    seen[ti["task_id"]] = ti["state"]
                    log.info("  %-18s %s", ti["task_id"], ti["state"])
            if run["state"] in ("success", "failed"):
                run["xcom"] = _return_values(api, dag_id, run_id, tasks)
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} run {run_id} still {run['state']} after {timeout_s:g} s")
            time.sleep(2)


def _return_values(api: Any, dag_id: str, run_id: str, tasks: list[dict]) -> dict[str, Any]:
    values = {}
    for ti in tasks:
        r = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/xcomEntries/return_value")
        if r.status_code == 200:
            values[ti["task_id"]] = r.json().get("value")
    return values
