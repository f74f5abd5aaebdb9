"""A small pool of PostgreSQL connections for the demo app, honest about failovers.

Why a pool: a connection per request costs the machine one TIME_WAIT ephemeral port per request
(the client closes first), and the lab's ports lie inside the ephemeral range: enough churn
and a closed client connection blocks a lab server from binding its port for 60 s.

Why still honest during chaos: an idle connection is checked (``SELECT 1``) before each use, so
one whose server died (failover) is dropped, and the next connect goes through the multi-host
DSN to the node that is writable now. A failed *connect* is retried a few times within a second
(nothing was sent, so it is safe for writes too): the fraction of a second a failover leaves
without a writable node costs latency, not errors. Connections are autocommit; writes use
``conn.transaction()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row


class ConnectionPool:
    """At most ``max_idle`` idle connections, each at most ``max_idle_s`` old when reused."""

    def __init__(self, dsn: str, connect_timeout_s: int = 2, statement_timeout_ms: int = 2000,
                 retry_delays_s: Sequence[float] = (0.1, 0.2, 0.4), connect_budget_s: float = 1.0,
                 max_idle: int = 4, max_idle_s: float = 30.0) -> None:
        self._dsn = dsn
        self.connect_timeout_s = connect_timeout_s
        self.statement_timeout_ms = statement_timeout_ms
        self.retry_delays_s = retry_delays_s
        self.connect_budget_s = connect_budget_s
        self.max_idle = max_idle
        self.max_idle_s = max_idle_s
        self._idle: list[tuple[psycopg.Connection[DictRow], float]] = []
        self._lock = threading.Lock()

    def connect(self) -> psycopg.Connection[DictRow]:
        """A new connection; connect failures are retried within ``connect_budget_s``."""
        started = time.monotonic()
        for delay in (*self.retry_delays_s, None):
            try:
                return psycopg.connect(self._dsn, connect_timeout=self.connect_timeout_s, autocommit=True,
                                       options=f"-c statement_timeout={self.statement_timeout_ms}",
                                       application_name="resilience-lab-app", row_factory=dict_row)
            except psycopg.OperationalError:
                if delay is None or time.monotonic() - started + delay > self.connect_budget_s:
                    raise
                time.sleep(delay)
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _reuse(self) -> psycopg.Connection[DictRow] | None:
        """An idle connection that still answers, or None."""
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn, since = self._idle.pop()
            if not conn.closed and time.monotonic() - since <= self.max_idle_s:
                try:
                    conn.execute("SELECT 1")
                    return conn
                except psycopg.Error:
                    pass
            conn.close()

    def _give_back(self, conn: psycopg.Connection[DictRow]) -> None:
        if not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE:
            with self._lock:
                if len(self._idle) < self.max_idle:
                    self._idle.append((conn, time.monotonic()))
                    return
        conn.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[DictRow]]:
        """A checked connection; it returns to the pool only if the block ended cleanly."""
        conn = self._reuse() or self.connect()
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        self._give_back(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()
