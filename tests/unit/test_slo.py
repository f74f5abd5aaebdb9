"""SLO verdicts: rows exactly at each bound, rows past it, and rows with no data."""

from __future__ import annotations

import pytest

from resilience.slo import (
    Baseline,
    Breach,
    Reading,
    SloPolicy,
    allowed_side,
    baseline_from,
    bounds_looser_than,
    looser_than,
    recovery_seconds,
    slo_verdict,
)

BASE = Baseline(availability_pct=100.0, error_rate_pct=0.5, p95_ms=40.0)
POLICY = SloPolicy()


def reading(availability=100.0, error=0.5, p95=40.0, **missing):
    return Reading(availability, error, p95, missing)


@pytest.mark.parametrize(
    ("r", "breaches"),
    [
        (reading(), ()),
        (reading(availability=99.5), ()),  # exactly at the bound
        (reading(availability=99.49), (Breach("availability_pct", 99.49, 99.5, "availability 99.49 % < 99.5 %"),)),
        (reading(error=1.5), ()),  # baseline 0.5 + 1 point, exactly
        (reading(error=1.51), (Breach("error_rate_pct", 1.51, 1.5,
                                      "error rate 1.51 % > 1.50 % (baseline 0.50 % + 1 point)"),)),
        (reading(p95=80.0), ()),  # 2x baseline, exactly
        (reading(p95=80.5), (Breach("p95_ms", 80.5, 80.0, "p95 80 ms > 80 ms (2x baseline 40 ms, floor 50 ms)"),)),
        (reading(availability=None, availability_pct="NaN (no traffic in the window)"),
         (Breach("availability_pct", None, 99.5, "availability_pct missing: NaN (no traffic in the window)"),)),
        (reading(p95=None, p95_ms="timeout after 0.5 s"),
         (Breach("p95_ms", None, 80.0, "p95_ms missing: timeout after 0.5 s"),)),
    ],
)
def test_slo_verdict(r, breaches):
    verdict = slo_verdict(r, BASE, POLICY)
    assert verdict.breaches == breaches
    assert verdict.passed is (not breaches)


def test_missing_data_passes_only_when_the_policy_says_so():
    r = reading(error=None, error_rate_pct="prometheus error: 503")
    assert not slo_verdict(r, BASE, POLICY).passed
    assert slo_verdict(r, BASE, SloPolicy(missing_data_is_breach=False)).passed


def test_p95_floor_keeps_a_tiny_baseline_from_tripping_on_noise():
    tiny = Baseline(100.0, 0.0, 5.0)
    assert slo_verdict(reading(error=0.0, p95=49.0), tiny, POLICY).passed
    assert slo_verdict(reading(error=0.0, p95=50.0), tiny, POLICY).passed
    assert not slo_verdict(reading(error=0.0, p95=50.1), tiny, POLICY).passed


def test_several_breaches_are_all_reported():
    v = slo_verdict(reading(availability=90.0, error=10.0, p95=500.0), BASE, POLICY)
    assert [b.metric for b in v.breaches] == ["availability_pct", "error_rate_pct", "p95_ms"]
    assert v.reason.startswith("availability 90.00 % < 99.5 %; error rate 10.00 %")


@pytest.mark.parametrize(
    ("values", "errors", "expected_missing"),
    [
        ({"availability_pct": 100.0, "error_rate_pct": 0.0, "p95_ms": 12.0}, {}, {}),
        ({"availability_pct": float("nan"), "error_rate_pct": 0.0, "p95_ms": 12.0}, {},
         {"availability_pct": "NaN (no traffic in the window)"}),
        ({"error_rate_pct": 0.0, "p95_ms": float("inf")}, {},
         {"availability_pct": "empty result", "p95_ms": "infinite (histogram without samples)"}),
        ({"availability_pct": 100.0, "error_rate_pct": 0.0, "p95_ms": 3.0}, {"p95_ms": "timeout after 0.5 s"},
         {"p95_ms": "timeout after 0.5 s"}),
    ],
)
def test_reading_from_raw_values(values, errors, expected_missing):
    r = Reading.from_values(values, errors)
    assert dict(r.missing) == expected_missing
    for metric in expected_missing:
        assert getattr(r, metric) is None


def test_baseline_is_mean_and_median_of_complete_readings():
    rs = [reading(100, 0, 10), reading(99, 1, 30), reading(100, 0, 20), reading(None, 0, 10, availability_pct="x")]
    assert baseline_from(rs) == Baseline(availability_pct=99.66666666666667, error_rate_pct=1 / 3, p95_ms=20)


def test_baseline_is_never_guessed():
    with pytest.raises(ValueError, match=r"no complete reading for a baseline \(1 taken; missing \['p95_ms: empty"):
        baseline_from([reading(p95=None, p95_ms="empty result")])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"max_p95_ratio": 0.5}, r"slo\.max_p95_ratio: 0\.5 is out of range"),
     ({"min_availability_pct": 101}, r"slo\.min_availability_pct: 101 is out of range"),
     ({"p95": 3}, r"slo overrides: unknown key\(s\) \['p95'\]")],
)
def test_bad_overrides_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        POLICY.with_overrides(overrides)


