"""The demo app's database access: pooled connections (:mod:`resilience.lab.app_pool`) with timeouts.

The multi-host DSN with ``target_session_attrs=read-write`` picks the writable node on every
new connection, and the pool drops connections whose server died, so the app follows a failover.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import DictRow

from resilience.lab.app_pool import ConnectionPool
from resilience.lab.postgres import fetch_one

DEMO_EMAIL = "demo@lab.example"


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


class Database:
    """Queries the demo app runs; every connection has a connect and a statement timeout."""

    def __init__(self, dsn: str, connect_timeout_s: int = 2, statement_timeout_ms: int = 2000,
                 pool: ConnectionPool | None = None) -> None:
        self.pool = pool or ConnectionPool(dsn, connect_timeout_s, statement_timeout_ms)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[DictRow]]:
        with self.pool.connection() as conn:
            yield conn

    def health(self) -> dict[str, Any]:
        """``SELECT 1``, the accounts count and where we are connected (no credentials)."""
        started = time.perf_counter()
        with self.connection() as conn:
            conn.execute("SELECT 1")
            row = fetch_one(
                conn, "SELECT current_database() AS database, pg_is_in_recovery() AS in_recovery, "
                "(SELECT count(*) FROM accounts) AS accounts, inet_server_port() AS server_port"
            )
        return {"status": "ok", **row, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}

    def recent_posts(self, limit: int) -> list[dict[str, Any]]:
        """Newest posts. A read is idempotent: one lost with its server (failover) is run again once."""
        query = ("SELECT id, account_id, body, status, created_at, updated_at FROM posts "
                 "ORDER BY id DESC LIMIT %s")
        for attempt in (1, 2):
            with self.connection() as conn:  # connect failures are retried by the pool already
                try:
                    return [_jsonable(r) for r in conn.execute(query, (limit,)).fetchall()]
                except psycopg.OperationalError:
                    if attempt == 2 or not conn.closed:  # only a lost connection, not e.g. a timeout
                        raise
        raise AssertionError("unreachable")

    def create_post(self, body: str, account_id: int | None = None) -> dict[str, Any]:
        """Insert a post; without ``account_id`` it belongs to the demo account (created if needed)."""
        with self.connection() as conn, conn.transaction():
            if account_id is None:
                account_id = self._demo_account(conn)
            row = fetch_one(
                conn, "INSERT INTO posts (account_id, body, status) VALUES (%s, %s, 'published') "
                "RETURNING id, account_id, body, status, created_at, updated_at", (account_id, body)
            )
        return _jsonable(row)

    def _demo_account(self, conn: psycopg.Connection[DictRow]) -> int:
        return fetch_one(
            conn, "INSERT INTO accounts (email, display_name) VALUES (%s, 'Demo') "
            "ON CONFLICT (email) DO UPDATE SET updated_at = now() RETURNING id", (DEMO_EMAIL,)
        )["id"]

    def record_upload(self, s3_key: str, size_bytes: int, sha256: str) -> dict[str, Any]:
        """Insert the ``uploads`` row of an object S3 has accepted (owned by the demo account)."""
        with self.connection() as conn, conn.transaction():
            row = fetch_one(
                conn, "INSERT INTO uploads (account_id, s3_key, size_bytes, sha256) VALUES (%s, %s, %s, %s) "
                "RETURNING id, s3_key, size_bytes, sha256, created_at",
                (self._demo_account(conn), s3_key, size_bytes, sha256),
            )
        return _jsonable(row)

    def find_account(self, email: str) -> dict[str, Any] | None:
        """The login lookup of the authentication check."""
        with self.connection() as conn:
            row = conn.execute("SELECT id, email FROM accounts WHERE email = %s", (email,)).fetchone()
        return _jsonable(row) if row else None

    def record_webhook(self, event_id: str, event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Store a received webhook once (a redelivery of the same ``event_id`` is a duplicate)."""
        with self.connection() as conn, conn.transaction():
            row = conn.execute(
                "INSERT INTO webhook_events (event_id, event_type, payload) VALUES (%s, %s, %s) "
                "ON CONFLICT (event_id) DO NOTHING RETURNING id, event_id, created_at",
                (event_id, event_type, json.dumps(payload)),
            ).fetchone()
        return {**_jsonable(row), "duplicate": False} if row else {"event_id": event_id, "duplicate": True}
