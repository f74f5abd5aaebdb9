"""Reads of verify-slo from Prometheus (through PrometheusHook): one number per metric at the window's end,
and the series the report charts. A failing query is a missing value with its reason, never an exception."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from resilience.config import prom_duration
from resilience.prometheus import PrometheusHook, failure_reason, render
from resilience.prometheus import read_value as read_prometheus_value
from resilience.slo_verify.decision import Measured
from resilience.slo_verify.settings import KEY_METRICS, SloVerifySettings

log = logging.getLogger(__name__)
CHART_POINTS = 120
MIN_CHART_STEP_S = 15.0  # a rate() needs two scrapes in each step (15 s: production's scrape interval)
CHART_METRICS = ("availability_pct", "error_rate_pct", "p95_ms", "p99_ms", "throughput_rps")


@dataclass(frozen=True)
class WindowReadings:
    """Every value verify-slo judges: the key metrics and business metrics over the window ending at ``end``
    (epoch s), and the throughput of the window just before it."""

    end: float
    window_s: float
    key: dict[str, Measured]
    previous_throughput: Measured
    business: dict[str, Measured]

    def to_dict(self) -> dict[str, Any]:
        def one(m: Measured) -> dict[str, Any]:
            return {"value": m.value, "missing": m.missing}

        return {"end": self.end, "window_s": self.window_s, "key": {k: one(m) for k, m in self.key.items()},
                "previous_throughput": one(self.previous_throughput),
                "business": {k: one(m) for k, m in self.business.items()}}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> WindowReadings:
        def one(d: dict[str, Any]) -> Measured:
            return Measured(d["value"], d["missing"])

        return cls(float(raw["end"]), float(raw["window_s"]), {k: one(v) for k, v in raw["key"].items()},
                   one(raw["previous_throughput"]), {k: one(v) for k, v in raw["business"].items()})


def read_value(hook: PrometheusHook, query: str, window_s: float, at: float) -> Measured:
    """``query`` over ``window_s`` ending at ``at``, as one number (or why there is none)."""
    value, why = read_prometheus_value(hook, render(query, prom_duration(window_s)), at)
    return Measured.of(value, why)


def read_window(settings: SloVerifySettings, end: float, window_s: float) -> WindowReadings:
    """Every metric over [end - window, end]; throughput also over the window before it."""
    hook = PrometheusHook(settings.prometheus_conn_id, timeout_s=settings.query_timeout_s)
    key = {m: read_value(hook, settings.queries[m], window_s, end) for m in KEY_METRICS}
    previous = read_value(hook, settings.queries["throughput_rps"], window_s, end - window_s)
    business = {b.name: read_value(hook, b.query, window_s, end) for b in settings.business}
    return WindowReadings(end, window_s, key, previous, business)


def chart_step_s(window_s: float) -> float:
    """The charts' resolution: about CHART_POINTS points, never under two scrapes' worth."""
    return max(window_s / CHART_POINTS, MIN_CHART_STEP_S)


def _finite(points: list[tuple[float, float]]) -> list[tuple[float, float | None]]:
    return [(t, v if math.isfinite(v) else None) for t, v in points]


def read_series(settings: SloVerifySettings, end: float, window_s: float
                ) -> dict[str, list[tuple[float, float | None]]]:
    """The charted metrics over the window, each point over one step; ``throughput_previous_rps`` is the window
    before, shifted one window later so it lines up. A series Prometheus cannot give is left out (logged)."""
    hook = PrometheusHook(settings.prometheus_conn_id, timeout_s=settings.query_timeout_s)
    step = chart_step_s(window_s)
    wanted = {m: (settings.queries[m], 0.0) for m in CHART_METRICS}
    wanted["throughput_previous_rps"] = (settings.queries["throughput_rps"], window_s)
    series = {}
    for name, (query, shift) in wanted.items():
        try:
            points = hook.query_range(render(query, prom_duration(step)), end - window_s - shift + step, end - shift,
                                      step)
        except Exception as exc:  # a chart is not worth failing the report for; say why it is missing
            log.warning("No %s chart: %s", name, failure_reason(exc, hook.timeout_s))
            continue
        series[name] = _finite([(t + shift, v) for t, v in points])
    return series
