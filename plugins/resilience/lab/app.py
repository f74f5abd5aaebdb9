"""The lab's demo app: a small HTTP API on PostgreSQL, Redis (cache) and S3 (uploads), with metrics.

``python -m resilience.lab.app --port P [--name app-1]``, configured from the environment
(secrets never in argv, visible in ``ps``): ``$RESILIENCE_APP_DSN`` (required),
``$RESILIENCE_APP_REDIS_URL`` (optional cache), ``$RESILIENCE_APP_S3_ENDPOINT`` / ``_BUCKET`` /
``_REGION`` with ``$AWS_ACCESS_KEY_ID`` / ``$AWS_SECRET_ACCESS_KEY`` (optional uploads),
``$RESILIENCE_APP_RELEASE`` (default v1) and ``$RESILIENCE_APP_FAIL_RATE`` (default 0: the share of
``/api/*`` requests a broken release answers 500 while ``/health`` stays 200). Every answer carries
``X-App-Release`` and ``X-App-Fail-Rate``. Routes: ``GET /health``, ``GET /api/health/database``,
``GET|POST /api/posts``, ``POST /api/uploads``, ``GET /metrics``. Handlers live in
:mod:`resilience.lab.app_handlers`; every dependency is built from :class:`AppConfig` or injected
through :func:`make_server`. SIGTERM drains it like a terminating pod (:mod:`resilience.lab.app_drain`):
``/health`` answers 503 while it still serves, the listener closes once no load balancer routes here,
and the process exits when its in-flight requests are answered.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from psycopg.conninfo import conninfo_to_dict

from resilience.lab.app_cache import CircuitBreaker, ReadThroughCache, redis_client
from resilience.lab.app_db import Database
from resilience.lab.app_drain import LB_NAME_HEADER, LB_ROUTING_HEADER, Drain
from resilience.lab.app_handlers import DemoApp
from resilience.lab.app_metrics import AppMetrics
from resilience.lab.app_s3 import ObjectStore, S3Settings
from resilience.lab.releases import DEFAULT_RELEASE, ENV_FAIL_RATE, ENV_RELEASE, validate_fail_rate, validate_release

log = logging.getLogger("resilience.lab.app")

ENV_DSN = "RESILIENCE_APP_DSN"
ENV_REDIS_URL = "RESILIENCE_APP_REDIS_URL"
ENV_S3_ENDPOINT = "RESILIENCE_APP_S3_ENDPOINT"
ENV_S3_BUCKET = "RESILIENCE_APP_S3_BUCKET"
ENV_S3_REGION = "RESILIENCE_APP_S3_REGION"
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class AppConfig:
    """Everything the demo app depends on. Secrets (``dsn``, S3 keys) are never logged."""

    dsn: str
    host: str = "127.0.0.1"
    port: int = 8080
    name: str = "app"
    connect_timeout_s: int = 2
    statement_timeout_ms: int = 2000
    max_posts: int = 100
    redis_url: str | None = None
    redis_timeout_s: float = 0.05
    redis_breaker_s: float = 1.0
    cache_ttl_s: float = 1.0
    s3: S3Settings | None = None
    release: str = DEFAULT_RELEASE
    fail_rate: float = 0.0
    # bounds each drain phase; the supervisor's grace period (then SIGKILL) is the hard limit
    drain_timeout_s: float = 10.0

    @classmethod
    def from_env(cls, port: int, host: str = "127.0.0.1", name: str = "app") -> AppConfig:
        dsn = os.environ.get(ENV_DSN)
        if not dsn:
            raise ValueError(f"{ENV_DSN} is not set: the demo app needs a PostgreSQL DSN")
        endpoint = os.environ.get(ENV_S3_ENDPOINT)
        s3 = S3Settings(endpoint, os.environ.get(ENV_S3_BUCKET, "uploads"),
                        os.environ.get(ENV_S3_REGION, "us-east-1"), os.environ.get("AWS_ACCESS_KEY_ID", ""),
                        os.environ.get("AWS_SECRET_ACCESS_KEY", "")) if endpoint else None
        release = validate_release(os.environ.get(ENV_RELEASE) or DEFAULT_RELEASE)
        raw_rate = os.environ.get(ENV_FAIL_RATE) or "0"
        try:
            fail_rate = validate_fail_rate(float(raw_rate), ENV_FAIL_RATE)
        except ValueError:
            raise ValueError(f"{ENV_FAIL_RATE}: {raw_rate!r} is not a number in 0..1") from None
        return cls(dsn=dsn, host=host, port=port, name=name, redis_url=os.environ.get(ENV_REDIS_URL) or None, s3=s3,
                   release=release, fail_rate=fail_rate)

    def describe_database(self) -> str:
        """host:port/dbname of the DSN, without user or password (for logs)."""
        parts = conninfo_to_dict(self.dsn)
        hosts = str(parts.get("host", "?")).split(",")
        ports = str(parts.get("port", "5432")).split(",")
        ports = ports * len(hosts) if len(ports) == 1 else ports
        return ",".join(f"{h}:{p}" for h, p in zip(hosts, ports, strict=False)) + f"/{parts.get('dbname', '?')}"


def build_app(config: AppConfig, db: Database | None = None, metrics: AppMetrics | None = None,
              cache: ReadThroughCache | None = None, store: ObjectStore | None = None) -> DemoApp:
    """The app with every dependency from ``config`` unless injected."""
    metrics = metrics or AppMetrics()
    db = db or Database(config.dsn, config.connect_timeout_s, config.statement_timeout_ms)
    if cache is None and config.redis_url:
        cache = ReadThroughCache(redis_client(config.redis_url, config.redis_timeout_s), config.cache_ttl_s,
                                 CircuitBreaker(config.redis_breaker_s),
                                 on_error=lambda op: metrics.redis_errors.labels(operation=op).inc())
    if store is None and config.s3 is not None:
        store = ObjectStore(config.s3, on_retry=metrics.s3_retries.inc,
                            on_attempt=lambda status: metrics.s3_attempts.labels(status=status).inc())
    return DemoApp(db, metrics, cache, store, config.max_posts, release=config.release, fail_rate=config.fail_rate)


class Handler(BaseHTTPRequestHandler):
    """Dispatches to :class:`DemoApp` and records every request in the metrics."""

    server: AppServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        drain = self.server.drain
        drain.request_started()
        try:
            self._answer(method)
        finally:
            drain.request_finished()

    def _answer(self, method: str) -> None:
        app, drain = self.server.app, self.server.drain
        started = time.perf_counter()
        url = urlsplit(self.path)
        readiness = method == "GET" and url.path == "/health"
        if readiness and (lb := self.headers.get(LB_NAME_HEADER)):
            ready = drain.probe(lb, self.headers.get(LB_ROUTING_HEADER, "on") != "off")
        else:
            ready = not drain.draining
        if readiness and not ready:
            status, data, content_type = 503, b'{"status": "draining"}', "application/json"
        else:
            status, data, content_type = self._respond(app, method, url.path, url.query)
        # counted before the answer leaves: a client that got it and then reads /metrics must see it
        label = url.path if app.known_path(url.path) else "other"
        app.metrics.observe(method, label, status, time.perf_counter() - started)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-App-Release", app.release)
        self.send_header("X-App-Fail-Rate", repr(app.fail_rate))
        if drain.draining:  # no client keeps a connection to a replica about to exit
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _respond(self, app: DemoApp, method: str, path: str, query: str) -> tuple[int, bytes, str]:
        if method == "GET" and path == "/metrics":
            return 200, app.metrics.render(), app.metrics.content_type
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body must not be parsed as the next request
            status, payload = 413, {"error": f"body: {length} bytes > {MAX_BODY_BYTES}"}
        else:
            body = self.rfile.read(length) if length else b""
            handler = app.routes.get((method, path))
            if handler is not None and app.injects_failure(path):
                status, payload = 500, {"error": f"release {app.release} failed this request (injected)"}
            elif handler is None:
                status, payload = (405, {"error": "method not allowed"}) if app.known_path(path) else \
                    (404, {"error": "not found"})
            else:
                try:
                    status, payload = handler(parse_qs(query), body)
                except Exception as exc:  # a bug must still answer (and be counted) as a 500
                    log.exception("Unhandled error on %s %s", method, path)
                    status, payload = 500, {"error": type(exc).__name__}
        return status, json.dumps(payload).encode(), "application/json"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug("%s " + format, self.address_string(), *args)


class AppServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the load balancer opens keep-alive connections in bursts

    def __init__(self, app: DemoApp, config: AppConfig) -> None:
        self.app = app
        self.config = config
        self.drain = Drain()
        super().__init__((config.host, config.port), Handler)


def make_server(config: AppConfig, db: Database | None = None, metrics: AppMetrics | None = None,
                cache: ReadThroughCache | None = None, store: ObjectStore | None = None) -> AppServer:
    """A bound (not yet serving) server; inject ``db``/``metrics``/``cache``/``store`` in tests."""
    return AppServer(build_app(config, db, metrics, cache, store), config)


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def serve(config: AppConfig) -> None:
    """Serve until SIGTERM/SIGINT, then drain: leave the load balancers, close the socket, finish in-flight work.

    The stop signal is blocked before any thread starts (each inherits the mask) and taken with sigwait: no
    Python handler. A handler that set an Event deadlocked when the signal came while the main thread was
    entering that Event's wait, holding its lock (a replica deleted just after it came up: SIGKILLed after
    the 30 s grace, 1 CI run in a few)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    server = make_server(config)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    if server.app.store is not None:
        server.app.store.warm_up()
    log.info("Demo app %s release %s (fail rate %g) listening on http://%s:%d (database %s, cache %s, uploads %s)",
             config.name, config.release, config.fail_rate, config.host, config.port, config.describe_database(),
             "redis" if config.redis_url else "none", config.s3.endpoint if config.s3 else "off")
    signal.sigwait(STOP_SIGNALS)
    shut_down_gracefully(server, config)


