"""The demo app's read-through cache in Redis, which must never be why a request fails.

Short socket timeouts and no client retries bound what a dead or hung Redis costs one request
(<= ~50 ms); after a failure a circuit breaker skips Redis for a while, so an outage does not
cost every request that timeout: the app serves from PostgreSQL, slower but without errors.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("resilience.lab.app")


class CacheClient(Protocol):
    def get(self, key: str) -> bytes | None: ...
    def set(self, key: str, value: bytes, px: int) -> object: ...


class CircuitBreaker:
    """Open for ``open_s`` after a failure: callers skip the dependency while it is open."""

    def __init__(self, open_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.open_s = open_s
        self.clock = clock
        self._open_until = 0.0
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            return self.clock() >= self._open_until

    def failure(self) -> None:
        with self._lock:
            self._open_until = self.clock() + self.open_s

    def success(self) -> None:
        with self._lock:
            self._open_until = 0.0


def redis_client(url: str, timeout_s: float) -> CacheClient:
    """A redis-py client with ``timeout_s`` connect/read timeouts and its retries turned off."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # redis-py types get() as bytes | str (its types cannot tell decode_responses): without it, it is bytes
    return redis.Redis.from_url(  # type: ignore[return-value]
        url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0)


class ReadThroughCache:
    """``get`` answers (value, outcome) with outcome ``hit``, ``miss``, ``error`` or ``bypass``."""

    def __init__(self, client: CacheClient, ttl_s: float = 1.0, breaker: CircuitBreaker | None = None,
                 on_error: Callable[[str], None] = lambda op: None) -> None:
        self.client = client
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.breaker = breaker or CircuitBreaker()
        self.on_error = on_error

    def _failed(self, op: str, exc: Exception) -> None:
        if self.breaker.allow():  # log once per breaker period, not once per request
            log.warning("Redis %s failed (%s): skipping Redis for %.1f s", op, type(exc).__name__,
                        self.breaker.open_s)
        self.breaker.failure()
        self.on_error(op)

    def get(self, key: str) -> tuple[bytes | None, str]:
        if not self.breaker.allow():
            return None, "bypass"
        try:
            value = self.client.get(key)
        except Exception as exc:  # any Redis failure degrades to a miss, never to an error
            self._failed("get", exc)
            return None, "error"
        self.breaker.success()
        return value, "hit" if value is not None else "miss"

    def set(self, key: str, value: bytes) -> None:
        if not self.breaker.allow():
            return
        try:
            self.client.set(key, value, px=self.ttl_ms)
        except Exception as exc:
            self._failed("set", exc)
