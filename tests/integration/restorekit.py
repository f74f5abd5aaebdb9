"""Test set-up shared by the restore tests: rows to find in a restored copy, and WAL archived past them."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import psycopg


def insert_marker(conn: psycopg.Connection, label: str) -> str:
    """A new account row on the source (its email is unique): what a restore must, or must not, hold."""
    email = f"marker-{label}-{uuid.uuid4().hex[:8]}@drill.test"
    conn.execute("INSERT INTO accounts (email, display_name) VALUES (%s, %s)", (email, label))
    return email


def wait_archived_after(conn: psycopg.Connection, moment: datetime, timeout_s: float = 60) -> None:
    """Switch WAL on the source and wait until the segment is archived (test set-up, not the drill)."""
    conn.execute("SELECT pg_switch_wal()")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        archived = conn.execute("SELECT last_archived_time FROM pg_stat_archiver").fetchone()[0]
        if archived and archived > moment:
            return
        time.sleep(0.2)
    raise AssertionError(f"WAL not archived past {moment} within {timeout_s} s")
