"""SLO maths for chaos guardrails (runbook "SLO Compliance"): pure functions, no I/O.

A reading is a handful of numbers taken from Prometheus at one moment. A value that could
not be read (empty result, NaN because there was no traffic, a Prometheus error, a query
timeout) is *missing*, and missing data is a breach unless the policy says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

METRICS = ("availability_pct", "error_rate_pct", "p95_ms")


def why_missing(value: float | None) -> str | None:
    """Why a query's result is not a value (empty, NaN, infinite), or None when it is one."""
    if value is None:
        return "empty result"
    if math.isnan(value):
        return "NaN (no traffic in the window)"
    if math.isinf(value):
        return "infinite (histogram without samples)"
    return None


@dataclass(frozen=True)
class Reading:
    """Guard metrics at one moment; ``missing`` maps a metric to why it has no value."""

    availability_pct: float | None
    error_rate_pct: float | None
    p95_ms: float | None
    missing: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_values(cls, values: Mapping[str, float | None], errors: Mapping[str, str] | None = None) -> Reading:
        """Build from raw query results: None/NaN/inf become missing with a reason."""
        missing = dict(errors or {})
        clean: dict[str, float | None] = {}
        for name in METRICS:
            value = values.get(name)
            if name in missing:
                clean[name] = None
            elif (why := why_missing(value)) is not None:
                clean[name], missing[name] = None, why
            else:
                clean[name] = float(value)  # type: ignore[arg-type]  # why_missing said it is a number
        return cls(**clean, missing=missing)

    def to_dict(self) -> dict[str, Any]:
        return {**{m: getattr(self, m) for m in METRICS}, "missing": dict(self.missing)}


@dataclass(frozen=True)
class Baseline:
    """Steady state measured before the fault."""

    availability_pct: float
    error_rate_pct: float
    p95_ms: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class SloPolicy:
    """The runbook's SLOs, overridable per scenario."""

    min_availability_pct: float = 99.5
    max_error_rate_increase_pct: float = 1.0  # percentage points over the baseline
    max_p95_ratio: float = 2.0
    p95_floor_ms: float = 50.0  # p95 bound = max(ratio x baseline, floor): a 5 ms baseline is noise-bound
    missing_data_is_breach: bool = True
    max_recovery_s: float = 120.0
    # how long the SLOs may be broken in total during a fault before the guard halts: the disruption a
    # scenario is expected to cause (a failover's seconds without a leader); 0 halts at the first breach
    max_breach_s: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "min_availability_pct": 0 <= self.min_availability_pct <= 100,
            "max_error_rate_increase_pct": 0 <= self.max_error_rate_increase_pct <= 100,
            "max_p95_ratio": self.max_p95_ratio >= 1,
            "p95_floor_ms": self.p95_floor_ms >= 0,
            "max_recovery_s": self.max_recovery_s > 0,
            "max_breach_s": self.max_breach_s >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"slo.{name}: {getattr(self, name)!r} is out of range")

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> SloPolicy:
        """A copy with ``overrides`` applied; unknown keys are refused by name."""
        if not overrides:
            return self
        unknown = set(overrides) - set(asdict(self))
        if unknown:
            raise ValueError(f"slo overrides: unknown key(s) {sorted(unknown)}; allowed: {sorted(asdict(self))}")
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The bounds a run (Params) or a scenario may override, and which way each one loosens: a lower
# minimum, or a higher maximum, lets more damage through before the guard reverts.
OVERRIDABLE_BOUNDS = ("min_availability_pct", "max_error_rate_increase_pct", "max_p95_ratio", "max_recovery_s",
                      "max_breach_s")
LOOSER_WHEN_LOWER = frozenset({"min_availability_pct"})


def looser_than(bound: str, value: float, loosest: float) -> bool:
    """True when ``value`` for ``bound`` is looser than ``loosest`` allows; exactly at it is allowed."""
    if bound not in OVERRIDABLE_BOUNDS:
        raise ValueError(f"bound: {bound!r} is not one of {list(OVERRIDABLE_BOUNDS)}")
    return value < loosest if bound in LOOSER_WHEN_LOWER else value > loosest


def allowed_side(bound: str, loosest: float) -> str:
    """What ``loosest`` allows for ``bound``, in words: ``">= 95"`` or ``"<= 10"``."""
    return f"{'>=' if bound in LOOSER_WHEN_LOWER else '<='} {loosest:g}"


def bounds_looser_than(policy: SloPolicy, loosest: Mapping[str, float]) -> tuple[str, ...]:
    """The bounds of ``policy`` looser than ``loosest`` allows (empty: the policy may guard a run)."""
    return tuple(b for b in OVERRIDABLE_BOUNDS if b in loosest and looser_than(b, getattr(policy, b), loosest[b]))


@dataclass(frozen=True)
class Breach:
    """One SLO broken: by which metric, the value, the bound, and why in words."""

    metric: str
    measured: float | None
    bound: float | None
    reason: str


@dataclass(frozen=True)
class SloVerdict:
    passed: bool
    breaches: tuple[Breach, ...]
    bounds: Mapping[str, float]

    @property
    def reason(self) -> str:
        return "all SLOs held" if self.passed else "; ".join(b.reason for b in self.breaches)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reason": self.reason, "bounds": dict(self.bounds),
                "breaches": [asdict(b) for b in self.breaches]}


