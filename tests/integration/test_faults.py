"""Each fault has a real effect while injected and none after its revert, seen from outside.

The fault modules run against the lab through the Platform interface; the assertions use
their own clients (os.kill, redis-py, boto3, psycopg, the cgroup files).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import boto3
import psycopg
import pytest
import redis
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from resilience.config import load_config
from resilience.faults.base import get_fault
from resilience.platforms.base import get_platform

pytestmark = pytest.mark.integration


@pytest.fixture
def platform(lab):
    return get_platform(load_config().environment("lab"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead too
    except (ProcessLookupError, FileNotFoundError):
        return False


def dies(pid: int, within_s: float = 2.0) -> bool:
    """SIGKILL is delivered asynchronously: give the kernel a moment."""
    deadline = time.monotonic() + within_s
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def cycle(platform, scenario, options=None):
    fault = get_fault(scenario)
    plan = fault.plan(platform, options or {})
    return fault, plan, fault.inject(platform, plan)


def test_pod_kill_replaces_the_process(platform):
    fault, plan, info = cycle(platform, "pod-kill", {"count": 1})
    [(name, old_pid)] = info["killed"].items()
    assert dies(int(old_pid))
    observed = fault.revert(platform, plan, info)
    new_pid = observed["replicas"][name]  # the lab's supervisor restarts it under its name, with a new process
    assert new_pid != old_pid and alive(int(new_pid))
    assert len(observed["replicas"]) == plan["expected_ready"] and observed["ready_after_s"] >= 0
    # the replacement's readiness, as the supervisor's probe saw it, after the deletion and within the runbook's 30 s
    assert 0 < observed["replacements_ready_s"] < 30, observed
    assert fault.measurements(observed)["replacements_ready_s"].value == observed["replacements_ready_s"]
    assert {r.name: r.ready for r in platform.workloads.replicas()}[name] is True
    assert fault.revert(platform, plan, info)["replicas"][name] == new_pid  # idempotent


def test_redis_unavailable_then_back(platform, lab):
    client = redis.Redis.from_url(lab["redis"]["url"], socket_timeout=0.5, socket_connect_timeout=0.5, retry=None)
    assert client.ping()
    fault, plan, info = cycle(platform, "redis-unavailable")
    with pytest.raises(redis.exceptions.ConnectionError):
        client.ping()
    fault.revert(platform, plan, info)
    assert client.ping()
    fault.revert(platform, plan, info)  # idempotent
    assert client.ping()


def s3_client(lab):
    s3 = lab["s3"]
    return boto3.client("s3", endpoint_url=s3["endpoint"], region_name=s3["region"],
                        aws_access_key_id=s3["access_key"], aws_secret_access_key=s3["secret_key"],
                        config=BotoConfig(retries={"max_attempts": 1, "mode": "standard"}))


def test_s3_5xx_answers_errors_then_heals(platform, lab):
    client, bucket = s3_client(lab), lab["s3"]["bucket"]
    fault, plan, info = cycle(platform, "s3-5xx", {"error_rate": 1.0, "status": 503})
    with pytest.raises(ClientError) as failed:
        client.put_object(Bucket=bucket, Key=f"chaos/{uuid.uuid4().hex}", Body=b"x")
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    fault.revert(platform, plan, info)
    key = f"chaos/{uuid.uuid4().hex}"
    client.put_object(Bucket=bucket, Key=key, Body=b"after")
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"after"


def test_the_upload_audit_reads_back_what_the_app_acknowledged_during_s3_faults(platform, lab):
    """s3-5xx's "no corrupted or partial upload": uploads acknowledged while a third of S3 PUTs fail are all
    in the bucket intact; an object altered or removed behind the app's back is named."""
    import httpx

    started = time.time()
    fault, plan, info = cycle(platform, "s3-5xx", {"error_rate": 0.3, "status": 503})
    try:
        answers = [httpx.post(f"{lab['app']['url']}/api/uploads", content=os.urandom(512), timeout=10)
                   for _ in range(12)]
    finally:
        fault.revert(platform, plan, info)
    acked = [r.json()["s3_key"] for r in answers if r.status_code == 201]
    assert acked, [r.status_code for r in answers]  # 4 attempts each: 0.3^4 fails < 1 %
    audit = platform.upload_audit.audit_uploads(started, time.time())
    assert audit.checked >= len(acked) and audit.missing == () and audit.corrupt == (), audit
    s3 = lab["s3"]
    moto = boto3.client("s3", endpoint_url=s3["moto_endpoint"], region_name=s3["region"],
                        aws_access_key_id=s3["access_key"], aws_secret_access_key=s3["secret_key"])
    moto.put_object(Bucket=s3["bucket"], Key=acked[0], Body=b"partial")  # what a torn write would leave
    if len(acked) > 1:
        moto.delete_object(Bucket=s3["bucket"], Key=acked[1])
    audit = platform.upload_audit.audit_uploads(started, time.time())
    assert acked[0] in audit.corrupt and (len(acked) == 1 or audit.missing == (acked[1],)), audit


