"""pgBackRest and sandboxes on the Airflow worker (no pgbackrest.conf), against the real lab.

An environment shaped like staging (``platform: kubernetes``) points at the lab's two S3 repositories
(moto behind the lab's TLS endpoints, verified with the lab CA) with an Amazon Connection of its own
holding keys; its sandboxes are restored under a directory of the test's. Outcomes are read from
outside the code under test: rows with psycopg, directories on disk, the processes' argv in /proc.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import yaml

from resilience.config import DEFAULT_CONFIG_PATH, Environment, parse_environment
from resilience.dr.backup_repos import BackupRepo
from resilience.dr.pgbackrest import parse_info
from resilience.dr.sandbox import open_sandbox, sandbox_conflicts
from resilience.platforms.base import Platform, get_platform
from resilience.platforms.types import DatabaseEndpoint, RestoreRequest, Sandbox
from resilience.platforms.worker_backups import REMOTE_DATA_DIR, WorkerBackups, repo_options, s3_endpoint
from resilience.platforms.worker_sandboxes import AppNotAvailableError
from tests.integration.restorekit import insert_marker, wait_archived_after

pytestmark = pytest.mark.integration

CONN_ID = "worker_test_aws"
# moto accepts any keys: these are made unique so a leak can be searched for
KEY = f"AKIAWORKER{uuid.uuid4().hex[:10].upper()}"
SECRET = f"secret-{uuid.uuid4().hex}"
TOKEN = f"token-{uuid.uuid4().hex}"
SECRETS = (KEY, SECRET, TOKEN)


def environment_like_staging(name: str, repos: list[dict], sandbox: dict, database_conn_id: str) -> Environment:
    staging = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())["environments"]["staging"]
    raw = {**staging, "tier": "dr", "description": "staging's shape on the lab's repositories",
           "database": {"conn_id": database_conn_id, "dbname": "app"},
           "pgbackrest": {"stanza": "app", "repos": repos}, "sandbox": sandbox, "chaos": {"enabled": False}}
    return parse_environment(name, raw)


@pytest.fixture(scope="module")
def worker(lab) -> Iterator[tuple[Platform, Path]]:
    """The staging-like environment's platform on the lab's repositories, and its sandbox root."""
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
        {"conn_type": "aws", "login": KEY, "password": SECRET, "extra": {"aws_session_token": TOKEN}})
    root = Path(tempfile.mkdtemp(prefix="resilience-worker-sandboxes-", dir="/tmp"))
    root.chmod(0o755)  # the sandbox servers' OS user must traverse it
    repos = [{"repo": r["repo"], "region": r["region"], "type": "s3", "bucket": r["bucket"],
              "s3_region": r["aws_region"], "endpoint": r["endpoint"], "ca_file": r["ca_file"], "path": r["path"],
              "aws_conn_id": CONN_ID} for r in lab["pgbackrest"]["repos"]]
    sandbox = {"allowed": True, "root": str(root), "pg_bindir": lab["pg_bindir"], "os_user": lab["os_user"],
               "port_min": int(lab["sandbox_port_min"]) + 50}
    env = environment_like_staging("worker-lab", repos, sandbox, "resilience_lab_app_db")
    try:
        yield get_platform(env), root
    finally:
        platform = get_platform(env)
        for box, _ in platform.sandboxes.list_sandboxes():
            platform.sandboxes.drop_sandbox(box)
        shutil.rmtree(root, ignore_errors=True)
        del os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"]


class ArgvWatch:
    """Samples every process's argv (/proc/*/cmdline) while a block runs: what ``ps`` would show."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    try:
                        self.seen.add((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                    except OSError:
                        continue
            time.sleep(0.02)

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def source(lab) -> psycopg.Connection:
    return psycopg.connect(lab["app_db"]["read_write_dsn"], autocommit=True)


def sandbox_db(lab, box: Sandbox, timeout_s: float = 120) -> psycopg.Connection:
    """A connection to the sandbox once recovery has ended (it takes writes)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = psycopg.connect(host=box.host, port=box.port, dbname=box.dbname, user="postgres",
                                   password=lab["app_db"]["password"], connect_timeout=2, autocommit=True)
            if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                return conn
            conn.close()
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"sandbox {box.name} not writable within {timeout_s} s")
        time.sleep(0.2)


def restore_into_new_sandbox(lab, platform: Platform, label: str, request: RestoreRequest) -> tuple[Sandbox, set[str]]:
    """Open a sandbox proven apart from the lab's servers, restore into it; return it and every argv seen."""
    name = f"worker-{label}-{uuid.uuid4().hex[:6]}"
    box = open_sandbox(platform, name, "app", platform.backups.database_endpoints())
    with ArgvWatch() as watch:
        platform.sandboxes.restore_sandbox(box, request, timeout_s=300)
        sandbox_db(lab, box).close()
    return box, watch.seen


# -- pure: options and endpoints ----------------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "expected"), [
    (None, ("s3.us-west-2.amazonaws.com", None)),
    ("https://127.0.0.2:24327", ("127.0.0.2", 24327)),
    ("minio.internal:9000", ("minio.internal", 9000)),
    ("s3.example.com", ("s3.example.com", None)),
])
def test_s3_endpoint(endpoint, expected):
    assert s3_endpoint(BackupRepo(2, "dr", "s3", "b", "us-west-2", endpoint=endpoint)) == expected