def shut_down_gracefully(server: AppServer, config: AppConfig) -> None:
    """Readiness 503 first; close the listener once no load balancer routes here; answer what was accepted."""
    started = time.monotonic()
    server.drain.start()
    log.info("Demo app %s draining (SIGTERM): /health answers 503; waiting until no load balancer routes here "
             "(at most %.0f s)", config.name, config.drain_timeout_s)
    routing = server.drain.wait_unrouted(config.drain_timeout_s)
    if routing:
        log.warning("Load balancer(s) %s still route to %s after %.1f s: closing the listener anyway",
                    ", ".join(routing), config.name, time.monotonic() - started)
    else:
        log.info("No load balancer routes to %s any more (after %.2f s): closing the listener on port %d",
                 config.name, time.monotonic() - started, config.port)
    server.shutdown()
    server.server_close()
    left = server.drain.wait_idle(config.drain_timeout_s)
    if left:
        log.warning("Demo app %s exits with %d request(s) still in flight after %.1f s", config.name, left,
                    time.monotonic() - started)
    else:
        log.info("Demo app %s drained in %.2f s: exiting", config.name, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resilience.lab.app", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--name", default="app", help="replica name for logs (e.g. app-1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = AppConfig.from_env(args.port, args.host, args.name)
    except ValueError as exc:
        parser.error(str(exc))
    serve(config)
    # Drained: nothing is left to finish. Interpreter finalization with daemon handler threads still
    # holding connections took 1-2 s on a loaded machine (and can deadlock on a lock such a thread
    # holds), all of it inside the grace period: exit now, logs flushed.
    logging.shutdown()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