def test_recovery_seconds():
    assert recovery_seconds(100.0, 130.5) == 30.5
    assert recovery_seconds(100.0, None) is None
    assert recovery_seconds(100.0, 99.0) == 0.0


@pytest.mark.parametrize(
    ("bound", "value", "loosest", "looser"),
    [
        ("min_availability_pct", 95.0, 95.0, False),  # exactly at the loosest: allowed
        ("min_availability_pct", 94.99, 95.0, True),
        ("min_availability_pct", 0.0, 95.0, True),
        ("min_availability_pct", 99.9, 95.0, False),  # stricter is always allowed
        ("max_error_rate_increase_pct", 5.0, 5.0, False),
        ("max_error_rate_increase_pct", 5.01, 5.0, True),
        ("max_error_rate_increase_pct", 0.0, 5.0, False),
        ("max_p95_ratio", 10.0, 10.0, False),
        ("max_p95_ratio", 1000.0, 10.0, True),
        ("max_p95_ratio", 1.0, 10.0, False),
        ("max_recovery_s", 600.0, 600.0, False),
        ("max_recovery_s", 600.5, 600.0, True),
    ],
)
def test_looser_than(bound, value, loosest, looser):
    assert looser_than(bound, value, loosest) is looser


def test_looser_than_refuses_a_bound_that_cannot_be_overridden():
    with pytest.raises(ValueError, match=r"bound: 'p95_floor_ms' is not one of \['min_availability_pct'"):
        looser_than("p95_floor_ms", 1.0, 1.0)


LOOSEST = {"min_availability_pct": 95.0, "max_error_rate_increase_pct": 5.0, "max_p95_ratio": 10.0,
           "max_recovery_s": 600.0}


@pytest.mark.parametrize(
    ("policy", "looser"),
    [
        (SloPolicy(), ()),
        (SloPolicy(min_availability_pct=95.0, max_error_rate_increase_pct=5.0, max_p95_ratio=10.0,
                   max_recovery_s=600.0), ()),  # every bound exactly at its loosest
        (SloPolicy(min_availability_pct=0.0, max_p95_ratio=1000.0), ("min_availability_pct", "max_p95_ratio")),
        (SloPolicy(max_error_rate_increase_pct=100.0, max_recovery_s=3600.0),
         ("max_error_rate_increase_pct", "max_recovery_s")),
    ],
)
def test_bounds_looser_than(policy, looser):
    assert bounds_looser_than(policy, LOOSEST) == looser


@pytest.mark.parametrize(("bound", "loosest", "words"), [
    ("min_availability_pct", 95.0, ">= 95"), ("max_p95_ratio", 10.0, "<= 10"), ("max_recovery_s", 600.0, "<= 600")])
def test_allowed_side(bound, loosest, words):
    assert allowed_side(bound, loosest) == words


def test_breached_time_adds_up_over_the_window_and_halts_at_max_breach_s():
    from resilience.slo import SloPolicy, breached_time, halt

    assert breached_time(False, 0.0, 1.0) == 1.0 and breached_time(True, 1.0, 1.0) == 1.0
    assert halt(False, 1.0, SloPolicy())  # the runbook's default: the first breached reading halts
    assert not halt(True, 99.0, SloPolicy())  # a passing reading never halts
    tolerant, breached = SloPolicy(max_breach_s=30), 0.0
    for _ in range(20):  # a breach that flaps (2 s broken, 1 s green) is not forgiven by its green readings
        for passed in (False, False, True):
            breached = breached_time(passed, breached, 1.0)
            if halt(passed, breached, tolerant):
                break
        else:
            continue
        break
    assert breached == 30.0, breached
    with pytest.raises(ValueError, match=r"slo\.max_breach_s: -1 is out of range"):
        SloPolicy(max_breach_s=-1)


def test_steady_state_is_the_campaigns_first_baseline_again_not_the_last_scenarios_aftermath():
    from resilience.slo import Baseline, Reading, unsettled

    first = Baseline(availability_pct=100.0, error_rate_pct=0.0, p95_ms=4.9)
    # the redis-unavailable baseline of the issue: p95 32.9 ms while pod-kill's replicas were still warming up
    assert unsettled(Reading(100.0, 0.0, 32.9), first) == ["p95 32.9 ms > 24.9 ms"]
    assert unsettled(Reading(100.0, 0.0, 22.0), first) == []  # within 20 ms of a few-ms p95: bucket noise
    assert unsettled(Reading(99.0, 1.0, 5.0), first) == ["error rate 1.00 % > 0.50 %", "availability 99.00 % < 99.50 %"]
    assert unsettled(Reading(100.0, 0.0, 150.0), Baseline(100.0, 0.0, 120.0)) == []  # within 1.5x of 120 ms
    assert unsettled(Reading.from_values({"availability_pct": 100.0, "error_rate_pct": 0.0}), first) == [
        "p95_ms: empty result"]
