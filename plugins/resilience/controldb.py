"""The control-plane database: one short transaction per statement, through any DB-API factory.

Run history, the fault ledger and the run lock live here, never in the app database a
failover scenario may take down.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ControlDb:
    """``execute`` opens a connection, runs one statement, commits and closes."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect

    def execute(self, sql: str, args: tuple | None = None) -> list[tuple]:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                rows = cur.fetchall() if cur.description else []
            conn.commit()
            return rows
        finally:
            conn.close()


def postgres_connect(conn_id: str) -> Callable[[], Any]:
    """A DB-API connection factory for an Airflow Postgres Connection (the ledger's and records' input)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=conn_id).get_conn
