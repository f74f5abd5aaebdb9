"""The control-plane database: one short transaction per statement, through any DB-API factory.

Run history, the fault ledger and the run lock live here, never in the app database a
failover scenario may take down.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self


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


class PostgresConnect:
    """A DB-API connection factory for an Airflow Postgres Connection (the ledger's and records' input); its
    ``conn_id`` lets the schema be migrated once per process and Connection."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self._hook: Any = None

    def __call__(self) -> Any:
        if self._hook is None:
            from airflow.providers.postgres.hooks.postgres import PostgresHook

            self._hook = PostgresHook(postgres_conn_id=self.conn_id)
        return self._hook.get_conn()


def postgres_connect(conn_id: str) -> PostgresConnect:
    return PostgresConnect(conn_id)


class ControlStore:
    """A store over the control database (region state, DNS log, incidents): the schema migrated on first
    use, then ``db``."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        from resilience.control_schema import ensure_migrated

        ensure_migrated(connect)
        self.db = ControlDb(connect)

    @classmethod
    def for_conn(cls, conn_id: str) -> Self:
        return cls(postgres_connect(conn_id))
