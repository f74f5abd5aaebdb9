"""The local lab against real servers: `resilience lab up`, what it serves, `up` again, `down`.

One module-scoped lab (see ``labkit``): a temp dir under /tmp on port base 55320.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from resilience.lab import control
from resilience.lab.app_process import app_is_running, start_app, stop_app
from resilience.lab.daemons import is_alive, read_cmdline
from resilience.lab.state import load_lab_state
from tests.lab.labkit import (
    PORT_BASE,
    Lab,
    cgroups_v1_memory,
    descendants,
    eventually,
    get,
    needs_lab_tools,
    pg,
    prom_query,
    run_cli,
    running_lab,
    status_json,
)

COMPONENTS = ["control_db", "app_primary", "app_replica", "etcd", "patroni_a", "patroni_b", "redis", "moto", "s3_tls",
              "s3_proxy",
              "writer", "supervisor", "app-1", "app-2", "app-3", "lb", "loadgen", "prometheus"]


pytestmark = [pytest.mark.integration, needs_lab_tools]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """This module's own lab (overrides the session ``lab`` of tests/conftest.py: these tests stop it)."""
    with running_lab() as lab:
        yield lab


def test_up_writes_lab_json_with_every_endpoint(lab: Lab) -> None:
    state = load_lab_state(lab.lab_dir)
    base = PORT_BASE
    print(f"lab up took {lab.up_s:.1f} s")  # a figure, not a bound: speed is for bench/, CI machines are loaded
    assert state["lab_dir"] == str(lab.lab_dir) and state["port_base"] == base
    assert (state["control_db"]["port"], state["control_db"]["dbname"]) == (base, "resilience")
    assert {state["app_db"]["primary"]["port"], state["app_db"]["replica"]["port"]} == {base + 1, base + 2}
    assert state["app_db"]["patroni"]["urls"] == [f"http://127.0.0.1:{base + 32}", f"http://127.0.0.1:{base + 33}"]
    assert state["app"]["url"] == state["lb"]["url"] == f"http://127.0.0.1:{base + 10}"
    assert [r["name"] for r in state["app"]["replicas"]] == ["app-1", "app-2", "app-3"]
    assert [r["port"] for r in state["app"]["replicas"]] == [base + 11, base + 12, base + 13]
    assert state["redis"]["url"] == f"redis://127.0.0.1:{base + 3}/0"
    assert (state["s3"]["endpoint"], state["s3"]["moto_endpoint"], state["s3"]["bucket"]) == (
        f"http://127.0.0.1:{base + 5}", f"http://127.0.0.1:{base + 4}", "uploads")
    assert state["supervisor"]["metrics_url"] == f"http://127.0.0.1:{base + 6}/metrics"
    assert state["loadgen"]["rate_per_s"] == 20.0
    assert state["prometheus"]["url"] == f"http://127.0.0.1:{base + 20}"
    assert Path(state["prometheus"]["rules_file"]).is_file()
    assert state["sandbox_port_min"] == base + 40
    assert state["pgbackrest"]["stanza"] == "app" and Path(state["pgbackrest"]["config"]).is_file()
    assert set(state["connections"]) == {"resilience_control_db", "resilience_lab_app_db",
                                         "resilience_lab_prometheus", "resilience_lab_s3", "resilience_lab_aws",
                                         "resilience_lab_redis", "resilience_lab_patroni"}
    app_db = json.loads(state["connections"]["resilience_lab_app_db"])
    assert (app_db["extra"]["port"], app_db["extra"]["target_session_attrs"]) == (
        f"{base + 1},{base + 2}", "read-write")
    aws = json.loads(state["connections"]["resilience_lab_s3"])
    assert (aws["conn_type"], aws["extra"]["endpoint_url"]) == ("aws", state["s3"]["endpoint"])
    control_plane = json.loads(state["connections"]["resilience_lab_aws"])
    assert control_plane["extra"]["endpoint_url"] == state["s3"]["moto_endpoint"]
    assert oct(lab.lab_dir.joinpath("lab.json").stat().st_mode & 0o777) == "0o600"
    assert lab.status["all_up"], lab.status["components"]
    assert {k: v["running"] for k, v in lab.status["components"].items()} == dict.fromkeys(COMPONENTS, True)
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
    # one full backup in each repository: repo1 (primary region's bucket) and repo2 (DR region's bucket)
    assert sorted((b["database"]["repo-key"], b["type"]) for b in stanza["backup"]) == [(1, "full"), (2, "full")]
    assert [(r["key"], r["status"]["message"]) for r in stanza["repo"]] == [(1, "ok"), (2, "ok")]
    assert oct(Path(conf).stat().st_mode & 0o777) == "0o600"  # it holds the S3 keys


