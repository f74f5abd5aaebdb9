"""The lab's S3 fault proxy: forwards every request to moto, or answers 5xx at a settable rate.

``python -m resilience.lab.s3_proxy --port P --upstream http://127.0.0.1:M``. A faulted
request never reaches moto (like an S3 front end failing before storage), so it stores nothing.

Control API on the proxy itself:
  ``GET /__fault__``  -> ``{"error_rate": 0.0, "status": 503, "expires_at": null, "expired_at": null,
  "injected": N, "forwarded": M, "changes": [{"at": epoch_s, "error_rate": r, "status": s, "by": "put"}]}``
  (``changes``: the last HISTORY settings, oldest first; ``by`` is ``put`` or ``expiry``: the proxy's own
  record of when a fault went on and off, whoever set it)
  ``PUT /__fault__``  with ``{"error_rate": 0..1, "status": 500..599, "expires_at": epoch_s}`` (status
  optional, default 503; expires_at optional, null: no expiry). Each PUT replaces the whole setting.
  ``GET /__metrics__`` Prometheus metrics (requests by status, injected faults)

``expires_at`` is the fault's dead-man switch: from that moment on the proxy serves no fault, even
when nobody ever sends the revert (Airflow died). It is checked on every request, so no timer runs;
the first request (or GET, or scrape) after it turns the rate to 0 and records ``expired_at``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

log = logging.getLogger("resilience.lab.s3_proxy")

# Hop-by-hop headers (RFC 9110 7.6.1) and the ones aiohttp recomputes are not forwarded.
NOT_FORWARDED = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                 "transfer-encoding", "upgrade", "expect", "host", "content-length"}
S3_ERROR_CODES = {500: "InternalError", 501: "NotImplemented", 503: "SlowDown"}
HISTORY = 100  # settings kept in the fault's change record


def parse_fault(doc: Any, current_status: int = 503, now_s: float | None = None) -> tuple[float, int, float | None]:
    """Validate a ``PUT /__fault__`` body; return (error_rate, status, expires_at) or raise ValueError naming
    the field. A fault (rate > 0) whose ``expires_at`` is not after ``now_s`` is refused."""
    if not isinstance(doc, dict):
        raise ValueError("body: must be a JSON object like {\"error_rate\": 0.5, \"status\": 503}")
    unknown = set(doc) - {"error_rate", "status", "expires_at"}
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}: only error_rate, status and expires_at "
                         "are allowed")
    rate = doc.get("error_rate")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"error_rate: {rate!r} is not a number in 0..1")
    status = doc.get("status", current_status)
    if isinstance(status, bool) or not isinstance(status, int) or not 500 <= status <= 599:
        raise ValueError(f"status: {status!r} is not an integer in 500..599")
    expires_at = doc.get("expires_at")
    if expires_at is not None:
        if isinstance(expires_at, bool) or not isinstance(expires_at, int | float) or not math.isfinite(expires_at):
            raise ValueError(f"expires_at: {expires_at!r} is not UTC epoch seconds (a number) or null")
        now_s = time.time() if now_s is None else now_s
        if rate > 0 and expires_at <= now_s:
            raise ValueError(f"expires_at: {expires_at!r} is not in the future (now {now_s:.3f})")
    return float(rate), status, None if expires_at is None else float(expires_at)


def s3_error_body(status: int) -> bytes:
    code = S3_ERROR_CODES.get(status, "ServiceUnavailable")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>Injected by the lab's S3 fault proxy</Message>"
            f"<RequestId>{uuid.uuid4().hex[:16]}</RequestId></Error>").encode()


@dataclass
class FaultState:
    error_rate: float = 0.0
    status: int = 503
    expires_at: float | None = None  # epoch s: no fault is served from then on (dead-man switch)
    expired_at: float | None = None  # when the last fault ended by its expiry rather than by a PUT
    injected: int = 0
    forwarded: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)  # the last HISTORY settings, oldest first

    def set(self, error_rate: float, status: int, expires_at: float | None, now_s: float) -> None:
        self.error_rate, self.status, self.expires_at = error_rate, status, expires_at
        self._record(now_s, "put")

    def expire(self, now_s: float) -> bool:
        """Turn a fault past its ``expires_at`` off; True if this call did it."""
        if self.expires_at is None or now_s < self.expires_at or self.error_rate == 0:
            return False
        self.error_rate, self.expired_at, self.expires_at = 0.0, self.expires_at, None
        self._record(self.expired_at, "expiry")
        return True

    def _record(self, at: float, by: str) -> None:
        self.changes = [*self.changes[-(HISTORY - 1):],
                        {"at": at, "error_rate": self.error_rate, "status": self.status, "by": by}]

    def as_dict(self) -> dict[str, Any]:
        return {"error_rate": self.error_rate, "status": self.status, "expires_at": self.expires_at,
                "expired_at": self.expired_at, "injected": self.injected, "forwarded": self.forwarded,
                "changes": list(self.changes)}


class S3FaultProxy:
    """The aiohttp handlers; ``rng`` is injectable so tests can make faults deterministic."""

    def __init__(self, upstream: str, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.upstream = upstream.rstrip("/")
        self.rng = rng or random.Random()
        self.clock = clock
        self.fault = FaultState()
        self.registry = CollectorRegistry()
        self.requests = Counter("s3_proxy_requests", "S3 requests answered by the proxy, by status code",
                                ["method", "status"], registry=self.registry)
        self.injected = Counter("s3_proxy_injected_faults", "5xx answers injected by the proxy (not forwarded)",
                                ["status"], registry=self.registry)
        self.rate_gauge = Gauge("s3_proxy_error_rate", "Configured fault rate (0..1)", registry=self.registry)
        self.session: ClientSession | None = None

    async def start_session(self, app: web.Application) -> None:
        self.session = ClientSession(connector=TCPConnector(limit=64, keepalive_timeout=30),
                                     timeout=ClientTimeout(total=30), auto_decompress=False)

    async def close_session(self, app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    def check_expiry(self) -> None:
        """The dead-man switch, checked on every request: a fault past its expiry is turned off."""
        if self.fault.expire(self.clock()):
            self.rate_gauge.set(0)
            log.warning("Fault expired at %.3f with nobody reverting it: serving no more faults (dead-man switch)",
                        self.fault.expired_at)

    async def get_fault(self, request: web.Request) -> web.Response:
        self.check_expiry()
        return web.json_response(self.fault.as_dict())

    async def put_fault(self, request: web.Request) -> web.Response:
        try:
            rate, status, expires_at = parse_fault(json.loads(await request.read() or b"null"), self.fault.status,
                                                   self.clock())
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return web.json_response({"error": str(exc)}, status=400)
        self.fault.set(rate, status, expires_at, self.clock())
        self.rate_gauge.set(rate)
        if expires_at is None:
            log.info("Fault set: error_rate=%.3f status=%d, no expiry", rate, status)
        else:
            log.info("Fault set: error_rate=%.3f status=%d until %.3f (%.1f s from now)", rate, status, expires_at,
                     expires_at - self.clock())
        return web.json_response(self.fault.as_dict())

    async def metrics(self, request: web.Request) -> web.Response:
        self.check_expiry()
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.check_expiry()
        if self.fault.error_rate > 0 and self.rng.random() < self.fault.error_rate:
            status = self.fault.status
            self.fault.injected += 1
            self.injected.labels(status=str(status)).inc()
            self.requests.labels(method=request.method, status=str(status)).inc()
            return web.Response(status=status, body=s3_error_body(status), content_type="application/xml")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
        assert self.session is not None
        try:
            async with self.session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                            data=body, allow_redirects=False) as upstream:
                payload = await upstream.read()
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in NOT_FORWARDED}
                status = upstream.status
                length = upstream.headers.get("Content-Length")
        except (ClientError, TimeoutError) as exc:
            log.warning("moto at %s unreachable: %s", self.upstream, type(exc).__name__)
            self.requests.labels(method=request.method, status="502").inc()
            return web.Response(status=502, body=s3_error_body(502), content_type="application/xml")
        self.fault.forwarded += 1
        self.requests.labels(method=request.method, status=str(status)).inc()
        response = web.Response(status=status, body=payload, headers=out)
        if request.method == "HEAD" and length is not None:
            response.content_length = int(length)  # HEAD Object: the object's size, no body
        return response


def make_app(proxy: S3FaultProxy) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/__fault__", proxy.get_fault)
    app.router.add_put("/__fault__", proxy.put_fault)
    app.router.add_get("/__metrics__", proxy.metrics)
    app.router.add_route("*", "/{tail:.*}", proxy.forward)
    app.on_startup.append(proxy.start_session)
    app.on_cleanup.append(proxy.close_session)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resilience.lab.s3_proxy", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--upstream", required=True, help="moto server URL, e.g. http://127.0.0.1:54324")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("S3 fault proxy on http://%s:%d -> %s", args.host, args.port, args.upstream)
    web.run_app(make_app(S3FaultProxy(args.upstream)), host=args.host, port=args.port, print=None,
                access_log=None, shutdown_timeout=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
