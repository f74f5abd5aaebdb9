"""Prometheus metrics of the demo app, on a registry of its own (several apps can share a process).

No replica label here: Prometheus adds ``replica`` from its target labels (as Kubernetes
service discovery would add ``pod``), so the app does not need to know its own name.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

# Fine below 0.3 s (p95 of tens of ms), and above 10 s so the runbook's "p95 > 10 s" can be seen
# (histogram_quantile never answers more than the highest finite bucket).
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
             15.0, 30.0)
UPLOAD_PATH = "/api/uploads"


class AppMetrics:
    """HTTP requests and durations, uploads by status, and what Redis and S3 cost us."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        reg = self.registry
        self.requests = Counter("http_requests", "HTTP requests served, by route and status code",
                                ["method", "path", "status"], registry=reg)
        self.duration = Histogram("http_request_duration_seconds", "HTTP request duration in seconds",
                                  ["method", "path"], buckets=BUCKETS_S, registry=reg)
        self.uploads = Counter("upload_requests", "POST /api/uploads answers, by status code", ["status"],
                               registry=reg)
        for status in ("201", "503"):  # at 0 from the start: increase() misses a series' first sample
            self.uploads.labels(status=status)
        self.s3_retries = Counter("s3_retries", "S3 PUT attempts retried after a retryable failure", registry=reg)
        self.s3_attempts = Counter("s3_requests", "S3 PUT attempts, by HTTP status ('error': no answer)",
                                   ["status"], registry=reg)
        self.redis_errors = Counter("redis_errors", "Redis calls that failed (timeout, refused ...)",
                                    ["operation"], registry=reg)
        self.cache = Counter("cache_requests", "Read-through cache lookups: hit, miss, error, bypass (breaker open)",
                             ["result"], registry=reg)
        for result in ("hit", "miss", "error", "bypass"):
            self.cache.labels(result=result)
        self.redis_errors.labels(operation="get")
        self.release_info = Gauge("app_release_info", "1 for the release this replica runs", ["release"],
                                  registry=reg)
        if registry is None:
            ProcessCollector(registry=reg)
            PlatformCollector(registry=reg)

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        """Count one request; ``path`` must be a route template (bounded label values)."""
        self.requests.labels(method=method, path=path, status=str(status)).inc()
        self.duration.labels(method=method, path=path).observe(seconds)
        if path == UPLOAD_PATH and method == "POST":
            self.uploads.labels(status=str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
