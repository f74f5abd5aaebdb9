"""Prometheus hooks and the SLO guard against the lab's real Prometheus (1 s scrape)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from resilience.prometheus import PrometheusError, PrometheusHook, read_slo
from resilience.triggers import SloGuardTrigger

pytestmark = pytest.mark.integration
CONN = "resilience_lab_prometheus"
ERRORS = '(sum(rate(http_requests_total{status=~"5.."}[{window}])) or vector(0))'
TOTAL = "sum(rate(http_requests_total[{window}]))"
QUERIES = {
    "availability_pct": f"100 * (1 - {ERRORS} / {TOTAL})",
    "error_rate_pct": f"100 * {ERRORS} / {TOTAL}",
    "p95_ms": "1000 * histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[{window}])))",
}


def wait_for_traffic(hook, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reading = read_slo(hook, QUERIES, "10s")
        if not reading.missing:
            return reading
        time.sleep(1)
    raise AssertionError(f"no complete SLO reading within {timeout_s} s: {reading.missing}")


def test_hook_reads_real_values(lab):
    hook = PrometheusHook(CONN)
    assert hook.test_connection()[0] is True
    up = hook.query("up")
    assert up and all(v in (0.0, 1.0) for _, v in up)
    reading = wait_for_traffic(hook)
    assert reading.availability_pct == pytest.approx(100.0) and reading.error_rate_pct == pytest.approx(0.0)
    assert 0 < reading.p95_ms < 1000


def test_bad_promql_is_an_error_with_the_status(lab):
    with pytest.raises(PrometheusError, match="^bad_data:"):
        PrometheusHook(CONN).query("sum(")


def test_an_absent_metric_reads_as_missing_not_zero(lab):
    reading = read_slo(PrometheusHook(CONN), {"p95_ms": "sum(rate(no_such_metric_total[{window}]))"}, "5s")
    assert reading.p95_ms is None and reading.missing["p95_ms"] == "empty result"


async def first_event(trigger):
    async for event in trigger.run():
        return event.payload


def guard(queries, seconds):
    return SloGuardTrigger(
        prometheus_conn_id=CONN, queries=queries, window="10s",
        baseline={"availability_pct": 100.0, "error_rate_pct": 0.0, "p95_ms": 20.0}, policy={},
        until=datetime.now(UTC) + timedelta(seconds=seconds), poll_interval_s=0.5, query_timeout_s=2)


def test_guard_holds_on_a_healthy_lab(lab):
    wait_for_traffic(PrometheusHook(CONN))
    event = asyncio.run(first_event(guard(QUERIES, 2)))
    assert event["status"] == "ok", event
    assert event["readings"] >= 3


def test_guard_calls_missing_data_a_breach(lab):
    event = asyncio.run(first_event(guard({**QUERIES, "p95_ms": "sum(rate(no_such_metric_total[{window}]))"}, 5)))
    assert event["status"] == "breach"
    assert "p95_ms missing: empty result" in event["verdict"]["reason"]
