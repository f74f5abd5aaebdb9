"""Failback's data synchronisation: the rows written in DR, copied back to the primary.

The runbook's ``pg_dump --data-only --where=...`` does not exist (pg_dump has no ``--where``).
Instead, per table in foreign-key order: ``COPY (SELECT ... WHERE <changed in DR>) TO STDOUT``
from DR streams into a temporary table on the primary (``COPY ... FROM STDIN``), conflicts are
found, and the rest is applied as an upsert on the primary key. All tables go in one transaction
on the primary (all or nothing), and DR is read in one REPEATABLE READ transaction: every table
comes from the same DR snapshot.

Two syncs run: one before the canary (DR serves, the primary already takes writes of its own),
one after the cutover with DR frozen (:func:`freeze_writes`). Each sync records where it stopped
(:class:`Watermark`): the DR snapshot it read and the primary's snapshot and transaction. The
next sync takes "changed since the last sync" per side from those, by transaction visibility,
not by clock: a DR row is copied again only if DR changed it after the last sync's snapshot, and
a primary row changed since only if a transaction other than the last sync's wrote it after. The
first sync has no watermark: "changed" is a timestamp after ``since`` (DR's start).

A conflict is a row BOTH sides changed since the last sync and that differs (policy
``primary_wins`` keeps the primary's, ``dr_wins`` takes DR's), or a DR row with the same unique
key as another primary row (the same entity created on both sides: merged into the primary's row;
DR rows that reference it follow it to the primary's id, in this sync and the later ones). Every
conflict is reported. After applying, every staged row that is not a reported conflict must be on
the primary exactly as DR has it: anything else is counted as ``unexplained`` (data loss).

Id bands: DR's ids live in their own band (activation moves DR's sequences ``sequence_gap``
up). While both sides take writes (the first sync up to the cutover) the primary's sequences
move ``band_gap`` past DR's current sequence values, so the ids the primary hands out during the
ramp can never be ids DR hands out (DR would have to write ``band_gap`` rows first).

Deletions are reported, never applied (a wrong delete on the primary cannot be undone): each sync
copies DR's primary keys from the same snapshot into a temporary table and anti-joins the primary's
rows that DR must have had (:func:`deleted_in_dr` says which and what it cannot see). A deleted row
is found again by every later sync while it stays on the primary.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from resilience.dr.failback_params import POLICIES

log = logging.getLogger(__name__)

MAX_REPORTED_CONFLICTS = 500
MAX_REPORTED_DELETIONS = 500
# A row's created_at is its transaction's start: one in flight at the recovery point is older than rows
# committed before the cut, yet the restore lacks it. Restored rows younger than this are not judged.
IN_FLIGHT_MARGIN_S = 10
FREEZE_WAIT_MS = 5000  # how long each terminated DR session may take to exit


@dataclass(frozen=True)
class Watermark:
    """Where one sync stopped: the next one copies what changed after it, per side."""

    dr_snapshot: str  # pg_snapshot of DR's REPEATABLE READ read
    primary_snapshot: str  # the primary's snapshot when the sync's transaction started
    primary_xid: str  # the sync's own transaction on the primary (its writes are not primary changes)
    keymap: list[list[str]] = field(default_factory=list)  # [table, DR id, primary id] of merged rows
    # table: [lowest, highest] id of the rows DR created that the syncs so far copied (DR's id band)
    dr_created: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> Watermark | None:
        if not doc:
            return None
        return cls(str(doc["dr_snapshot"]), str(doc["primary_snapshot"]), str(doc["primary_xid"]),
                   [list(map(str, m)) for m in doc.get("keymap", [])],
                   {t: [int(lo), int(hi)] for t, (lo, hi) in doc.get("dr_created", {}).items()})


def widen(span: list[int] | None, other: list[int] | None) -> list[int] | None:
    """The smallest ``[lowest, highest]`` holding both spans (either may be None: nothing yet) (pure)."""
    if span is None or other is None:
        return span or other
    return [min(span[0], other[0]), max(span[1], other[1])]


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


def _xid8(column: str) -> str:
    """SQL for the 64-bit id of a row's 32-bit ``xmin``/``xmax``, epoch taken from the current snapshot
    (every committed row version's xid lies within 2^31 below it)."""
    top = "pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
    low = f"{column}::text::bigint"
    return (f"greatest(0, ({top} >> 32 << 32) + {low}"
            f" - CASE WHEN {low} >= ({top} & 4294967295) THEN 4294967296 ELSE 0 END)::text::xid8")


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


def _copy(dr: Any, primary: Any, select: Any, into: Any) -> None:
    """Stream ``COPY (select) TO STDOUT`` on DR into ``COPY into FROM STDIN`` on the primary."""
    with dr.cursor().copy(select) as out, primary.cursor().copy(into) as sink:
        for chunk in out:
            sink.write(chunk)


def _created_span(primary: Any, table: str, pk: list[str], stage: Any, since: datetime) -> list[int] | None:
    """``[lowest, highest]`` id of the staged rows DR created (``created_at`` after ``since``), for a
    single key column fed by a sequence (the id bands); None otherwise or when there are none."""
    from psycopg import sql

    if len(pk) != 1 or not primary.execute("SELECT pg_get_serial_sequence(%s, %s)", (table, pk[0])).fetchone()[0]:
        return None
    lo, hi = primary.execute(sql.SQL("SELECT min({k}), max({k}) FROM {stage} WHERE created_at > %s").format(
        k=sql.Identifier(pk[0]), stage=stage), (since,)).fetchone()
    return None if lo is None else [int(lo), int(hi)]


def deleted_in_dr(dr: Any, primary: Any, table: str, pk: list[str], since: datetime,
                  copied_before: list[int] | None) -> tuple[int, list[list[Any]]]:
    """(how many, the first keys) of the primary's rows that DR deleted: their key is not in DR's
    snapshot, and DR must have had them, because

    * they were restored: ``created_at`` at least ``IN_FLIGHT_MARGIN_S`` before ``since`` (the
      restore's newest write), or
    * an earlier sync copied them from DR: the key lies in ``copied_before``, the span of ids DR
      created that the earlier syncs copied (:attr:`Watermark.dr_created`). Ids in it are DR's:
      the primary's own ids lie below DR's band (activation) or start ``band_gap`` past DR's
      sequence at the first sync (past the span unless DR wrote ``band_gap`` rows since).

    Every other row the primary holds and DR does not is one the primary wrote after DR's start
    (or merged from DR under its own id): DR never had it, so it is no deletion.

    Cannot see: a row DR created and deleted before any sync copied it (the primary never had it,
    nothing to undo); a deleted DR row merged into the primary's row by a unique key (the primary's
    row keeps its own id: the keymap is not consulted); DR-created rows of a table whose key is not
    one sequence-fed column (only the restored rule applies there); a restored row created in the last
    ``IN_FLIGHT_MARGIN_S`` before ``since`` (a transaction in flight at the recovery point has an
    older ``created_at`` than rows committed before the cut, yet the restore lacks it: judged, the
    concurrent writes at the cut would read as deletions). False alarms, never a wrong delete: a
    transaction open longer than the margin across the recovery point, a row inserted with an old
    ``created_at``, and, when ``since`` is DR's start rather than its recovery point, the rows the
    primary wrote between its backup and that start. Nothing is deleted here: the keys are reported.
    """
    from psycopg import sql

    ident = sql.Identifier(*table.split("."))
    keys = sql.Identifier(f"resilience_dr_keys_{table.replace('.', '_')}")
    pk_cols = sql.SQL(", ").join(map(sql.Identifier, pk))
    primary.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
        keys, pk_cols, ident))
    _copy(dr, primary, sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(pk_cols, ident),
          sql.SQL("COPY {} ({}) FROM STDIN").format(keys, pk_cols))
    primary.execute(sql.SQL("ANALYZE {}").format(keys))
    had = sql.SQL("p.created_at <= {} - make_interval(secs => {})").format(sql.Literal(since),
                                                                           sql.Literal(IN_FLIGHT_MARGIN_S))
    if copied_before:
        had = sql.SQL("{} OR p.{} BETWEEN {} AND {}").format(had, sql.Identifier(pk[0]), *map(sql.Literal,
                                                                                                copied_before))
    rows = primary.execute(sql.SQL(  # count(*) OVER (): all of them, before the LIMIT
        "SELECT {pcols}, count(*) OVER () FROM {t} p WHERE ({had}) AND NOT EXISTS"
        " (SELECT 1 FROM {keys} k WHERE {same}) ORDER BY {pcols} LIMIT {cap}").format(
        pcols=sql.SQL(", ").join(sql.SQL("p.{}").format(sql.Identifier(k)) for k in pk), t=ident, had=had,
        keys=keys, same=sql.SQL(" AND ").join(sql.SQL("k.{k} = p.{k}").format(k=sql.Identifier(k)) for k in pk),
        cap=sql.Literal(MAX_REPORTED_DELETIONS))).fetchall()
    return (int(rows[0][-1]) if rows else 0), [list(r[:-1]) for r in rows]


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


