"""Integrity SQL builds every identifier with psycopg.sql: quotes and spaces in names stay names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from resilience.dr.integrity import Table, count_query, latest_write_query

ODD = Table('odd "schema"', 'posts; DROP TABLE x --')
T1 = datetime(2026, 1, 1, tzinfo=UTC)
T2 = datetime(2026, 1, 2, tzinfo=UTC)


def test_a_table_label_is_its_quoted_identifier():
    assert str(Table("public", "posts")) == '"public"."posts"'
    assert str(ODD) == '"odd ""schema"""."posts; DROP TABLE x --"'


def test_latest_write_quotes_each_table():
    query = latest_write_query([Table("public", "posts"), ODD]).as_string(None)
    assert query == (
        'SELECT max(m) FROM (SELECT max(greatest(created_at, updated_at)) FROM "public"."posts" UNION ALL '
        'SELECT max(greatest(created_at, updated_at)) FROM "odd ""schema"""."posts; DROP TABLE x --")'
        " AS latest(m)")


@pytest.mark.parametrize(
    ("after", "upto", "where", "args"),
    [
        (None, None, "true", ()),
        (T1, None, "true AND created_at > %s", (T1,)),
        (None, T2, "true AND created_at <= %s", (T2,)),
        (T1, T2, "true AND created_at > %s AND created_at <= %s", (T1, T2)),
    ],
)
def test_count_query_quotes_the_table_and_passes_bounds_as_arguments(after, upto, where, args):
    query, got_args = count_query(Table("my schema", 'we"ird'), after, upto)
    assert query.as_string(None) == f'SELECT count(*) FROM "my schema"."we""ird" WHERE {where}'
    assert got_args == args
