"""The demo app's database access: one short-lived connection per request, with timeouts.

A connection per request keeps the app honest during chaos: after a failover or restore the
next request connects afresh (the multi-host DSN picks the writable node).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

DEMO_EMAIL = "demo@lab.example"


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


class Database:
    """Queries the demo app runs; every connection has a connect and a statement timeout."""

    def __init__(self, dsn: str, connect_timeout_s: int = 2, statement_timeout_ms: int = 2000) -> None:
        self._dsn = dsn
        self.connect_timeout_s = connect_timeout_s
        self.statement_timeout_ms = statement_timeout_ms

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        conn = psycopg.connect(
            self._dsn,
            connect_timeout=self.connect_timeout_s,
            options=f"-c statement_timeout={self.statement_timeout_ms}",
            application_name="resilience-lab-app",
            row_factory=dict_row,
        )
        try:
            yield conn
        finally:
            conn.close()

    def health(self) -> dict[str, Any]:
        """``SELECT 1``, the accounts count and where we are connected (no credentials)."""
        started = time.perf_counter()
        with self.connection() as conn:
            conn.execute("SELECT 1")
            row = conn.execute(
                "SELECT current_database() AS database, pg_is_in_recovery() AS in_recovery, "
                "(SELECT count(*) FROM accounts) AS accounts, inet_server_port() AS server_port"
            ).fetchone()
        return {"status": "ok", **row, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}

    def recent_posts(self, limit: int) -> list[dict[str, Any]]:
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT id, account_id, body, status, created_at, updated_at FROM posts "
                "ORDER BY id DESC LIMIT %s", (limit,)
            ).fetchall()
        return [_jsonable(r) for r in rows]

    def create_post(self, body: str, account_id: int | None = None) -> dict[str, Any]:
        """Insert a post; without ``account_id`` it belongs to the demo account (created if needed)."""
        with self.connection() as conn, conn.transaction():
            if account_id is None:
                account_id = conn.execute(
                    "INSERT INTO accounts (email, display_name) VALUES (%s, 'Demo') "
                    "ON CONFLICT (email) DO UPDATE SET updated_at = now() RETURNING id", (DEMO_EMAIL,)
                ).fetchone()["id"]
            row = conn.execute(
                "INSERT INTO posts (account_id, body, status) VALUES (%s, %s, 'published') "
                "RETURNING id, account_id, body, status, created_at, updated_at", (account_id, body)
            ).fetchone()
        return _jsonable(row)
