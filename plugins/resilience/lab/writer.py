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

import psycopg

from resilience.lab.postgres import fetch_one

log = logging.getLogger("resilience.lab.writer")

ENV_DSN = "RESILIENCE_WRITER_DSN"
STATUSES = ("draft", "scheduled", "published", "archived")


@dataclass
class WriterState:
    """What the writer remembers between transactions."""

    iteration: int = 0
    committed: int = 0
    errors: int = 0
    last_post_id: int | None = None
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
        post_id = fetch_one(
            conn, "INSERT INTO posts (account_id, body, status) VALUES (%s, %s, %s) RETURNING id",
            (account_id, f"lab post #{i} at {time.time():.3f}", rng.choice(STATUSES)),
        )[0]
        if i % 3 == 0:
            payload = os.urandom(32)
            conn.execute(
                "INSERT INTO uploads (account_id, post_id, s3_key, size_bytes, sha256) VALUES (%s, %s, %s, %s, %s)",
                (account_id, post_id, f"uploads/{account_id}/{uuid.uuid4().hex}",
                 rng.randint(1_000, 5_000_000), hashlib.sha256(payload).hexdigest()),
            )
        if i % 2 == 0 and state.post_ids:
            conn.execute("UPDATE posts SET status = %s, updated_at = now() WHERE id = %s",
                         (rng.choice(STATUSES), rng.choice(state.post_ids)))
    state.post_ids = ([post_id] + state.post_ids)[:50]
    state.last_post_id = post_id


def run(dsn: str, rate_per_s: float, stop: threading.Event, label: str = "") -> WriterState:
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
    run(dsn, args.rate, stop, f" [{args.label}]" if args.label else "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