def _move_sequences(dr: Any, primary: Any, table: str, columns: list[str], band_gap: int) -> dict[str, int]:
    """Each sequence feeding ``table`` on the primary at or past the column's highest value (rows merged
    from DR carry DR's ids: a sequence behind them is one the integrity checks flag) and, while DR still
    takes writes (``band_gap`` > 0), ``band_gap`` past DR's own sequence: the two sides' new ids stay
    disjoint until the final sync."""
    from psycopg import sql

    moved = {}
    for column in columns:
        sequence = primary.execute("SELECT pg_get_serial_sequence(%s, %s)", (table, column)).fetchone()[0]
        if not sequence:
            continue
        on_dr = dr.execute("SELECT pg_get_serial_sequence(%s, %s)", (table, column)).fetchone()[0]
        dr_last = dr.execute(sql.SQL("SELECT last_value FROM {}").format(sql.SQL(on_dr))).fetchone()[0] if on_dr else 0
        moved[sequence] = int(primary.execute(sql.SQL(
            "SELECT setval(%s, greatest((SELECT last_value FROM {seq}), (SELECT coalesce(max({col}), 1) FROM {t}),"
            " %s))").format(seq=sql.SQL(sequence), col=sql.Identifier(column), t=sql.Identifier(*table.split("."))),
            (sequence, int(dr_last) + band_gap)).fetchone()[0])
    return moved