def test_postgres_switchover_moves_writes_and_revert_measures_the_runbook_expectations(platform, lab):
    from resilience.faults.postgres_failover import measurements
    from resilience.lab.state import load_lab_state, with_current_roles

    before = platform.database.database_roles()
    assert before["primary_up"] and before["replica_streaming"]
    fault, plan, info = cycle(platform, "postgres-failover", {"mode": "switchover"})
    assert info["new_leader"] == plan["candidate"] != plan["old_leader"] == before["primary"]
    state = with_current_roles(load_lab_state())
    with psycopg.connect(state["app_db"]["read_write_dsn"], autocommit=True) as conn:
        port = conn.execute("SELECT inet_server_port()").fetchone()[0]
        marker = f"failover-{uuid.uuid4().hex[:8]}@chaos.test"
        conn.execute("INSERT INTO accounts (email, display_name) VALUES (%s, 'failover')", (marker,))
    assert port == state["app_db"]["primary"]["port"]  # the new leader, as lab.json now says
    observed = fault.revert(platform, plan, info)
    assert observed["leader"] == info["new_leader"] and observed["synchronous_mode"] is True
    assert 0 < observed["failover_s"] < 30
    writes = observed["acknowledged_writes"]
    assert writes["acknowledged"] > 0 and writes["lost"] == 0 and writes["after_failover"] > 0, writes
    measured = {k: m.value for k, m in measurements(observed).items()}
    assert measured == {"failover_s": observed["failover_s"], "acked_writes_lost": 0,
                        "writes_after_failover": writes["after_failover"]}
    after = with_current_roles(load_lab_state())["app_db"]
    deadline = time.monotonic() + 10
    while True:  # the marker written after the switchover reaches the old leader, now the replica
        with psycopg.connect(host="127.0.0.1", port=after["replica"]["port"], dbname="app", user="postgres",
                             password=after["password"]) as replica:
            if replica.execute("SELECT count(*) FROM accounts WHERE email = %s", (marker,)).fetchone()[0]:
                break
        assert time.monotonic() < deadline, "marker never reached the old leader"
        time.sleep(0.2)


def test_a_crash_failover_killed_before_its_inject_returned_is_healed_by_its_revert(platform, lab):
    """The inject's process dies right after it crashed the leader (SIGKILL of the guard's triggerer, say):
    the ledger has no revert_info. The revert must still start the crashed node, wait for Patroni's new
    leader and the old one back as a streaming replica, and switch back when asked."""
    from resilience.ha_database import wait_new_leader
    from resilience.lab.state import load_lab_state, with_current_roles

    fault = get_fault("postgres-failover")
    plan = fault.plan(platform, {"mode": "crash", "switch_back": True})
    crashed_at = time.time()
    platform.database_hosts.crash_database_node(plan["old_leader"])  # what inject does, then its process dies
    # the revert comes at the window's end, after Patroni has promoted the standby
    wait_new_leader(platform.database.database_cluster(), plan["old_leader"], crashed_at, timeout_s=45)
    observed = fault.revert(platform, plan, {})
    assert observed["switched_back"] is True and observed["leader"] == plan["old_leader"], observed
    roles = platform.database.database_roles()
    assert roles["primary"] == plan["old_leader"] and roles["primary_up"] and roles["replica_streaming"], roles
    assert "failover_s" not in observed  # no inject time recorded: not measured, so not judged as passed
    from resilience.faults.postgres_failover import measurements

    assert measurements(observed)["failover_s"].value is None
    after = with_current_roles(load_lab_state())["app_db"]
    with psycopg.connect(host="127.0.0.1", port=after["replica"]["port"], dbname="app", user="postgres",
                         password=after["password"]) as replica:
        assert replica.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True


def hog_record(name):
    """The lab's record of the hog (its PID and cgroup): read with the test's own eyes, not the platform's."""
    from resilience.lab import memhog
    from resilience.lab.state import layout_of, load_lab_state

    return memhog.read_record(layout_of(load_lab_state()), name)


def test_memory_pressure_only_the_hog_is_oom_killed(platform):
    from resilience.faults.memory_pressure import measurements

    fault, plan, info = cycle(platform, "memory-pressure", {"limit_mb": 64, "hog_mb": 256})
    assert info["hog"]["running"] and set(info["app_before"]) == {r.name for r in platform.workloads.replicas()}
    cgroup = Path(hog_record(plan["name"])["cgroup"])
    deadline = time.monotonic() + 15
    while (hog := platform.memory.memory_hog(plan["name"])) is None or hog.oom_kills == 0:
        assert time.monotonic() < deadline, "the hog was never OOM-killed"
        time.sleep(0.2)
    observed = fault.revert(platform, plan, info)
    assert observed["hog"]["oom_kills"] > 0 and observed["hog"]["limit_mb"] == 64
    measured = measurements(observed)
    assert observed["only_hog_killed"] is True and measured["app_replicas_disturbed"].value == 0
    assert measured["hog_oom_kills"].value == observed["hog"]["oom_kills"]
    assert observed["app_after"] == observed["app_before"]  # no replica restarted or replaced
    assert observed["replicas_ready"] == observed["replicas_total"]
    assert platform.memory.memory_hog(plan["name"]) is None and not cgroup.exists()  # cgroup removed
    fault.revert(platform, plan, info)  # idempotent


