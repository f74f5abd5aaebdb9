"""Lab v2 against real servers: the chaos primitives of ``lab.control`` and their effects seen from outside.

One module-scoped lab (see ``labkit``). Effects are checked with our own clients: HTTP to the
load balancer, replicas and Prometheus, boto3 straight to moto, psycopg, pgbackrest, cgroup files.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from resilience.lab import control
from tests.lab.labkit import (
    Lab,
    cgroups_v1_memory,
    eventually,
    metric_sum,
    needs_lab_tools,
    pg,
    prom_query,
    request,
    running_lab,
)

pytestmark = [pytest.mark.integration, needs_lab_tools]

MAX_ERRORS_DURING_POD_KILL = 1  # GETs lost on the killed replica are retried by the load balancer


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab() as lab:
        yield lab


def replica_metric(lab: Lab, name: str) -> float:
    """Sum of ``name`` over every replica's own /metrics."""
    return sum(metric_sum(f"{r['url']}/metrics", name) for r in lab.state["app"]["replicas"])


class Traffic(threading.Thread):
    """GET /api/posts through the load balancer in a loop, counting answers, until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.answers = url, threading.Event(), Counter[str]()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status, _, _ = request(f"{self.url}/api/posts?limit=5", timeout_s=5)
                self.answers[str(status)] += 1
            except OSError as exc:
                self.answers[type(exc).__name__] += 1
            time.sleep(0.01)

    def errors(self) -> int:
        return sum(n for answer, n in self.answers.items() if not answer.startswith("2"))


def test_status_shows_every_component_up(lab: Lab) -> None:
    assert lab.status["all_up"], lab.status["components"]
    assert {"redis", "moto", "s3_proxy", "supervisor", "app-1", "app-2", "app-3", "lb", "loadgen"} <= set(
        lab.status["components"])
    print(f"lab up took {lab.up_s:.1f} s")  # a figure, not a bound: speed is for bench/, CI machines are loaded


def test_load_balancer_spreads_requests_over_all_replicas(lab: Lab) -> None:
    # Round-robin is shared with the load generator's requests: each replica gets about a third.
    seen = Counter(request(f"{lab.state['app']['url']}/health")[2].get("X-Backend") for _ in range(60))
    assert set(seen) == {"app-1", "app-2", "app-3"} and min(seen.values()) >= 5, seen


def test_load_generator_sends_the_whole_mix(lab: Lab) -> None:
    lb = lab.state["lb"]["metrics_url"]
    assert eventually(lambda: all(metric_sum(lb, "http_requests_total", method=m, path=p) > 0 for m, p in (
        ("GET", "/api/posts"), ("POST", "/api/posts"), ("POST", "/api/uploads"))), 15)


def test_sigkilled_replica_is_restarted_while_the_lb_keeps_answering(lab: Lab) -> None:
    state = lab.state
    restarts = control.replicas(state)["app-1"]["restarts"]
    traffic = Traffic(state["app"]["url"])
    traffic.start()
    time.sleep(0.3)
    killed = control.kill_replica(state, "app-1")
    started = time.monotonic()
    new_pid = control.wait_replica_healthy(state, "app-1", timeout_s=60, not_pid=killed)
    restart_s = time.monotonic() - started
    time.sleep(0.5)
    traffic.stop.set()
    traffic.join(10)
    assert new_pid != killed and not Path(f"/proc/{killed}/cmdline").exists()
    print(f"replica restarted in {restart_s:.1f} s")  # a figure: the bound is wait_replica_healthy's timeout
    assert control.replicas(state)["app-1"]["restarts"] == restarts + 1
    assert metric_sum(state["supervisor"]["metrics_url"], "lab_replica_restarts_total", replica="app-1") == \
        restarts + 1
    assert sum(traffic.answers.values()) >= 30
    assert traffic.errors() <= MAX_ERRORS_DURING_POD_KILL, traffic.answers


def test_posts_are_served_without_redis_and_the_cache_comes_back(lab: Lab) -> None:
    state, url = lab.state, lab.state["app"]["url"]
    errors_before = replica_metric(lab, "redis_errors_total")
    control.stop_redis(state)
    control.stop_redis(state)  # idempotent
    try:
        assert not control.redis_ping(state)
        answers = []
        for _ in range(30):
            started = time.monotonic()
            status, _, _ = request(f"{url}/api/posts?limit=20")
            answers.append((status, time.monotonic() - started))
        assert [s for s, _ in answers] == [200] * 30
        assert max(t for _, t in answers) < 1.0
        assert replica_metric(lab, "redis_errors_total") > errors_before
        assert eventually(lambda: prom_query(state["prometheus"]["url"], 'lab_component_up{component="redis"} == 0'),
                          5)
    finally:
        control.start_redis(state)
    assert control.redis_ping(state)
    assert eventually(lambda: b'"cache": "hit"' in request(f"{url}/api/posts?limit=20")[1], 5)


def test_s3_fault_rate_one_fails_every_request_and_bad_settings_are_refused(lab: Lab) -> None:
    state = lab.state
    fault_api = state["s3"]["fault_api"]
    try:
        before = control.set_s3_fault(state, 1.0, 503)
        status, body, _ = request(f"{state['s3']['endpoint']}/uploads/direct-put", data=b"abc", method="PUT")
        assert (status, b"<Code>SlowDown</Code>" in body) == (503, True)
        assert control.s3_fault(state)["injected"] == before["injected"] + 1
        status, body, _ = request(fault_api, data=b'{"error_rate": 2}', method="PUT")
        assert status == 400 and b"error_rate: 2 is not a number in 0..1" in body
    finally:
        control.set_s3_fault(state, 0.0)
    assert request(f"{state['s3']['endpoint']}/uploads/direct-put", data=b"abc", method="PUT")[0] == 200


def test_uploads_survive_half_the_s3_requests_failing_thanks_to_retries(lab: Lab) -> None:
    state = lab.state
    s3 = state["s3"]
    retries_before = replica_metric(lab, "s3_retries_total")
    results = []
    try:
        control.set_s3_fault(state, 0.5, 503)
        for _ in range(10):
            payload = os.urandom(1024)
            status, body, _ = request(f"{state['app']['url']}/api/uploads", data=payload, method="POST")
            results.append((status, payload, body))
    finally:
        control.set_s3_fault(state, 0.0)
    assert {s for s, _, _ in results} <= {201, 503} and any(s == 201 for s, _, _ in results), results
    assert replica_metric(lab, "s3_retries_total") > retries_before
    moto = boto3.client("s3", endpoint_url=s3["moto_endpoint"], region_name=s3["region"],
                        aws_access_key_id=s3["access_key"], aws_secret_access_key=s3["secret_key"])
    with pg(state, "primary") as db:
        for status, payload, _ in results:
            digest = hashlib.sha256(payload).hexdigest()
            row = db.execute("SELECT s3_key, size_bytes FROM uploads WHERE sha256 = %s", (digest,)).fetchone()
            if status == 503:
                assert row is None  # nothing recorded for an upload S3 never accepted
                continue
            stored = moto.get_object(Bucket=s3["bucket"], Key=row[0])["Body"].read()
            assert (hashlib.sha256(stored).hexdigest(), row[1]) == (digest, 1024)


@pytest.mark.skipif(not cgroups_v1_memory(), reason="needs the cgroups v1 memory controller and stress-ng")
def test_memory_hog_over_its_limit_is_oom_killed_in_its_cgroup_only(lab: Lab) -> None:
    state = lab.state
    pids = {name: r["pid"] for name, r in control.replicas(state).items()}
    hog = control.start_memory_hog(state, "oom-test", limit_mb=32, hog_mb=96)
    try:
        assert control.start_memory_hog(state, "oom-test", 32, 96) == hog  # idempotent
        counters = eventually(lambda: (c := control.memory_hog_counters(state, "oom-test"))["oom_kill"] > 0 and c,
                              10)
        assert counters and counters["oom_kill"] > 0 and counters["failcnt"] > 0
        assert Path(hog["cgroup"], "memory.limit_in_bytes").read_text().strip() == str(32 * 1024 * 1024)
    finally:
        control.stop_memory_hog(state, "oom-test")
    control.stop_memory_hog(state, "oom-test")  # idempotent
    assert not Path(hog["cgroup"]).exists()
    after = control.replicas(state)
    assert {n: r["pid"] for n, r in after.items()} == pids and all(r["healthy"] for r in after.values())


def test_prometheus_sees_the_lb_the_replicas_and_every_component(lab: Lab) -> None:
    prom = lab.state["prometheus"]["url"]
    assert eventually(lambda: prom_query(prom, 'up{job="lb"} == 1'), 10)
    components = eventually(lambda: {r["metric"]["component"] for r in prom_query(prom, "lab_component_up == 1")}
                            == {"redis", "postgres_primary", "postgres_replica", "s3"}, 10)
    assert components
    assert {r["metric"]["replica"] for r in prom_query(prom, 'up{job="api"} == 1')} == {"app-1", "app-2", "app-3"}
    assert eventually(lambda: prom_query(prom, 'lab_replica_restarts_total{replica="app-1"} >= 1'), 5)
    assert eventually(lambda: prom_query(prom, 'histogram_quantile(0.95, sum by (le) (rate('
                                               'http_request_duration_seconds_bucket{job="lb"}[30s]))) < 0.5'), 40)
    rules = request(f"{prom}/api/v1/rules")[1].decode()
    assert all(f'"name":"{alert}"' in rules for alert in ("api_down", "error_rate_high", "response_time_high"))
