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
WINDOW = "5s"


def lab_queries():
    from resilience.config import load_config

    return dict(load_config().environment("lab").slo.queries)


def wait_reading(hook, green: bool, timeout_s=40):
    """A complete reading (a fresh lab needs two scrapes for rate()); ``green``: and no 5xx in the
    window (earlier tests' faults may still be in it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reading = read_slo(hook, lab_queries(), WINDOW)
        if not reading.missing and (not green or reading.error_rate_pct == 0):
            return reading
        time.sleep(1)
    raise AssertionError(f"no {'green' if green else 'complete'} SLO reading within {timeout_s} s: "
                         f"{reading.to_dict()}")


def test_hook_reads_real_values(lab):
    hook = PrometheusHook(CONN)
    assert hook.test_connection()[0] is True
    up = hook.query('up{job="lb"}')
    assert [v for _, v in up] == [1.0]
    reading = wait_reading(hook, green=False)
    assert 0 <= reading.error_rate_pct <= 100
    assert reading.availability_pct + reading.error_rate_pct == pytest.approx(100.0)
    assert 0 < reading.p95_ms < 10_000


def test_bad_promql_is_an_error_with_the_status(lab):
    with pytest.raises(PrometheusError, match="^bad_data:"):
        PrometheusHook(CONN).query("sum(")


def test_an_absent_metric_reads_as_missing_not_zero(lab):
    reading = read_slo(PrometheusHook(CONN), {"p95_ms": "sum(rate(no_such_metric_total[{window}]))"}, "5s")
    assert reading.p95_ms is None and reading.missing["p95_ms"] == "empty result"


async def first_event(trigger):
    async for event in trigger.run():
        return event.payload


def guard(queries, seconds, baseline=None):
    return SloGuardTrigger(
        prometheus_conn_id=CONN, queries=queries, window=WINDOW,
        baseline=baseline or {"availability_pct": 100.0, "error_rate_pct": 0.0, "p95_ms": 20.0},
        policy={"max_p95_ratio": 5.0},  # a loaded CI machine's latency noise is not what this test is about
        until=datetime.now(UTC) + timedelta(seconds=seconds), poll_interval_s=0.5, query_timeout_s=2)


def test_guard_holds_on_a_healthy_lab(lab):
    steady = wait_reading(PrometheusHook(CONN), green=True)
    baseline = {"availability_pct": steady.availability_pct, "error_rate_pct": 0.0, "p95_ms": steady.p95_ms}
    event = asyncio.run(first_event(guard(lab_queries(), 2, baseline)))
    assert event["status"] == "ok", event
    assert event["readings"] >= 3


def test_guard_calls_missing_data_a_breach(lab):
    queries = {**lab_queries(), "p95_ms": "sum(rate(no_such_metric_total[{window}]))"}
    event = asyncio.run(first_event(guard(queries, 5)))
    assert event["status"] == "breach"
    assert "p95_ms missing: empty result" in event["verdict"]["reason"]


def recovery_watch(reverted_at, green_from):
    """A recovery watch whose error rate, a query on Prometheus' own clock, is 100 % before ``green_from``
    (epoch s) and 0 from then on: what Prometheus records at each past instant is known."""
    from resilience.triggers import SloRecoveryTrigger

    queries = {"availability_pct": "vector(100)", "p95_ms": "vector(20)",
               "error_rate_pct": f"vector(100 * (time() < bool {green_from:.3f}))"}
    return SloRecoveryTrigger(
        prometheus_conn_id=CONN, queries=queries, window=WINDOW,
        baseline={"availability_pct": 100.0, "error_rate_pct": 0.0, "p95_ms": 20.0}, policy={},
        until=datetime.now(UTC) + timedelta(seconds=60), poll_interval_s=1.0, query_timeout_s=2,
        reverted_at=reverted_at)


def test_a_late_recovery_watch_reads_when_the_slos_went_green_from_the_record(lab):
    """Started 30 s after the revert: the recovery is the 10 s Prometheus recorded, not the 30 s it took to look."""
    now = time.time()
    event = asyncio.run(first_event(recovery_watch(reverted_at=now - 30, green_from=now - 20)))
    assert event["status"] == "ok" and event["from_record"] is True, event
    assert 9.5 <= event["recovery_s"] <= 11.0, event


def test_a_late_recovery_watch_with_nothing_green_on_record_waits_for_a_live_green_reading(lab):
    now = time.time()
    event = asyncio.run(first_event(recovery_watch(reverted_at=now - 30, green_from=now + 2)))
    assert event["status"] == "ok" and "from_record" not in event and event["readings"] >= 2, event
    assert 31.5 <= event["recovery_s"] <= 40.0, event
