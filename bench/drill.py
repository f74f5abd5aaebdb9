"""Benchmark the monthly DR drill against a seeded lab database.

Seeds the lab's app database to ``--size-mb`` (default 1024), takes a fresh full backup, runs
``dr_monthly_drill`` through ``dag.test()``, and prints:

- restore seconds and MB/s, next to a raw ``cp -a`` of the same data directory measured in the
  same run (the physical limit) and the ratio between the two;
- ``pgbackrest restore`` by hand of the same database from the S3 repository (repo1) and from a
  POSIX repository with the same options, in the same run (issue 9: what S3 costs);
- the orchestration overhead: drill wall time minus restore, integrity and app checks;
- RTO and RPO as the drill measured them.

Usage: ``python bench/drill.py [--size-mb 1024] [--lab-dir DIR --port-base N] [--keep-lab]``.
Without ``--lab-dir`` it brings up a lab of its own in a temporary directory and stops it after.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import ROOT, isolated_airflow_home, lab_arguments, own_lab, quiet_stdout

HOME = isolated_airflow_home()


def seed(dsn: str, size_mb: int) -> float:
    """Grow the app database to ``size_mb`` with realistic posts; return the size reached in MB."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        account = conn.execute("SELECT min(id) FROM accounts").fetchone()[0]
        while True:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 1e6
            print(f"  seeding: {size:7.0f} / {size_mb} MB", file=sys.stderr)
            if size >= size_mb:
                settle(conn)
                return size
            rows = max(10_000, min(200_000, int((size_mb - size) * 1e6 / 1300)))
            conn.execute(
                "INSERT INTO posts (account_id, body, status) "
                "SELECT %s, repeat(md5(g::text || random()::text), 32), 'published' FROM generate_series(1, %s) g",
                (account, rows),
            )


def settle(conn) -> None:
    """Vacuum the seeded rows and wait until their WAL is archived, so the drill is not measured
    against a lab still busy with the bulk load (autovacuum writes a full-page image per page)."""
    print("  settling: VACUUM ANALYZE, CHECKPOINT, archiving the WAL", file=sys.stderr)
    conn.execute("VACUUM (ANALYZE) posts")
    conn.execute("CHECKPOINT")
    wal = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
    conn.execute("SELECT pg_switch_wal()")
    deadline = time.monotonic() + 600
    while (conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0] or "") < wal:
        if time.monotonic() > deadline:
            raise TimeoutError(f"WAL {wal} not archived within 600 s")
        time.sleep(0.5)


def run_as_postgres(cmd: list[str]) -> None:
    from resilience.lab.osuser import as_user

    subprocess.run(as_user(cmd, "postgres"), check=True, capture_output=True, timeout=3600)


def raw_copy(data_dir: str) -> tuple[float, float, int]:
    """``cp -a`` of the primary's data directory minus ``pg_wal`` (what a restore writes), then
    ``sync``: the physical limit of a restore on this disk. Returns (copy s, copy+sync s, bytes)."""
    target = Path(tempfile.mkdtemp(prefix="resilience-bench-copy-"))
    entries = [str(p) for p in Path(data_dir).iterdir() if p.name != "pg_wal"]
    subprocess.run(["sync"], check=True)
    started = time.monotonic()
    subprocess.run(["cp", "-a", *entries, str(target)], check=True)
    copied = time.monotonic() - started
    subprocess.run(["sync", "-f", str(target)], check=True)
    synced = time.monotonic() - started
    size = int(subprocess.run(["du", "-sb", str(target)], capture_output=True, text=True).stdout.split()[0])
    shutil.rmtree(target)
    return copied, synced, size


def restore_by_hand(config: str, *repo: str) -> tuple[float, int]:
    """``pgbackrest restore`` of the newest backup into an empty directory, as an operator would; return
    (seconds, bytes restored). The copy is not started: the files are what is being compared."""
    from resilience.lab.osuser import make_dir

    target = Path(tempfile.mkdtemp(prefix="resilience-bench-restore-"))
    target.chmod(0o755)
    data = make_dir(target / "pgdata", "postgres", 0o700)
    started = time.monotonic()
    run_as_postgres(["pgbackrest", f"--config={config}", "--stanza=app", *repo, f"--pg1-path={data}", "restore"])
    elapsed = time.monotonic() - started
    size = int(subprocess.run(["du", "-sb", str(data)], capture_output=True, text=True).stdout.split()[0])
    shutil.rmtree(target)
    return elapsed, size


