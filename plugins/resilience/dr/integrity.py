"""Data-integrity checks on a restored database.

Queries take an open DB-API connection (psycopg); the comparisons are pure functions so
they are tested on their own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from psycopg import sql

from resilience.checks import Check
from resilience.config import PROJECT_ROOT

log = logging.getLogger(__name__)
T = TypeVar("T")

INTEGRITY_SQL_DIR = PROJECT_ROOT / "include" / "sql" / "integrity"
# Rows whose transaction began before the recovery point but committed after it are
# legitimately absent from the restore; with concurrent writers, compare counts only up to
# this long before the recovery point.
IN_FLIGHT_ALLOWANCE = timedelta(seconds=2)


class Table(NamedTuple):
    """A user table by schema and name; identifiers are only ever quoted by ``psycopg.sql``."""

    schema: str
    name: str

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:  # the label in check names and reports: '"public"."posts"'
        return self.identifier.as_string(None)


def _rows(conn: Any, query: str | sql.Composable, args: tuple = ()) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, args or None)  # no args: '%' in the SQL is literal
        return cur.fetchall() if cur.description else []


def timestamped_tables(conn: Any) -> list[Table]:
    """User tables that carry both ``created_at`` and ``updated_at``: the ones RPO is read from."""
    rows = _rows(
        conn,
        """
        SELECT table_schema, table_name FROM information_schema.columns
        WHERE column_name IN ('created_at', 'updated_at')
          AND table_schema NOT IN ('pg_catalog', 'information_schema')
        GROUP BY table_schema, table_name HAVING count(*) = 2
        ORDER BY 1, 2
        """,
    )
    return [Table(schema, table) for schema, table in rows]


def recovery_point(conn: Any) -> datetime | None:
    """Commit time of the last transaction the restore replayed (None if none was replayed)."""
    return _rows(conn, "SELECT pg_last_xact_replay_timestamp()")[0][0]


def latest_write_query(tables: list[Table]) -> sql.Composed:
    """``SELECT`` of the newest ``created_at``/``updated_at`` across ``tables`` (at least one)."""
    parts = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT max(greatest(created_at, updated_at)) FROM {}").format(t.identifier) for t in tables)
    return sql.SQL("SELECT max(m) FROM ({}) AS latest(m)").format(parts)


def latest_write(conn: Any, tables: list[Table]) -> datetime | None:
    """Newest ``created_at``/``updated_at`` across ``tables``."""
    if not tables:
        return None
    return _rows(conn, latest_write_query(tables))[0][0]


def count_query(table: Table, created_after: datetime | None, created_upto: datetime | None
                ) -> tuple[sql.Composed, tuple[datetime, ...]]:
    """``SELECT count(*)`` of ``table`` with ``created_after < created_at <= created_upto`` and its arguments."""
    conditions, args = [sql.SQL("true")], []
    if created_after is not None:
        conditions.append(sql.SQL("created_at > %s"))
        args.append(created_after)
    if created_upto is not None:
        conditions.append(sql.SQL("created_at <= %s"))
        args.append(created_upto)
    query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(table.identifier, sql.SQL(" AND ").join(conditions))
    return query, tuple(args)


def count_rows(conn: Any, tables: list[Table], created_after: datetime | None, created_upto: datetime | None
               ) -> dict[str, int]:
    """Rows per table (keyed by its quoted name) with ``created_after < created_at <= created_upto``."""
    return {str(t): _rows(conn, *count_query(t, created_after, created_upto))[0][0] for t in tables}


def sql_files(directory: Path = INTEGRITY_SQL_DIR) -> list[Path]:
    return sorted(directory.glob("*.sql"))


def describe(path: Path) -> str:
    """The first comment line of an integrity SQL file, used as the check's title."""
    for line in path.read_text().splitlines():
        if line.startswith("--"):
            return line.lstrip("- ").strip()
    return path.stem


def run_sql_checks(conn: Any, directory: Path = INTEGRITY_SQL_DIR) -> list[Check]:
    """Each file's query returns violations; zero rows is a pass."""
    checks = []
    for path in sql_files(directory):
        rows = _rows(conn, path.read_text())
        detail = "no violations" if not rows else f"{len(rows)} violation(s), e.g. {rows[:3]!r}"
        checks.append(Check(f"{path.stem}: {describe(path)}", not rows, detail))
    return checks


def row_count_checks(source: dict[str, int], restored: dict[str, int], upto: datetime) -> list[Check]:
    """Restored row counts equal the source's for rows created up to ``upto``."""
    checks = []
    for table in sorted(source.keys() | restored.keys()):
        want, got = source.get(table), restored.get(table)
        checks.append(
            Check(
                f"row count {table}",
                want == got,
                f"{got} restored vs {want} in source, created up to {upto.isoformat(timespec='seconds')}",
            )
        )
    return checks


def pitr_checks(newer_than_target: dict[str, int], target: datetime) -> list[Check]:
    """After PITR, no row may be newer than the target."""
    return [
        Check(
            f"no row after pitr_target in {table}",
            count == 0,
            f"{count} row(s) created after {target.isoformat(timespec='seconds')}",
        )
        for table, count in sorted(newer_than_target.items())
    ]


def wait_writable(connect: Callable[[], Any], name: str, timeout_s: float, details: dict[str, Any] | None,
                  read: Callable[[Any, datetime | None], T]) -> T:
    """Poll a restored database until its recovery has ended and it takes a write (a temporary table), then
    ``read(conn, last replayed commit)``; progress logged every 5 s, ``writable_after_s`` put in ``details``.

    ``connect``: a fresh autocommit connection each call (the server may still be starting)."""
    started = last_log = time.monotonic()
    while True:
        try:
            with connect() as conn:
                in_recovery, replay_at = conn.execute(
                    "SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp()").fetchone()
                if not in_recovery:
                    conn.execute("CREATE TEMP TABLE resilience_write_probe (x int)")
                    if details is not None:
                        details["writable_after_s"] = round(time.monotonic() - started, 3)
                    return read(conn, replay_at)
                state = f"recovering, replayed up to {replay_at}"
        except Exception as exc:  # the server may still be starting: retried until the timeout
            state = f"not reachable yet ({type(exc).__name__})"
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"database {name} not writable after {timeout_s:g} s ({state})")
        if time.monotonic() - last_log >= 5:
            log.info("Database %s not writable yet (%s)", name, state)
            last_log = time.monotonic()
        time.sleep(0.1)