@pytest.mark.parametrize(
    ("scenario", "options", "message"),
    [
        ("pod-kill", {"count": 99}, r"options\.count: 99 must be an integer in 1\.\.3"),
        ("s3-5xx", {"error_rate": 2}, r"options\.error_rate: 2 must be > 0 and <= 1"),
        ("memory-pressure", {"hog_mb": 1}, r"options\.hog_mb: 1 must be an integer in 16\.\.4096"),
        ("redis-unavailable", {"x": 1}, r"options: redis-unavailable takes none"),
    ],
)
def test_bad_options_are_refused_by_plan_before_any_effect(platform, scenario, options, message):
    with pytest.raises(ValueError, match=message):
        get_fault(scenario).plan(platform, options)


# -- dead-man switches: a fault nobody reverts ends by itself at the plan's deadline ---------------------

DEADMAN_AHEAD_S = 4.0  # the deadline, this far after the inject
DEADMAN_SLACK_S = 15.0  # bound on "by itself" past the deadline (a loaded 2-core machine)


def until(check, timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
    return True


def cycle_with_deadline(platform, scenario, options=None):
    """Plan, then the campaign's contract: ``deadline_epoch_s`` in the plan before the inject."""
    fault = get_fault(scenario)
    plan = {**fault.plan(platform, options or {}), "deadline_epoch_s": time.time() + DEADMAN_AHEAD_S}
    return fault, plan, fault.inject(platform, plan)


def test_s3_5xx_ends_by_itself_at_its_deadline(platform, lab):
    client, bucket = s3_client(lab), lab["s3"]["bucket"]

    def put_ok() -> bool:
        try:
            client.put_object(Bucket=bucket, Key=f"chaos/{uuid.uuid4().hex}", Body=b"x")
            return True
        except ClientError:
            return False

    fault, plan, info = cycle_with_deadline(platform, "s3-5xx", {"error_rate": 1.0, "status": 503})
    assert info["expires_at"] == plan["deadline_epoch_s"] and not put_ok()
    assert until(put_ok, DEADMAN_AHEAD_S + DEADMAN_SLACK_S), "S3 still failing long after the fault's deadline"
    assert time.time() >= plan["deadline_epoch_s"]
    assert platform.object_store.object_store_fault().expired_at == plan["deadline_epoch_s"]
    assert fault.revert(platform, plan, info)["fault"]["error_rate"] == 0.0  # a clean no-op
    assert put_ok()


def test_redis_unavailable_ends_by_itself_at_its_deadline(platform, lab):
    client = redis.Redis.from_url(lab["redis"]["url"], socket_timeout=0.5, socket_connect_timeout=0.5, retry=None)

    def pings() -> bool:
        try:
            return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False

    fault, plan, info = cycle_with_deadline(platform, "redis-unavailable")
    assert info["restarts_by_itself_at"] == plan["deadline_epoch_s"] and not pings()
    assert until(pings, DEADMAN_AHEAD_S + DEADMAN_SLACK_S), "Redis still down long after the fault's deadline"
    assert time.time() >= plan["deadline_epoch_s"]
    assert fault.revert(platform, plan, info) == {"cache_alive": True, "replicas": 1}  # a clean no-op
    assert pings()


def test_memory_pressure_hog_ends_by_itself_at_its_deadline(platform):
    fault, plan, info = cycle_with_deadline(platform, "memory-pressure", {"limit_mb": 64, "hog_mb": 256})
    record = hog_record(plan["name"])
    procs = Path(record["cgroup"], "cgroup.procs")
    assert alive(record["pid"]) and info["hog"]["expires_at"] == plan["deadline_epoch_s"]
    assert until(lambda: not alive(record["pid"]) and not procs.read_text().split(),
                 DEADMAN_AHEAD_S + DEADMAN_SLACK_S), "the hog still runs long after the fault's deadline"
    assert time.time() >= plan["deadline_epoch_s"] - 1  # --timeout is whole seconds, rounded down: never late
    ended = platform.memory.memory_hog(plan["name"])
    assert ended is not None and not ended.running and ended.ended == "DeadlineExceeded"
    observed = fault.revert(platform, plan, info)  # removes the empty cgroup; nothing left to kill
    assert observed["replicas_ready"] == observed["replicas_total"]
    assert platform.memory.memory_hog(plan["name"]) is None and not os.path.exists(record["cgroup"])


@pytest.mark.parametrize("scenario", ["s3-5xx", "redis-unavailable", "memory-pressure"])
def test_a_deadline_in_the_past_is_refused_before_any_effect(platform, scenario):
    fault = get_fault(scenario)
    plan = {**fault.plan(platform, {}), "deadline_epoch_s": time.time() - 5}
    with pytest.raises(ValueError, match=r"plan\.deadline_epoch_s: .* s in the past .*refusing to inject"):
        fault.inject(platform, plan)
    assert platform.object_store.object_store_fault().error_rate == 0.0
    assert platform.cache.cache_state().alive
    assert platform.memory.memory_hog("chaos-memory-hog") is None
