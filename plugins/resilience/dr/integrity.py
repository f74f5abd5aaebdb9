"""Data-integrity checks on a restored database.

Queries take an open DB-API connection (psycopg); the comparisons are pure functions so
they are tested on their own.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from resilience.checks import Check
from resilience.config import PROJECT_ROOT

INTEGRITY_SQL_DIR = PROJECT_ROOT / "include" / "sql" / "integrity"
# Rows whose transaction began before the recovery point but committed after it are
# legitimately absent from the restore; with concurrent writers, compare counts only up to
# this long before the recovery point.
IN_FLIGHT_ALLOWANCE = timedelta(seconds=2)


def _rows(conn: Any, sql: str, args: tuple = ()) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, args or None)  # no args: '%' in the SQL is literal
        return cur.fetchall() if cur.description else []


def timestamped_tables(conn: Any) -> list[str]:
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
    return [f'"{schema}"."{table}"' for schema, table in rows]


def recovery_point(conn: Any) -> datetime | None:
    """Commit time of the last transaction the restore replayed (None if none was replayed)."""
    return _rows(conn, "SELECT pg_last_xact_replay_timestamp()")[0][0]


def latest_write(conn: Any, tables: list[str]) -> datetime | None:
    """Newest ``created_at``/``updated_at`` across ``tables``."""
    if not tables:
        return None
    parts = " UNION ALL ".join(f"SELECT max(greatest(created_at, updated_at)) FROM {t}" for t in tables)
    return _rows(conn, f"SELECT max(m) FROM ({parts}) AS latest(m)")[0][0]


def count_rows(conn: Any, tables: list[str], created_after: datetime | None, created_upto: datetime | None
               ) -> dict[str, int]:
    """Rows per table with ``created_after < created_at <= created_upto`` (None = unbounded)."""
    conditions, args = ["true"], []
    if created_after is not None:
        conditions.append("created_at > %s")
        args.append(created_after)
    if created_upto is not None:
        conditions.append("created_at <= %s")
        args.append(created_upto)
    where = " AND ".join(conditions)
    return {t: _rows(conn, f"SELECT count(*) FROM {t} WHERE {where}", tuple(args))[0][0] for t in tables}


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