@pytest.mark.parametrize(("endpoint", "message"), [
    ("http://127.0.0.1:9000", r"endpoint: 'http://127.0.0.1:9000' must be https://host\[:port\]"),
    ("lab", "'lab' names the lab's own endpoint"),
])
def test_s3_endpoint_refused(endpoint, message):
    with pytest.raises(ValueError, match=message):
        s3_endpoint(BackupRepo(1, "primary", "s3", "b", "us-east-1", endpoint=endpoint))


def test_repo_options_on_aws_carry_no_credentials():
    repo = BackupRepo(2, "dr", "s3", "ofm-db-backups-us-west-2", "us-west-2", aws_conn_id="aws_dr")
    assert repo_options(repo) == ["--repo2-type=s3", "--repo2-path=/var/lib/pgbackrest",
                                  "--repo2-s3-bucket=ofm-db-backups-us-west-2", "--repo2-s3-region=us-west-2",
                                  "--repo2-s3-endpoint=s3.us-west-2.amazonaws.com"]


@pytest.mark.parametrize(("sandbox", "message"), [
    ({"allowed": True}, r"environments.w.sandbox.root is missing"),
    ({"allowed": True, "root": "sandboxes", "pg_bindir": "/usr/lib/postgresql/15/bin"},
     r"environments.w.sandbox.root: 'sandboxes' must be an absolute path"),
    ({"allowed": True, "root": "/srv/s", "pg_bindir": "/b", "port_min": 80}, r"sandbox.port_min: 80 must be"),
    ({"allowed": "yes"}, r"environments.w.sandbox.allowed: 'yes' must be true or false"),
    ({"allowed": True, "root": "/srv/s", "pg_bindir": "/b", "rooot": 1}, r"unknown key\(s\) \['rooot'\]"),
])
def test_worker_sandbox_settings_refused(sandbox, message):
    with pytest.raises(ValueError, match=message):
        environment_like_staging("w", [{"repo": 1, "region": "primary", "bucket": "b", "s3_region": "us-east-1"}],
                                 sandbox, "db")


def test_a_remote_source_is_told_apart_by_its_address(airflow_db, tmp_path):
    """data_dir is unknown on a remote server: the sentinel overlaps nothing, host+port separate them."""
    os.environ["AIRFLOW_CONN_REMOTE_DB"] = json.dumps(
        {"conn_type": "postgres", "host": "db-0.ofm.internal,db-1.ofm.internal", "port": 5432, "login": "u",
         "password": "p", "schema": "ofm"})
    try:
        env = environment_like_staging("w", [{"repo": 1, "region": "primary", "bucket": "b", "s3_region": "us-east-1"}],
                                       {"allowed": False}, "remote_db")
        endpoints = WorkerBackups(env).database_endpoints()
    finally:
        del os.environ["AIRFLOW_CONN_REMOTE_DB"]
    assert endpoints == [DatabaseEndpoint(h, 5432, REMOTE_DATA_DIR.format(host=h, port=5432))
                         for h in ("db-0.ofm.internal", "db-1.ofm.internal")]
    assert sandbox_conflicts(DatabaseEndpoint("127.0.0.1", 5432, str(tmp_path / "pgdata")), endpoints) == []
    assert sandbox_conflicts(DatabaseEndpoint("db-1.ofm.internal", 5432, str(tmp_path / "pgdata")), endpoints) == [
        "port 5432 on db-1.ofm.internal is the source server db-1.ofm.internal:5432"]


# -- against the lab ----------------------------------------------------------------------------------


def test_the_compose_gives_backups_and_sandboxes_on_the_worker(worker):
    platform, root = worker
    described = platform.describe()
    assert described["backups"].startswith("pgBackRest on the Airflow worker, stanza app: repo1 (s3://resilience-")
    assert described["sandboxes"] == f"PostgreSQL data directories under {root} on the Airflow worker"


def test_database_endpoints_on_this_machine_are_the_labs_servers(lab, worker):
    platform, _ = worker
    lab_servers = {(n["host"], int(n["port"]), n["data_dir"]) for n in lab["app_db"]["nodes"].values()}
    assert {(e.host, e.port, e.data_dir) for e in platform.backups.database_endpoints()} == lab_servers


