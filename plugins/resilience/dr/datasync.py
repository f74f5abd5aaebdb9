"""Failback's data synchronisation: the rows written in DR, copied back to the primary.

The runbook's ``pg_dump --data-only --where=...`` does not exist (pg_dump has no ``--where``).
Instead, per table in foreign-key order: ``COPY (SELECT ... WHERE created_at > since OR
updated_at > since) TO STDOUT`` from DR streams into a temporary table on the primary
(``COPY ... FROM STDIN``), conflicts are found, and the rest is applied as an upsert on the
primary key. All tables go in one transaction on the primary: all or nothing.

A conflict is a row both sides changed since DR started: the primary's copy was updated
after ``since`` and differs from DR's (policy ``primary_wins`` keeps the primary's, ``dr_wins``
takes DR's), or DR's row has the same unique key as another primary row (the same entity created
on both sides: merged into the primary's row, and DR rows that reference it follow it to the
primary's id). Every conflict is reported.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from resilience.dr.failback_params import POLICIES

log = logging.getLogger(__name__)

MAX_REPORTED_CONFLICTS = 500


def foreign_key_order(tables: Iterable[str], references: Iterable[tuple[str, str]]) -> list[str]:
    """Tables ordered so that each comes after the tables it references (pure; cycles keep input order)."""
    pending = list(tables)
    deps = {t: {r for c, r in references if c == t and r != t and r in pending} for t in pending}
    ordered: list[str] = []
    while pending:
        ready = [t for t in pending if deps[t] <= set(ordered)] or pending[:1]
        for table in ready:
            ordered.append(table)
            pending.remove(table)
    return ordered


def _tables(conn: Any) -> list[str]:
    """``schema.table`` of every user table with ``created_at`` and ``updated_at`` (what DR writes carry)."""
    return [r[0] for r in conn.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.columns"
        " WHERE column_name IN ('created_at', 'updated_at')"
        " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        " GROUP BY table_schema, table_name HAVING count(*) = 2 ORDER BY 1").fetchall()]


def _references(conn: Any) -> list[tuple[str, str]]:
    """(referencing table, referenced table) of every foreign key, as ``schema.table``."""
    rows = conn.execute(
        "SELECT a.nspname || '.' || ca.relname, b.nspname || '.' || cb.relname FROM pg_constraint c"
        " JOIN pg_class ca ON ca.oid = c.conrelid JOIN pg_namespace a ON a.oid = ca.relnamespace"
        " JOIN pg_class cb ON cb.oid = c.confrelid JOIN pg_namespace b ON b.oid = cb.relnamespace"
        " WHERE c.contype = 'f'").fetchall()
    return [(x, y) for x, y in rows]


def _key_columns(conn: Any, table: str) -> tuple[list[str], list[list[str]]]:
    """(primary key columns, other unique keys' columns) of ``table``."""
    rows = conn.execute(
        "SELECT i.indisprimary, array_agg(a.attname ORDER BY k.ord) FROM pg_index i"
        " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        " WHERE i.indrelid = %s::regclass AND i.indisunique GROUP BY i.indexrelid, i.indisprimary", (table,)
    ).fetchall()
    primary = next((list(cols) for is_pk, cols in rows if is_pk), [])
    if not primary:
        raise ValueError(f"table {table} has no primary key: its rows cannot be upserted")
    return primary, [list(cols) for is_pk, cols in rows if not is_pk]


def _columns(conn: Any, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
        " ORDER BY attnum", (table,)).fetchall()]


def _foreign_keys(conn: Any, table: str) -> list[tuple[str, str, str]]:
    """(column, its type, referenced ``schema.table``) of each single-column foreign key of ``table``."""
    return [tuple(r) for r in conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), nb.nspname || '.' || cb.relname"
        " FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
        " JOIN pg_class cb ON cb.oid = c.confrelid JOIN pg_namespace nb ON nb.oid = cb.relnamespace"
        " WHERE c.contype = 'f' AND c.conrelid = %s::regclass AND array_length(c.conkey, 1) = 1",
        (table,)).fetchall()]


def _remap_references(primary: Any, table: str, stage: Any) -> int:
    """Point staged rows at the primary's ids of rows merged by a unique key (``resilience_keymap``)."""
    from psycopg import sql

    moved = 0
    for column, kind, referenced in _foreign_keys(primary, table):
        moved += primary.execute(sql.SQL(
            "UPDATE {stage} s SET {col} = CAST(m.new AS {kind}) FROM resilience_keymap m"
            " WHERE m.tbl = %s AND s.{col}::text = m.old").format(
            stage=stage, col=sql.Identifier(column), kind=sql.SQL(kind)), (referenced,)).rowcount
    return moved


def _sequences_past_max(primary: Any, table: str, columns: list[str]) -> None:
    """Each sequence feeding ``table`` at or past the column's highest value: rows merged from DR carry
    ids from DR's band, and a sequence behind them is one the integrity checks (rightly) flag."""
    from psycopg import sql

    for column in columns:
        sequence = primary.execute("SELECT pg_get_serial_sequence(%s, %s)", (table, column)).fetchone()[0]
        if sequence:
            primary.execute(sql.SQL("SELECT setval(%s, greatest((SELECT last_value FROM {seq}), "
                                    "(SELECT coalesce(max({col}), 1) FROM {t})))").format(
                seq=sql.SQL(sequence), col=sql.Identifier(column), t=sql.Identifier(*table.split("."))),
                (sequence,))


