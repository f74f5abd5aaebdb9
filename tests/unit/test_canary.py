"""Canary ramp plan and gate: rows exactly at each bound, rows past it, rows with no data."""

from __future__ import annotations

import pytest

from resilience.canary import (
    DEFAULT_STEPS,
    PER_POLL_METRICS,
    FailbackPolicy,
    MetricRange,
    canary_gate,
    check_metric,
    dns_weights,
    failback_ranges,
    ramp_plan,
    stability_checks,
    stability_queries,
)
from resilience.checks import Check

ERROR_DELTA = MetricRange("error rate delta", max=1.0, unit=" %")
P95_RATIO = MetricRange("p95 ratio", max=1.5, unit="x")
SUCCESS = MetricRange("success rate", min=99.0, unit=" %")


def test_default_plan_is_the_runbook_ramp():
    assert ramp_plan(DEFAULT_STEPS) == (10, 25, 50, 75, 100)
    assert dns_weights(25) == {"primary": 25, "dr": 75}


@pytest.mark.parametrize(
    ("steps", "message"),
    [([], "must be a non-empty list"), ([10, 10, 100], "must rise strictly"), ([0, 100], "must rise strictly"),
     ([50, 75], "must end at 100"), ([10, 50.5, 100], "integer weights"), ([20, 10, 100], "must rise strictly")],
)
def test_bad_plans_name_the_param(steps, message):
    with pytest.raises(ValueError, match=rf"params\.steps: .* {message}"):
        ramp_plan(steps)


@pytest.mark.parametrize(
    ("metric", "value", "expected"),
    [
        (ERROR_DELTA, 1.0, Check("error rate delta", True, "error rate delta 1.00 % within range")),
        (ERROR_DELTA, 1.01, Check("error rate delta", False, "Halt: error rate delta 1.01 % > 1 %")),
        (SUCCESS, 99.0, Check("success rate", True, "success rate 99.00 % within range")),
        (SUCCESS, 98.5, Check("success rate", False, "Halt: success rate 98.50 % < 99 %")),
        (P95_RATIO, None, Check("p95 ratio", False, "Halt: no values found for p95 ratio")),
        (P95_RATIO, float("nan"), Check("p95 ratio", False, "Halt: no values found for p95 ratio")),
    ],
)
def test_check_metric(metric, value, expected):
    assert check_metric(metric, value) == expected


def test_gate_advances_holds_then_rolls_back_at_the_threshold():
    metrics = [ERROR_DELTA, P95_RATIO]
    ok = canary_gate(metrics, {"error rate delta": 0.2, "p95 ratio": 1.1}, failed_so_far=0, threshold=2)
    assert (ok.action, ok.failed_checks, ok.reason) == ("advance", 0, "all metric checks passed")
    hold = canary_gate(metrics, {"error rate delta": 3.0, "p95 ratio": 1.1}, failed_so_far=0, threshold=2)
    assert (hold.action, hold.failed_checks, hold.reason) == ("hold", 1, "Halt: error rate delta 3.00 % > 1 %")
    back = canary_gate(metrics, {"error rate delta": 0.1}, failed_so_far=1, threshold=2)
    assert (back.action, back.failed_checks, back.reason) == ("rollback", 2, "Halt: no values found for p95 ratio")


def test_threshold_of_one_rolls_back_on_the_first_failure():
    assert canary_gate([ERROR_DELTA], {"error rate delta": 5.0}, 0, threshold=1).action == "rollback"
    with pytest.raises(ValueError, match="threshold: 0 must be >= 1"):
        canary_gate([ERROR_DELTA], {}, 0, threshold=0)


# -- failback gates (primary vs DR) and the stability window --------------------------------------

def test_failback_ranges_are_relative_to_dr():
    error, p95 = failback_ranges({"error_rate_pct": 0.5, "p95_ms": 100.0}, FailbackPolicy())
    assert (error.name, error.max) == ("error_rate_pct", 1.5)
    assert (p95.name, p95.max) == ("p95_ms", 200.0)


def test_failback_p95_bound_never_tighter_than_the_floor():
    _, p95 = failback_ranges({"error_rate_pct": 0.0, "p95_ms": 4.0}, FailbackPolicy())
    assert p95.max == 50.0


def test_failback_ranges_fall_back_to_absolute_bounds_without_dr_data():
    error, p95 = failback_ranges({"error_rate_pct": None, "p95_ms": float("nan")}, FailbackPolicy())
    assert error.max == 1.0 and p95.max == 10_000.0


def test_a_primary_worse_than_dr_fails_the_gate():
    ranges = failback_ranges({"error_rate_pct": 0.0, "p95_ms": 5.0}, FailbackPolicy())
    decision = canary_gate(ranges, {"error_rate_pct": 4.8, "p95_ms": 6.0}, 0, 1)
    assert decision.action == "rollback"
    assert "error_rate_pct 4.80 % > 1 %" in decision.reason


def test_stability_checks():
    good = stability_checks({"up_min": 1.0, "samples": 100.0, "error_rate_max": 0.1}, 100, 1.0, "100s")
    assert all(c.passed for c in good)
    down = stability_checks({"up_min": 0.0, "samples": 100.0, "error_rate_max": None}, 100, 1.0, "100s")
    assert [c.passed for c in down] == [False, True, True]  # no user traffic: judged on health only
    short = stability_checks({"up_min": 1.0, "samples": 40.0, "error_rate_max": 5.0}, 100, 1.0, "100s")
    assert [c.passed for c in short] == [True, False, False]
    empty = stability_checks({}, 100, 1.0, "100s")
    assert not empty[0].passed and "no up samples" in empty[0].detail


def test_stability_queries_are_subqueries_over_the_window():
    queries = stability_queries('max(up{job="lb"})', "ERR", "7200s", "1s")
    assert queries == {"up_min": 'min_over_time((max(up{job="lb"}))[7200s:1s])',
                       "samples": 'count_over_time((max(up{job="lb"}))[7200s:1s])',
                       "error_rate_max": "max_over_time((ERR)[7200s:1s])"}


def test_a_failure_of_a_metric_not_counted_holds_without_counting():
    ranges = failback_ranges({"error_rate_pct": 0.0, "p95_ms": 5.0}, FailbackPolicy())
    slow = canary_gate(ranges, {"error_rate_pct": 0.0, "p95_ms": 500.0}, 1, 2, counted=PER_POLL_METRICS)
    assert (slow.action, slow.failed_checks) == ("hold", 1)
    erroring = canary_gate(ranges, {"error_rate_pct": 30.0, "p95_ms": 500.0}, 1, 2, counted=PER_POLL_METRICS)
    assert (erroring.action, erroring.failed_checks) == ("rollback", 2)
    judged = canary_gate(ranges, {"error_rate_pct": 0.0, "p95_ms": 500.0}, 1, 2)
    assert judged.action == "rollback"
