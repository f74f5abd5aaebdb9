"""The lab's pgBackRest on S3: the rendered configuration, the archive command, lab.json's repositories, and
the teardown of leftover async archive processes (real processes, found by their command line), and
stanza-create over stray WAL (pgBackRest's answers scripted)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from resilience.lab import pgbackrest_setup
from resilience.lab.errors import CommandError
from resilience.lab.layout import LabLayout
from resilience.lab.state import pgbackrest_state


def test_config_has_both_regions_repos_both_nodes_and_a_short_io_timeout(tmp_path: Path) -> None:
    layout = LabLayout(tmp_path / "lab", 55320)
    text = pgbackrest_setup.render_config(layout)
    for line in ("repo1-type=s3", "repo1-s3-bucket=resilience-backups-us-east-1", "repo1-s3-endpoint=127.0.0.1",
                 "repo2-s3-bucket=resilience-backups-us-west-2", "repo2-s3-region=us-west-2",
                 "repo2-s3-endpoint=127.0.0.2", "repo1-storage-port=55327", "repo2-bundle=y", "io-timeout=10",
                 f"repo1-storage-ca-file={tmp_path / 'lab' / 'ca' / 'ca.crt'}",
                 f"pg1-path={layout.node('a').data_dir}", f"pg2-path={layout.node('b').data_dir}"):
        assert f"{line}\n" in text, line
    assert "verify-tls" not in text and "repo1-path=/pgbackrest" in text


def test_archive_command_is_asynchronous_with_the_nodes_own_spool_and_lock(tmp_path: Path) -> None:
    conf, data = tmp_path / "pgbackrest.conf", tmp_path / "pg" / "node-a" / "data"
    command = pgbackrest_setup.archive_command(conf, pg_path=data)
    assert command == (f"pgbackrest --config={conf} --stanza=app --archive-async"
                       f" --spool-path={tmp_path}/pg/node-a/pgbackrest-spool"
                       f" --lock-path={tmp_path}/pg/node-a/pgbackrest-lock --pg1-path={data} archive-push %p")
    assert pgbackrest_setup.archive_command(conf) == f"pgbackrest --config={conf} --stanza=app archive-push %p"


def test_lab_json_lists_the_repositories_and_the_dr_one(tmp_path: Path) -> None:
    state = pgbackrest_state(LabLayout(tmp_path, 55320))
    assert [(r["repo"], r["region"], r["bucket"], r["endpoint"]) for r in state["repos"]] == [
        (1, "primary", "resilience-backups-us-east-1", "https://127.0.0.1:55327"),
        (2, "dr", "resilience-backups-us-west-2", "https://127.0.0.2:55327")]
    assert state["dr_repo"] == 2 and state["ca_file"] == str(tmp_path / "ca" / "ca.crt")


def test_repo_summary_counts_backups_per_repository() -> None:
    entry = {"repo": [{"key": 1, "status": {"code": 0, "message": "ok"}},
                      {"key": 2, "status": {"code": 1, "message": "missing stanza path"}}],
             "backup": [{"database": {"repo-key": 1}}, {"database": {"repo-key": 1}}]}
    assert pgbackrest_setup.repo_summary(entry) == {
        1: {"status": 0, "message": "ok", "backups": 2}, 2: {"status": 1, "message": "missing stanza path", "backups": 0}}


def _fake_async(lab_dir: Path) -> subprocess.Popen[bytes]:
    """A process whose command line looks like pgBackRest's async archive-push of the lab in ``lab_dir``."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "pgbackrest",
                             f"--config={lab_dir}/pgbackrest/pgbackrest.conf", "archive-push:async",
                             f"{lab_dir}/pg/node-a/data/pg_wal"])


def test_teardown_kills_this_labs_async_archive_processes_only(tmp_path: Path) -> None:
    ours, other = _fake_async(tmp_path / "lab"), _fake_async(tmp_path / "lab2")
    try:
        time.sleep(0.2)
        layout = LabLayout(tmp_path / "lab", 55320)
        assert pgbackrest_setup.async_processes(layout) == [ours.pid]
        assert pgbackrest_setup.stop_async_processes(layout) == 1
        assert ours.wait(5) is not None and other.poll() is None
        assert pgbackrest_setup.async_processes(layout) == []
    finally:
        for proc in (ours, other):
            proc.kill()
            proc.wait(5)


def test_stray_wal_in_a_lost_repository_is_removed_and_the_stanza_created(monkeypatch) -> None:
    # pgBackRest's answers scripted (a race with a surviving archive-push process cannot be staged on demand):
    # repo1 has its stanza back, repo2 only a segment pushed after moto lost everything
    calls: list[list[str]] = []
    listings = {"--repo=1": "archive.info\narchive.info.copy\n15-1\n", "--repo=2": "15-1\n"}

    def fake_run(argv: list[str], **_kwargs) -> subprocess.CompletedProcess:
        calls.append(argv)
        if argv[-1] == "stanza-create" and sum(c[-1] == "stanza-create" for c in calls) == 1:
            raise CommandError(argv, 40, "ERROR: [040]: archive directory not empty")
        out = listings[argv[3]] if "repo-ls" in argv else ""
        return subprocess.CompletedProcess(argv, 0, out, "")

    monkeypatch.setattr(pgbackrest_setup, "run_as_postgres", fake_run)
    pgbackrest_setup.stanza_create(Path("/x/pgbackrest.conf"), repos=(1, 2))
    removed = [c for c in calls if "repo-rm" in c]
    assert [c[3] for c in removed] == ["--repo=2"] and removed[0][-1] == "archive/app"
    assert [c[-1] for c in calls].count("stanza-create") == 2


def test_other_stanza_create_errors_are_not_retried(monkeypatch) -> None:
    def fake_run(argv: list[str], **_kwargs) -> subprocess.CompletedProcess:
        raise CommandError(argv, 41, "ERROR: [041]: unable to open file")

    monkeypatch.setattr(pgbackrest_setup, "run_as_postgres", fake_run)
    with pytest.raises(CommandError, match="unable to open"):
        pgbackrest_setup.stanza_create(Path("/x/pgbackrest.conf"))
