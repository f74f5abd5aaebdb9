"""verify-slo's decisions (runbook "Key Metrics"): pure functions, standard library only, ``now`` never read.

A value Prometheus could not give (empty result, NaN, infinite, an error or timeout) is *missing*, and a
check with a missing value fails: missing data is never a pass. The runbook's comparisons are kept as
written: p95 < 10 s, p99 < 15 s, error rate < 1 %, availability > 99.9 % and each business rate > its
bound, so exactly at a bound fails; throughput within ±20 % of the previous window (exactly 20 % passes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from resilience.slo import why_missing
from resilience.slo_verify.settings import BusinessMetric
from resilience.units import fmt

TITLES = {"availability_pct": "availability", "error_rate_pct": "error rate", "p95_ms": "p95 latency",
          "p99_ms": "p99 latency", "throughput_rps": "throughput"}
UNITS = {"availability_pct": "%", "error_rate_pct": "%", "p95_ms": "ms", "p99_ms": "ms", "throughput_rps": "req/s"}


@dataclass(frozen=True)
class Measured:
    """One number read from Prometheus, or why there is none."""

    value: float | None
    missing: str | None = None

    @classmethod
    def of(cls, value: float | None, error: str | None = None) -> Measured:
        """From a query's result: None/NaN/inf (or an error) become missing, with the reason."""
        if error is not None:
            return cls(None, error)
        if (why := why_missing(value)) is not None:
            return cls(None, why)
        return cls(float(value))  # type: ignore[arg-type]  # why_missing said it is a number


@dataclass(frozen=True)
class KeyMetricsPolicy:
    """The runbook's "Application Metrics" bounds."""

    max_p95_ms: float = 10_000.0
    max_p99_ms: float = 15_000.0
    max_error_rate_pct: float = 1.0
    max_throughput_change_pct: float = 20.0  # vs the previous window of the same length
    min_availability_pct: float = 99.9  # also the error budget's target


@dataclass(frozen=True)
class SloCheck:
    """One SLO over the window: the value measured (None: no data), the bound, and why in words."""

    metric: str
    title: str
    passed: bool
    measured: float | None
    unit: str
    bound: str  # in words with its unit: "< 10 s", "> 99.9 %", "within ±20 % of 9.70 req/s"
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fmt_bound(value: float, unit: str) -> str:
    """A bound as the runbook writes it: ``10 s``, ``99.9 %``."""
    if unit == "ms":
        return f"{value:g} ms" if value < 1000 else f"{value / 1000:g} s"
    return f"{value:g} {unit}"


def fmt_window(window_s: float) -> str:
    """``24 h``, ``1.5 h``, ``3 min``."""
    return f"{window_s / 3600:g} h" if window_s >= 3600 else f"{window_s / 60:g} min"


def _missing(metric: str, title: str, unit: str, bound: str, measured: Measured) -> SloCheck:
    return SloCheck(metric, title, False, None, unit, bound, f"{title}: no data ({measured.missing})")


def _exact(value: float) -> float:
    """PromQL's float noise taken off before a value meets its bound: a success rate of 100 % comes back as
    100.00000000000001 and would pass "> 100 %"; an SLO bound never needs more than 9 decimals."""
    return round(value, 9)


def below(metric: str, title: str, measured: Measured, bound: float, unit: str) -> SloCheck:
    """Passes when the value is strictly below ``bound``."""
    words = f"< {fmt_bound(bound, unit)}"
    if measured.value is None:
        return _missing(metric, title, unit, words, measured)
    value = _exact(measured.value)
    passed = value < bound
    relation = "<" if passed else ">="
    return SloCheck(metric, title, passed, value, unit, words,
                    f"{title} {fmt(value, unit)} {relation} {fmt_bound(bound, unit)}")


def above(metric: str, title: str, measured: Measured, bound: float, unit: str) -> SloCheck:
    """Passes when the value is strictly above ``bound``."""
    words = f"> {fmt_bound(bound, unit)}"
    if measured.value is None:
        return _missing(metric, title, unit, words, measured)
    value = _exact(measured.value)
    passed = value > bound
    relation = ">" if passed else "<="
    return SloCheck(metric, title, passed, value, unit, words,
                    f"{title} {fmt(value, unit)} {relation} {fmt_bound(bound, unit)}")


def change_pct(current: float, previous: float) -> float:
    """How much ``current`` differs from ``previous``, in % of ``previous`` (> 0 required)."""
    return 100.0 * (current - previous) / previous


def throughput_check(current: Measured, previous: Measured, max_change_pct: float) -> SloCheck:
    """Throughput within ±``max_change_pct`` % of the previous window's (runbook: "Baseline ± 20%").

    No traffic in the previous window leaves nothing to compare with: a failed check, not a pass."""
    metric, title, unit = "throughput_rps", TITLES["throughput_rps"], "req/s"
    if previous.value is None:
        return SloCheck(metric, title, False, current.value, unit, f"within ±{max_change_pct:g} % of the previous "
                        "window", f"{title}: no data in the previous window ({previous.missing}): nothing to "
                        "compare with")
    words = f"within ±{max_change_pct:g} % of {fmt(previous.value, unit)} (previous window)"
    if current.value is None:
        return _missing(metric, title, unit, words, current)
    if previous.value <= 0:
        return SloCheck(metric, title, False, current.value, unit, words,
                        f"{title}: no traffic in the previous window (0 req/s): nothing to compare with")
    change = change_pct(current.value, previous.value)
    passed = abs(change) <= max_change_pct
    relation = "within" if passed else "outside"
    return SloCheck(metric, title, passed, current.value, unit, words,
                    f"{title} {fmt(current.value, unit)}, {change:+.1f} % vs {fmt(previous.value, unit)} in the "
                    f"previous window ({relation} ±{max_change_pct:g} %)")