def slo_bounds(baseline: Baseline, policy: SloPolicy) -> dict[str, float]:
    """The limits a reading must stay within, given the baseline."""
    return {
        "availability_pct": policy.min_availability_pct,
        "error_rate_pct": baseline.error_rate_pct + policy.max_error_rate_increase_pct,
        "p95_ms": max(policy.max_p95_ratio * baseline.p95_ms, policy.p95_floor_ms),
    }


def slo_verdict(reading: Reading, baseline: Baseline, policy: SloPolicy) -> SloVerdict:
    """Compare one reading with the bounds. Exactly at a bound is still within it."""
    bounds = slo_bounds(baseline, policy)
    breaches = []
    for metric in METRICS:
        value = getattr(reading, metric)
        if value is None:
            if policy.missing_data_is_breach:
                why = reading.missing.get(metric, "no value")
                breaches.append(Breach(metric, None, bounds[metric], f"{metric} missing: {why}"))
            continue
        if metric == "availability_pct" and value < bounds[metric]:
            breaches.append(Breach(metric, value, bounds[metric],
                                   f"availability {value:.2f} % < {bounds[metric]:g} %"))
        elif metric == "error_rate_pct" and value > bounds[metric]:
            breaches.append(Breach(metric, value, bounds[metric],
                                   f"error rate {value:.2f} % > {bounds[metric]:.2f} % "
                                   f"(baseline {baseline.error_rate_pct:.2f} % + "
                                   f"{policy.max_error_rate_increase_pct:g} point)"))
        elif metric == "p95_ms" and value > bounds[metric]:
            breaches.append(Breach(metric, value, bounds[metric],
                                   f"p95 {value:.0f} ms > {bounds[metric]:.0f} ms "
                                   f"({policy.max_p95_ratio:g}x baseline {baseline.p95_ms:.0f} ms, "
                                   f"floor {policy.p95_floor_ms:g} ms)"))
    return SloVerdict(not breaches, tuple(breaches), bounds)


def baseline_from(readings: list[Reading]) -> Baseline:
    """Steady state from several readings: mean availability and error rate, median p95.

    Raises ValueError when no reading has every metric: a baseline is never guessed.
    """
    values = [(r.availability_pct, r.error_rate_pct, r.p95_ms) for r in readings if not r.missing]
    complete = [(a, e, p) for a, e, p in values if a is not None and e is not None and p is not None]
    if not complete:
        reasons = sorted({f"{k}: {v}" for r in readings for k, v in r.missing.items()})
        raise ValueError(f"no complete reading for a baseline ({len(readings)} taken; missing {reasons})")
    p95 = sorted(p for _, _, p in complete)
    return Baseline(
        availability_pct=sum(a for a, _, _ in complete) / len(complete),
        error_rate_pct=sum(e for _, e, _ in complete) / len(complete),
        p95_ms=p95[len(p95) // 2],
    )


# How close to the campaign's first baseline a reading must be to count as steady state again: a few-ms
# p95 moves by more than 50 % on noise alone and is interpolated between histogram buckets (5, 10, 25 ms),
# hence the absolute slack as well.
STEADY_P95_RATIO = 1.5
STEADY_P95_SLACK_MS = 20.0
STEADY_RATE_SLACK_PCT = 0.5


def unsettled(reading: Reading, reference: Baseline) -> list[str]:
    """Why ``reading`` is not yet back to the steady state ``reference`` (the campaign's first baseline), or
    [] when it is: a scenario's baseline taken in the previous one's aftermath would loosen its bounds."""
    if reading.missing:
        return [f"{k}: {v}" for k, v in sorted(reading.missing.items())]
    why = []
    p95_bound = max(STEADY_P95_RATIO * reference.p95_ms, reference.p95_ms + STEADY_P95_SLACK_MS)
    if reading.p95_ms is not None and reading.p95_ms > p95_bound:
        why.append(f"p95 {reading.p95_ms:.1f} ms > {p95_bound:.1f} ms")
    ceiling = reference.error_rate_pct + STEADY_RATE_SLACK_PCT
    if reading.error_rate_pct is not None and reading.error_rate_pct > ceiling:
        why.append(f"error rate {reading.error_rate_pct:.2f} % > {ceiling:.2f} %")
    floor = reference.availability_pct - STEADY_RATE_SLACK_PCT
    if reading.availability_pct is not None and reading.availability_pct < floor:
        why.append(f"availability {reading.availability_pct:.2f} % < {floor:.2f} %")
    return why


def recovery_seconds(fault_ended_at_s: float, first_green_at_s: float | None) -> float | None:
    """Seconds from the fault's end to the first all-green reading (None: never green)."""
    if first_green_at_s is None:
        return None
    return max(0.0, first_green_at_s - fault_ended_at_s)


def breached_time(passed: bool, so_far_s: float, interval_s: float) -> float:
    """The SLOs' breached time so far in a fault window, after a reading taken ``interval_s`` after the
    previous one: a breached reading adds that interval (the breach is taken to have held since), a
    passing one adds nothing. Cumulative over the window: a breach that flaps does not start afresh."""
    return so_far_s if passed else so_far_s + interval_s


def halt(passed: bool, breached_s: float, policy: SloPolicy) -> bool:
    """Whether the guard halts on this reading: it breached, and the window's breached time has
    reached ``max_breach_s`` (with 0, the first breached reading halts)."""
    return not passed and breached_s >= policy.max_breach_s
