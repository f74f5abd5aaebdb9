"""pgBackRest on S3 in two regions, TLS verified: moto (plain HTTP) behind one stunnel with a
primary-region endpoint (127.0.0.1) and a DR-region endpoint (127.0.0.2), a standalone PostgreSQL 15,
WAL archived to both repositories, restore from the DR repository alone, also with the primary
region's endpoint down.

Everything runs on its own port base (26120, override RESILIENCE_TEST_PGBACKREST_S3_PORT_BASE) with
the lab's port plan: moto base+4, TLS endpoints base+7, the cluster base+1, restores base+30 and up.
A POSIX repository (repo3, in the test's config only) times a restore from local disk next to S3.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from resilience.dr.pgbackrest import restore_args
from resilience.lab import lab_ca, pgbackrest_s3, postgres, s3_server, s3_tls
from resilience.lab.app_process import wait_http_ok
from resilience.lab.daemons import is_alive
from resilience.lab.errors import CommandError
from resilience.lab.layout import HOST, STANZA, ClusterPaths, LabLayout
from resilience.lab.osuser import PG_OS_USER, make_dir, run_as_postgres
from resilience.lab.password import ensure_password
from resilience.lab.pgbackrest_setup import archive_command, archive_current_wal, base_argv
from resilience.platforms.types import RestoreRequest

DUPLICATES = ("--stanza", "--log-level-console")  # pgbackrest() sets them
PORT_BASE = int(os.environ.get("RESILIENCE_TEST_PGBACKREST_S3_PORT_BASE", "26120"))

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("pgbackrest", "stunnel4"))
        or not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
        reason="needs postgresql, pgbackrest and stunnel4 installed"),
]


@dataclass
class S3Lab:
    layout: LabLayout
    ca: lab_ca.CaFiles
    endpoints: list[s3_tls.RegionEndpoint]
    cluster: ClusterPaths
    password: str
    conf_s3: Path  # the product's configuration: the two S3 repositories only
    conf_all: Path  # conf_s3 plus a POSIX repo3 (archive_command pushes to all three)
    started: list[Path] = field(default_factory=list)  # data dirs of restored clusters to stop
    timings: dict[str, float] = field(default_factory=dict)


def pgbackrest(config: Path, *args: str, timeout_s: float = 60) -> tuple[str, float]:
    started = time.monotonic()
    out = run_as_postgres([*base_argv(config), "--log-level-console=info", *args], timeout_s=timeout_s).stdout
    return out, time.monotonic() - started


def posix_repo_lines(repo: Path) -> str:
    return f"repo3-type=posix\nrepo3-path={repo}\nrepo3-bundle=y\nrepo3-retention-full=2\n"


@pytest.fixture(scope="module")
def s3lab() -> Iterator[S3Lab]:
    root = Path(tempfile.mkdtemp(prefix="resilience-pgbr-s3-", dir="/tmp"))
    root.chmod(0o755)
    layout = LabLayout(root / "lab", PORT_BASE)
    cluster = layout.node("a")
    lab: S3Lab | None = None
    try:
        make_dir(layout.lab_dir, None, 0o755)
        started = time.monotonic()
        ca = lab_ca.ensure_ca(layout.lab_dir / "ca")
        moto_pid = s3_server.start_moto(layout)
        endpoints = s3_tls.region_endpoints(layout)
        s3_tls.start(layout, endpoints, ca)
        assert wait_http_ok(f"{layout.url('moto')}/moto-api/", 20, lambda: is_alive(moto_pid)), "moto not up"
        assert s3_tls.ensure_buckets(endpoints[0].url, endpoints, verify=ca.ca_cert) == [
            "resilience-backups-us-east-1", "resilience-backups-us-west-2"]
        assert s3_tls.ensure_buckets(layout.url("moto"), endpoints)  # idempotent
        s3_up_s = time.monotonic() - started

        root_pgbr = make_dir(layout.pgbackrest_dir, PG_OS_USER, 0o755)
        for name in ("log", "lock", "spool", "repo"):
            make_dir(root_pgbr / name, PG_OS_USER, 0o750)
        options = dataclasses.replace(pgbackrest_s3.lab_options(layout), io_timeout_s=10)
        repos = pgbackrest_s3.lab_repos(layout, ca)
        text = pgbackrest_s3.render_config(repos, options, [cluster])
        conf_s3 = pgbackrest_s3.write_config(root_pgbr / "pgbackrest.conf", text)
        all_text = text.replace("\n[app]", posix_repo_lines(layout.pgbackrest_repo) + "\n[app]")
        conf_all = pgbackrest_s3.write_config(root_pgbr / "pgbackrest-all.conf", all_text)

        password = ensure_password(layout.password_file)
        postgres.initdb(cluster, layout.password_file)
        postgres.configure(cluster, {**postgres.base_settings(cluster), "archive_mode": True,
                                     "archive_command": archive_command(conf_all)})
        postgres.start(cluster)
        lab = S3Lab(layout, ca, endpoints, cluster, password, conf_s3, conf_all)
        lab.timings["s3_up_s"] = s3_up_s
        yield lab
    finally:
        running = [d for d in [*(lab.started if lab else []), cluster.data_dir] if postgres.postmaster_pid_of(d)]
        for data_dir in running:  # immediate: a fast shutdown waits for a failing archive_command's retries
            with contextlib.suppress(CommandError):
                run_as_postgres([postgres.pg_bin("pg_ctl"), "stop", "-D", str(data_dir), "-m", "immediate", "-w",
                                 "-t", "20", "-s"], timeout_s=30)
        s3_tls.stop(layout)
        s3_server.stop(layout)
        if lab:
            print("\npgBackRest S3 timings (s): " + ", ".join(f"{k}={v:.2f}" for k, v in lab.timings.items()))
        survivors = [d for d in running if postgres.postmaster_pid_of(d)]
        assert not survivors, f"clusters still running on {survivors} (left in {root})"
        shutil.rmtree(root, ignore_errors=True)


def restore_and_start(lab: S3Lab, name: str, port: int, config: Path, *extra: str) -> tuple[str, float]:
    """``pgbackrest restore`` into a new data dir, then start it on ``port``; (restore output, restore s)."""
    root = make_dir(lab.layout.sandbox_root / name, PG_OS_USER, 0o755)
    data_dir = make_dir(root / "pgdata", PG_OS_USER, 0o700)
    sock = make_dir(root / "sock", PG_OS_USER, 0o755)
    args = [a for a in restore_args(RestoreRequest(STANZA), str(data_dir))[1:] if a.split("=")[0] not in DUPLICATES]
    out, elapsed = pgbackrest(config, *args, *extra, "restore")
    lab.started.append(data_dir)
    options = f"-p {port} -c listen_addresses={HOST} -c unix_socket_directories={sock} -c archive_mode=off"
    run_as_postgres([postgres.pg_bin("pg_ctl"), "-D", str(data_dir), "-l", str(root / "postgres.log"),
                     "-o", options, "-w", "-t", "30", "-s", "start"], timeout_s=40)
    return out, elapsed


def wait_writable_row(port: int, password: str, token: str, timeout_s: float = 30) -> bool:
    """Wait for the end of recovery (promotion), then True if the row ``token`` is there."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with postgres.connect(port, password) as conn:
            if not postgres.fetch_one(conn, "SELECT pg_is_in_recovery()")[0]:
                found = conn.execute("SELECT 1 FROM drill WHERE token = %s", (token,)).fetchone()
                return found is not None
        time.sleep(0.1)
    raise AssertionError(f"restored cluster on port {port} still in recovery after {timeout_s} s")


