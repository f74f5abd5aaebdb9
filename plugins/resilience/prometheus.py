"""Prometheus through an Airflow HTTP Connection: a sync hook for tasks, an async one for triggers.

The hooks only handle the connection and the HTTP API; turning results into SLO readings is
``read_slo`` here, and judging them is ``resilience.slo``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from airflow.providers.http.hooks.http import HttpAsyncHook, HttpHook

from resilience.slo import Reading, why_missing


class PrometheusError(RuntimeError):
    """A query Prometheus refused or could not answer; the message is ``"status:message"``."""


def parse_query_response(payload: Mapping[str, Any]) -> list[tuple[dict[str, str], float]]:
    """``/api/v1/query`` JSON -> [(labels, value)], values as floats (NaN kept as NaN)."""
    if payload.get("status") != "success":
        raise PrometheusError(f"{payload.get('errorType', 'error')}:{payload.get('error', 'unknown error')}")
    data = payload["data"]
    if data["resultType"] == "scalar":
        return [({}, float(data["result"][1]))]
    if data["resultType"] != "vector":
        raise PrometheusError(f"bad_data:expected an instant vector, got {data['resultType']}")
    return [(item["metric"], float(item["value"][1])) for item in data["result"]]


def single_value(samples: list[tuple[dict[str, str], float]]) -> float | None:
    """The one value of an aggregated query; None when the vector is empty."""
    if not samples:
        return None
    if len(samples) > 1:
        raise PrometheusError(f"bad_data:expected one series, got {len(samples)} (aggregate with sum())")
    return samples[0][1]


def _duration(seconds: float) -> str:
    """Prometheus durations take integers with a unit: 0.8 s -> "800ms"."""
    return f"{max(1, round(seconds * 1000))}ms"


def render(query: str, window: str) -> str:
    """Fill ``{window}`` into a query template (PromQL braces stay as written)."""
    return query.replace("{window}", window)


class PrometheusHook(HttpHook):
    """Instant and range queries against Prometheus' HTTP API."""

    conn_name_attr = "prometheus_conn_id"
    default_conn_name = "prometheus_default"
    conn_type = "http"
    hook_name = "Prometheus"

    def __init__(self, prometheus_conn_id: str = default_conn_name, timeout_s: float = 5.0) -> None:
        super().__init__(method="GET", http_conn_id=prometheus_conn_id)
        self.prometheus_conn_id = prometheus_conn_id
        self.timeout_s = timeout_s

    def _get(self, endpoint: str, params: dict[str, Any]) -> dict[str, Any]:
        response = self.run(endpoint, data=params, extra_options={"timeout": self.timeout_s, "check_response": False})
        if response.status_code >= 400 and "application/json" not in response.headers.get("Content-Type", ""):
            raise PrometheusError(f"{response.status_code}:{response.reason}")
        return response.json()

    def query(self, promql: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        params = {"query": promql, "timeout": _duration(self.timeout_s)}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return parse_query_response(self._get("api/v1/query", params))

    def query_range(self, promql: str, start: float, end: float, step_s: float) -> list[tuple[float, float]]:
        """One aggregated series over time as [(epoch s, value)] (for report charts)."""
        payload = self._get("api/v1/query_range",
                            {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": _duration(step_s)})
        if payload.get("status") != "success":
            raise PrometheusError(f"{payload.get('errorType', 'error')}:{payload.get('error', 'unknown error')}")
        result = payload["data"]["result"]
        return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []

    def test_connection(self) -> tuple[bool, str]:
        try:
            info = self._get("api/v1/status/buildinfo", {})
            return True, f"Prometheus {info['data']['version']}"
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"


class PrometheusAsyncHook(HttpAsyncHook):
    """The same queries from a trigger; no retries, so a slow Prometheus shows up as a timeout."""

    conn_name_attr = "prometheus_conn_id"
    default_conn_name = "prometheus_default"
    conn_type = "http"
    hook_name = "Prometheus (async)"

    def __init__(self, prometheus_conn_id: str = default_conn_name) -> None:
        super().__init__(method="GET", http_conn_id=prometheus_conn_id, retry_limit=1)

    async def query(self, session: Any, promql: str, timeout_s: float) -> list[tuple[dict[str, str], float]]:
        import aiohttp

        response = await self.run(
            session=session, endpoint="api/v1/query", data={"query": promql, "timeout": _duration(timeout_s)},
            extra_options={"timeout": aiohttp.ClientTimeout(total=timeout_s), "check_response": False},
        )
        if response.status >= 400 and response.content_type != "application/json":
            raise PrometheusError(f"{response.status}:{response.reason}")
        return parse_query_response(await response.json())

    async def query_range(self, session: Any, promql: str, start: float, end: float, step_s: float,
                          timeout_s: float) -> dict[float, float]:
        """One aggregated series over [start, end] every ``step_s``: {epoch s: value} (a step without a
        sample is absent)."""
        import aiohttp

        response = await self.run(
            session=session, endpoint="api/v1/query_range",
            data={"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": _duration(step_s),
                  "timeout": _duration(timeout_s)},
            extra_options={"timeout": aiohttp.ClientTimeout(total=timeout_s), "check_response": False},
        )
        if response.status >= 400 and response.content_type != "application/json":
            raise PrometheusError(f"{response.status}:{response.reason}")
        payload = await response.json()
        if payload.get("status") != "success":
            raise PrometheusError(f"{payload.get('errorType', 'error')}:{payload.get('error', 'unknown error')}")
        result = payload["data"]["result"]
        if len(result) > 1:
            raise PrometheusError(f"bad_data:expected one series, got {len(result)} (aggregate with sum())")
        return {round(float(t), 3): float(v) for t, v in result[0]["values"]} if result else {}


def failure_reason(exc: BaseException, timeout_s: float) -> str:
    """Why a query has no answer, for a report: a timeout, or Prometheus' error."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError) or "timeout" in type(exc).__name__.lower():
        return f"timeout after {timeout_s:g} s"  # requests' ReadTimeout is not a TimeoutError
    return f"prometheus error: {exc}"


def read_value(hook: PrometheusHook, query: str, at: float) -> tuple[float | None, str | None]:
    """One aggregated value of a ready ``query`` at ``at`` (epoch s): (value, None), or (None, why) when the
    result is empty, NaN or infinite, or the query failed; never an exception."""
    try:
        value = single_value(hook.query(query, at=at))
    except Exception as exc:
        return None, failure_reason(exc, hook.timeout_s)
    why = why_missing(value)
    return (None, why) if why is not None else (value, None)


def read_slo(hook: PrometheusHook, queries: Mapping[str, str], window: str) -> Reading:
    """One SLO reading now; a failing query makes its metric missing, never an exception.

    Every query is evaluated at the same instant, so the metrics of a reading agree
    (availability and error rate add up to 100 %).
    """
    import time

    values, errors = {}, {}
    at = time.time()
    for metric, template in queries.items():
        try:
            values[metric] = single_value(hook.query(render(template, window), at=at))
        except Exception as exc:
            errors[metric] = failure_reason(exc, hook.timeout_s)
    return Reading.from_values(values, errors)


async def read_values_async(hook: PrometheusAsyncHook, session: Any, queries: Mapping[str, str], timeout_s: float
                            ) -> tuple[dict[str, float | None], dict[str, str]]:
    """Run ready PromQL ``queries`` concurrently: (value per name, why a name has none)."""
    names = list(queries)
    results = await asyncio.gather(
        *(asyncio.wait_for(hook.query(session, queries[n], timeout_s), timeout_s) for n in names),
        return_exceptions=True)
    values: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            values[name], errors[name] = None, failure_reason(result, timeout_s)
        else:
            values[name] = single_value(result)
    return values, errors


async def read_slo_history_async(hook: PrometheusAsyncHook, session: Any, queries: Mapping[str, str], window: str,
                                 start: float, end: float, step_s: float, timeout_s: float
                                 ) -> list[tuple[float, Reading]]:
    """The readings Prometheus recorded over [start, end], every ``step_s``, oldest first: what the guard
    would have read then. A query that fails makes its metric missing at every step, never an exception."""
    names = list(queries)
    results = await asyncio.gather(
        *(asyncio.wait_for(hook.query_range(session, render(queries[n], window), start, end, step_s, timeout_s),
                           timeout_s) for n in names),
        return_exceptions=True)
    series: dict[str, dict[float, float]] = {}
    errors: dict[str, str] = {}
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            errors[name] = failure_reason(result, timeout_s)
        else:
            series[name] = result
    steps = sorted({t for values in series.values() for t in values})
    return [(t, Reading.from_values({n: values.get(t) for n, values in series.items()}, errors)) for t in steps]


async def read_slo_async(hook: PrometheusAsyncHook, session: Any, queries: Mapping[str, str], window: str,
                         timeout_s: float) -> Reading:
    """The async twin of :func:`read_slo`: the queries run concurrently."""
    values, errors = await read_values_async(hook, session, {n: render(q, window) for n, q in queries.items()},
                                             timeout_s)
    return Reading.from_values({n: v for n, v in values.items() if n not in errors}, errors)
