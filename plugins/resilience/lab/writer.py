"""The lab's workload: writes timestamped rows continuously so RPO is measurable.

``python -m resilience.lab.writer`` reads its DSN from ``$RESILIENCE_WRITER_DSN`` (never
argv: argv shows in ``ps``). About ``--rate`` transactions per second, each one batch of
inserts/updates on a single connection (so ``created_at`` is monotonic), through a
multi-host DSN with ``target_session_attrs=read-write`` so it follows a promoted replica.
Errors close the connection and it reconnects with a short backoff. SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import random
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from resilience.lab.postgres import fetch_one

log = logging.getLogger("resilience.lab.writer")

ENV_DSN = "RESILIENCE_WRITER_DSN"
JOURNAL_MAX_BYTES = 4 * 1024 * 1024  # then the journal moves to <name>.1 (one old file is kept)
CREATED_US = "(extract(epoch FROM created_at) * 1000000)::bigint"  # exact: extract() is numeric
STATUSES = ("draft", "scheduled", "published", "archived")


@dataclass
class WriterState:
    """What the writer remembers between transactions."""

    iteration: int = 0
    committed: int = 0
    errors: int = 0
    last_post_id: int | None = None
    last_post_created_us: int | None = None  # with the id, what tells this post apart from a reused id
    account_ids: list[int] = field(default_factory=list)
    post_ids: list[int] = field(default_factory=list)


def connect(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, connect_timeout=2, target_session_attrs="read-write",
                           options="-c statement_timeout=5000", application_name="resilience-lab-writer")


def load_recent(conn: psycopg.Connection, state: WriterState) -> None:
    """Refresh the ids the writer refers to (after a reconnect the database may have changed)."""
    state.account_ids = [r[0] for r in conn.execute("SELECT id FROM accounts ORDER BY id DESC LIMIT 50")]
    state.post_ids = [r[0] for r in conn.execute("SELECT id FROM posts ORDER BY id DESC LIMIT 50")]
    conn.commit()


# the writer's upload rows are database load, with no object behind them: under a prefix of their own, so that
# an audit of what the app stored (its keys are uploads/...) never takes them for lost uploads
SYNTHETIC_UPLOAD_PREFIX = "synthetic/"


def write_batch(conn: psycopg.Connection, state: WriterState, rng: random.Random) -> None:
    """One transaction: maybe a new account, one post, sometimes an upload and a post update."""
    i = state.iteration
    with conn.transaction():
        if not state.account_ids or i % 20 == 0:
            tag = uuid.uuid4().hex[:12]
            row = fetch_one(
                conn, "INSERT INTO accounts (email, display_name) VALUES (%s, %s) RETURNING id",
                (f"writer-{tag}@lab.example", f"Writer {tag}"),
            )
            state.account_ids = ([row[0]] + state.account_ids)[:50]
        account_id = rng.choice(state.account_ids)
        post_id, created_us = fetch_one(
            conn, "INSERT INTO posts (account_id, body, status) VALUES (%s, %s, %s) "
                  f"RETURNING id, {CREATED_US}",
            (account_id, f"lab post #{i} at {time.time():.3f}", rng.choice(STATUSES)),
        )
        if i % 3 == 0:
            payload = os.urandom(32)
            conn.execute(
                "INSERT INTO uploads (account_id, post_id, s3_key, size_bytes, sha256) VALUES (%s, %s, %s, %s, %s)",
                (account_id, post_id, f"{SYNTHETIC_UPLOAD_PREFIX}{account_id}/{uuid.uuid4().hex}",
                 rng.randint(1_000, 5_000_000), hashlib.sha256(payload).hexdigest()),
            )
        if i % 2 == 0 and state.post_ids:
            conn.execute("UPDATE posts SET status = %s, updated_at = now() WHERE id = %s",
                         (rng.choice(STATUSES), rng.choice(state.post_ids)))
    state.post_ids = ([post_id] + state.post_ids)[:50]
    state.last_post_id, state.last_post_created_us = post_id, int(created_us)


class Journal:
    """Append-only record of acknowledged commits: ``post_id epoch_s created_us`` per line, written after
    COMMIT returned (what a client was told is durable), flushed at once so a killed writer loses none.

    ``created_us`` (the post's ``created_at`` in microseconds) tells a post from a later one with the same
    id: a new leader that never saw some commits hands their sequence values out again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = open(path, "a")  # noqa: SIM115 (held open for the writer's life)

    def record(self, post_id: int, at: float, created_us: int) -> None:
        self.handle.write(f"{post_id} {at:.3f} {created_us}\n")
        self.handle.flush()
        if self.handle.tell() > JOURNAL_MAX_BYTES:
            self.handle.close()
            self.path.replace(self.path.with_name(self.path.name + ".1"))
            self.handle = open(self.path, "a")  # noqa: SIM115

    def close(self) -> None:
        self.handle.close()


def read_journal(path: Path, since_epoch_s: float, until_epoch_s: float | None = None) -> list[tuple[int, int]]:
    """(post id, created_us) of the posts acknowledged in [since, until] (the rotated file too)."""
    posts = []
    for candidate in (path.with_name(path.name + ".1"), path):
        try:
            lines = candidate.read_text().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            try:
                post_id, stamp, created_us = int(fields[0]), float(fields[1]), int(fields[2])
            except (IndexError, ValueError):
                continue  # a line cut by a kill
            if stamp >= since_epoch_s and (until_epoch_s is None or stamp <= until_epoch_s):
                posts.append((post_id, created_us))
    return posts


def missing_posts(dsn: str, posts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The (id, created_us) among ``posts`` that the database (its writable node) does not have: absent,
    or that id now holds another post."""
    if not posts:
        return []
    with psycopg.connect(dsn, connect_timeout=5, target_session_attrs="read-write") as conn:
        found = {(r[0], int(r[1])) for r in conn.execute(f"SELECT id, {CREATED_US} FROM posts WHERE id = ANY(%s)",
                                                         ([p[0] for p in posts],))}
    return sorted(set(posts) - found)


def run(dsn: str, rate_per_s: float, stop: threading.Event, label: str = "",
        journal: Journal | None = None) -> WriterState:
    """Write until ``stop`` is set; return the final counters."""
    state = WriterState()
    rng = random.Random()
    interval = 1.0 / rate_per_s
    backoff = 0.2
    conn: psycopg.Connection | None = None
    next_at = time.monotonic()
    last_report = time.monotonic()
    while not stop.is_set():
        try:
            if conn is None or conn.closed:
                conn = connect(dsn)
                load_recent(conn, state)
                log.info("Writer%s connected to %s:%s (%d accounts known)", label,
                         conn.info.host, conn.info.port, len(state.account_ids))
            write_batch(conn, state, rng)
            state.committed += 1
            if journal is not None and state.last_post_id is not None and state.last_post_created_us is not None:
                journal.record(state.last_post_id, time.time(), state.last_post_created_us)
            backoff = 0.2
        except psycopg.Error as exc:
            state.errors += 1
            first = (str(exc).strip().splitlines() or [""])[0]
            log.warning("Writer%s: %s (%s); reconnecting in %.1f s", label, type(exc).__name__, first, backoff)
            if conn is not None:
                conn.close()
            conn = None
            stop.wait(backoff)
            backoff = min(backoff * 2, 2.0)
            next_at = time.monotonic()
            continue
        state.iteration += 1
        now = time.monotonic()
        if now - last_report >= 30:
            log.info("Writer%s: %d transactions committed, %d errors, last post id %s", label,
                     state.committed, state.errors, state.last_post_id)
            last_report = now
        next_at = max(next_at + interval, now)
        stop.wait(max(0.0, next_at - now))
    if conn is not None:
        conn.close()
    log.info("Writer%s stopped: %d transactions committed, %d errors", label, state.committed, state.errors)
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resilience.lab.writer", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=10.0, help="transactions per second (default 10)")
    parser.add_argument("--label", default="", help="a name shown in logs and ps (e.g. the lab dir)")
    parser.add_argument("--journal", type=Path, help="append each acknowledged commit (post id, time) here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dsn = os.environ.get(ENV_DSN)
    if not dsn:
        parser.error(f"{ENV_DSN} is not set")
    if args.rate <= 0:
        parser.error(f"--rate: {args.rate} must be > 0")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    journal = Journal(args.journal) if args.journal else None
    try:
        run(dsn, args.rate, stop, f" [{args.label}]" if args.label else "", journal)
    finally:
        if journal is not None:
            journal.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