def test_config_verifies_tls_and_names_both_regions(s3lab: S3Lab) -> None:
    text = s3lab.conf_s3.read_text()
    assert "verify-tls" not in text
    for index, (bucket, region, host) in enumerate(
            [("resilience-backups-us-east-1", "us-east-1", "127.0.0.1"),
             ("resilience-backups-us-west-2", "us-west-2", "127.0.0.2")], start=1):
        assert f"repo{index}-s3-bucket={bucket}\n" in text and f"repo{index}-s3-region={region}\n" in text
        assert f"repo{index}-s3-endpoint={host}\n" in text
        assert f"repo{index}-storage-ca-file={s3lab.ca.ca_cert}\n" in text
    assert (s3lab.conf_s3.stat().st_mode & 0o777) == 0o600
    assert (s3lab.ca.ca_cert.stat().st_mode & 0o777) == 0o644
    assert lab_ca.ensure_ca(s3lab.ca.directory).ca_cert.read_bytes() == s3lab.ca.ca_cert.read_bytes()  # kept


def test_backup_to_both_regions_and_restore_from_dr_repo(s3lab: S3Lab) -> None:
    lab, t = s3lab, s3lab.timings
    _, t["stanza_create_s"] = pgbackrest(lab.conf_all, "stanza-create")
    for repo in (1, 2, 3):
        out, t[f"backup_repo{repo}_s"] = pgbackrest(lab.conf_all, f"--repo={repo}", "--type=full", "backup")
        assert "backup command end: completed successfully" in out
    token = uuid.uuid4().hex
    with postgres.connect(lab.cluster.port, lab.password) as conn:
        conn.execute("CREATE TABLE drill (token text PRIMARY KEY, at timestamptz DEFAULT now())")
        conn.execute("INSERT INTO drill (token) VALUES (%s)", (token,))
    assert archive_current_wal(lab.cluster.port, lab.password, timeout_s=30) is not None

    base = lab.layout.sandbox_port_min
    out, t["restore_repo2_s3_s"] = restore_and_start(lab, "from-dr", base, lab.conf_s3, "--repo=2")
    assert "repo2: restore backup set" in out
    assert wait_writable_row(base, lab.password, token), "row written after the backup missing (WAL not replayed)"

    _, t["restore_repo3_posix_s"] = restore_and_start(lab, "from-posix", base + 1, lab.conf_all, "--repo=3")
    assert wait_writable_row(base + 1, lab.password, token)

    # The primary region's endpoint goes away: stunnel serves the DR endpoint only.
    s3_tls.start(lab.layout, [lab.endpoints[1]], lab.ca)
    assert not s3_tls.tls_ready(lab.endpoints[0], lab.ca.ca_cert)
    started = time.monotonic()
    out, t["restore_repo2_repo1_down_s"] = restore_and_start(lab, "repo1-down", base + 2, lab.conf_s3, "--repo=2")
    assert "repo2: restore backup set" in out
    assert wait_writable_row(base + 2, lab.password, token), "WAL not fetched from repo2 with repo1 down"
    # A restore with --repo=2 writes --repo=2 into restore_command: recovery never waits on repo1.
    auto_conf = (lab.layout.sandbox_root / "repo1-down" / "pgdata" / "postgresql.auto.conf").read_text()
    assert "--repo=2 " in auto_conf and "archive-get" in auto_conf
    t["restore_repo2_repo1_down_writable_s"] = time.monotonic() - started
