"""A throw-away database on the lab's control-plane server, for the tests of the control schema and the
run journal."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo


@pytest.fixture
def database(lab) -> Iterator[str]:
    """A throw-away database on the lab's control server: its DSN."""
    server = lab["connections"]["resilience_control_db"]
    name = f"schema_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(server, dbname=name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