@dataclass(frozen=True)
class ErrorBudget:
    """The availability SLO's error budget over the window: (1 - target) x window, and what is left of it.

    Consumed = the measured unavailability (100 % - availability) x window; ``left`` is negative when the
    budget is overspent. Every field but the budget is None when availability had no data."""

    target_pct: float
    window_s: float
    budget_min: float
    consumed_min: float | None
    left_min: float | None
    left_pct: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def error_budget(target_pct: float, window_s: float, availability: Measured) -> ErrorBudget:
    """The error budget left after ``availability`` over ``window_s`` against ``target_pct``."""
    if not 0 <= target_pct < 100:
        raise ValueError(f"target_pct: {target_pct!r} must be in [0, 100): a 100 % target has no budget")
    if window_s <= 0:
        raise ValueError(f"window_s: {window_s!r} must be > 0")
    budget_min = (1 - target_pct / 100) * window_s / 60
    if availability.value is None:
        return ErrorBudget(target_pct, window_s, budget_min, None, None, None,
                           f"error budget unknown: availability has no data ({availability.missing})")
    measured = min(max(availability.value, 0.0), 100.0)  # float noise past 100 % is no credit
    # the share of the budget left, from the difference to the target: exactly at the target is exactly 0
    left_pct = 100 * (measured - target_pct) / (100 - target_pct)
    left_min = budget_min * left_pct / 100
    consumed_min = budget_min - left_min
    state = "left" if left_min >= 0 else "overspent"
    return ErrorBudget(target_pct, window_s, budget_min, consumed_min, left_min, left_pct,
                       f"{fmt(abs(left_min), 'min')} of {fmt(budget_min, 'min')} {state} ({left_pct:.1f} %): "
                       f"{fmt(consumed_min, 'min')} consumed over {fmt_window(window_s)} at availability "
                       f"{fmt(availability.value, '%')} (target {target_pct:g} %)")


def budget_left_series(availability: Sequence[tuple[float, float | None]], target_pct: float, window_s: float,
                       step_s: float) -> list[tuple[float, float | None]]:
    """Error budget left (min) after each point of an availability series over the window, each point covering
    ``step_s``: the burn-down of the report's chart. A point without a value consumes nothing and shows as a gap."""
    budget_min = (1 - target_pct / 100) * window_s / 60
    left = budget_min
    points: list[tuple[float, float | None]] = []
    for at, value in availability:
        if value is not None and math.isfinite(value):
            left -= min(max(100.0 - value, 0.0), 100.0) / 100 * step_s / 60
            points.append((at, left))
        else:
            points.append((at, None))
    return points


def coverage_pct(points: Sequence[tuple[float, float | None]], window_s: float, step_s: float) -> float:
    """The share of the window's steps a series has a value for (a lab younger than the window, a Prometheus that
    was down): the report says how much of the window its numbers stand on."""
    expected = max(1, round(window_s / step_s))
    have = sum(1 for _, v in points if v is not None and math.isfinite(v))
    return 100.0 * min(have, expected) / expected


@dataclass(frozen=True)
class Verification:
    """Every check over the window and the error budget; passed only when every check passed."""

    window_s: float
    checks: tuple[SloCheck, ...]
    budget: ErrorBudget
    unmapped: tuple[str, ...] = ()  # runbook business metrics the environment maps no query for

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def reason(self) -> str:
        failed = [c for c in self.checks if not c.passed]
        if not failed:
            return f"all {len(self.checks)} SLOs held over {fmt_window(self.window_s)}"
        return f"{len(failed)} of {len(self.checks)} SLOs failed: " + "; ".join(c.reason for c in failed)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reason": self.reason, "window_s": self.window_s,
                "checks": [c.to_dict() for c in self.checks], "error_budget": self.budget.to_dict(),
                "unmapped_business_metrics": list(self.unmapped)}


# The runbook's "Business Metrics"; an environment maps those its app exports (environments.yaml).
RUNBOOK_BUSINESS_METRICS = ("publishing_success_pct", "upload_success_pct", "webhook_success_pct")


def verify(key: Mapping[str, Measured], previous_throughput: Measured,
           business: Sequence[tuple[BusinessMetric, Measured]], window_s: float,
           policy: KeyMetricsPolicy = KeyMetricsPolicy()) -> Verification:
    """Judge the key metrics (a missing one counts as no data) and the business metrics over one window."""
    def got(metric: str) -> Measured:
        return key.get(metric) or Measured(None, "not measured")

    checks = [
        below("p95_ms", TITLES["p95_ms"], got("p95_ms"), policy.max_p95_ms, "ms"),
        below("p99_ms", TITLES["p99_ms"], got("p99_ms"), policy.max_p99_ms, "ms"),
        below("error_rate_pct", TITLES["error_rate_pct"], got("error_rate_pct"), policy.max_error_rate_pct, "%"),
        throughput_check(got("throughput_rps"), previous_throughput, policy.max_throughput_change_pct),
        above("availability_pct", TITLES["availability_pct"], got("availability_pct"), policy.min_availability_pct,
              "%"),
        *(above(m.name, m.title, measured, m.min_pct, "%") for m, measured in business),
    ]
    mapped = {m.name for m, _ in business}
    return Verification(window_s, tuple(checks),
                        error_budget(policy.min_availability_pct, window_s, got("availability_pct")),
                        tuple(n for n in RUNBOOK_BUSINESS_METRICS if n not in mapped))
