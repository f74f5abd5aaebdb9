"""The local lab against real servers: `resilience lab up`, what it serves, `up` again, `down`.

One module-scoped lab in a temporary dir under /tmp (mode 755) on port base 55320
(override: RESILIENCE_TEST_LAB_PORT_BASE), so a developer's lab on 54320 is left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from resilience.lab.app_process import app_is_running, start_app, stop_app
from resilience.lab.daemons import is_alive, read_cmdline
from resilience.lab.state import load_lab_state

PORT_BASE = int(os.environ.get("RESILIENCE_TEST_LAB_PORT_BASE", "55320"))
TOOLS = ("pgbackrest", "prometheus")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not all(shutil.which(t) for t in TOOLS) or not list(Path("/usr/lib/postgresql").glob(
        "*/bin/initdb")), reason="needs postgresql, pgbackrest and prometheus installed"),
]


@dataclass
class Lab:
    root: Path
    lab_dir: Path
    env: dict[str, str]
    up_s: float
    status: dict[str, Any]


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "resilience.cli", "lab", *args], env=env, text=True,
                          capture_output=True, timeout=180, check=False)


def status_json(env: dict[str, str]) -> dict[str, Any]:
    return json.loads(run_cli("status", "--json", env=env).stdout)


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def eventually(check, timeout_s: float, interval_s: float = 0.2):
    """Poll ``check()`` until it returns a truthy value; return that value (or the last falsy one)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


def pg(state: dict[str, Any], node: str) -> psycopg.Connection:
    db = state["app_db"]
    return psycopg.connect(host=db[node]["host"], port=db[node]["port"], user=db["user"],
                           password=db["password"], dbname=db["dbname"], connect_timeout=3, autocommit=True)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """This module's own lab (overrides the session ``lab`` of tests/conftest.py: these tests stop it)."""
    root = Path(tempfile.mkdtemp(prefix="resilience-lab-test-", dir="/tmp"))
    root.chmod(0o755)
    lab_dir = root / "lab"
    env = {**os.environ, "RESILIENCE_LAB_DIR": str(lab_dir), "RESILIENCE_LAB_PORT_BASE": str(PORT_BASE)}
    started = time.monotonic()
    proc = run_cli("up", env=env)
    up_s = time.monotonic() - started
    try:
        assert proc.returncode == 0, f"lab up failed:\n{proc.stderr}"
        yield Lab(root, lab_dir, env, up_s, status_json(env))
    finally:
        run_cli("down", "--purge", env=env)
        shutil.rmtree(root, ignore_errors=True)


def test_up_writes_lab_json_with_every_endpoint(lab: Lab) -> None:
    state = load_lab_state(lab.lab_dir)
    base = PORT_BASE
    assert lab.up_s < 30, f"lab up took {lab.up_s:.1f} s"
    assert state["lab_dir"] == str(lab.lab_dir) and state["port_base"] == base
    assert (state["control_db"]["port"], state["control_db"]["dbname"]) == (base, "resilience")
    assert state["app_db"]["primary"]["port"] == base + 1 and state["app_db"]["replica"]["port"] == base + 2
    assert state["app"]["url"] == f"http://127.0.0.1:{base + 10}"
    assert state["prometheus"]["url"] == f"http://127.0.0.1:{base + 20}"
    assert state["sandbox_port_min"] == base + 30
    assert state["pgbackrest"]["stanza"] == "app" and Path(state["pgbackrest"]["config"]).is_file()
    assert set(state["connections"]) == {"resilience_control_db", "resilience_lab_app_db",
                                         "resilience_lab_prometheus"}
    assert state["connections"]["resilience_lab_app_db"] == (
        f"postgresql://postgres:{state['app_db']['password']}@127.0.0.1:{base + 1}/app")
    assert oct(lab.lab_dir.joinpath("lab.json").stat().st_mode & 0o777) == "0o600"
    assert lab.status["all_up"], lab.status["components"]
    assert {k: v["running"] for k, v in lab.status["components"].items()} == dict.fromkeys(
        ["control_db", "app_primary", "app_replica", "writer", "app", "prometheus"], True)
    assert lab.status["connections"] == state["connections"]


def test_env_prints_airflow_connections(lab: Lab) -> None:
    out = run_cli("env", env=lab.env).stdout.splitlines()
    state = load_lab_state(lab.lab_dir)
    assert f"export AIRFLOW_CONN_RESILIENCE_LAB_PROMETHEUS='http://127.0.0.1:{PORT_BASE + 20}'" in out
    assert f"export AIRFLOW_CONN_RESILIENCE_CONTROL_DB='{state['connections']['resilience_control_db']}'" in out


def test_writer_rows_reach_the_replica(lab: Lab) -> None:
    state = load_lab_state(lab.lab_dir)
    with pg(state, "primary") as primary:
        newest = eventually(lambda: primary.execute(
            "SELECT id, created_at FROM posts WHERE body LIKE 'lab post #%%' ORDER BY id DESC LIMIT 1").fetchone(), 5)
    assert newest, "the writer has inserted no post on the primary"
    with pg(state, "replica") as replica:
        assert replica.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        seen = eventually(lambda: replica.execute("SELECT created_at FROM posts WHERE id = %s",
                                                  (newest[0],)).fetchone(), 10)
    assert seen == (newest[1],)


