"""Lab v2 components without servers: cache + breaker, S3 retries, routes, fault API validation,
load balancer rotation, load generator guard, cgroup detection, node settings per role."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from resilience.lab.app_cache import CircuitBreaker, ReadThroughCache
from resilience.lab.app_handlers import DemoApp
from resilience.lab.app_metrics import AppMetrics
from resilience.lab.app_s3 import ObjectStore, S3Settings, S3Unavailable
from resilience.lab.errors import LabError
from resilience.lab.layout import LabLayout
from resilience.lab.lb import Backend, LoadBalancer
from resilience.lab.loadgen import check_loopback, pick
from resilience.lab.memhog import _check, own_memory_cgroup
from resilience.lab.patroni_cluster import node_config
from resilience.lab.s3_proxy import FaultState, parse_fault


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FlakyRedis:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.down = False
        self.calls = 0

    def get(self, key: str) -> bytes | None:
        self.calls += 1
        if self.down:
            raise ConnectionError("refused")
        return self.data.get(key)

    def set(self, key: str, value: bytes, px: int) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionError("refused")
        self.data[key] = value


class FakeDb:
    def __init__(self) -> None:
        self.reads = 0
        self.uploads: list[tuple[str, int, str]] = []

    def recent_posts(self, limit: int) -> list[dict[str, Any]]:
        self.reads += 1
        return [{"id": 1, "body": "hello"}][:limit]

    def record_upload(self, key: str, size: int, sha256: str) -> dict[str, Any]:
        self.uploads.append((key, size, sha256))
        return {"id": len(self.uploads), "s3_key": key, "size_bytes": size, "sha256": sha256}


def test_cache_failure_degrades_to_the_database_and_the_breaker_skips_redis_for_a_while() -> None:
    clock, redis, db, metrics = Clock(), FlakyRedis(), FakeDb(), AppMetrics()
    errors: list[str] = []
    cache = ReadThroughCache(redis, 1.0, CircuitBreaker(1.0, clock), on_error=errors.append)
    app = DemoApp(db, metrics, cache)
    assert app.list_posts({}, b"") == (200, {"posts": [{"id": 1, "body": "hello"}], "cache": "miss"})
    assert app.list_posts({}, b"")[1]["cache"] == "hit" and db.reads == 1
    redis.down = True
    redis.data.clear()
    assert app.list_posts({}, b"") == (200, {"posts": [{"id": 1, "body": "hello"}], "cache": "error"})
    calls = redis.calls
    assert [app.list_posts({}, b"")[1]["cache"] for _ in range(5)] == ["bypass"] * 5
    assert redis.calls == calls and errors == ["get"]  # no Redis call while the breaker is open
    clock.now += 1.01
    redis.down = False
    assert app.list_posts({}, b"")[1]["cache"] == "miss"  # closed again after open_s
    assert app.list_posts({}, b"")[1]["cache"] == "hit"


class FakeS3:
    def __init__(self, answers: list[int]) -> None:
        self.answers = answers
        self.puts: list[dict[str, Any]] = []

    def put_object(self, **kwargs: Any) -> None:
        status = self.answers.pop(0) if self.answers else 200
        self.puts.append(kwargs)
        if status != 200:
            raise ClientError({"Error": {"Code": "SlowDown" if status == 503 else "AccessDenied"},
                               "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def store_for(client: FakeS3, sleeps: list[float], retries: list[int]) -> ObjectStore:
    settings = S3Settings("http://127.0.0.1:1", "uploads", "us-east-1", "k", "s")
    return ObjectStore(settings, client_factory=lambda s: client, sleep=sleeps.append,
                       on_retry=lambda: retries.append(1))


def test_s3_put_retries_5xx_with_exponential_backoff() -> None:
    sleeps: list[float] = []
    retries: list[int] = []
    client = FakeS3([503, 500])
    assert store_for(client, sleeps, retries).put("k1", b"x", "ab") == 3
    assert sleeps == [0.05, 0.1] and len(retries) == 2 and len(client.puts) == 3
    assert client.puts[0]["Metadata"] == {"sha256": "ab"}


def test_s3_put_gives_up_after_four_attempts_and_never_retries_a_4xx() -> None:
    sleeps: list[float] = []
    with pytest.raises(S3Unavailable, match=r"after 4 attempt\(s\): HTTP 503 SlowDown") as failed:
        store_for(FakeS3([503] * 4), sleeps, []).put("k", b"x", "ab")
    assert failed.value.attempts == 4 and sleeps == [0.05, 0.1, 0.2]
    with pytest.raises(S3Unavailable, match=r"after 1 attempt\(s\): HTTP 403"):
        store_for(FakeS3([403]), [], []).put("k", b"x", "ab")


def test_upload_is_recorded_only_after_s3_accepted_it() -> None:
    db = FakeDb()
    app = DemoApp(db, AppMetrics(), store=store_for(FakeS3([503] * 4), [], []))
    status, body = app.create_upload({}, b"payload")
    assert (status, body["attempts"], db.uploads) == (503, 4, [])
    app = DemoApp(db, AppMetrics(), store=store_for(FakeS3([503]), [], []))
    status, body = app.create_upload({}, b"payload")
    digest = hashlib.sha256(b"payload").hexdigest()
    assert (status, body["attempts"], body["sha256"]) == (201, 2, digest)
    assert db.uploads == [(body["s3_key"], 7, digest)] and body["s3_key"].startswith("uploads/")
    assert DemoApp(db, AppMetrics()).create_upload({}, b"x")[0] == 503


@pytest.mark.parametrize(("doc", "message"), [
    ({"error_rate": 1.5}, r"error_rate: 1\.5 is not a number in 0\.\.1"),
    ({"error_rate": True}, r"error_rate: True is not a number"),
    ({"error_rate": 0.5, "status": 404}, r"status: 404 is not an integer in 500\.\.599"),
    ({"error_rate": 0.5, "rate": 1}, r"unknown field\(s\) rate"),
    ([0.5], r"body: must be a JSON object"),
    ({"error_rate": 0.5, "expires_at": "soon"}, r"expires_at: 'soon' is not UTC epoch seconds"),
    ({"error_rate": 0.5, "expires_at": 999.0}, r"expires_at: 999\.0 is not in the future \(now 1000\.000\)"),
    ({"error_rate": 0.5, "expires_at": 1000.0}, r"expires_at: 1000\.0 is not in the future"),  # exactly now
])
def test_fault_api_refuses_bad_input(doc: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fault(doc, now_s=1000.0)


def test_fault_api_accepts_a_rate_and_keeps_the_status_when_not_given() -> None:
    assert parse_fault({"error_rate": 0.25}, current_status=500) == (0.25, 500, None)
    assert parse_fault({"error_rate": 1, "status": 599}) == (1.0, 599, None)
    assert parse_fault({"error_rate": 1, "expires_at": 1000.5}, now_s=1000.0) == (1.0, 503, 1000.5)
    assert parse_fault({"error_rate": 0, "expires_at": 5}, now_s=1000.0) == (0.0, 503, 5.0)  # turning off


@pytest.mark.parametrize(("rate", "expires_at", "now_s", "expired", "after"), [
    (0.5, 1000.0, 999.9, False, {"error_rate": 0.5, "expires_at": 1000.0, "expired_at": None}),
    (0.5, 1000.0, 1000.0, True, {"error_rate": 0.0, "expires_at": None, "expired_at": 1000.0}),  # at the bound
    (0.5, None, 9e9, False, {"error_rate": 0.5, "expires_at": None, "expired_at": None}),  # no dead-man
    (0.0, 1000.0, 2000.0, False, {"error_rate": 0.0, "expires_at": 1000.0, "expired_at": None}),  # nothing on
])
def test_a_fault_past_its_expiry_is_turned_off(rate: float, expires_at: float | None, now_s: float,
                                               expired: bool, after: dict[str, Any]) -> None:
    state = FaultState(error_rate=rate, expires_at=expires_at)
    assert state.expire(now_s) is expired
    assert {k: v for k, v in state.as_dict().items() if k in after} == after


def test_load_balancer_rotates_over_healthy_backends_only() -> None:
    backends = [Backend(f"app-{i}", f"http://127.0.0.1:{i}", healthy=True) for i in (1, 2, 3)]
    lb = LoadBalancer(backends)
    assert [lb.candidates()[0].name for _ in range(6)] == ["app-1", "app-2", "app-3"] * 2
    backends[1].healthy = False  # tried last only: refused connections cost nothing
    assert [[b.name for b in lb.candidates()] for _ in range(2)] == [["app-1", "app-3", "app-2"],
                                                                       ["app-3", "app-1", "app-2"]]
    for backend in backends:
        backend.healthy = False
    assert len(lb.candidates()) == 3  # nobody known healthy: try them all rather than refuse


def test_load_generator_sends_only_to_loopback_and_mixes_requests() -> None:
    assert check_loopback("http://127.0.0.1:54330/") == "http://127.0.0.1:54330"
    assert check_loopback("http://127.0.0.2:54330") == "http://127.0.0.2:54330"  # the DR region's entry point
    for url in ("http://10.0.0.1:80", "https://127.0.0.1:1", "http://example.com", "http://128.0.0.1:1"):
        with pytest.raises(ValueError, match=r"is not an http:// URL on 127\.0\.0\.0/8"):
            check_loopback(url)
    rng = random.Random(7)
    kinds = [pick(rng)[:2] for _ in range(2000)]
    share = {k: kinds.count(k) / len(kinds) for k in set(kinds)}
    assert share[("GET", "/api/posts?limit=20")] > 0.8
    assert 0.07 < share[("POST", "/api/posts")] < 0.13 and 0.03 < share[("POST", "/api/uploads")] < 0.07


def test_memory_hog_needs_the_cgroups_v1_memory_controller(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice\n")
    with pytest.raises(LabError, match="cgroups v1 memory controller is not available"):
        own_memory_cgroup(proc, tmp_path)
    proc.write_text("4:memory:/box/one\n1:cpu:/\n")
    (tmp_path / "box" / "one").mkdir(parents=True)
    with pytest.raises(LabError, match="has no memory.limit_in_bytes"):
        own_memory_cgroup(proc, tmp_path)
    (tmp_path / "box" / "one" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert own_memory_cgroup(proc, tmp_path) == tmp_path / "box" / "one"
    with pytest.raises(ValueError, match="name: 'Bad Name' must be"):
        _check("Bad Name", 64, 128)
    with pytest.raises(ValueError, match="hog_mb: 0 is not an integer"):
        _check("hog", 64, 0)


def test_each_node_is_a_patroni_member_that_archives_its_own_wal_to_the_repo(tmp_path: Path) -> None:
    layout = LabLayout(tmp_path, 55320)
    a, b = node_config(layout, "a"), node_config(layout, "b")
    assert (a["name"], b["name"], a["scope"]) == ("node-a", "node-b", "app")
    assert (a["restapi"]["listen"], b["restapi"]["listen"]) == ("127.0.0.1:55352", "127.0.0.1:55353")
    assert a["etcd3"]["hosts"] == "127.0.0.1:55350" and a["postgresql"]["listen"] == "127.0.0.1:55321"
    dcs = a["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is True and dcs["postgresql"]["use_pg_rewind"] is True
    assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]  # Patroni's own rule
    params = a["postgresql"]["parameters"]
    assert f"--pg1-path={tmp_path}/pg/node-a/data archive-push %p" in params["archive_command"]
    assert a["postgresql"]["create_replica_methods"] == ["pgbackrest", "basebackup"]
    assert "--delta restore" in a["postgresql"]["pgbackrest"]["command"]
    assert "password" not in str(a["postgresql"]["authentication"])  # from the environment only


def test_the_fault_keeps_its_own_record_of_when_it_went_on_and_off() -> None:
    """What a benchmark reads as "reverted", whoever reverted it: a PUT, or the proxy's own expiry."""
    from resilience.lab.s3_proxy import HISTORY

    state = FaultState()
    state.set(1.0, 503, 1010.0, now_s=1000.0)
    state.set(0.0, 503, None, now_s=1004.5)
    state.set(0.5, 500, 1020.0, now_s=1006.0)
    assert state.expire(1030.0)
    assert [(c["at"], c["error_rate"], c["by"]) for c in state.as_dict()["changes"]] == [
        (1000.0, 1.0, "put"), (1004.5, 0.0, "put"), (1006.0, 0.5, "put"), (1020.0, 0.0, "expiry")]
    for n in range(HISTORY + 5):
        state.set(0.1, 503, None, now_s=2000.0 + n)
    changes = state.as_dict()["changes"]
    assert len(changes) == HISTORY and changes[-1]["at"] == 2000.0 + HISTORY + 4  # bounded, newest kept
