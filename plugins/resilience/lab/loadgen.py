"""The lab's load generator: a steady, realistic request mix, sent where DNS says, until SIGTERM.

``python -m resilience.lab.loadgen --dns-endpoint http://127.0.0.1:P4 --dns-zone resilience.lab.
--dns-record api.resilience.lab. --port P10 --metrics-port P9 --rate 20`` (Route53 keys from
``$AWS_ACCESS_KEY_ID`` / ``$AWS_SECRET_ACCESS_KEY``), or ``--url http://127.0.0.1:P`` for one fixed
target. Every TTL it reads the record's weighted answers from Route53 (moto) in a worker thread
and sends each request to ``http://<answer>:<port>``, picking the region per request in
proportion to the weights, as a population of clients behind resolvers does. All weights 0, a
failed lookup or an answer off this machine: it keeps the last good answer.

Open-loop (requests start on schedule whatever the latency, as users do), at most
``--max-in-flight`` at once (beyond that a request is dropped and counted, never queued). Mix:
85 % ``GET /api/posts``, 10 % ``POST /api/posts``, 5 % ``POST /api/uploads`` (256..2048 random
bytes). Only loopback targets (127.0.0.0/8) are used. Metrics on ``--metrics-port``:
``loadgen_requests_total{region,outcome}`` (outcome: status class, or ``error`` when no answer
came: refused, reset, timeout, what a client of a dead region sees) and
``loadgen_dns_weight{region}``. Every 10 s it logs what it sent and what came back.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ipaddress
import json
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from resilience.lab.layout import REGIONS

log = logging.getLogger("resilience.lab.loadgen")

MIX = (("GET", "/api/posts?limit=20", 0.85), ("POST", "/api/posts", 0.10), ("POST", "/api/uploads", 0.05))
OUTCOMES = ("2xx", "4xx", "5xx", "error")
STATIC_REGION = "primary"

Answer = dict[str, tuple[str, int]]  # region -> (address, weight)


def is_loopback(host: str | None) -> bool:
    """``localhost`` or an address in 127.0.0.0/8 (or ::1): the lab's traffic stays on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def check_loopback(url: str) -> str:
    """The URL without a trailing slash, or ValueError: the lab sends traffic to this machine only."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not is_loopback(parts.hostname):
        raise ValueError(f"--url: {url!r} is not an http:// URL on 127.0.0.0/8 (the lab's traffic stays local)")
    return url.rstrip("/")


def pick(rng: random.Random) -> tuple[str, str, bytes | None, dict[str, str]]:
    """(method, path, body, headers) of the next request of the mix."""
    method, path, _ = rng.choices(MIX, weights=[share for _, _, share in MIX])[0]
    if path == "/api/posts" and method == "POST":
        body = json.dumps({"body": f"loadgen post at {time.time():.3f}"}).encode()
        return method, path, body, {"Content-Type": "application/json"}
    if path == "/api/uploads":
        return method, path, os.urandom(rng.randint(256, 2048)), {"Content-Type": "application/octet-stream"}
    return method, path, None, {}


def pick_region(answer: Mapping[str, tuple[str, int]], rng: random.Random) -> str | None:
    """A region drawn with probability proportional to its weight (None when every weight is 0)."""
    regions = sorted(region for region, (_, weight) in answer.items() if weight > 0)
    if not regions:
        return None
    return rng.choices(regions, weights=[answer[r][1] for r in regions])[0]


def usable(answer: Mapping[str, tuple[str, int]]) -> str | None:
    """Why ``answer`` cannot replace the last good one (None: it can)."""
    if not answer:
        return "no weighted record"
    off = [f"{region}={address}" for region, (address, _) in answer.items() if not is_loopback(address)]
    if off:
        return f"answers off this machine ({', '.join(off)})"
    if sum(weight for _, weight in answer.values()) <= 0:
        return "every weight is 0"
    return None


def outcome_of(status: int | None) -> str:
    """``2xx``/``4xx``/``5xx``... of an HTTP status; ``error`` when no answer came."""
    return "error" if status is None else f"{status // 100}xx"


def describe(answer: Mapping[str, tuple[str, int]]) -> str:
    return ", ".join(f"{region}={weight} ({address})" for region, (address, weight) in sorted(answer.items()))


class Route53Lookup:
    """Blocking read of a record's weighted answers on a Route53 endpoint (runs in a worker thread).

    The zone id is looked up by name and re-looked-up after any error: moto loses its state when
    it restarts and the recreated zone gets another id.
    """

    def __init__(self, endpoint: str, zone: str, record: str, timeout_s: float = 1.0) -> None:
        self.endpoint, self.zone, self.record, self.timeout_s = endpoint, zone, record, timeout_s
        self.client: Any = None
        self.zone_id: str | None = None

    def __call__(self) -> Answer:
        from resilience.lab.dns_zone import find_zone_id, read_weighted, route53_client

        if self.client is None:
            self.client = route53_client(self.endpoint, self.timeout_s, credentials=None)  # keys: env
        try:
            if self.zone_id is None:
                self.zone_id = find_zone_id(self.client, self.zone)
                if self.zone_id is None:
                    raise LookupError(f"no hosted zone {self.zone} on {self.endpoint}")
            return read_weighted(self.client, self.zone_id, self.record)
        except Exception:
            self.zone_id = None
            raise


class Resolver:
    """The last good answer, refreshed every ``ttl_s`` by ``lookup`` in one worker thread."""

    def __init__(self, lookup: Callable[[], Answer] | None, ttl_s: float, on_change: Callable[[Answer], None],
                 initial: Answer | None = None) -> None:
        self.lookup, self.ttl_s, self.on_change = lookup, ttl_s, on_change
        self.answer: Answer = dict(initial or {})
        self.failing: str | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dns") if lookup else None
        self._pending: Future[Answer] | None = None
        if self.answer:
            on_change(self.answer)

    def accept(self, answer: Answer) -> bool:
        """Take ``answer`` unless it is unusable; log each change of weights once. True if taken."""
        why = usable(answer)
        if why is not None:
            self.fail(why)
            return False
        if self.failing is not None:
            log.info("DNS lookups answer again")
            self.failing = None
        if answer != self.answer:
            log.info("DNS answer changed: %s (was %s)", describe(answer), describe(self.answer) or "none")
            self.answer = dict(answer)
            self.on_change(self.answer)
        return True

    def fail(self, why: str) -> None:
        if why != self.failing:
            log.warning("DNS lookup unusable (%s): keeping the last good answer (%s)", why,
                        describe(self.answer) or "none yet")
        self.failing = why

    async def refresh(self) -> None:
        """Start a lookup unless one still runs; never blocks the event loop for long."""
        assert self._pool is not None and self.lookup is not None
        if self._pending is None or self._pending.cancelled():
            self._pending = self._pool.submit(self.lookup)
        try:
            answer = await asyncio.wait_for(asyncio.wrap_future(self._pending), self.ttl_s * 2)
        except TimeoutError:
            self.fail("lookup still running")
            return
        except Exception as exc:  # any lookup failure: keep the last good answer
            self._pending = None
            self.fail(f"{type(exc).__name__}: {exc}"[:200])
            return
        self._pending = None
        self.accept(answer)

    async def run(self, stop: asyncio.Event) -> None:
        if self.lookup is None:
            return
        while not stop.is_set():
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.ttl_s)
        assert self._pool is not None
        self._pool.shutdown(wait=False, cancel_futures=True)


class LoadMetrics:
    def __init__(self, regions: tuple[str, ...] = REGIONS) -> None:
        self.registry = reg = CollectorRegistry()
        self.requests = Counter("loadgen_requests", "Requests sent, by region picked and outcome (status class, "
                                "or error: no answer)", ["region", "outcome"], registry=reg)
        self.weight = Gauge("loadgen_dns_weight", "Weight of the region in the DNS answer in use", ["region"],
                            registry=reg)
        for region in regions:  # rate() needs two samples: every series exists from the start
            self.weight.labels(region=region).set(0)
            for outcome in OUTCOMES:
                self.requests.labels(region=region, outcome=outcome)

    def set_weights(self, answer: Answer) -> None:
        for region in {*REGIONS, *answer}:
            self.weight.labels(region=region).set(answer.get(region, ("", 0))[1])


class LoadGenerator:
    def __init__(self, resolver_lookup: Callable[[], Answer] | None, port: int | None, rate: float,
                 max_in_flight: int = 64, seed: int | None = None, url: str | None = None,
                 ttl_s: float = 1.0) -> None:
        self.static_url = check_loopback(url) if url else None
        self.port = port
        self.interval = 1.0 / rate
        self.max_in_flight = max_in_flight
        self.rng = random.Random(seed)
        self.counts: collections.Counter[str] = collections.Counter()
        self.in_flight = 0
        self.metrics = LoadMetrics()
        initial = {STATIC_REGION: (urlsplit(self.static_url).hostname or "", 1)} if self.static_url else None
        self.resolver = Resolver(resolver_lookup, ttl_s, self.metrics.set_weights, initial)

    def target(self) -> tuple[str, str] | None:
        """(region, base URL) of the next request, None before the first usable answer."""
        region = pick_region(self.resolver.answer, self.rng)
        if region is None:
            return None
        if self.static_url:
            return region, self.static_url
        return region, f"http://{self.resolver.answer[region][0]}:{self.port}"

    async def one(self, session: ClientSession, region: str, base: str) -> None:
        method, path, body, headers = pick(self.rng)
        self.in_flight += 1
        status: int | None = None
        try:
            async with session.request(method, base + path, data=body, headers=headers) as response:
                await response.read()
                status = response.status
                self.counts[f"{region} {method} {path.split('?')[0]} {status}"] += 1
        except (ClientError, TimeoutError) as exc:
            self.counts[f"{region} {method} {path.split('?')[0]} {type(exc).__name__}"] += 1
        finally:
            self.in_flight -= 1
            self.metrics.requests.labels(region=region, outcome=outcome_of(status)).inc()

    async def run(self, stop: asyncio.Event) -> None:
        tasks: set[asyncio.Task[None]] = set()
        resolving = asyncio.create_task(self.resolver.run(stop))
        async with ClientSession(connector=TCPConnector(limit=self.max_in_flight),
                                 timeout=ClientTimeout(total=10, connect=2)) as session:
            next_at, report_at = time.monotonic(), time.monotonic() + 10
            while not stop.is_set():
                target = self.target()
                if target is None:
                    self.counts["unresolved"] += 1
                elif self.in_flight >= self.max_in_flight:
                    self.counts["dropped"] += 1
                else:
                    task = asyncio.create_task(self.one(session, *target))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                next_at += self.interval
                now = time.monotonic()
                if now >= report_at:
                    log.info("Last 10 s: %s", dict(sorted(self.counts.items())) or "nothing")
                    self.counts.clear()
                    report_at = now + 10
                next_at = max(next_at, now - 1.0)  # after a stall, catch up at most 1 s of requests
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, next_at - now))
            if tasks:
                await asyncio.wait(tasks, timeout=2)
        await resolving
        log.info("Load generator stopped")


async def serve_metrics(registry: CollectorRegistry, port: int) -> web.AppRunner:
    """``GET /metrics`` on 127.0.0.1:port, in the load generator's own event loop."""
    async def render(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", render)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def amain(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    lookup = None if args.url else Route53Lookup(args.dns_endpoint, args.dns_zone, args.dns_record)
    generator = LoadGenerator(lookup, args.port, args.rate, url=args.url, ttl_s=args.dns_ttl)
    runner = await serve_metrics(generator.metrics.registry, args.metrics_port) if args.metrics_port else None
    try:
        await generator.run(stop)
    finally:
        if runner is not None:
            await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resilience.lab.loadgen", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="one fixed target instead of DNS, e.g. http://127.0.0.1:54330")
    parser.add_argument("--dns-endpoint", help="the Route53 API (the lab's moto), e.g. http://127.0.0.1:54324")
    parser.add_argument("--dns-zone", help="hosted zone name, e.g. resilience.lab.")
    parser.add_argument("--dns-record", help="weighted A record to resolve, e.g. api.resilience.lab.")
    parser.add_argument("--dns-ttl", type=float, default=1.0, help="seconds between lookups (default 1)")
    parser.add_argument("--port", type=int, help="port of every region's entry point (with --dns-*)")
    parser.add_argument("--metrics-port", type=int, help="serve /metrics on 127.0.0.1:PORT")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second (default 20)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.url:
        try:
            check_loopback(args.url)
        except ValueError as exc:
            parser.error(str(exc))
    else:
        missing = [f"--{name.replace('_', '-')}" for name in ("dns_endpoint", "dns_zone", "dns_record", "port")
                   if not getattr(args, name)]
        if missing:
            parser.error(f"give --url, or {', '.join(missing)} to resolve the target through DNS")
        try:
            check_loopback(args.dns_endpoint)
        except ValueError as exc:
            parser.error(str(exc).replace("--url", "--dns-endpoint"))
    if not 0 < args.rate <= 500:
        parser.error(f"--rate: {args.rate} is not in (0, 500]")
    if args.dns_ttl <= 0:
        parser.error(f"--dns-ttl: {args.dns_ttl} is not > 0")
    target = args.url or f"{args.dns_record} (zone {args.dns_zone} on {args.dns_endpoint}) port {args.port}"
    log.info("Load generator: %g requests/s to %s", args.rate, target)
    asyncio.run(amain(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
