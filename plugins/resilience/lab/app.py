"""The lab's demo app: a small HTTP API on PostgreSQL that exports Prometheus metrics.

``python -m resilience.lab.app --port P`` with the DSN in ``$RESILIENCE_APP_DSN`` (never in
argv, so the password is not visible in ``ps``). Routes: ``GET /health``,
``GET /api/health/database``, ``GET /api/posts``, ``POST /api/posts``, ``GET /metrics``.
Dependencies (database, metrics) are injected through :class:`AppConfig` / :func:`make_server`
so later versions can add Redis and S3 the same way. SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from resilience.lab.app_db import Database
from resilience.lab.app_metrics import AppMetrics

log = logging.getLogger("resilience.lab.app")

ENV_DSN = "RESILIENCE_APP_DSN"
MAX_BODY_BYTES = 64 * 1024
Response = tuple[int, Any]


@dataclass(frozen=True)
class AppConfig:
    """Everything the demo app depends on. Secrets stay in ``dsn`` and are never logged."""

    dsn: str
    host: str = "127.0.0.1"
    port: int = 8080
    connect_timeout_s: int = 2
    statement_timeout_ms: int = 2000
    max_posts: int = 100

    @classmethod
    def from_env(cls, port: int, host: str = "127.0.0.1") -> AppConfig:
        dsn = os.environ.get(ENV_DSN)
        if not dsn:
            raise ValueError(f"{ENV_DSN} is not set: the demo app needs a PostgreSQL DSN")
        return cls(dsn=dsn, host=host, port=port)

    def describe_database(self) -> str:
        """host:port/dbname of the DSN, without user or password (for logs)."""
        parts = conninfo_to_dict(self.dsn)
        hosts = str(parts.get("host", "?")).split(",")
        ports = str(parts.get("port", "5432")).split(",")
        ports = ports * len(hosts) if len(ports) == 1 else ports
        return ",".join(f"{h}:{p}" for h, p in zip(hosts, ports, strict=False)) + f"/{parts.get('dbname', '?')}"


class DemoApp:
    """Route handlers: pure functions of the request returning (status, JSON body)."""

    def __init__(self, config: AppConfig, db: Database | None = None, metrics: AppMetrics | None = None):
        self.config = config
        self.db = db or Database(config.dsn, config.connect_timeout_s, config.statement_timeout_ms)
        self.metrics = metrics or AppMetrics()
        self.routes: dict[tuple[str, str], Callable[[dict[str, list[str]], bytes], Response]] = {
            ("GET", "/health"): lambda q, b: (200, {"status": "ok"}),
            ("GET", "/api/health/database"): self.database_health,
            ("GET", "/api/posts"): self.list_posts,
            ("POST", "/api/posts"): self.create_post,
        }

    def database_health(self, query: dict[str, list[str]], body: bytes) -> Response:
        try:
            return 200, self.db.health()
        except psycopg.Error as exc:
            return 503, {"status": "error", "database": "app", "error": type(exc).__name__}

    def list_posts(self, query: dict[str, list[str]], body: bytes) -> Response:
        raw = query.get("limit", ["20"])[0]
        if not raw.isdigit() or not 1 <= int(raw) <= self.config.max_posts:
            return 400, {"error": f"limit: {raw!r} is not an integer in 1..{self.config.max_posts}"}
        try:
            return 200, {"posts": self.db.recent_posts(int(raw))}
        except psycopg.Error as exc:
            return 503, {"status": "error", "error": type(exc).__name__}

    def create_post(self, query: dict[str, list[str]], body: bytes) -> Response:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": "body: not valid JSON"}
        text = data.get("body") if isinstance(data, dict) else None
        if not isinstance(text, str) or not 1 <= len(text) <= 5000:
            return 400, {"error": "body: must be a string of 1..5000 characters"}
        account_id = data.get("account_id")
        if account_id is not None and (not isinstance(account_id, int) or isinstance(account_id, bool)):
            return 400, {"error": f"account_id: {account_id!r} is not an integer"}
        try:
            return 201, self.db.create_post(text, account_id)
        except psycopg.IntegrityError as exc:
            return 400, {"error": f"account_id: {account_id} rejected ({type(exc).__name__})"}
        except psycopg.Error as exc:
            return 503, {"status": "error", "error": type(exc).__name__}

    def known_path(self, path: str) -> bool:
        return path == "/metrics" or any(p == path for _, p in self.routes)


class Handler(BaseHTTPRequestHandler):
    """Dispatches to :class:`DemoApp` and records every request in the metrics."""

    server: AppServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        app = self.server.app
        started = time.perf_counter()
        url = urlsplit(self.path)
        status, data, content_type = self._respond(app, method, url.path, url.query)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        label = url.path if app.known_path(url.path) else "other"
        app.metrics.observe(method, label, status, time.perf_counter() - started)

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
            if handler is None:
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

    def __init__(self, app: DemoApp) -> None:
        self.app = app
        super().__init__((app.config.host, app.config.port), Handler)


def make_server(config: AppConfig, db: Database | None = None, metrics: AppMetrics | None = None) -> AppServer:
    """A bound (not yet serving) server; inject ``db``/``metrics`` in tests."""
    return AppServer(DemoApp(config, db, metrics))


def serve(config: AppConfig) -> None:
    """Serve until SIGTERM/SIGINT, then finish in-flight requests and close the socket."""
    server = make_server(config)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    log.info("Demo app listening on http://%s:%d (database %s)", config.host, config.port,
             config.describe_database())
    stop.wait()
    log.info("Demo app on port %d stopping (SIGTERM)", config.port)
    server.shutdown()
    server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resilience.lab.app", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = AppConfig.from_env(args.port, args.host)
    except ValueError as exc:
        parser.error(str(exc))
    serve(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
