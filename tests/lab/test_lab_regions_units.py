"""The two regions' pure parts without servers: weighted records, weighted pick, the resolver's last
good answer, load generator series, release histories and validation, a broken release in the app."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from resilience.lab.app import AppConfig, make_server
from resilience.lab.dns_zone import dns_state, parse_weighted, record_changes
from resilience.lab.layout import LabLayout
from resilience.lab.loadgen import LoadMetrics, Resolver, is_loopback, outcome_of, pick_region, usable
from resilience.lab.releases import (
    document,
    ensure_history,
    entry,
    previous_of,
    read_history,
    release_env,
    validate_fail_rate,
    validate_release,
    write_history,
)
from resilience.lab.state import build_state

PRIMARY_ONLY = {"primary": ("127.0.0.1", 100), "dr": ("127.0.0.2", 0)}
DR_ONLY = {"primary": ("127.0.0.1", 0), "dr": ("127.0.0.2", 100)}


def test_weighted_records_are_read_by_name_type_and_set_identifier() -> None:
    rrsets = [
        {"Name": "resilience.lab.", "Type": "NS", "TTL": 172800, "ResourceRecords": [{"Value": "ns-1"}]},
        {"Name": "API.resilience.lab", "Type": "A", "SetIdentifier": "primary", "Weight": 30, "TTL": 1,
         "ResourceRecords": [{"Value": "127.0.0.1"}]},
        {"Name": "api.resilience.lab.", "Type": "A", "SetIdentifier": "dr", "Weight": 70, "TTL": 1,
         "ResourceRecords": [{"Value": "127.0.0.2"}]},
        {"Name": "api.resilience.lab.", "Type": "A", "TTL": 1, "ResourceRecords": [{"Value": "10.0.0.1"}]},
        {"Name": "api.resilience.lab.", "Type": "AAAA", "SetIdentifier": "v6", "Weight": 1,
         "ResourceRecords": [{"Value": "::1"}]},
        {"Name": "www.resilience.lab.", "Type": "A", "SetIdentifier": "x", "Weight": 5,
         "ResourceRecords": [{"Value": "127.0.0.9"}]},
    ]
    assert parse_weighted(rrsets, "api.resilience.lab.") == {"primary": ("127.0.0.1", 30), "dr": ("127.0.0.2", 70)}
    assert parse_weighted([], "api.resilience.lab.") == {}


def test_up_creates_only_the_missing_records_with_the_initial_weights() -> None:
    batch = record_changes(["dr"])
    assert batch["Changes"] == [{"Action": "UPSERT", "ResourceRecordSet": {
        "Name": "api.resilience.lab.", "Type": "A", "SetIdentifier": "dr", "Weight": 0, "TTL": 1,
        "ResourceRecords": [{"Value": "127.0.0.2"}]}}]
    both = record_changes(["primary", "dr"])
    assert [(c["ResourceRecordSet"]["SetIdentifier"], c["ResourceRecordSet"]["Weight"],
             c["ResourceRecordSet"]["ResourceRecords"][0]["Value"]) for c in both["Changes"]] == [
        ("primary", 100, "127.0.0.1"), ("dr", 0, "127.0.0.2")]


def test_lab_json_has_the_dns_block_and_both_regions(tmp_path: Path) -> None:
    layout = LabLayout(tmp_path, 55320)
    assert dns_state(layout)["zone_id"] is None  # before the first `up`
    (tmp_path / "run").mkdir()
    layout.dns_file.write_text(json.dumps({"zone_id": "Z123"}))
    state = build_state(layout, "pw", Path("/usr/lib/postgresql/15/bin"), "postgres")
    assert state["dns"] == {"zone_name": "resilience.lab.", "zone_id": "Z123", "record": "api.resilience.lab.",
                            "targets": {"primary": "127.0.0.1", "dr": "127.0.0.2"}, "port": 55330,
                            "aws_endpoint": "http://127.0.0.1:55324", "ttl_s": 1}
    dr = state["regions"]["dr"]
    assert (dr["url"], dr["on_demand"], dr["s3_endpoint"]) == ("http://127.0.0.2:55330", True,
                                                                "http://127.0.0.1:55324")
    assert dr["lb"]["pid_file"].endswith("run/dr-lb.pid") and dr["supervisor"]["state_file"].endswith(
        "run/supervisor-dr.json")
    assert dr["supervisor"]["metrics_url"] == "http://127.0.0.1:55328/metrics"
    assert [r["name"] for r in dr["replicas"]] == ["dr-1", "dr-2"]
    primary = state["regions"]["primary"]
    assert (primary["url"], primary["s3_endpoint"]) == (state["lb"]["url"], state["s3"]["endpoint"])
    assert state["loadgen"]["metrics_url"] == "http://127.0.0.1:55329/metrics"


def test_weighted_pick_follows_the_weights() -> None:
    rng = random.Random(11)
    assert {pick_region(PRIMARY_ONLY, rng) for _ in range(200)} == {"primary"}
    assert {pick_region(DR_ONLY, rng) for _ in range(200)} == {"dr"}
    split = [pick_region({"primary": ("127.0.0.1", 30), "dr": ("127.0.0.2", 70)}, rng) for _ in range(4000)]
    assert 0.26 < split.count("primary") / len(split) < 0.34
    assert pick_region({"primary": ("127.0.0.1", 0), "dr": ("127.0.0.2", 0)}, rng) is None
    assert pick_region({}, rng) is None


def test_an_answer_is_usable_only_on_this_machine_with_some_weight() -> None:
    assert usable(PRIMARY_ONLY) is None
    assert usable({"primary": ("127.0.0.1", 0), "dr": ("127.0.0.2", 0)}) == "every weight is 0"
    assert usable({"primary": ("10.1.2.3", 100)}) == "answers off this machine (primary=10.1.2.3)"
    assert usable({}) == "no weighted record"
    assert is_loopback("127.0.0.2") and is_loopback("127.255.0.1") and is_loopback("localhost")
    assert not is_loopback("128.0.0.1") and not is_loopback("example.com") and not is_loopback(None)


def test_outcome_is_the_status_class_or_error_when_no_answer_came() -> None:
    assert [outcome_of(s) for s in (200, 201, 404, 500, 503, None)] == ["2xx", "2xx", "4xx", "5xx", "5xx", "error"]


def test_load_generator_series_exist_at_zero_from_the_start() -> None:
    metrics = LoadMetrics()
    text = generate_latest(metrics.registry).decode()
    for region in ("primary", "dr"):
        for outcome in ("2xx", "4xx", "5xx", "error"):
            assert f'loadgen_requests_total{{outcome="{outcome}",region="{region}"}} 0.0' in text
        assert f'loadgen_dns_weight{{region="{region}"}} 0.0' in text
    metrics.set_weights(DR_ONLY)
    text = generate_latest(metrics.registry).decode()
    assert 'loadgen_dns_weight{region="dr"} 100.0' in text and 'loadgen_dns_weight{region="primary"} 0.0' in text


def test_resolver_keeps_the_last_good_answer_and_logs_each_change_once(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[dict] = []
    resolver = Resolver(None, 1.0, seen.append)
    with caplog.at_level(logging.INFO, logger="resilience.lab.loadgen"):
        assert resolver.accept(PRIMARY_ONLY) and resolver.accept(PRIMARY_ONLY)
        zero = {"primary": ("127.0.0.1", 0), "dr": ("127.0.0.2", 0)}
        assert not resolver.accept(zero) and not resolver.accept(zero)
        assert not resolver.accept({"primary": ("192.0.2.1", 100)})
        assert resolver.answer == PRIMARY_ONLY
        assert resolver.accept(DR_ONLY)
    assert seen == [PRIMARY_ONLY, DR_ONLY]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("DNS answer changed" in m for m in messages) == 2
    assert sum("every weight is 0" in m for m in messages) == 1  # once per failure, not per lookup
    assert sum("off this machine" in m for m in messages) == 1
    assert sum("answer again" in m for m in messages) == 1


def test_resolver_looks_up_in_a_worker_thread_and_survives_failures() -> None:
    answers: list[object] = [RuntimeError("moto restarted"), PRIMARY_ONLY]
    threads: list[str] = []

    def lookup() -> dict:
        threads.append(threading.current_thread().name)
        time.sleep(0.2)  # a slow Route53 answer must not stall the requests
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    async def scenario() -> tuple[int, dict, str | None]:
        resolver = Resolver(lookup, 1.0, lambda answer: None)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await resolver.refresh()
        failing = resolver.failing
        await resolver.refresh()
        task.cancel()
        return ticks, resolver.answer, failing

    ticks, answer, failing = asyncio.run(scenario())
    assert answer == PRIMARY_ONLY and failing == "RuntimeError: moto restarted"
    assert ticks > 15  # the event loop kept running during both lookups
    assert threads and all(name.startswith("dns") for name in threads)


@pytest.mark.parametrize("release", ["", "v 2", "v2/evil", "x" * 65, None, 3])
def test_a_bad_release_name_is_refused_naming_the_argument(release: object) -> None:
    with pytest.raises(ValueError, match=r"^release: .* is not 1\.\.64 characters of \[A-Za-z0-9\._-\]"):
        validate_release(release)


@pytest.mark.parametrize("fail_rate", [-0.1, 1.01, math.nan, "0.5", True, None])
def test_a_bad_fail_rate_is_refused_naming_the_argument(fail_rate: object) -> None:
    with pytest.raises(ValueError, match=r"^fail_rate: .* is not a number in 0\.\.1"):
        validate_fail_rate(fail_rate)


def test_valid_releases_and_fail_rates_pass() -> None:
    assert validate_release("v2.1-rc_3") == "v2.1-rc_3"
    assert validate_fail_rate(0) == 0.0 and validate_fail_rate(1) == 1.0 and validate_fail_rate(0.25) == 0.25


def test_previous_release_skips_rolled_back_ones_and_the_current_one() -> None:
    v1, v2, v3 = entry("v1", 0.0), entry("v2", 1.0), entry("v3", 0.5)
    assert previous_of([v1]) is None
    assert previous_of([v1, v2]) == v1
    assert previous_of([v1, v2, v3]) == v2
    after_rollback = [v1, {**v2, "rolled_back": True}, entry("v1", 0.0, rollback_of="v2")]
    assert previous_of(after_rollback) is None  # v2 was rolled back; v1 is what runs
    redeployed = [v1, entry("v2", 0.0), entry("v2", 1.0)]  # same name, other fail rate: a different release
    assert previous_of(redeployed)["fail_rate"] == 0.0
    doc = document([v1, v2])
    assert (doc["current"], doc["previous"], doc["history"]) == (v2, v1, [v1, v2])


def test_release_history_starts_at_v1_and_feeds_the_replicas_env(tmp_path: Path) -> None:
    layout = LabLayout(tmp_path, 55320)
    assert [e["release"] for e in read_history(layout, "dr")] == ["v1"]
    assert not layout.releases_file("dr").exists()
    ensure_history(layout, "dr")
    assert layout.releases_file("dr") == tmp_path / "run" / "releases-dr.json"
    history = read_history(layout, "dr")
    assert [(e["release"], e["fail_rate"]) for e in history] == [("v1", 0.0)]
    write_history(layout, "dr", [*history, entry("v2", 0.25)])
    assert release_env(layout, "dr") == {"RESILIENCE_APP_RELEASE": "v2", "RESILIENCE_APP_FAIL_RATE": "0.25"}
    assert release_env(layout, "primary") == {"RESILIENCE_APP_RELEASE": "v1", "RESILIENCE_APP_FAIL_RATE": "0.0"}
    with pytest.raises(ValueError, match="region: 'eu' is not one of primary, dr"):
        layout.releases_file("eu")


def test_app_config_reads_release_and_refuses_a_bad_fail_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESILIENCE_APP_DSN", "postgresql://x@127.0.0.1:1/app")
    monkeypatch.setenv("RESILIENCE_APP_RELEASE", "v7")
    monkeypatch.setenv("RESILIENCE_APP_FAIL_RATE", "0.5")
    config = AppConfig.from_env(0)
    assert (config.release, config.fail_rate) == ("v7", 0.5)
    monkeypatch.delenv("RESILIENCE_APP_RELEASE")
    monkeypatch.delenv("RESILIENCE_APP_FAIL_RATE")
    assert (AppConfig.from_env(0).release, AppConfig.from_env(0).fail_rate) == ("v1", 0.0)
    monkeypatch.setenv("RESILIENCE_APP_FAIL_RATE", "lots")
    with pytest.raises(ValueError, match="RESILIENCE_APP_FAIL_RATE: 'lots' is not a number in 0..1"):
        AppConfig.from_env(0)


def _call(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_a_broken_release_fails_api_requests_but_passes_health() -> None:
    config = AppConfig(dsn="postgresql://postgres:s3cret@127.0.0.1:1/app", port=0, release="v2", fail_rate=1.0)
    server = make_server(config)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, headers, _ = _call(f"{base}/health")
        assert (status, headers["X-App-Release"], headers["X-App-Fail-Rate"]) == (200, "v2", "1.0")
        answers = [_call(f"{base}/api/posts?limit=5") for _ in range(5)]
        assert {a[0] for a in answers} == {500}
        assert json.loads(answers[0][2]) == {"error": "release v2 failed this request (injected)"}
        assert _call(f"{base}/no/such/path")[0] == 404  # only real /api routes fail
        metrics = _call(f"{base}/metrics")[2].decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'app_release_info{release="v2"} 1.0' in metrics
    assert 'http_requests_total{method="GET",path="/api/posts",status="500"} 5.0' in metrics