def sync_table(dr: Any, primary: Any, table: str, since: datetime, policy: str, after: Watermark | None = None,
               band_gap: int = 0) -> dict[str, Any]:
    """Copy and apply one table's DR writes inside the primary's open transaction (DR's read transaction open)."""
    from psycopg import sql

    ident = sql.Identifier(*table.split("."))
    pk, uniques = _key_columns(primary, table)
    columns = _columns(primary, table)
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    stage = sql.Identifier(f"resilience_sync_{table.replace('.', '_')}")
    primary.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(stage, ident))
    if after is None:  # the first sync: everything DR wrote since it started
        dr_changed = sql.SQL("created_at > {since} OR updated_at > {since}").format(since=sql.Literal(since))
        primary_changed = sql.SQL("p.updated_at > {}").format(sql.Literal(since))
    else:  # what each side changed after the last sync's snapshots (the last sync's own writes excluded)
        dr_changed = sql.SQL("NOT pg_visible_in_snapshot({}, {}::pg_snapshot)").format(
            sql.SQL(_xid8("xmin")), sql.Literal(after.dr_snapshot))
        primary_changed = sql.SQL("NOT pg_visible_in_snapshot({x}, {snap}::pg_snapshot) AND {x} <> {xid}::xid8").format(
            x=sql.SQL(_xid8("p.xmin")), snap=sql.Literal(after.primary_snapshot), xid=sql.Literal(after.primary_xid))
    _copy(dr, primary, sql.SQL("COPY (SELECT {} FROM {} WHERE {}) TO STDOUT").format(cols, ident, dr_changed),
          sql.SQL("COPY {} ({}) FROM STDIN").format(stage, cols))
    copied = primary.execute(sql.SQL("SELECT count(*) FROM {}").format(stage)).fetchone()[0]
    created = _created_span(primary, table, pk, stage, since)
    remapped = _remap_references(primary, table, stage)

    def on(a: str, b: str, keys: list[str]) -> sql.Composable:
        return sql.SQL(" AND ").join(sql.SQL("{}.{} = {}.{}").format(sql.Identifier(a), sql.Identifier(k),
                                                                     sql.Identifier(b), sql.Identifier(k))
                                     for k in keys)

    pk_cols = sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(k)) for k in pk)
    # the primary keeps taking writes: lock the rows DR changed so none changes between the check and the upsert
    primary.execute(sql.SQL("SELECT 1 FROM {t} p JOIN {stage} s ON {on} FOR UPDATE OF p").format(
        t=ident, stage=stage, on=on("p", "s", pk)))
    both_changed = primary.execute(sql.SQL(
        "SELECT {pk} FROM {stage} s JOIN {t} p ON {on} WHERE ({changed})"
        " AND ROW(p.*) IS DISTINCT FROM ROW(s.*)").format(
        pk=pk_cols, stage=stage, t=ident, on=on("p", "s", pk), changed=primary_changed)).fetchall()
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
    conflicts = [{"table": table, "key": list(k), "resolution": "both changed since the last sync: kept the "
                  "primary's row" if policy == "primary_wins" else "both changed since the last sync: took DR's row"}
                 for k in both_changed]
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
    # every staged row that is not a reported conflict is now on the primary as DR has it: check, not assume
    unexplained = primary.execute(sql.SQL(
        "SELECT count(*) FROM {stage} s LEFT JOIN {t} p ON {on} WHERE p IS NULL OR ROW(p.*) IS DISTINCT FROM ROW(s.*)"
    ).format(stage=stage, t=ident, on=on("p", "s", pk))).fetchone()[0]
    sequences = _move_sequences(dr, primary, table, columns, band_gap)
    deleted, deleted_keys = deleted_in_dr(dr, primary, table, pk, since, after.dr_created.get(table) if after else None)
    log.info("Synced %s: %d row(s) changed in DR since the last sync, %d applied, %d conflict(s), %d reference(s) "
             "remapped, %d unexplained, %d deleted in DR (not applied)", table, copied, applied, len(conflicts),
             remapped, unexplained, deleted)
    return {"copied": int(copied), "applied": int(applied), "conflicts": len(conflicts), "remapped": remapped,
            "unexplained": int(unexplained), "deleted_in_dr": deleted, "sequences": sequences,
            "conflict_rows": conflicts, "deleted_rows": [{"table": table, "key": k} for k in deleted_keys],
            "dr_created": created}