def sync_table(dr: Any, primary: Any, table: str, since: datetime, policy: str) -> dict[str, Any]:
    """Copy and apply one table's DR writes inside the primary's open transaction."""
    from psycopg import sql

    ident = sql.Identifier(*table.split("."))
    pk, uniques = _key_columns(primary, table)
    columns = _columns(primary, table)
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    stage = sql.Identifier(f"resilience_sync_{table.replace('.', '_')}")
    primary.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(stage, ident))
    select = sql.SQL("COPY (SELECT {} FROM {} WHERE created_at > {} OR updated_at > {}) TO STDOUT").format(
        cols, ident, sql.Literal(since), sql.Literal(since))
    with dr.cursor().copy(select) as out, primary.cursor().copy(
            sql.SQL("COPY {} ({}) FROM STDIN").format(stage, cols)) as into:
        for chunk in out:
            into.write(chunk)
    copied = primary.execute(sql.SQL("SELECT count(*) FROM {}").format(stage)).fetchone()[0]
    remapped = _remap_references(primary, table, stage)

    def on(a: str, b: str, keys: list[str]) -> sql.Composable:
        return sql.SQL(" AND ").join(sql.SQL("{}.{} = {}.{}").format(sql.Identifier(a), sql.Identifier(k),
                                                                     sql.Identifier(b), sql.Identifier(k))
                                     for k in keys)

    pk_cols = sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(k)) for k in pk)
    both_changed = primary.execute(sql.SQL(
        "SELECT {pk} FROM {stage} s JOIN {t} p ON {on} WHERE p.updated_at > {since}"
        " AND ROW(p.*) IS DISTINCT FROM ROW(s.*)").format(
        pk=pk_cols, stage=stage, t=ident, on=on("p", "s", pk), since=sql.Literal(since))).fetchall()
    clashes: list[tuple[tuple, tuple]] = []  # (DR's key, the primary's key) of rows with one unique key
    for unique in uniques:
        rows = primary.execute(sql.SQL(
            "SELECT {pk}, {ppk} FROM {stage} s JOIN {t} p ON {on} WHERE NOT ({same})").format(
            pk=pk_cols, ppk=sql.SQL(", ").join(sql.SQL("p.{}").format(sql.Identifier(k)) for k in pk),
            stage=stage, t=ident, on=on("p", "s", unique), same=on("p", "s", pk))).fetchall()
        clashes += [(tuple(r[:len(pk)]), tuple(r[len(pk):])) for r in rows]
    if len(pk) == 1:  # rows that reference a merged row follow it to the primary's id
        for theirs, ours in clashes:
            primary.execute("INSERT INTO resilience_keymap (tbl, old, new) VALUES (%s, %s, %s)",
                            (table, str(theirs[0]), str(ours[0])))
    conflicts = [{"table": table, "key": list(k), "resolution": "kept primary's row" if policy == "primary_wins"
                  else "took DR's row"} for k in both_changed]
    conflicts += [{"table": table, "key": list(theirs), "resolution": f"same unique key as the primary's row "
                   f"{list(ours)}: merged into it (references follow)"} for theirs, ours in clashes]
    dropped = {theirs for theirs, _ in clashes} | (set(both_changed) if policy == "primary_wins" else set())
    for key in dropped:
        primary.execute(sql.SQL("DELETE FROM {} WHERE {}").format(
            stage, sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in pk)), key)
    updates = sql.SQL(", ").join(sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c))
                                 for c in columns if c not in pk)
    applied = primary.execute(sql.SQL(
        "INSERT INTO {t} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT ({pk}) DO UPDATE SET {updates}"
        " WHERE ROW({t}.*) IS DISTINCT FROM ROW(EXCLUDED.*)").format(
        t=ident, cols=cols, stage=stage, pk=sql.SQL(", ").join(map(sql.Identifier, pk)), updates=updates)).rowcount
    _sequences_past_max(primary, table, columns)
    log.info("Synced %s: %d row(s) written in DR, %d applied, %d conflict(s), %d reference(s) remapped", table,
             copied, applied, len(conflicts), remapped)
    return {"copied": int(copied), "applied": int(applied), "conflicts": len(conflicts), "remapped": remapped,
            "conflict_rows": conflicts}


def sync_dr_writes(dr: Any, primary: Any, since: datetime, policy: str) -> dict[str, Any]:
    """Every timestamped table, in foreign-key order, in one transaction on the primary."""
    if policy not in POLICIES:
        raise ValueError(f"conflict_policy: {policy!r} is not one of {list(POLICIES)}")
    tables = foreign_key_order(_tables(dr), _references(dr))
    result: dict[str, Any] = {"since": since.isoformat(), "policy": policy, "tables": {}, "conflict_rows": []}
    with primary.transaction():
        primary.execute("CREATE TEMP TABLE resilience_keymap (tbl text, old text, new text) ON COMMIT DROP")
        for table in tables:
            done = sync_table(dr, primary, table, since, policy)
            result["conflict_rows"] += done.pop("conflict_rows")
            result["tables"][table] = done
    result["conflict_rows"] = result["conflict_rows"][:MAX_REPORTED_CONFLICTS]
    result["copied"] = sum(t["copied"] for t in result["tables"].values())
    result["applied"] = sum(t["applied"] for t in result["tables"].values())
    result["conflicts"] = sum(t["conflicts"] for t in result["tables"].values())
    return result
