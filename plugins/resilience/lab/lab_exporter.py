"""Liveness of the lab's stateful components as Prometheus metrics (runs inside the supervisor).

Probed every 0.5 s, each component in its own thread so a hung one does not stall the others,
each over a kept connection (re-opened after any error): Redis ``PING``, each PostgreSQL node
``SELECT pg_is_in_recovery()``, the S3 fault proxy ``GET /__fault__``. Exported:
``lab_component_up{component="redis"|"postgres_primary"|"postgres_replica"|"s3"}``,
``lab_postgres_up{node}`` and ``lab_postgres_in_recovery{node}`` (absent while the node is down).
Roles are re-read every round, so ``postgres_primary`` follows a failover.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from resilience.lab.layout import HOST, NODES, PG_SUPERUSER, LabLayout

log = logging.getLogger("resilience.lab.supervisor")

PROBE_INTERVAL_S = 0.5


class PostgresProbe:
    """``pg_is_in_recovery()`` of one node over a kept connection: True/False, None when down; and its
    client connections against ``max_connections`` (the database load a chaos check bounds)."""

    QUERY = ("SELECT pg_is_in_recovery(), (SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
             "'client backend'), current_setting('max_connections')::int")

    def __init__(self, port: int, password: str) -> None:
        self.port = port
        self.password = password
        self.conn: psycopg.Connection | None = None
        self.connections: tuple[int, int] | None = None  # (in use, max_connections) at the last answer

    def __call__(self) -> bool | None:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = psycopg.connect(host=HOST, port=self.port, user=PG_SUPERUSER, password=self.password,
                                            dbname="postgres", connect_timeout=2, autocommit=True,
                                            application_name="resilience-lab-exporter",
                                            options="-c statement_timeout=1000")
            row = self.conn.execute(self.QUERY).fetchone()
            self.connections = (int(row[1]), int(row[2])) if row else None
            return bool(row[0]) if row else None
        except psycopg.Error:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            self.connections = None
            return None


class HttpProbe:
    """``GET path`` answers 200, over one kept-alive connection (re-opened after any error).

    Probing twice a second with a new connection each time would leave a TIME_WAIT ephemeral
    port behind per probe; the lab's own ports lie in that range.
    """

    def __init__(self, port: int, path: str, timeout_s: float = 0.4) -> None:
        self.port, self.path, self.timeout_s = port, path, timeout_s
        self.conn: http.client.HTTPConnection | None = None

    def __call__(self) -> bool:
        reused = self.conn is not None
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout_s)
            self.conn.request("GET", self.path)
            response = self.conn.getresponse()
            response.read()
            if response.will_close:
                self.close()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            self.close()
            return self() if reused else False  # the server behind a kept connection restarted

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None


class RedisProbe:
    """``PING`` over one kept connection (re-opened after any error)."""

    def __init__(self, port: int, timeout_s: float = 0.3) -> None:
        self.port, self.timeout_s = port, timeout_s
        self.sock: socket.socket | None = None

    def __call__(self) -> bool:
        try:
            if self.sock is None:
                self.sock = socket.create_connection((HOST, self.port), timeout=self.timeout_s)
            self.sock.sendall(b"PING\r\n")
            if self.sock.recv(64).startswith(b"+PONG"):
                return True
        except OSError:
            pass
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        return False


class MetricsHandler(BaseHTTPRequestHandler):
    """``GET /metrics`` over HTTP/1.1 keep-alive (prometheus_client's own server closes every
    connection, one ephemeral port in TIME_WAIT per scrape)."""

    protocol_version = "HTTP/1.1"
    registry: CollectorRegistry

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        body = generate_latest(self.registry) if self.path.split("?")[0] == "/metrics" else b"not found\n"
        self.send_response(200 if self.path.split("?")[0] == "/metrics" else 404)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        return


def serve_metrics(registry: CollectorRegistry, port: int) -> ThreadingHTTPServer:
    """Serve ``registry`` on ``127.0.0.1:port/metrics`` in a daemon thread; ``shutdown()`` stops it."""
    handler = type("Handler", (MetricsHandler,), {"registry": registry})
    server = ThreadingHTTPServer((HOST, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="metrics",
                     daemon=True).start()
    return server


class ComponentProbes(Collector):
    """Probe threads plus the collector that reports their latest results."""

    def __init__(self, layout: LabLayout, password: str, stop: threading.Event) -> None:
        self.stop = stop
        self.results: dict[str, object] = {}
        self.probes: dict[str, Callable[[], object]] = {
            "redis": RedisProbe(layout.port("redis")),
            "s3": HttpProbe(layout.port("s3_proxy"), "/__fault__"),
            **{f"node_{n}": PostgresProbe(layout.node(n).port, password) for n in NODES},
        }

    def start(self) -> None:
        for name, probe in self.probes.items():
            threading.Thread(target=self._loop, args=(name, probe), name=f"probe-{name}", daemon=True).start()

    def _loop(self, name: str, probe: Callable[[], object]) -> None:
        while not self.stop.is_set():
            try:
                self.results[name] = probe()
            except Exception:  # a probe bug must not kill the thread: report the component down
                log.exception("Probe %s failed", name)
                self.results[name] = None
            self.stop.wait(PROBE_INTERVAL_S)

    def component_up(self) -> dict[str, bool]:
        # A node's probe answers pg_is_in_recovery(): the roles come from the probes themselves, so
        # a scrape asks Patroni nothing and is right the moment a promotion is visible in PostgreSQL.
        in_recovery = [self.results.get(f"node_{n}") for n in NODES]
        return {"redis": self.results.get("redis") is True, "postgres_primary": False in in_recovery,
                "postgres_replica": True in in_recovery, "s3": self.results.get("s3") is True}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("lab_component_up", "1 while the lab component answers its probe (0.5 s)",
                               labels=["component"])
        for component, value in self.component_up().items():
            up.add_metric([component], 1.0 if value else 0.0)
        yield up
        node_up = GaugeMetricFamily("lab_postgres_up", "1 while the PostgreSQL node answers", labels=["node"])
        recovery = GaugeMetricFamily("lab_postgres_in_recovery", "pg_is_in_recovery() of the node (1: standby)",
                                     labels=["node"])
        for node in NODES:
            in_recovery = self.results.get(f"node_{node}")
            node_up.add_metric([node], 0.0 if in_recovery is None else 1.0)
            if in_recovery is not None:
                recovery.add_metric([node], 1.0 if in_recovery else 0.0)
        connections = GaugeMetricFamily("lab_postgres_connections", "Client connections open on the node",
                                        labels=["node"])
        limit = GaugeMetricFamily("lab_postgres_max_connections", "max_connections of the node", labels=["node"])
        for node in NODES:
            probe = self.probes[f"node_{node}"]
            counts = probe.connections if isinstance(probe, PostgresProbe) else None
            if counts is not None:
                connections.add_metric([node], float(counts[0]))
                limit.add_metric([node], float(counts[1]))
        yield node_up
        yield recovery
        yield connections
        yield limit
