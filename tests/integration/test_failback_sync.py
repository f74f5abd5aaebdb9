"""Failback's data sync on the lab's real PostgreSQL, with both regions taking writes during the ramp.

Two databases on the lab's app server stand for the regions: ``primary`` and ``dr``, DR a copy of
the primary (a restore) whose sequences moved one band up, as dr_activation leaves them. DR
serves and takes writes; the first sync runs; during the "ramp" both sides write (rows created
in DR and updated in DR afterwards, rows created on the primary, one row both sides change);
DR is frozen while a client still writes to it; the final sync runs. Every acknowledged row must
be on the primary with its owner and its latest content, and only the row both sides changed
is a conflict.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from resilience.dr.datasync import Watermark, freeze_writes, frozen_for_sync, sync_dr_writes
from resilience.lab import writer
from resilience.lab.app_db import Database

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
GAP = 1_000_000_000  # dr.sequence_gap's default
TABLES = ("accounts", "posts", "uploads", "webhook_events")


@pytest.fixture
def regions(lab):
    """{"primary": dsn, "dr": dsn}: a seeded primary and its copy in DR (sequences one band up)."""
    from resilience.lab.state import load_lab_state

    # lab.json as it is now: an earlier module's failover may have moved the primary since the session began
    leader = load_lab_state(Path(lab["lab_dir"]))["app_db"]["read_write_dsn"]  # whichever node Patroni leads
    with psycopg.connect(leader) as conn:  # then that node only: the frozen DR copy must still accept sessions
        server = make_conninfo(leader, host=conn.info.host, port=str(conn.info.port), target_session_attrs="any")
    tag = uuid.uuid4().hex[:8]
    names = {"primary": f"sync_primary_{tag}", "dr": f"sync_dr_{tag}"}
    dsns = {region: make_conninfo(server, dbname=name) for region, name in names.items()}
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{names["primary"]}"')
        with psycopg.connect(dsns["primary"], autocommit=True) as conn:
            conn.execute((ROOT / "include/sql/app_schema.sql").read_text())
            state = writer.WriterState()
            for _ in range(10):  # what the backup holds
                writer.write_batch(conn, state, random.Random(1))
                state.iteration += 1
            conn.execute("INSERT INTO accounts (email) VALUES ('demo@lab.example')")
        admin.execute(f'CREATE DATABASE "{names["dr"]}" TEMPLATE "{names["primary"]}"')  # the restore
        with psycopg.connect(dsns["dr"], autocommit=True) as conn:
            for (seq,) in conn.execute("SELECT schemaname || '.' || sequencename FROM pg_sequences").fetchall():
                conn.execute("SELECT setval(%s, (SELECT last_value FROM " + seq + ") + %s)", (seq, GAP))
        try:
            yield dsns
        finally:
            for name in names.values():
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rows(dsn: str, table: str) -> dict[int, tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {r[0]: tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()}


def sync(dsns: dict[str, str], since: datetime, after: Watermark | None, band_gap: int,
         freeze: bool = False) -> dict:
    with psycopg.connect(dsns["dr"], autocommit=True) as dr, psycopg.connect(dsns["primary"]) as primary:
        if freeze:
            freeze_writes(dr)
        return sync_dr_writes(dr, primary, since, "primary_wins", after, band_gap)


def post(db: Database, body: str) -> int:
    return int(db.create_post(body)["id"])


def edit(dsn: str, post_id: int, body: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("UPDATE posts SET body = %s, updated_at = now() WHERE id = %s",
                            (body, post_id)).rowcount == 1


def test_every_acknowledged_row_survives_with_its_owner_and_latest_content(regions):
    dr_db, primary_db = Database(regions["dr"]), Database(regions["primary"])
    with psycopg.connect(regions["dr"], autocommit=True) as conn:
        since = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # DR takes over
    dr_writer, rng = writer.WriterState(), random.Random(2)
    with psycopg.connect(regions["dr"], autocommit=True) as conn:
        writer.load_recent(conn, dr_writer)
        for _ in range(12):  # DR serves: accounts, posts, uploads, updates of its own
            writer.write_batch(conn, dr_writer, rng)
            dr_writer.iteration += 1
    created_in_dr = [post(dr_db, f"created in DR #{i}") for i in range(6)]
    on_primary = [post(primary_db, f"primary, before the ramp #{i}") for i in range(3)]

    first = sync(regions, since, None, GAP)
    assert first["unexplained"] == 0 and first["copied"] > 0
    # the primary's new ids now start one band past DR's: none can be an id DR hands out during the ramp
    assert all(v >= GAP * 2 for v in first["tables"]["public.posts"]["sequences"].values()), first["tables"]

    # the ramp: both sides write
    for i, post_id in enumerate(created_in_dr[:4]):
        edit(regions["dr"], post_id, f"updated in DR after the first sync #{i}")
    both = created_in_dr[5]
    edit(regions["dr"], both, "DR's edit")
    edit(regions["primary"], both, "the primary's edit")
    ramp_dr = [post(dr_db, f"created in DR during the ramp #{i}") for i in range(5)]
    ramp_primary = [post(primary_db, f"created on the primary during the ramp #{i}") for i in range(5)]
    edit(regions["primary"], on_primary[0], "primary edit of its own row")
    with psycopg.connect(regions["dr"], autocommit=True) as conn:
        writer.load_recent(conn, dr_writer)
        for _ in range(6):
            writer.write_batch(conn, dr_writer, rng)
            dr_writer.iteration += 1

    # a client keeps writing to DR until the freeze refuses it: every write DR acknowledged must survive
    acknowledged: list[int] = []
    refused, stop = threading.Event(), threading.Event()

    def keep_writing() -> None:
        client = Database(regions["dr"])
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                acknowledged.append(post(client, f"late DR write {len(acknowledged)}"))
            except psycopg.Error:
                refused.set()
                stop.wait(0.05)

    client = threading.Thread(target=keep_writing, daemon=True)
    client.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(acknowledged) >= 5, "the DR client wrote nothing"
    final = sync(regions, since, Watermark.from_dict(first["watermark"]), 0, freeze=True)
    deadline = time.monotonic() + 30
    while not refused.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    client.join(10)
    assert refused.is_set(), "DR still accepted writes after the freeze"
    with psycopg.connect(regions["dr"], autocommit=True) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("INSERT INTO accounts (email) VALUES ('after-the-freeze@lab.example')")

    # only the row both sides changed since the first sync conflicts (and the demo account both touched)
    assert final["unexplained"] == 0
    assert first["deleted_in_dr"] == final["deleted_in_dr"] == 0, final["deleted_rows"]  # DR deleted nothing
    conflicts = {(c["table"], c["key"][0]) for c in final["conflict_rows"]}
    demo = Database(regions["primary"]).find_account("demo@lab.example")["id"]
    assert conflicts == {("public.posts", both), ("public.accounts", demo)}, final["conflict_rows"]
    assert final["conflicts"] == 2
    # every row DR holds is on the primary as DR has it (owner, content), but the one conflict primary_wins kept
    for table in TABLES:
        dr_rows, primary_rows = rows(regions["dr"], table), rows(regions["primary"], table)
        differ = {k for k, row in dr_rows.items() if primary_rows.get(k) != row}
        expected = {both} if table == "posts" else {demo} if table == "accounts" else set()
        assert differ == expected, (table, sorted(differ)[:10])
    posts = rows(regions["primary"], "posts")
    assert posts[both][2] == "the primary's edit"  # primary_wins, reported above
    for i, post_id in enumerate(created_in_dr[:4]):
        assert posts[post_id][2] == f"updated in DR after the first sync #{i}"
    assert all(post_id in posts for post_id in ramp_dr + acknowledged)
    # the primary's own rows kept their ids, owners and contents
    assert posts[on_primary[0]][2] == "primary edit of its own row"
    assert [posts[i][2] for i in ramp_primary] == [f"created on the primary during the ramp #{i}" for i in range(5)]
    assert min(ramp_primary) > max(ramp_dr + acknowledged)  # disjoint bands, not interleaved ids
    # integrity: each sequence at or past its column
    with psycopg.connect(regions["primary"], autocommit=True) as conn:
        for table in TABLES:
            last, top = conn.execute(f"SELECT (SELECT last_value FROM {table}_id_seq), "
                                     f"(SELECT coalesce(max(id), 0) FROM {table})").fetchone()
            assert last >= top, table


def test_a_row_the_primary_does_not_keep_as_dr_has_it_is_counted_as_lost(regions):
    with psycopg.connect(regions["dr"], autocommit=True) as conn:
        since = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    post(Database(regions["dr"]), "written in DR")
    with psycopg.connect(regions["primary"], autocommit=True) as conn:  # a primary that rewrites what it stores
        conn.execute("CREATE FUNCTION mangle() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN NEW.body := 'mangled'; RETURN NEW; END $$")
        conn.execute("CREATE TRIGGER mangle BEFORE INSERT ON posts FOR EACH ROW EXECUTE FUNCTION mangle()")
    result = sync(regions, since, None, GAP)
    assert result["unexplained"] == 1 and result["tables"]["public.posts"]["unexplained"] == 1


def _insert_account(dsn: str, email: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO accounts (email) VALUES (%s)", (email,))


def test_a_final_sync_that_fails_thaws_dr_and_one_that_completes_keeps_it_frozen(regions):
    with psycopg.connect(regions["dr"], autocommit=True) as dr:
        with pytest.raises(RuntimeError, match="the sync failed"), frozen_for_sync(dr) as frozen:
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                _insert_account(regions["dr"], "while-frozen@lab.example")
            raise RuntimeError("the sync failed")
        assert frozen["thawed"] is True
    _insert_account(regions["dr"], "after-the-failed-sync@lab.example")  # DR serves again

    with psycopg.connect(regions["dr"], autocommit=True) as dr, frozen_for_sync(dr) as frozen:
        pass
    assert "thawed" not in frozen
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        _insert_account(regions["dr"], "after-the-final-sync@lab.example")


def _delete(dsn: str, table: str, key: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute(f"DELETE FROM {table} WHERE id = %s", (key,)).rowcount == 1


def _write(dsn: str, state: writer.WriterState, rng: random.Random, batches: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        writer.load_recent(conn, state)
        for _ in range(batches):
            writer.write_batch(conn, state, rng)
            state.iteration += 1


def test_rows_dr_deleted_are_reported_and_kept_on_the_primary(regions):
    """A restored row and a row DR created (and the first sync copied), both deleted in DR: each sync
    reports what DR deleted by then, the primary's own rows DR never had are not among them, and
    nothing is deleted on the primary."""
    with psycopg.connect(regions["dr"], autocommit=True) as conn:
        since = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # DR takes over
        restored = conn.execute("SELECT min(id) FROM posts p WHERE NOT EXISTS "
                                "(SELECT 1 FROM uploads u WHERE u.post_id = p.id)").fetchone()[0]
    for region in ("primary", "dr"):  # restored rows are older than the restore's last seconds (IN_FLIGHT_MARGIN_S)
        with psycopg.connect(regions[region], autocommit=True) as conn:
            conn.execute("UPDATE posts SET created_at = created_at - interval '1 hour', "
                         "updated_at = updated_at - interval '1 hour' WHERE id = %s", (restored,))
    dr_db, primary_db = Database(regions["dr"]), Database(regions["primary"])
    dr_state, primary_state = writer.WriterState(), writer.WriterState()
    _write(regions["dr"], dr_state, random.Random(3), 8)
    created_in_dr = post(dr_db, "created in DR, deleted in DR after the first sync")
    _write(regions["primary"], primary_state, random.Random(4), 4)  # the primary's own rows: never in DR
    on_primary = post(primary_db, "the primary's own, before the first sync")
    in_flight = post(primary_db, "in flight at the recovery point: started before it, committed after")
    with psycopg.connect(regions["primary"], autocommit=True) as conn:
        conn.execute("UPDATE posts SET created_at = %s - interval '3 seconds' WHERE id = %s", (since, in_flight))
    _delete(regions["dr"], "posts", restored)

    first = sync(regions, since, None, GAP)
    assert first["unexplained"] == 0
    assert [(r["table"], r["key"]) for r in first["deleted_rows"]] == [("public.posts", [restored])]
    assert first["tables"]["public.posts"]["deleted_in_dr"] == 1 and first["deleted_in_dr"] == 1

    # the ramp: both sides write, DR deletes a row the first sync copied
    _write(regions["dr"], dr_state, random.Random(5), 4)
    _write(regions["primary"], primary_state, random.Random(6), 4)
    ramp_primary = post(primary_db, "the primary's own, during the ramp")
    _delete(regions["dr"], "posts", created_in_dr)
    final = sync(regions, since, Watermark.from_dict(first["watermark"]), 0, freeze=True)

    assert final["unexplained"] == 0
    deleted = sorted((r["table"], r["key"]) for r in final["deleted_rows"])
    assert deleted == [("public.posts", [restored]), ("public.posts", [created_in_dr])], final["deleted_rows"]
    assert final["deleted_in_dr"] == 2
    assert {t: s["deleted_in_dr"] for t, s in final["tables"].items() if s["deleted_in_dr"]} == {"public.posts": 2}
    posts = rows(regions["primary"], "posts")  # reported, not applied
    assert restored in posts and created_in_dr in posts
    assert on_primary in posts and ramp_primary in posts and in_flight in posts
