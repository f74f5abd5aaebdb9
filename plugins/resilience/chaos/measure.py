"""Measuring a scenario's runbook checks after its fault: the fault's own measures from what its revert
observed, the window measures from Prometheus over the fault window (the I/O half of
``chaos.expectations``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from resilience.chaos.expectations import CheckResult, Expectation, Measurement, check_expectation
from resilience.config import Environment, SloSource
from resilience.faults.base import get_fault

log = logging.getLogger(__name__)


def missing_window_queries(environment: Environment, checks: tuple[Expectation, ...]) -> list[str]:
    """The settings a scenario's required window checks need and the environment lacks (refused at the start)."""
    slo = environment.slo_source()
    return [f"environments.{environment.name}.slo.window_queries.{c.measure}" for c in checks
            if c.spec.source == "window" and not c.optional and c.measure not in slo.window_queries]


def window_measurement(slo: SloSource, measure: str, start_s: float, end_s: float) -> Measurement:
    """``measure`` over [start_s, end_s] from Prometheus: a query error or an empty answer is no data."""
    from resilience.prometheus import PrometheusHook, single_value

    query = slo.window_query(measure, end_s - start_s)
    try:
        value = single_value(PrometheusHook(slo.prometheus_conn_id, timeout_s=max(slo.query_timeout_s, 5.0))
                             .query(query, at=end_s))
    except Exception as exc:  # whatever kept the value from us, it is no data: the check fails and says why
        return Measurement(None, f"query failed: {type(exc).__name__}: {exc}")
    if value is None or math.isnan(value):
        return Measurement(None, "no data in the fault window")
    return Measurement(value)


def measure_checks(environment: Environment, scenario: str, checks: tuple[Expectation, ...],
                   observed: Mapping[str, Any] | None, window: tuple[float, float],
                   baseline: Mapping[str, float]) -> list[CheckResult]:
    """Every check of ``scenario`` judged: fault measures from ``observed`` (the ledger's), window measures
    over ``window`` (the fault's (applied, reverted) epoch seconds)."""
    slo = environment.slo_source()
    from_fault = get_fault(scenario).measurements(dict(observed or {}))
    results = []
    for check in checks:
        not_provided = None
        if check.spec.source == "fault":
            measured = from_fault.get(check.measure)
        elif check.measure not in slo.window_queries:
            measured, not_provided = None, (f"environments.{environment.name}.slo.window_queries."
                                            f"{check.measure} is not set")
        else:
            measured = window_measurement(slo, check.measure, *window)
        result = check_expectation(check, measured, baseline, not_provided)
        log.info("%s check %s: %s", scenario, {True: "PASSED", False: "FAILED", None: "not measured"}[result.passed],
                 result.summary)
        results.append(result)
    return results