def sync_dr_writes(dr: Any, primary: Any, since: datetime, policy: str, after: Watermark | None = None,
                   band_gap: int = 0) -> dict[str, Any]:
    """Every timestamped table, in foreign-key order: DR read from one snapshot, the primary written in one
    transaction. ``after``: the last sync's watermark (None for the first); ``band_gap``: how far past DR's
    sequences the primary's move (> 0 while DR still takes writes). The result's ``watermark`` is where this
    sync stopped. Rows DR deleted are counted (``deleted_in_dr``) and listed (``deleted_rows``), not applied."""
    import psycopg

    if policy not in POLICIES:
        raise ValueError(f"conflict_policy: {policy!r} is not one of {list(POLICIES)}")
    if isinstance(band_gap, bool) or not isinstance(band_gap, int) or band_gap < 0:
        raise ValueError(f"band_gap: {band_gap!r} must be an integer >= 0")
    tables = foreign_key_order(_tables(dr), _references(dr))
    result: dict[str, Any] = {"since": since.isoformat(), "after": after.to_dict() if after else None,
                              "policy": policy, "band_gap": band_gap, "tables": {}, "conflict_rows": [],
                              "deleted_rows": []}
    dr.isolation_level, dr.read_only = psycopg.IsolationLevel.REPEATABLE_READ, True
    with dr.transaction(), primary.transaction():
        dr_snapshot = dr.execute("SELECT pg_current_snapshot()::text").fetchone()[0]  # fixes the snapshot
        primary_snapshot, primary_xid = primary.execute(
            "SELECT pg_current_snapshot()::text, pg_current_xact_id()::text").fetchone()
        primary.execute("CREATE TEMP TABLE resilience_keymap (tbl text, old text, new text) ON COMMIT DROP")
        keymap = after.keymap if after else []
        for tbl, old, new in keymap:
            primary.execute("INSERT INTO resilience_keymap (tbl, old, new) VALUES (%s, %s, %s)", (tbl, old, new))
        created = dict(after.dr_created) if after else {}
        for table in tables:
            done = sync_table(dr, primary, table, since, policy, after, band_gap)
            result["conflict_rows"] += done.pop("conflict_rows")
            result["deleted_rows"] += done.pop("deleted_rows")
            span = widen(created.get(table), done.pop("dr_created"))
            if span:
                created[table] = span
            result["tables"][table] = done
        merged = [list(r) for r in primary.execute(
            "SELECT DISTINCT tbl, old, new FROM resilience_keymap ORDER BY 1, 2")]
    result["watermark"] = Watermark(dr_snapshot, primary_snapshot, primary_xid, merged, created).to_dict()
    result["conflict_rows"] = result["conflict_rows"][:MAX_REPORTED_CONFLICTS]
    result["deleted_rows"] = result["deleted_rows"][:MAX_REPORTED_DELETIONS]
    for total in ("copied", "applied", "conflicts", "unexplained", "deleted_in_dr"):
        result[total] = sum(t[total] for t in result["tables"].values())
    return result


