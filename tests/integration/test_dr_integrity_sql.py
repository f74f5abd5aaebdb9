"""The drill's integrity queries against a real PostgreSQL, on tables whose names need quoting."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from resilience.dr import integrity

pytestmark = pytest.mark.integration


@pytest.fixture
def odd_database(lab):
    """A scratch database on the lab's server holding a table named with a quote, a space and a semicolon."""
    server = lab["connections"]["resilience_control_db"]
    name = f"odd_names_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(make_conninfo(server, dbname=name), autocommit=True) as conn:
            table = sql.Identifier('odd "schema"', "posts; DROP TABLE x --")
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier('odd "schema"')))
            conn.execute(sql.SQL("CREATE TABLE {} (id int, created_at timestamptz, updated_at timestamptz)")
                         .format(table))
            conn.execute(sql.SQL("INSERT INTO {} VALUES (1, %s, %s), (2, %s, %s)").format(table),
                         (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC),
                          datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)))
            yield conn
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_integrity_queries_read_a_table_whose_name_needs_quoting(odd_database):
    tables = integrity.timestamped_tables(odd_database)
    assert tables == [integrity.Table('odd "schema"', "posts; DROP TABLE x --")]
    assert integrity.latest_write(odd_database, tables) == datetime(2026, 1, 3, tzinfo=UTC)
    label = '"odd ""schema"""."posts; DROP TABLE x --"'
    assert integrity.count_rows(odd_database, tables, None, None) == {label: 2}
    assert integrity.count_rows(odd_database, tables, datetime(2026, 1, 1, tzinfo=UTC), None) == {label: 1}
