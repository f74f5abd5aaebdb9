"""The runbook's expectations of each scenario as checks: declared in scenarios.yaml, measured after the
fault, judged here (pure functions, no I/O).

A measure comes from one of three places:
- ``fault``: what the fault's revert observed (``Fault.measurements``), e.g. how long the replacements
  took to be ready, acknowledged writes lost;
- ``window``: a PromQL query of the environment (``slo.window_queries``) over the fault window, e.g. the
  error rate or the uploads' success rate while the fault was on;
- ``platform``: a platform capability asked after the fault about its window, e.g. the uploads the app
  acknowledged read back from the bucket.

A check with no data fails, as for the SLO guard. A check marked ``optional`` ("if the platform exposes
it") whose measure the environment does not provide is reported as not measured and does not decide.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from resilience.units import fmt

if TYPE_CHECKING:
    from resilience.platforms.base import Capability

Source = Literal["fault", "window", "platform"]
Op = Literal["max", "min", "max_x_baseline"]
OPS: tuple[Op, ...] = ("max", "min", "max_x_baseline")


@dataclass(frozen=True)
class Measure:
    label: str
    unit: str  # "s", "ms", "%", "" (a count)
    source: Source
    needs: Capability | None = None  # the capability a ``platform`` measure reads (required at the run's start)


MEASURES: dict[str, Measure] = {
    "replacements_ready_s": Measure("replacements ready after the deletion", "s", "fault"),
    "error_rate_pct": Measure("error rate during the fault", "%", "window"),
    "p95_ms": Measure("p95 latency during the fault", "ms", "window"),
    "http_5xx": Measure("5xx answers to clients during the fault", "", "window"),
    "db_connections_pct": Measure("database connections in use, of max_connections (peak)", "%", "window"),
    "db_cpu_pct": Measure("database CPU (peak)", "%", "window"),
    "upload_success_pct": Measure("upload success rate during the fault", "%", "window"),
    "uploads_total": Measure("uploads answered during the fault (the success rate's sample)", "", "window"),
    "s3_retries": Measure("S3 requests retried by the app", "", "window"),
    "uploads_corrupt": Measure("acknowledged uploads missing or not matching their checksum", "", "platform",
                               needs="upload_audit"),
    "failover_s": Measure("failover (a new writable leader)", "s", "fault"),
    "acked_writes_lost": Measure("acknowledged writes lost", "", "fault"),
    "writes_after_failover": Measure("writes acknowledged after the failover", "", "fault"),
    "hog_oom_kills": Measure("OOM kills of the test process", "", "fault"),
    "app_replicas_disturbed": Measure("app replicas restarted, replaced or gone", "", "fault"),
}

# p95 bounds relative to the baseline never go below this: a few-ms p95 doubles on noise alone (the
# SLO guard's p95_floor_ms, for the same reason)
P95_FLOOR_MS = 50.0


@dataclass(frozen=True)
class Measurement:
    """A measured value (None: no data) and what explains it in the report."""

    value: float | None
    detail: str = ""
    samples: int | None = None  # how many events a percentage is of (uploads), where the platform counts them


@dataclass(frozen=True)
class Expectation:
    """One runbook expectation: ``measure`` ``op`` ``bound`` (``max_x_baseline``: at most bound x the
    scenario's baseline of that measure, and never below P95_FLOOR_MS for a latency)."""

    measure: str
    op: Op
    bound: float
    text: str
    optional: bool = False

    @property
    def spec(self) -> Measure:
        return MEASURES[self.measure]


def parse_expectations(where: str, raw: object) -> tuple[Expectation, ...]:
    """``checks:`` of one scenario in scenarios.yaml: a list of ``{measure, max|min|max_x_baseline, text,
    optional}``; errors name the entry and what is allowed."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError(f"{where}: must be a list of checks, got {type(raw).__name__}")
    parsed = []
    for i, entry in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{at}: must be a mapping like {{measure: p95_ms, max: 10000, text: ...}}")
        unknown = sorted(set(entry) - {"measure", "text", "optional", *OPS})
        if unknown:
            raise ValueError(f"{at}: unknown keys {unknown} (allowed: measure, text, optional, one of {list(OPS)})")
        measure = entry.get("measure")
        if measure not in MEASURES:
            raise ValueError(f"{at}.measure: {measure!r} is not one of {sorted(MEASURES)}")
        ops = [op for op in OPS if op in entry]
        if len(ops) != 1:
            raise ValueError(f"{at}: exactly one of {list(OPS)} is needed, got {ops}")
        bound = entry[ops[0]]
        if isinstance(bound, bool) or not isinstance(bound, int | float) or bound < 0:
            raise ValueError(f"{at}.{ops[0]}: {bound!r} must be a number >= 0")
        if ops[0] == "max_x_baseline" and measure != "p95_ms":
            raise ValueError(f"{at}.max_x_baseline: only p95_ms has a baseline")
        optional = entry.get("optional", False)
        if not isinstance(optional, bool):
            raise ValueError(f"{at}.optional: {optional!r} must be true or false")
        parsed.append(Expectation(measure, ops[0], float(bound), str(entry.get("text") or MEASURES[measure].label),
                                  optional))
    return tuple(parsed)


@dataclass(frozen=True)
class CheckResult:
    """One expectation judged: ``passed`` None means not measured on this platform (an optional check)."""

    measure: str
    text: str
    unit: str
    op: Op
    bound: float | None
    measured: float | None
    passed: bool | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def summary(self) -> str:
        """``p95 latency during the fault 41 ms (at most 65.8 ms)``, for the verdict and Slack."""
        label = MEASURES[self.measure].label
        if self.passed is None:
            return f"{label}: not measured ({self.detail})"
        shown = "no data" if self.measured is None else fmt(self.measured, self.unit)
        notes = [self.detail] if self.detail and self.detail != "no data" else []
        if self.bound is not None:
            notes.append(f"{'at least' if self.op == 'min' else 'at most'} {fmt(self.bound, self.unit)}")
        return f"{label} {shown}" + (f" ({'; '.join(notes)})" if notes else "")


def bound_of(expectation: Expectation, baseline: Mapping[str, float]) -> float | None:
    """The bound in the measure's own unit: ``max_x_baseline`` against the baseline (None: no baseline)."""
    if expectation.op != "max_x_baseline":
        return expectation.bound
    base = baseline.get(expectation.measure)
    if base is None:
        return None
    return max(expectation.bound * base, P95_FLOOR_MS)


Z_95 = 1.96


def wilson_upper_pct(pct: float, samples: int) -> float:
    """The upper end of the 95 % Wilson interval of a success rate measured as ``pct`` over ``samples`` events:
    how high the true rate may be given so few events."""
    p, n = pct / 100.0, float(samples)
    centre = p + Z_95 ** 2 / (2 * n)
    spread = Z_95 * math.sqrt(p * (1 - p) / n + Z_95 ** 2 / (4 * n * n))
    return 100.0 * min(1.0, (centre + spread) / (1 + Z_95 ** 2 / n))


def check_expectation(expectation: Expectation, measured: Measurement | None, baseline: Mapping[str, float],
                      not_provided: str | None = None) -> CheckResult:
    """One check: ``measured`` None or with no value is no data (fails); ``not_provided`` says why the platform
    cannot measure it (only an optional check is then left undecided)."""
    bound = bound_of(expectation, baseline)
    base = (expectation.measure, expectation.text, expectation.spec.unit, expectation.op, bound)
    if not_provided is not None and expectation.optional:
        return CheckResult(*base, None, None, not_provided)
    value = measured.value if measured is not None else None
    detail = (measured.detail if measured is not None else "") or (not_provided or "")
    if value is None:
        return CheckResult(*base, None, False, detail or "no data")
    if bound is None:
        return CheckResult(*base, value, False, "no baseline to compare with")
    passed = value >= bound if expectation.op == "min" else value <= bound
    samples = measured.samples if measured is not None else None
    if not passed and expectation.op == "min" and expectation.spec.unit == "%" and samples:
        # a rate below its bound over a handful of events (one failed upload of 20 is 95 %) fails only when the
        # bound is out of reach at 95 % confidence; said either way
        upper = wilson_upper_pct(value, samples)
        passed = upper >= bound
        detail = "; ".join(filter(None, [detail, f"over {samples} events: the true rate may be up to "
                                                 f"{fmt(upper, '%')} (95 % confidence)"]))
    elif samples:
        detail = "; ".join(filter(None, [detail, f"over {samples} events"]))
    return CheckResult(*base, value, passed, detail)


def failures(results: list[CheckResult]) -> list[str]:
    return [r.summary for r in results if r.passed is False]


def summary(results: list[CheckResult]) -> str:
    """The checks in one line for a verdict that held: ``replacements ready after the deletion 3.2 s (at
    most 30 s); ...``."""
    return "; ".join(r.summary for r in results)
