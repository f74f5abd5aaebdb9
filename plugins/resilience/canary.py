"""Canary ramp back to the primary region: a declared analysis and small pure checks (after Flagger).

The analysis is data: the step weights, the interval, the threshold of failed checks before a
rollback, and each metric's accepted range. A metric with no value is a failed check, never
a pass ("no values found" halts Flagger too). One function compares a value with its range.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from resilience.checks import Check

DEFAULT_STEPS = (10, 25, 50, 75, 100)


@dataclass(frozen=True)
class MetricRange:
    """A metric's accepted ``[min, max]`` (either end open); ``unit`` for messages."""

    name: str
    min: float | None = None
    max: float | None = None
    unit: str = ""


@dataclass(frozen=True)
class GateDecision:
    action: str  # advance | hold | rollback
    failed_checks: int
    checks: tuple[Check, ...]

    @property
    def reason(self) -> str:
        bad = [c.detail for c in self.checks if not c.passed]
        return "; ".join(bad) if bad else "all metric checks passed"


def ramp_plan(steps: Iterable[int]) -> tuple[int, ...]:
    """Validate the primary's traffic weights per step: integers rising strictly to 100."""
    plan = tuple(steps)
    if not plan or any(isinstance(w, bool) or not isinstance(w, int) for w in plan):
        raise ValueError(f"params.steps: {list(plan)!r} must be a non-empty list of integer weights")
    if any(not 1 <= w <= 100 for w in plan) or any(b <= a for a, b in zip(plan, plan[1:], strict=False)):
        raise ValueError(f"params.steps: {list(plan)!r} must rise strictly within 1..100")
    if plan[-1] != 100:
        raise ValueError(f"params.steps: {list(plan)!r} must end at 100 (all traffic on the primary)")
    return plan


def dns_weights(primary_pct: int) -> dict[str, int]:
    """Route53 weights for a step: the primary's share and the DR region's remainder."""
    return {"primary": primary_pct, "dr": 100 - primary_pct}


def check_metric(metric: MetricRange, value: float | None) -> Check:
    """Within the range passes; outside it, or no value, fails with the value and the bound."""
    if value is None or math.isnan(value):
        return Check(metric.name, False, f"Halt: no values found for {metric.name}")
    if metric.min is not None and value < metric.min:
        return Check(metric.name, False, f"Halt: {metric.name} {value:.2f}{metric.unit} < {metric.min:g}{metric.unit}")
    if metric.max is not None and value > metric.max:
        return Check(metric.name, False, f"Halt: {metric.name} {value:.2f}{metric.unit} > {metric.max:g}{metric.unit}")
    return Check(metric.name, True, f"{metric.name} {value:.2f}{metric.unit} within range")


# What the ramp judges at every poll: a broken release fails the error rate at once and keeps failing it. A
# p95 over the few requests a step's first seconds bring a freshly started primary is noise (bench/canary.py:
# 14 false rollbacks in 20 healthy ramps when every reading counted), so latency counts once per interval.
PER_POLL_METRICS = frozenset({"error_rate_pct"})


def canary_gate(metrics: Iterable[MetricRange], values: Mapping[str, float | None], failed_so_far: int,
                threshold: int, counted: Collection[str] | None = None) -> GateDecision:
    """One check: advance when every metric passes; otherwise count a failed check and roll back once
    ``threshold`` failed checks have accumulated, else hold the current weight. ``counted`` names the
    metrics whose failure counts in this check (None: all); another's failure holds the step uncounted."""
    if threshold < 1:
        raise ValueError(f"threshold: {threshold!r} must be >= 1")
    checks = tuple(check_metric(m, values.get(m.name)) for m in metrics)
    if all(c.passed for c in checks):
        return GateDecision("advance", failed_so_far, checks)
    if counted is not None and all(c.passed or c.name not in counted for c in checks):
        return GateDecision("hold", failed_so_far, checks)
    failed = failed_so_far + 1
    return GateDecision("rollback" if failed >= threshold else "hold", failed, checks)


def only_no_data(decision: GateDecision) -> bool:
    """Every failed check of ``decision`` is a metric with no value (a step's warm-up forgives those)."""
    return all(c.passed or c.detail.startswith("Halt: no values found") for c in decision.checks)


@dataclass(frozen=True)
class FailbackPolicy:
    """How much worse than DR the primary may be during the ramp (absolute bounds when DR has no data)."""

    max_error_rate_delta_pct: float = 1.0  # percentage points above DR's error rate
    max_p95_ratio: float = 2.0  # times DR's p95
    p95_floor_ms: float = 50.0  # a p95 bound never tighter than this (lab latencies are a few ms: noise)
    max_error_rate_pct: float = 1.0  # the bound when DR has no traffic to compare with (the runbook's < 1 %)
    max_p95_ms: float = 10_000.0  # idem: the runbook's P95 < 10 s


def failback_ranges(dr_values: Mapping[str, float | None], policy: FailbackPolicy) -> tuple[MetricRange, ...]:
    """The primary's accepted error rate and p95 for this check, relative to DR's current values."""
    dr_error, dr_p95 = dr_values.get("error_rate_pct"), dr_values.get("p95_ms")
    error_max = (policy.max_error_rate_pct if dr_error is None or math.isnan(dr_error)
                 else dr_error + policy.max_error_rate_delta_pct)
    p95_max = (policy.max_p95_ms if dr_p95 is None or math.isnan(dr_p95)
               else max(dr_p95 * policy.max_p95_ratio, policy.p95_floor_ms))
    return (MetricRange("error_rate_pct", max=error_max, unit=" %"), MetricRange("p95_ms", max=p95_max, unit=" ms"))


def stability_checks(values: Mapping[str, float | None], expected_samples: float, max_error_rate_pct: float,
                     window: str) -> tuple[Check, ...]:
    """Has the primary been up, with few errors, for the whole window (and does Prometheus cover it)?"""
    def value(name: str) -> float | None:
        v = values.get(name)
        return None if v is None or math.isnan(v) else v

    up_min, samples, error_max = value("up_min"), value("samples"), value("error_rate_max")
    if error_max is None:  # DNS sends the primary no users while DR serves: its health checks still count
        errors = Check("primary error rate stayed low", True, f"no user traffic on the primary over {window}: "
                       "judged on health only")
    else:
        errors = Check("primary error rate stayed low", error_max <= max_error_rate_pct,
                       f"max error rate {error_max:.2f} % over {window} (bound {max_error_rate_pct:g} %)")
    return (
        Check("primary up for the whole window", up_min is not None and up_min >= 1,
              f"min(up) over {window} = {up_min}" if up_min is not None else f"no up samples over {window}"),
        Check("metrics cover the whole window", samples is not None and samples >= 0.9 * expected_samples,
              f"{samples or 0:g} samples of {expected_samples:g} expected over {window}"),
        errors,
    )


def stability_queries(up_query: str, error_rate_query: str, window: str, step: str) -> dict[str, str]:
    """Subqueries over the stability window: the lowest ``up``, how many samples, the worst error rate."""
    return {"up_min": f"min_over_time(({up_query})[{window}:{step}])",
            "samples": f"count_over_time(({up_query})[{window}:{step}])",
            "error_rate_max": f"max_over_time(({error_rate_query})[{window}:{step}])"}
