"""The lab's load balancer in front of the app replicas (what a Kubernetes Service + readiness gives).

``python -m resilience.lab.lb --port P --backend app-1=http://127.0.0.1:P1 ...``

- round-robin over healthy replicas (the others only when those fail); active health checks of
  ``/health`` every 0.5 s, each telling the replica whether this balancer still routes new requests
  to it (``X-LB-Name``, ``X-LB-Routing: on|off``): a terminating replica answers 503 and waits for
  ``off`` before it closes its listener (:mod:`resilience.lab.app_drain`);
- a replica whose health check answered non-200 (not ready, e.g. draining) comes back only through a
  health check, never because an in-flight request it still answers came back;
- a replica refusing connections is marked down at once and the request goes to the next one
  (never sent: always safe to retry); a connection lost mid-request is retried only for
  idempotent methods, a POST answers 502, as a client of a dying pod would see;
- ``/metrics`` is the SLO source, as clients see it: ``http_requests_total{method,path,status,
  code_class}``, ``http_request_duration_seconds`` (fine buckets for p95), ``lb_backend_up{backend}``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from dataclasses import dataclass
from itertools import count

from aiohttp import (
    ClientConnectorError,
    ClientError,
    ClientOSError,
    ClientSession,
    ClientTimeout,
    ServerDisconnectedError,
    TCPConnector,
    web,
)
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from resilience.lab.app_drain import LB_NAME_HEADER, LB_ROUTING_HEADER
from resilience.lab.app_metrics import BUCKETS_S

log = logging.getLogger("resilience.lab.lb")

KNOWN_PATHS = {"/health", "/api/health/database", "/api/posts", "/api/uploads", "/api/auth/health-check",
               "/api/webhooks"}
ERROR_STATUSES = (500, 502, 503, 504)
IDEMPOTENT = {"GET", "HEAD", "OPTIONS"}
NOT_FORWARDED = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host",
                 "content-length"}


@dataclass
class Backend:
    name: str
    url: str
    healthy: bool = False
    ready: bool = True  # False once /health answered non-200: only a health check may bring it back


class LBMetrics:
    def __init__(self) -> None:
        self.registry = reg = CollectorRegistry()
        self.requests = Counter("http_requests", "Requests answered to clients, by status code",
                                ["method", "path", "status", "code_class"], registry=reg)
        self.duration = Histogram("http_request_duration_seconds", "Request duration seen by clients",
                                  ["method", "path"], buckets=BUCKETS_S, registry=reg)
        self.backend_up = Gauge("lb_backend_up", "1 while the backend passes its health check", ["backend"],
                                registry=reg)
        self.backend_requests = Counter("lb_backend_requests", "Requests forwarded, by backend and status",
                                        ["backend", "status"], registry=reg)
        self.retries = Counter("lb_retries", "Requests moved to another backend, by reason", ["backend", "reason"],
                               registry=reg)
        # Error series exist (at 0) before the first error: rate() needs two samples of a series,
        # so a series born with the first 5xx would hide a breach for one more scrape.
        for method in ("GET", "POST"):
            for path in (*sorted(KNOWN_PATHS), "other"):
                for status in ERROR_STATUSES:
                    self.requests.labels(method=method, path=path, status=str(status), code_class="5xx")


class LoadBalancer:
    def __init__(self, backends: list[Backend], health_interval_s: float = 0.5, health_timeout_s: float = 0.4,
                 request_timeout_s: float = 15.0, name: str = "lb") -> None:
        self.backends = backends
        self.name = name
        self.health_interval_s = health_interval_s
        self.health_timeout_s = health_timeout_s
        self.request_timeout = ClientTimeout(total=request_timeout_s, connect=1.0)
        self.metrics = LBMetrics()
        self._turn = count()
        self.session: ClientSession | None = None
        self._health_task: asyncio.Task[None] | None = None
        for backend in backends:
            self.metrics.backend_up.labels(backend=backend.name).set(0)

    def candidates(self) -> list[Backend]:
        """Healthy backends in round-robin order, then the others (a refused connection costs
        nothing, and one may have come back since its last health check)."""
        turn = next(self._turn)
        healthy = [b for b in self.backends if b.healthy]
        down = [b for b in self.backends if not b.healthy]
        start = turn % len(healthy) if healthy else 0
        return healthy[start:] + healthy[:start] + down

    def set_health(self, backend: Backend, healthy: bool, why: str) -> None:
        if healthy != backend.healthy:
            log.info("Backend %s (%s) is now %s (%s)", backend.name, backend.url, "UP" if healthy else "DOWN", why)
        backend.healthy = healthy
        self.metrics.backend_up.labels(backend=backend.name).set(1 if healthy else 0)

    async def check(self, backend: Backend) -> None:
        assert self.session is not None
        # the probe carries our routing decision: a draining replica waits for "off" before closing
        headers = {LB_NAME_HEADER: self.name, LB_ROUTING_HEADER: "on" if backend.healthy else "off"}
        try:
            async with self.session.get(f"{backend.url}/health", headers=headers,
                                        timeout=ClientTimeout(total=self.health_timeout_s)) as response:
                await response.read()
                backend.ready = response.status == 200
                self.set_health(backend, backend.ready, f"health check {response.status}")
        except (ClientError, TimeoutError) as exc:
            self.set_health(backend, False, f"health check {type(exc).__name__}")

    async def health_loop(self) -> None:
        while True:
            await asyncio.gather(*(self.check(b) for b in self.backends))
            await asyncio.sleep(self.health_interval_s)

    async def forward(self, backend: Backend, request: web.Request, body: bytes) -> web.Response:
        assert self.session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
        async with self.session.request(request.method, backend.url + request.path_qs, headers=headers,
                                        data=body or None, allow_redirects=False,
                                        timeout=self.request_timeout) as upstream:
            payload = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in NOT_FORWARDED}
        out["X-Backend"] = backend.name
        if not backend.healthy and backend.ready:  # back from a refused connection, not a "not ready"
            self.set_health(backend, True, "answered a request")
        self.metrics.backend_requests.labels(backend=backend.name, status=str(upstream.status)).inc()
        return web.Response(status=upstream.status, body=payload, headers=out)

    async def route(self, request: web.Request, body: bytes) -> web.Response:
        for backend in self.candidates():
            try:
                return await self.forward(backend, request, body)
            except ClientConnectorError:  # refused / unreachable: the request was never sent
                self.set_health(backend, False, "connection refused")
                self.metrics.retries.labels(backend=backend.name, reason="connect").inc()
            except (ServerDisconnectedError, ClientOSError):
                if request.method not in IDEMPOTENT:
                    return web.json_response({"error": f"backend {backend.name} closed the connection"}, status=502)
                self.metrics.retries.labels(backend=backend.name, reason="disconnect").inc()
            except TimeoutError:
                return web.json_response({"error": f"backend {backend.name} timed out"}, status=504)
            except ClientError as exc:
                return web.json_response({"error": f"backend {backend.name}: {type(exc).__name__}"}, status=502)
        return web.json_response({"error": "no healthy backend"}, status=503)

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        response = await self.route(request, await request.read())
        path = request.path if request.path in KNOWN_PATHS else "other"
        status = response.status
        self.metrics.requests.labels(method=request.method, path=path, status=str(status),
                                     code_class=f"{status // 100}xx").inc()
        self.metrics.duration.labels(method=request.method, path=path).observe(time.perf_counter() - started)
        return response

    async def render_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def on_startup(self, app: web.Application) -> None:
        self.session = ClientSession(connector=TCPConnector(limit=200, limit_per_host=50, keepalive_timeout=60),
                                     auto_decompress=False)
        await asyncio.gather(*(self.check(b) for b in self.backends))
        self._health_task = asyncio.create_task(self.health_loop())

    async def on_shutdown(self, app: web.Application) -> None:
        """Tell each backend we route nothing to it any more: one draining now need not wait for us."""
        if self._health_task is not None:
            self._health_task.cancel()
        log.info("Load balancer stopping: telling %s it routes nothing to them any more",
                 ", ".join(b.name for b in self.backends))
        await asyncio.gather(*(self.farewell(b) for b in self.backends))

    async def farewell(self, backend: Backend) -> None:
        assert self.session is not None
        headers = {LB_NAME_HEADER: self.name, LB_ROUTING_HEADER: "off"}
        try:
            async with self.session.get(f"{backend.url}/health", headers=headers,
                                        timeout=ClientTimeout(total=self.health_timeout_s)) as response:
                await response.read()
        except (ClientError, TimeoutError):
            pass  # a backend already gone does not wait for us either

    async def on_cleanup(self, app: web.Application) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
        if self.session is not None:
            await self.session.close()


def make_app(lb: LoadBalancer) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_get("/metrics", lb.render_metrics)
    app.router.add_route("*", "/{tail:.*}", lb.handle)
    app.on_startup.append(lb.on_startup)
    app.on_shutdown.append(lb.on_shutdown)
    app.on_cleanup.append(lb.on_cleanup)
    return app


def parse_backend(spec: str) -> Backend:
    name, sep, url = spec.partition("=")
    if not sep or not name or not url.startswith("http://"):
        raise argparse.ArgumentTypeError(f"--backend: {spec!r} is not NAME=http://HOST:PORT")
    return Backend(name, url.rstrip("/"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resilience.lab.lb", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--backend", type=parse_backend, action="append", required=True)
    parser.add_argument("--health-interval", type=float, default=0.5, help="seconds between health checks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("Load balancer on http://%s:%d -> %s", args.host, args.port, ", ".join(b.name for b in args.backend))
    lb = LoadBalancer(args.backend, args.health_interval, name=f"lb@{args.host}:{args.port}")
    web.run_app(make_app(lb), host=args.host, port=args.port, print=None, access_log=None, shutdown_timeout=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