def posix_repository(lab: dict) -> str:
    """A POSIX repository beside the lab's S3 ones, with the same options (bundling, lz4, 2 processes), and a
    full backup in it; return its config. WAL is not archived there (``--no-archive-check``): only the
    restore's file copy is compared, which needs none."""
    from resilience.lab.osuser import make_dir

    root = Path(tempfile.mkdtemp(prefix="resilience-bench-posix-"))
    root.chmod(0o755)
    for name in ("repo", "log", "lock"):
        make_dir(root / name, "postgres", 0o750)
    node = lab["app_db"]["primary"]
    config = root / "pgbackrest.conf"
    config.write_text("\n".join([
        "[global]", f"repo1-path={root / 'repo'}", "repo1-bundle=y", f"log-path={root / 'log'}",
        f"lock-path={root / 'lock'}", "start-fast=y", "process-max=2", "compress-type=lz4", "",
        "[app]", f"pg1-path={node['data_dir']}", f"pg1-port={node['port']}", f"pg1-socket-path={node['socket_dir']}",
        "pg1-user=postgres", ""]))
    config.chmod(0o644)
    run_as_postgres(["pgbackrest", f"--config={config}", "--stanza=app", "stanza-create"])
    run_as_postgres(["pgbackrest", f"--config={config}", "--stanza=app", "--type=full", "--no-archive-check",
                     "backup"])
    return str(config)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    lab_arguments(parser, 29320)
    args = parser.parse_args()

    with own_lab(args.lab_dir, args.port_base, keep=args.keep_lab) as lab:
        size_mb = seed(lab["app_db"]["read_write_dsn"], args.size_mb)
        started = time.monotonic()
        run_as_postgres(["pgbackrest", f"--config={lab['pgbackrest']['config']}", "--stanza=app",
                         "--type=full", "backup"])
        backup_s = time.monotonic() - started

        from airflow.dag_processing.dagbag import DagBag
        from airflow.utils import db

        with quiet_stdout():
            db.resetdb()
            dag = DagBag(dag_folder=str(ROOT / "dags" / "dr_monthly_drill.py")).get_dag("dr_monthly_drill")
            dag.deadline = None  # apache/airflow#73428: dag.test() crashes after a run when a deadline is set
            started = time.monotonic()
            dagrun = dag.test(run_conf={"environment": "lab", "dr_environment": "lab", "full_drill": False})
            wall_s = time.monotonic() - started
        report_path = next((HOME / "reports" / "dr_monthly_drill").glob("*.json"))
        report = json.loads(report_path.read_text())

        copy_s, copy_sync_s, copy_bytes = raw_copy(lab["app_db"]["primary"]["data_dir"])
        s3_s, s3_bytes = restore_by_hand(lab["pgbackrest"]["config"], "--repo=1")
        posix_config = posix_repository(lab)
        posix_s, posix_bytes = restore_by_hand(posix_config)
        shutil.rmtree(Path(posix_config).parent, ignore_errors=True)

    details = report["phase_details"]
    restore = details["restore"]
    phases = {p["phase"]: p["duration_s"] for p in report["phases"]}
    work_s = phases["restore"] + phases["integrity"] + phases["app_connectivity"]
    restore_mb_s = restore["restored_bytes"] / 1e6 / restore["restore_s"]
    print(f"drill run state             {dagrun.state} (report {report['status']})")
    print(f"database size               {size_mb:.0f} MB (full backup {backup_s:.1f} s)")
    print(f"restore (pgbackrest)        {restore['restore_s']:.2f} s, {restore['restored_bytes'] / 1e6:.0f} MB, "
          f"{restore_mb_s:.0f} MB/s")
    print(f"restore to writable         {restore['total_s']:.2f} s")
    print(f"raw cp -a of the data dir   {copy_s:.2f} s, {copy_bytes / 1e6:.0f} MB, {copy_bytes / 1e6 / copy_s:.0f} MB/s"
          " (pg_wal excluded, like a restore)")
    raw_mb_s = copy_bytes / 1e6 / copy_sync_s
    print(f"raw cp -a + sync            {copy_sync_s:.2f} s ({raw_mb_s:.0f} MB/s; a restore fsyncs too)")
    print(f"restore / raw copy+sync     {restore['restore_s'] / copy_sync_s:.2f}x the time "
          f"({100 * restore_mb_s / raw_mb_s:.0f} % of raw throughput)")
    print(f"pgbackrest restore, S3      {s3_s:.2f} s, {s3_bytes / 1e6:.0f} MB, {s3_bytes / 1e6 / s3_s:.0f} MB/s "
          f"(repo1: moto behind TLS; {s3_s / copy_sync_s:.2f}x raw copy+sync)")
    print(f"pgbackrest restore, POSIX   {posix_s:.2f} s, {posix_bytes / 1e6:.0f} MB, "
          f"{posix_bytes / 1e6 / posix_s:.0f} MB/s (same options, local disk; {posix_s / copy_sync_s:.2f}x raw "
          f"copy+sync; S3 / POSIX {s3_s / posix_s:.2f}x)")
    print(f"integrity checks            {phases['integrity']:.2f} s")
    print(f"app connectivity            {phases['app_connectivity']:.2f} s")
    print(f"drill wall time             {wall_s:.2f} s")
    print(f"orchestration overhead      {wall_s - work_s:.2f} s (wall minus restore, integrity and app phases)")
    rto, rpo = report["rto"], report["rpo"]
    print(f"RTO                         {rto['measured_s']:.1f} s (target {rto['target_min']:g} min)")
    print(f"RPO                         {rpo['measured_s']:.1f} s (target {rpo['target_min']:g} min)")
    return 0 if dagrun.state == "success" else 1


if __name__ == "__main__":
    raise SystemExit(main())
