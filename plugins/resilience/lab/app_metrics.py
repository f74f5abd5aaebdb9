"""Prometheus metrics of the demo app, on a registry of its own (several apps can share a process)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class AppMetrics:
    """``http_requests_total{method,path,status}`` and ``http_request_duration_seconds{method,path}``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter("http_requests", "HTTP requests served, by route and status code",
                                ["method", "path", "status"], registry=self.registry)
        self.duration = Histogram("http_request_duration_seconds", "HTTP request duration in seconds",
                                  ["method", "path"], buckets=BUCKETS_S, registry=self.registry)
        if registry is None:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        """Count one request; ``path`` must be a route template (bounded label values)."""
        self.requests.labels(method=method, path=path, status=str(status)).inc()
        self.duration.labels(method=method, path=path).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
