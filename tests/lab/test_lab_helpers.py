"""The lab's helpers without servers: layout, lab.json contract, daemons, preflight, config rendering."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from resilience.lab.app import AppConfig, make_server
from resilience.lab.daemons import pid_matches, read_pid_file, running_pid, start_daemon, stop_daemon, write_pid_file
from resilience.lab.errors import LabError
from resilience.lab.layout import LabLayout, record_settings, resolve_layout
from resilience.lab.osuser import check_traversable, is_root
from resilience.lab.pg_roles import Roles, write_roles
from resilience.lab.preflight import check_ports, component_ports, only_time_wait, port_free, reserve_ports
from resilience.lab.prometheus_server import render_config, scrape_targets
from resilience.lab.state import airflow_env_lines, build_state, layout_of, load_lab_state, write_lab_state


def test_ports_derive_from_the_port_base(tmp_path: Path) -> None:
    layout = LabLayout(tmp_path, 55320)
    components = ("control_db", "node_a", "node_b", "redis", "moto", "s3_proxy", "supervisor", "dr_supervisor",
                  "loadgen", "lb", "prometheus")
    assert [layout.port(c) for c in components] == [55320, 55321, 55322, 55323, 55324, 55325, 55326, 55328, 55329,
                                                    55330, 55340]
    assert layout.port("app") == layout.port("lb")  # the lab's public app URL is the load balancer
    assert [layout.replica_port(n) for n in layout.replica_names] == [55331, 55332, 55333]
    assert layout.region_replica_names("dr") == ["dr-1", "dr-2"]  # the DR region's default
    assert [layout.replica_port(n) for n in layout.region_replica_names("dr", 9)] == list(range(55341, 55350))
    assert (layout.region_url("primary"), layout.region_url("dr")) == ("http://127.0.0.1:55330",
                                                                     "http://127.0.0.2:55330")
    assert [layout.port(c) for c in ("etcd", "etcd_peer", "patroni_a", "patroni_b")] == [55350, 55351, 55352, 55353]
    assert layout.sandbox_port_min == 55360  # past every lab server
    assert layout.node("b").data_dir == tmp_path / "pg" / "node-b" / "data"


@pytest.mark.parametrize("base", [80, 65500, -1])
def test_port_base_out_of_range_is_refused(tmp_path: Path, base: int) -> None:
    with pytest.raises(ValueError, match=r"port_base: .* is not in 1024\.\."):
        resolve_layout(tmp_path, base)


def test_env_chooses_lab_dir_and_port_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESILIENCE_LAB_DIR", str(tmp_path / "x"))
    monkeypatch.setenv("RESILIENCE_LAB_PORT_BASE", "41000")
    assert resolve_layout() == LabLayout(tmp_path / "x", 41000)
    assert resolve_layout(port_base=42000).port_base == 42000


def test_a_lab_dir_keeps_its_port_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESILIENCE_LAB_PORT_BASE", raising=False)
    (tmp_path / "layout.json").write_text(json.dumps({"port_base": 43000}))
    assert resolve_layout(tmp_path).port_base == 43000
    with pytest.raises(ValueError, match="created with port base 43000, not 44000; use --port-base 43000"):
        resolve_layout(tmp_path, 44000)


def test_load_lab_state_says_the_lab_is_not_up(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"lab is not up: run `resilience lab up`"):
        load_lab_state(tmp_path)


def test_lab_json_round_trip_and_env_lines(tmp_path: Path) -> None:
    layout = LabLayout(tmp_path, 55320)
    state = build_state(layout, "pw", Path("/usr/lib/postgresql/15/bin"), "postgres")
    write_lab_state(layout, state)
    assert load_lab_state(tmp_path) == state
    assert (tmp_path / "lab.json").stat().st_mode & 0o777 == 0o600
    s3 = '{"conn_type": "aws", "login": "resilience-lab", "password": "resilience-lab-secret", "extra": ' \
         '{"endpoint_url": "http://127.0.0.1:55325", "region_name": "us-east-1"}}'
    moto = s3.replace("55325", "55324")  # the control-plane AWS Connection skips the S3 fault proxy
    app_db = ('{"conn_type": "postgres", "host": "127.0.0.1", "port": 55321, "login": "postgres", "password": "pw", '
              '"schema": "app", "extra": {"host": "127.0.0.1,127.0.0.1", "port": "55321,55322", '
              '"target_session_attrs": "read-write"}}')
    patroni = '{"conn_type": "http", "extra": {"endpoints": ["http://127.0.0.1:55352", "http://127.0.0.1:55353"]}}'
    assert airflow_env_lines(state) == [
        "export AIRFLOW_CONN_RESILIENCE_CONTROL_DB='postgresql://postgres:pw@127.0.0.1:55320/resilience'",
        f"export AIRFLOW_CONN_RESILIENCE_LAB_APP_DB='{app_db}'",
        "export AIRFLOW_CONN_RESILIENCE_LAB_PROMETHEUS='http://127.0.0.1:55340'",
        f"export AIRFLOW_CONN_RESILIENCE_LAB_PATRONI='{patroni}'",
        f"export AIRFLOW_CONN_RESILIENCE_LAB_S3='{s3}'",
        f"export AIRFLOW_CONN_RESILIENCE_LAB_AWS='{moto}'",
        "export AIRFLOW_CONN_RESILIENCE_LAB_REDIS='redis://127.0.0.1:55323/0'",
    ]
    assert state["app_db"]["read_write_dsn"] == (
        "postgresql://postgres:pw@127.0.0.1:55321,127.0.0.1:55322/app?target_session_attrs=read-write"
        "&connect_timeout=2")


def test_lab_json_follows_the_recorded_roles_while_patroni_does_not_answer(tmp_path: Path) -> None:
    layout = LabLayout(tmp_path, 55320, replicas=2)
    write_roles(layout, Roles("b", "a", needs_rebuild=True))
    state = build_state(layout, "pw", Path("/usr/lib/postgresql/15/bin"), "postgres")
    db = state["app_db"]
    assert (db["primary"]["node"], db["primary"]["port"], db["replica"]["node"], db["replica"]["port"]) == (
        "b", 55322, "a", 55321)
    assert db["primary"]["data_dir"].endswith("pg/node-b/data") and db["roles"]["needs_rebuild"] is True
    assert json.loads(state["connections"]["resilience_lab_app_db"])["extra"]["target_session_attrs"] == "read-write"
    assert state["app"]["url"] == state["lb"]["url"] == "http://127.0.0.1:55330"
    assert state["app"]["replicas"] == [{"name": "app-1", "port": 55331, "url": "http://127.0.0.1:55331"},
                                        {"name": "app-2", "port": 55332, "url": "http://127.0.0.1:55332"}]
    assert state["s3"]["fault_api"] == "http://127.0.0.1:55325/__fault__"
    assert state["s3"]["moto_endpoint"] == "http://127.0.0.1:55324" and state["s3"]["bucket"] == "uploads"
    assert state["supervisor"]["metrics_url"] == "http://127.0.0.1:55326/metrics"
    assert state["loadgen"]["rate_per_s"] == 20.0
    assert layout_of(state) == layout


@pytest.mark.parametrize(("field", "value", "message"), [
    ("replicas", 0, r"replicas: 0 is not an integer in 1\.\.9"),
    ("replicas", 10, r"replicas: 10 is not an integer in 1\.\.9 \(--replicas / RESILIENCE_LAB_REPLICAS\)"),
    ("load_rate", 0.0, r"load_rate: 0\.0 is not a number in \(0, 500\]"),
])
def test_replicas_and_load_rate_are_bounded(tmp_path: Path, field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_layout(tmp_path, 55320, **{field: value})


def test_replicas_come_from_env_then_the_lab_dir_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESILIENCE_LAB_PORT_BASE", raising=False)
    record_settings(LabLayout(tmp_path, 43000, replicas=5, load_rate=7.5))
    assert resolve_layout(tmp_path) == LabLayout(tmp_path, 43000, 5, 7.5)
    monkeypatch.setenv("RESILIENCE_LAB_REPLICAS", "2")
    assert resolve_layout(tmp_path).replicas == 2
    assert resolve_layout(tmp_path, replicas=4).replicas == 4


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temp dir every user can traverse (pytest's own tmp_path is 0700 under root)."""
    root = Path(tempfile.mkdtemp(prefix="resilience-lab-unit-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(not is_root(), reason="the traversal check applies when root runs servers as postgres")
def test_lab_dir_the_postgres_user_cannot_reach_is_refused(open_tmp: Path) -> None:
    closed = open_tmp / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(LabError, match=r"postgres OS user cannot traverse \S+/closed \(mode 700\).*RESILIENCE_LAB_DIR"):
        check_traversable(closed / "lab", "postgres", "RESILIENCE_LAB_DIR")
    closed.chmod(0o755)
    check_traversable(closed / "lab", "postgres", "RESILIENCE_LAB_DIR")


def test_taken_port_names_component_port_and_setting(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        assert not port_free(taken)
        layout = LabLayout(tmp_path, taken)  # checked first, so no other (random) busy port interferes
        with pytest.raises(LabError, match=rf"port {taken} for the lab's control-plane PostgreSQL .*--port-base or "
                                           r"RESILIENCE_LAB_PORT_BASE"):
            check_ports(layout, {})
        check_ports(layout, dict.fromkeys(component_ports(layout), True))  # ours and up: not a conflict
        assert {"app-1", "app-3", "lb", "loadgen", "redis", "s3_proxy"} <= set(component_ports(layout))


def test_prometheus_config_scrapes_every_job_every_second(tmp_path: Path) -> None:
    layout = LabLayout(tmp_path, 55320, replicas=2)
    config = yaml.safe_load(render_config(scrape_targets(layout), rule_files=["/x/alerts.yml"]))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"lb", "api", "dr_lb", "dr_api", "loadgen", "lab", "s3", "prometheus", "patroni"}
    assert jobs["patroni"]["static_configs"] == [{"targets": ["127.0.0.1:55352"], "labels": {"node": "a"}},
                                                 {"targets": ["127.0.0.1:55353"], "labels": {"node": "b"}}]
    assert jobs["lb"]["static_configs"] == [{"targets": ["127.0.0.1:55330"],
                                             "labels": {"service": "demo-app", "region": "primary"}}]
    assert [(c["targets"], c["labels"]["replica"]) for c in jobs["api"]["static_configs"]] == [
        (["127.0.0.1:55331"], "app-1"), (["127.0.0.1:55332"], "app-2")]
    assert jobs["dr_lb"]["static_configs"] == [{"targets": ["127.0.0.2:55330"],
                                                "labels": {"service": "demo-app", "region": "dr"}}]
    assert [(c["targets"], c["labels"]) for c in jobs["dr_api"]["static_configs"]] == [
        (["127.0.0.1:55341"], {"replica": "dr-1", "service": "demo-app", "region": "dr"}),
        (["127.0.0.1:55342"], {"replica": "dr-2", "service": "demo-app", "region": "dr"})]
    assert jobs["loadgen"]["static_configs"] == [{"targets": ["127.0.0.1:55329"]}]
    assert jobs["lab"]["static_configs"] == [{"targets": ["127.0.0.1:55326"]},
                                             {"targets": ["127.0.0.1:55328"], "labels": {"region": "dr"}}]
    assert jobs["s3"]["metrics_path"] == "/__metrics__"
    assert config["global"]["scrape_interval"] == "1s"
    assert config["rule_files"] == ["/x/alerts.yml"]


def test_daemon_start_is_idempotent_and_stop_terminates(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    pid_file = tmp_path / "sleep.pid"
    pid = start_daemon(argv, pid_file, tmp_path / "sleep.log")
    assert start_daemon(argv, pid_file, tmp_path / "sleep.log") == pid
    assert read_pid_file(pid_file) == (pid, argv) and running_pid(pid_file) == pid
    assert stop_daemon(pid_file, timeout_s=5) is True
    assert not pid_matches(pid, argv) and not pid_file.exists()
    assert stop_daemon(pid_file) is False


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    pid_file = tmp_path / "stale.pid"
    write_pid_file(pid_file, os.getpid(), ["some-daemon", "--that-exited"])
    assert running_pid(pid_file) is None
    assert stop_daemon(pid_file) is False  # we are still alive to assert it
    assert not pid_file.exists()


def test_demo_app_reports_a_dead_database_as_503_without_the_dsn() -> None:
    config = AppConfig(dsn="postgresql://postgres:s3cret@127.0.0.1:1/app", port=0)
    server = make_server(config)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=3) as response:
            assert (response.status, json.load(response)) == (200, {"status": "ok"})
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(f"{base}/api/health/database", timeout=5)
        body = failed.value.read().decode()
        assert failed.value.code == 503
        assert json.loads(body) == {"status": "error", "database": "app", "error": "OperationalError"}
        assert "s3cret" not in body
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}/no/such/path", timeout=3)
        metrics = urllib.request.urlopen(f"{base}/metrics", timeout=3).read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'http_requests_total{method="GET",path="/api/health/database",status="503"} 1.0' in metrics
    assert 'http_requests_total{method="GET",path="other",status="404"} 1.0' in metrics
    assert 'http_request_duration_seconds_count{method="GET",path="/health"} 1.0' in metrics


def test_lab_ports_are_reserved_from_ephemeral_allocation(tmp_path: Path) -> None:
    sysctl = tmp_path / "ip_local_reserved_ports"
    sysctl.write_text("1000-1010\n")
    assert reserve_ports(LabLayout(tmp_path, 55320), sysctl) is True
    assert sysctl.read_text() == "1000-1010,55320-55353\n"  # the DR region's replicas and Patroni included
    assert reserve_ports(LabLayout(tmp_path, 55320), sysctl) is True  # already covered: unchanged
    assert sysctl.read_text() == "1000-1010,55320-55353\n"
    assert reserve_ports(LabLayout(tmp_path, 55320), tmp_path / "missing" / "file") is False


def unused_port(first: int = 21000, last: int = 21999) -> int:
    """A port below the kernel's ephemeral range that no socket uses. An ephemeral port would not do:
    on a busy machine the kernel hands the same local port to other connections (other
    destinations), whose sockets then share it (seen in CI: never 'only TIME_WAIT')."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert last < low, f"{first}-{last} must lie below the ephemeral range ({low}...)"
    used = {int(row.split()[1].rsplit(":", 1)[1], 16) for table in ("/proc/net/tcp", "/proc/net/tcp6")
            for row in Path(table).read_text().splitlines()[1:]}
    return next(port for port in range(first, last + 1) if port not in used and port_free(port))


def test_a_port_held_only_by_time_wait_is_told_apart_from_a_busy_one() -> None:
    """A closed client connection blocks binding its port for 60 s: `up` waits for it, not fails."""
    port = unused_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client = socket.socket()
        client.bind(("127.0.0.1", port))  # the client's end is the port under test, as a lab port would be
        client.connect(server.getsockname())
        accepted, _ = server.accept()
        assert not only_time_wait(port) and not port_free(port)  # an open connection: busy
        client.close()  # the side that closes first keeps TIME_WAIT
        accepted.close()
    assert eventually_true(lambda: only_time_wait(port)) and not port_free(port)


def eventually_true(check, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