def test_info_through_the_worker_lists_the_labs_backups(lab, worker, caplog):
    platform, _ = worker
    caplog.set_level(logging.DEBUG)
    from resilience.lab import pgbackrest_setup

    labs_own = pgbackrest_setup.info(Path(lab["pgbackrest"]["config"]))  # through the lab's pgbackrest.conf
    with ArgvWatch() as watch:
        info = parse_info(platform.backups.pgbackrest(["info", "--output=json", "--stanza=app"], 120), "app")
        repo2 = parse_info(platform.backups.pgbackrest(["info", "--output=json", "--stanza=app", "--repo=2"], 120),
                           "app")
    assert info.status_code == 0, info.status_message
    assert [b.label for b in info.backups] == sorted((b["label"] for b in labs_own["backup"]),
                                                     key=lambda label: label)
    assert repo2.backups and info.archive_max is not None
    assert any("pgbackrest --no-config" in argv and "--repo1-s3-bucket=resilience-backups-us-east-1" in argv
               for argv in watch.seen)
    for secret in SECRETS:
        assert secret not in caplog.text
        assert not [argv for argv in watch.seen if secret in argv]


def test_latest_restore_on_the_worker_holds_the_newest_row(lab, worker, caplog):
    platform, root = worker
    caplog.set_level(logging.DEBUG)
    with source(lab) as conn:
        marker = insert_marker(conn, "latest")
        wait_archived_after(conn, datetime.now(UTC))
    box, seen = restore_into_new_sandbox(lab, platform, "latest", RestoreRequest("app", "latest", repo=1))
    try:
        assert Path(box.data_dir).parent.parent == root
        with sandbox_db(lab, box) as db:
            assert db.execute("SELECT display_name FROM accounts WHERE email = %s", (marker,)).fetchone() == ("latest",)
        clean, summary = platform.sandboxes.amcheck(box, "postgres", lab["app_db"]["password"], timeout_s=300)
        assert clean, summary
        with pytest.raises(AppNotAvailableError, match=r"app connectivity not checked on sandbox worker-latest-"):
            platform.sandboxes.start_app(box, box.dsn("postgres"))
        assert [b.name for b, _ in platform.sandboxes.list_sandboxes()] == [box.name]
        # the keys reached pgBackRest through the environment only: never a command line, a log or a file
        assert any("archive-get" in argv and "--no-config" in argv for argv in seen), "no archive-get was seen"
        auto_conf = (Path(box.data_dir) / "postgresql.auto.conf").read_text()
        for secret in SECRETS:
            assert not [argv for argv in seen if secret in argv]
            assert secret not in caplog.text
            assert secret not in auto_conf
        postmaster = int((Path(box.data_dir) / "postmaster.pid").read_text().split()[0])
        server_env = (Path("/proc") / str(postmaster) / "environ").read_bytes().split(b"\0")
        assert f"PGBACKREST_REPO1_S3_KEY={KEY}".encode() in server_env  # what its restore_command needed
        assert not [v for v in server_env if v.startswith(b"AIRFLOW_CONN_")]  # nothing else of the worker's
    finally:
        platform.sandboxes.drop_sandbox(box)
    assert not Path(box.data_dir).parent.exists()
    assert platform.sandboxes.list_sandboxes() == []


def test_pitr_on_the_worker_from_the_dr_repository(lab, worker, caplog):
    platform, _ = worker
    caplog.set_level(logging.DEBUG)
    with source(lab) as conn:
        before = insert_marker(conn, "before")
        time.sleep(1.5)
        target = datetime.now(UTC)
        time.sleep(1.5)
        after = insert_marker(conn, "after")
        wait_archived_after(conn, datetime.now(UTC))
    box, seen = restore_into_new_sandbox(lab, platform, "pitr", RestoreRequest("app", "pitr", target, repo=2))
    try:
        with sandbox_db(lab, box) as db:
            found = {r[0] for r in db.execute("SELECT email FROM accounts WHERE email IN (%s, %s)", (before, after))}
            newest = db.execute("SELECT max(created_at) FROM accounts").fetchone()[0]
        assert found == {before}
        assert newest <= target
        clean, summary = platform.sandboxes.amcheck(box, "postgres", lab["app_db"]["password"], timeout_s=300)
        assert clean, summary
        assert any("--repo=2" in argv and "archive-get" in argv for argv in seen)
        for secret in SECRETS:
            assert not [argv for argv in seen if secret in argv]
            assert secret not in caplog.text
    finally:
        platform.sandboxes.drop_sandbox(box)
    assert not Path(box.data_dir).parent.exists()