def freeze_writes(dr: Any, timeout_ms: int = FREEZE_WAIT_MS) -> dict[str, Any]:
    """DR takes no more writes: its database turns read-only for every new session and every session open
    now is ended (a transaction in flight is rolled back, never acknowledged). Waits until they are gone,
    so a snapshot taken afterwards holds everything DR ever acknowledged."""
    from psycopg import sql

    dbname = dr.execute("SELECT current_database()").fetchone()[0]
    dr.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = on").format(sql.Identifier(dbname)))
    rows = dr.execute(
        "SELECT pid, pg_terminate_backend(pid, %s) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND backend_type = 'client backend'", (timeout_ms,)).fetchall()
    stuck = [pid for pid, gone in rows if not gone]
    if stuck:
        raise TimeoutError(f"DR database {dbname}: sessions {stuck} did not end within {timeout_ms} ms of "
                           "pg_terminate_backend: DR is not frozen, the final sync would miss their writes")
    log.info("DR database %s frozen: read-only for new sessions, %d open session(s) ended", dbname, len(rows))
    return {"database": dbname, "sessions_ended": len(rows)}


def thaw_writes(dr: Any) -> None:
    """Undo :func:`freeze_writes`: new sessions of DR's database take writes again."""
    from psycopg import sql

    dbname = dr.execute("SELECT current_database()").fetchone()[0]
    dr.execute(sql.SQL("ALTER DATABASE {} RESET default_transaction_read_only").format(sql.Identifier(dbname)))
    log.warning("DR database %s thawed: it takes writes again", dbname)


@contextmanager
def frozen_for_sync(dr: Any) -> Iterator[dict[str, Any]]:
    """DR frozen (:func:`freeze_writes`) for the block, and thawed again when the block fails: a final
    sync that did not complete leaves DR able to serve, as it found it. Yields what the freeze did
    (``thawed`` is added when it was undone)."""
    frozen: dict[str, Any] = {}
    try:
        frozen.update(freeze_writes(dr))
        yield frozen
    except BaseException:
        try:
            thaw_writes(dr)
            frozen["thawed"] = True
        except Exception:  # the sync's own error is the one to raise; this one is logged
            log.exception("DR could not be thawed after a failed final sync: run ALTER DATABASE ... "
                          "RESET default_transaction_read_only on the DR database")
        raise

