"""The ``slo_verify`` section of an environment in environments.yaml: where verify-slo reads the runbook's
"Key Metrics" and which business metrics it checks. Standard library only (config.py imports it)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

# Each query returns one number over ``{window}`` (filled in as a Prometheus duration, e.g. ``86400s``),
# evaluated at the window's end: the previous window is the same query one window earlier.
KEY_METRICS = ("availability_pct", "error_rate_pct", "p95_ms", "p99_ms", "throughput_rps")
SECTION_KEYS = ("prometheus_conn_id", "query_timeout_s", "queries", "business")
BUSINESS_KEYS = ("query", "min_pct", "title")


@dataclass(frozen=True)
class BusinessMetric:
    """A business success rate (runbook "Business Metrics"): a PromQL percentage that must stay above ``min_pct``."""

    name: str  # e.g. upload_success_pct
    title: str  # e.g. upload success rate
    query: str
    min_pct: float


@dataclass(frozen=True)
class SloVerifySettings:
    """Where and how an environment's SLOs are verified (``environments.<name>.slo_verify``)."""

    prometheus_conn_id: str
    query_timeout_s: float
    queries: Mapping[str, str]  # one per KEY_METRICS
    business: tuple[BusinessMetric, ...] = ()


def _text(raw: Mapping[str, object], key: str, where: str, required: bool = True) -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}.{key}: {value!r} must be a non-empty string")
    return value


def _number(raw: Mapping[str, object], key: str, where: str, default: float | None, low: float, high: float,
            words: str) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not low < value <= high:
        raise ValueError(f"{where}.{key}: {value!r} must be {words}")
    return float(value)


def parse_business(raw: object, where: str) -> tuple[BusinessMetric, ...]:
    """``business``: metric name -> {query, min_pct, title}; names end in ``_pct`` (they are percentages)."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must map metric names to {{query, min_pct}}, got {type(raw).__name__}")
    metrics = []
    for name, spec in raw.items():
        at = f"{where}.{name}"
        if not isinstance(name, str) or not name.endswith("_pct"):
            raise ValueError(f"{at}: a business metric's name must end in _pct (a success rate in %)")
        if not isinstance(spec, Mapping):
            raise ValueError(f"{at} must be a mapping with query and min_pct")
        unknown = sorted(set(spec) - set(BUSINESS_KEYS))
        if unknown:
            raise ValueError(f"{at}: unknown key(s) {unknown}; allowed: {list(BUSINESS_KEYS)}")
        title = _text(spec, "title", at, required=False) or name.removesuffix("_pct").replace("_", " ") + " rate"
        metrics.append(BusinessMetric(name=name, title=title, query=str(_text(spec, "query", at)),
                                      min_pct=_number(spec, "min_pct", at, None, 0, 100, "a percentage in (0, 100]")))
    return tuple(metrics)


def parse_slo_verify(raw: object, where: str) -> SloVerifySettings | None:
    """Validate the section (None when the environment has none: verify-slo refuses it by name)."""
    if raw is None or raw == {}:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SECTION_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {list(SECTION_KEYS)}")
    queries = raw.get("queries")
    if not isinstance(queries, Mapping):
        raise ValueError(f"{where}.queries must map each of {list(KEY_METRICS)} to a PromQL query")
    missing = [m for m in KEY_METRICS if not isinstance(queries.get(m), str) or not queries[m].strip()]
    if missing:
        raise ValueError(f"{where}.queries: missing {missing} (each of {list(KEY_METRICS)} needs a query)")
    extra = sorted(set(queries) - set(KEY_METRICS))
    if extra:
        raise ValueError(f"{where}.queries: unknown metric(s) {extra}; allowed: {list(KEY_METRICS)} "
                         "(business metrics go under business)")
    return SloVerifySettings(
        prometheus_conn_id=str(_text(raw, "prometheus_conn_id", where)),
        query_timeout_s=_number(raw, "query_timeout_s", where, 30.0, 0, 600, "a number of seconds in (0, 600]"),
        queries={m: str(queries[m]) for m in KEY_METRICS},
        business=parse_business(raw.get("business"), f"{where}.business"),
    )