def test_up_archives_the_current_wal_segment(lab: Lab) -> None:
    """A lab that was down long would start with a WAL archive as old as its downtime: `up` archives
    the segment it finds in progress, so the archive is current when `up` returns."""
    import psycopg

    dsn = load_lab_state(lab.lab_dir)["app_db"]["read_write_dsn"]  # the Connection is JSON (every node)
    with psycopg.connect(dsn, autocommit=True) as conn:
        before = conn.execute("SELECT archived_count, now() FROM pg_stat_archiver").fetchone()
        assert run_cli("up", env=lab.env).returncode == 0
        count, archived_at = conn.execute("SELECT archived_count, last_archived_time FROM pg_stat_archiver").fetchone()
    assert count > before[0] and archived_at > before[1]


def test_app_answers_database_health_and_metrics(lab: Lab) -> None:
    url = load_lab_state(lab.lab_dir)["app"]["url"]
    status, body = get(f"{url}/api/health/database")
    health = json.loads(body)
    assert status == 200, health
    assert (health["status"], health["database"], health["in_recovery"]) == ("ok", "app", False)
    assert health["accounts"] >= 1
    status, body = get(f"{url}/metrics")  # the load balancer's: requests as clients see them
    assert status == 200
    assert 'http_requests_total{code_class="2xx",method="GET",path="/api/health/database",status="200"}' in \
        body.decode()
    assert 'http_request_duration_seconds_bucket{le="0.075",method="GET",path="/api/health/database"}' in \
        body.decode()


def test_prometheus_scrapes_each_replica_as_job_api(lab: Lab) -> None:
    prom = load_lab_state(lab.lab_dir)["prometheus"]["url"]

    def replicas_up() -> dict[str, str]:
        found = {r["metric"].get("replica"): r["value"][1] for r in prom_query(prom, 'up{job="api"}')}
        return found if set(found.values()) == {"1"} and len(found) == 3 else {}

    assert set(eventually(replicas_up, 10)) == {"app-1", "app-2", "app-3"}


def test_up_again_is_a_no_op(lab: Lab) -> None:
    before = {k: v["pid"] for k, v in status_json(lab.env)["components"].items()}
    proc = run_cli("up", env=lab.env)
    assert proc.returncode == 0, proc.stderr
    after = {k: v["pid"] for k, v in status_json(lab.env)["components"].items()}
    assert after == before
    assert "Starting " not in proc.stderr, proc.stderr  # nothing (re)started: every component said already up
    assert "Taking a full" not in proc.stderr


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


def test_down_stops_every_process_memory_hogs_too(lab: Lab) -> None:
    state = load_lab_state(lab.lab_dir)
    hog = control.start_memory_hog(state, "down-test", 64, 16) if cgroups_v1_memory() else None
    pids = {c["pid"] for c in status_json(lab.env)["components"].values()}
    assert None not in pids
    sandbox_app = app_is_running(state["sandbox_port_min"] + 1, Path(state["sandbox_root"]) / "app-check")
    pids |= {p for p in (sandbox_app, hog and hog["pid"]) if p}
    everything = descendants(pids)
    assert len(everything) > len(pids)  # the postmasters and stress-ng have children
    started = time.monotonic()
    proc = run_cli("down", env=lab.env)
    down_s = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    print(f"lab down took {down_s:.1f} s")  # a figure for bench/, not a bound: CI machines are loaded
    assert sorted(pid for pid in everything if is_alive(pid)) == []
    assert [p for p in Path("/proc").glob("[0-9]*") if str(lab.lab_dir) in " ".join(read_cmdline(int(p.name)) or [])] \
        == []
    assert hog is None or not Path(hog["cgroup"]).exists()
    after = status_json(lab.env)
    assert not any(c["running"] for c in after["components"].values())
    assert not (lab.lab_dir / "lab.json").exists()
    assert run_cli("down", env=lab.env).returncode == 0