def test_pgbackrest_has_the_stanza_and_one_full_backup(lab: Lab) -> None:
    conf = load_lab_state(lab.lab_dir)["pgbackrest"]["config"]
    out = subprocess.run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "pgbackrest",
                          f"--config={conf}", "--stanza=app", "info", "--output=json"],
                         capture_output=True, text=True, check=True, cwd="/").stdout
    (stanza,) = json.loads(out)
    assert stanza["status"] == {"code": 0, "lock": stanza["status"]["lock"], "message": "ok"}
    assert [b["type"] for b in stanza["backup"]] == ["full"]


def test_app_answers_database_health_and_metrics(lab: Lab) -> None:
    url = load_lab_state(lab.lab_dir)["app"]["url"]
    status, body = get(f"{url}/api/health/database")
    health = json.loads(body)
    assert status == 200, health
    assert (health["status"], health["database"], health["in_recovery"]) == ("ok", "app", False)
    assert health["accounts"] >= 1
    status, body = get(f"{url}/metrics")
    assert status == 200
    assert 'http_requests_total{method="GET",path="/api/health/database",status="200"}' in body.decode()
    assert "http_request_duration_seconds_bucket" in body.decode()


def test_prometheus_scrapes_the_app_as_job_api(lab: Lab) -> None:
    prom = load_lab_state(lab.lab_dir)["prometheus"]["url"]

    def up_value() -> str | None:
        status, body = get(f"{prom}/api/v1/query?query=up%7Bjob%3D%22api%22%7D")
        result = json.loads(body)["data"]["result"] if status == 200 else []
        return result[0]["value"][1] if result and result[0]["value"][1] == "1" else None

    assert eventually(up_value, 10) == "1"


def test_up_again_is_a_no_op(lab: Lab) -> None:
    before = {k: v["pid"] for k, v in status_json(lab.env)["components"].items()}
    started = time.monotonic()
    proc = run_cli("up", env=lab.env)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 10
    after = {k: v["pid"] for k, v in status_json(lab.env)["components"].items()}
    assert after == before
    assert proc.stderr.count("already up") == 6, proc.stderr
    assert "Taking the first full" not in proc.stderr


def test_taken_port_is_refused_before_anything_starts(lab: Lab) -> None:
    base = PORT_BASE + 100
    other = lab.root / "other-lab"
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", base + 1))
        squatter.listen()
        proc = run_cli("up", "--lab-dir", str(other), "--port-base", str(base), env=lab.env)
    assert proc.returncode == 2
    message = proc.stderr
    assert f"port {base + 1} for the lab's app primary PostgreSQL" in message
    assert "--port-base" in message and "RESILIENCE_LAB_PORT_BASE" in message
    assert not (other / "pg").exists()


def test_start_app_runs_the_demo_app_against_any_dsn(lab: Lab) -> None:
    """As the DR drill does on a restored sandbox: here against the (read-only) replica."""
    state = load_lab_state(lab.lab_dir)
    db, port = state["app_db"], state["sandbox_port_min"] + 1
    dsn = f"postgresql://{db['user']}:{db['password']}@127.0.0.1:{db['replica']['port']}/{db['dbname']}"
    run_dir = Path(state["sandbox_root"]) / "app-check"
    pid = start_app(dsn, port, run_dir)
    assert start_app(dsn, port, run_dir) == pid
    assert db["password"] not in " ".join(read_cmdline(pid) or [])
    status, body = get(f"http://127.0.0.1:{port}/api/health/database")
    assert status == 200 and json.loads(body)["in_recovery"] is True
    assert stop_app(port, run_dir) is True and not is_alive(pid)
    start_app(dsn, port, run_dir)  # left running: `down` must stop sandbox apps too


def descendants(roots: set[int]) -> set[int]:
    """``roots`` and every live process below them (postgres backends, walsenders ...)."""
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent_of[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found = set(roots)
    while True:
        more = {pid for pid, ppid in parent_of.items() if ppid in found} - found
        if not more:
            return found
        found |= more


def test_down_stops_every_process(lab: Lab) -> None:
    pids = {c["pid"] for c in status_json(lab.env)["components"].values()}
    assert None not in pids
    sandbox_app = app_is_running(load_lab_state(lab.lab_dir)["sandbox_port_min"] + 1,
                                 Path(load_lab_state(lab.lab_dir)["sandbox_root"]) / "app-check")
    pids |= {sandbox_app} if sandbox_app else set()
    everything = descendants(pids)
    assert len(everything) > len(pids)  # the postmasters have children
    proc = run_cli("down", env=lab.env)
    assert proc.returncode == 0, proc.stderr
    assert sorted(pid for pid in everything if is_alive(pid)) == []
    assert [p for p in Path("/proc").glob("[0-9]*") if str(lab.lab_dir) in " ".join(read_cmdline(int(p.name)) or [])] \
        == []
    after = status_json(lab.env)
    assert not any(c["running"] for c in after["components"].values())
    assert not (lab.lab_dir / "lab.json").exists()
    assert run_cli("down", env=lab.env).returncode == 0
