"""Measuring a scenario's runbook checks after its fault: the fault's own measures from what its revert
observed, the window measures from Prometheus over the fault window (the I/O half of
``chaos.expectations``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from resilience.chaos.expectations import CheckResult, Expectation, Measurement, check_expectation
from resilience.config import Environment, SloSource
from resilience.faults.base import get_fault

if TYPE_CHECKING:
    from resilience.platforms.base import Capability, Platform
    from resilience.prometheus import PrometheusHook

log = logging.getLogger(__name__)


def missing_window_queries(environment: Environment, checks: tuple[Expectation, ...]) -> list[str]:
    """The settings a scenario's required window checks need and the environment lacks (refused at the start)."""
    slo = environment.slo_source()
    return [f"environments.{environment.name}.slo.window_queries.{c.measure}" for c in checks
            if c.spec.source == "window" and not c.optional and c.measure not in slo.window_queries]


def window_measurement(hook: PrometheusHook, slo: SloSource, measure: str, start_s: float, end_s: float
                       ) -> Measurement:
    """``measure`` over [start_s, end_s] from Prometheus: a query error or an empty answer is no data."""
    from resilience.prometheus import read_value

    try:
        query = slo.window_query(measure, end_s - start_s)
    except ValueError as exc:
        return Measurement(None, str(exc))
    value, why = read_value(hook, query, end_s)
    return Measurement(value, "" if why is None else f"no data in the fault window ({why})")


def needed_by_checks(checks: tuple[Expectation, ...]) -> list[Capability]:
    """The platform capabilities the checks' ``platform`` measures read."""
    return [c.spec.needs for c in checks if c.spec.needs]


def uploads_measurement(platform: Platform, start_s: float, end_s: float) -> Measurement:
    """The uploads the app acknowledged during the fault, read back: missing or corrupt ones (must be none)."""
    try:
        audit = platform.upload_audit.audit_uploads(start_s, end_s)
    except Exception as exc:  # the audit could not be done: no data, which fails the check and says why
        return Measurement(None, f"audit failed: {type(exc).__name__}: {exc}")
    if not audit.checked:
        return Measurement(None, "no upload was acknowledged during the fault: nothing to read back")
    bad = [f"{key} missing" for key in audit.missing] + [f"{key} corrupt" for key in audit.corrupt]
    detail = f"{audit.checked} acknowledged upload(s) read back" + (" (the first only)" if audit.limit_reached
                                                                   else "")
    if audit.sized_only:
        detail += f", {audit.sized_only} of them by size only (past the audit's byte budget)"
    if bad:
        detail += ": " + ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    return Measurement(len(bad), detail)


# a rate's sample size, where the environment counts it: a rate over a handful of events is judged with it
SAMPLE_OF = {"upload_success_pct": "uploads_total"}

PLATFORM_MEASURES: dict[str, Callable[[Platform, float, float], Measurement]] = {
    "uploads_corrupt": uploads_measurement,
}


def measure_checks(platform: Platform, scenario: str, checks: tuple[Expectation, ...],
                   observed: Mapping[str, Any] | None, window: tuple[float, float],
                   baseline: Mapping[str, float]) -> list[CheckResult]:
    """Every check of ``scenario`` judged: fault measures from ``observed`` (the ledger's), window and platform
    measures over ``window`` (the fault's (applied, reverted) epoch seconds)."""
    from resilience.prometheus import PrometheusHook

    environment = platform.environment
    slo = environment.slo_source()
    hook = PrometheusHook(slo.prometheus_conn_id, timeout_s=max(slo.query_timeout_s, 5.0))  # one for every query
    from_fault = get_fault(scenario).measurements(dict(observed or {}))
    results = []
    for check in checks:
        not_provided = None
        if check.spec.source == "fault":
            measured = from_fault.get(check.measure)
        elif check.spec.source == "platform":
            measured = PLATFORM_MEASURES[check.measure](platform, *window)
        elif check.measure not in slo.window_queries:
            measured, not_provided = None, (f"environments.{environment.name}.slo.window_queries."
                                            f"{check.measure} is not set")
        else:
            measured = window_measurement(hook, slo, check.measure, *window)
            sample = SAMPLE_OF.get(check.measure)
            if sample is not None and sample in slo.window_queries and measured.value is not None:
                count = window_measurement(hook, slo, sample, *window).value
                measured = replace(measured, samples=None if count is None else round(count))
        result = check_expectation(check, measured, baseline, not_provided)
        log.info("%s check %s: %s", scenario, {True: "PASSED", False: "FAILED", None: "not measured"}[result.passed],
                 result.summary)
        results.append(result)
    return results
