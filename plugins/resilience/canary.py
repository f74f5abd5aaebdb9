"""Canary ramp back to the primary region: a declared analysis and small pure checks (after Flagger).

The analysis is data: the step weights, the interval, the threshold of failed checks before a
rollback, and each metric's accepted range. A metric with no value is a failed check, never
a pass ("no values found" halts Flagger too). One function compares a value with its range.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
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


def canary_gate(metrics: Iterable[MetricRange], values: Mapping[str, float | None], failed_so_far: int,
                threshold: int) -> GateDecision:
    """One analysis interval: advance when every check passes; otherwise count a failed check and
    roll back once ``threshold`` failed checks have accumulated, else hold the current weight."""
    if threshold < 1:
        raise ValueError(f"threshold: {threshold!r} must be >= 1")
    checks = tuple(check_metric(m, values.get(m.name)) for m in metrics)
    if all(c.passed for c in checks):
        return GateDecision("advance", failed_so_far, checks)
    failed = failed_so_far + 1
    return GateDecision("rollback" if failed >= threshold else "hold", failed, checks)
