"""The lab's load generator: a steady, realistic request mix to the load balancer until SIGTERM.

``python -m resilience.lab.loadgen --url http://127.0.0.1:P --rate 20``. Open-loop (requests
start on schedule whatever the latency, as users do), at most ``--max-in-flight`` at once
(beyond that a request is dropped and counted, never queued). Mix: 85 % ``GET /api/posts``,
10 % ``POST /api/posts``, 5 % ``POST /api/uploads`` (256..2048 random bytes). Only loopback
URLs are accepted. Every 10 s it logs what it sent and what came back.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import os
import random
import signal
import time
from urllib.parse import urlsplit

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector

log = logging.getLogger("resilience.lab.loadgen")

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
MIX = (("GET", "/api/posts?limit=20", 0.85), ("POST", "/api/posts", 0.10), ("POST", "/api/uploads", 0.05))


def check_loopback(url: str) -> str:
    """The URL without a trailing slash, or ValueError: the lab sends traffic to this machine only."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK:
        raise ValueError(f"--url: {url!r} is not an http:// URL on 127.0.0.1 (the lab's traffic stays local)")
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


class LoadGenerator:
    def __init__(self, url: str, rate: float, max_in_flight: int = 64, seed: int | None = None) -> None:
        self.url = check_loopback(url)
        self.interval = 1.0 / rate
        self.max_in_flight = max_in_flight
        self.rng = random.Random(seed)
        self.counts: collections.Counter[str] = collections.Counter()
        self.in_flight = 0

    async def one(self, session: ClientSession) -> None:
        method, path, body, headers = pick(self.rng)
        self.in_flight += 1
        try:
            async with session.request(method, self.url + path, data=body, headers=headers) as response:
                await response.read()
                self.counts[f"{method} {path.split('?')[0]} {response.status}"] += 1
        except (ClientError, TimeoutError) as exc:
            self.counts[f"{method} {path.split('?')[0]} {type(exc).__name__}"] += 1
        finally:
            self.in_flight -= 1

    async def run(self, stop: asyncio.Event) -> None:
        tasks: set[asyncio.Task[None]] = set()
        async with ClientSession(connector=TCPConnector(limit=self.max_in_flight),
                                 timeout=ClientTimeout(total=10)) as session:
            next_at, report_at = time.monotonic(), time.monotonic() + 10
            while not stop.is_set():
                if self.in_flight >= self.max_in_flight:
                    self.counts["dropped"] += 1
                else:
                    task = asyncio.create_task(self.one(session))
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
        log.info("Load generator stopped")


async def amain(url: str, rate: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await LoadGenerator(url, rate).run(stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resilience.lab.loadgen", description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="the load balancer, e.g. http://127.0.0.1:54330")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second (default 20)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        check_loopback(args.url)
    except ValueError as exc:
        parser.error(str(exc))
    if not 0 < args.rate <= 500:
        parser.error(f"--rate: {args.rate} is not in (0, 500]")
    log.info("Load generator: %g requests/s to %s", args.rate, args.url)
    asyncio.run(amain(args.url, args.rate))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
