"""A sandbox must never be, contain, or sit inside a source database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from resilience.dr.sandbox import sandbox_conflicts, sandbox_name
from resilience.platforms.types import DatabaseEndpoint

SOURCES = [DatabaseEndpoint("127.0.0.1", 54321, "/lab/pg/primary"), DatabaseEndpoint("127.0.0.1", 54322, "/lab/pg/replica")]


@pytest.mark.parametrize(
    ("candidate", "problems"),
    [
        (DatabaseEndpoint("127.0.0.1", 54350, "/lab/sandboxes/a/pgdata"), []),
        (DatabaseEndpoint("localhost", 54321, "/lab/sandboxes/a/pgdata"),
         ["port 54321 on localhost is the source server 127.0.0.1:54321"]),
        (DatabaseEndpoint("127.0.0.1", 54350, "/lab/pg/primary"),
         ["data directory /lab/pg/primary overlaps the source's /lab/pg/primary"]),
        (DatabaseEndpoint("127.0.0.1", 54350, "/lab/pg/replica/sub"),
         ["data directory /lab/pg/replica/sub overlaps the source's /lab/pg/replica"]),
        (DatabaseEndpoint("127.0.0.1", 54350, "/lab/pg"),
         ["data directory /lab/pg overlaps the source's /lab/pg/primary",
          "data directory /lab/pg overlaps the source's /lab/pg/replica"]),
        (DatabaseEndpoint("10.0.0.9", 54321, "/other"), []),  # same port, another host
        (DatabaseEndpoint("127.0.0.1", 54350, "/lab/pg/primary-copy"), []),  # a prefix is not a parent
    ],
)
def test_conflicts(candidate, problems):
    assert sandbox_conflicts(candidate, SOURCES) == problems


def test_unknown_sources_refuse():
    assert sandbox_conflicts(DatabaseEndpoint("127.0.0.1", 1, "/x"), []) == [
        "no source database endpoints known: cannot prove the sandbox is not the source"
    ]


def test_symlink_to_the_source_is_caught(tmp_path):
    (tmp_path / "primary").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "primary")
    src = [DatabaseEndpoint("127.0.0.1", 1, str(tmp_path / "primary"))]
    assert sandbox_conflicts(DatabaseEndpoint("127.0.0.1", 2, str(tmp_path / "link")), src)


def test_sandbox_name_is_stable_per_run_and_safe():
    now = datetime(2026, 11, 28, 6, 5, tzinfo=UTC)
    a = sandbox_name("drill", "manual__2026-11-28T06:05:00+00:00", now)
    assert a == sandbox_name("drill", "manual__2026-11-28T06:05:00+00:00", now)
    assert a.startswith("drill-20261128-0605-") and len(a) == len("drill-20261128-0605-") + 6
    assert a != sandbox_name("drill", "scheduled__2026-11-01T04:00:00+00:00", now)
