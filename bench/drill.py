"""Benchmark the monthly DR drill's restore against pgBackRest by hand and against the disk, at several sizes.

Seeds the lab's app database to each of ``--sizes`` MB in turn (default 1024 and 5120), takes a fresh
full backup at each, and measures in the same run:

- **the drill's restore step** (``dr_monthly_drill`` through ``dag.test()``, full_drill off): its
  ``restore_s`` (``pgbackrest restore`` + ``pg_ctl start``) and ``total_s`` (until the sandbox
  takes a write: WAL replayed, promoted), from the drill's report;
- **the same restore by hand** of the same backup: the commands an operator would type
  (``pgbackrest restore --type=default`` with the same ``restore_command``, ``pg_ctl start -w``,
  then ``pg_is_in_recovery()`` polled until false), timed as files / start / total: our overhead
  is the drill's ``total_s`` minus this total;
- **the limit**: a raw ``cp -a`` + ``sync`` of the primary's data directory without ``pg_wal``;
- **the slope** from the first size to the last for each (seconds per GB).

Each is measured ``--rounds`` times (default 3), the three interleaved, and reported as medians: this
machine is shared, and a load that comes and goes then hits all three alike.

Then, at the first size, the settings sweep (``--no-sweep`` skips it), each a restore by hand (medians,
the settings interleaved):
``process-max`` 1/2/4; ``--delta`` into the data directory of a previous restore (a sandbox kept
from month to month) against an empty one; the backup's compression type and level (a full backup
each: backup seconds, repository bytes, restore seconds); and WAL replay of ``--replay-mb`` of WAL
written after the backup with ``archive-get`` synchronous against its asynchronous queue
(``archive-get-queue-max`` 128 MB and 1 GB).

Usage: ``python bench/drill.py [--sizes 1024,5120] [--no-sweep] [--posix] [--lab-dir DIR --port-base N]
[--keep-lab]``. Without ``--lab-dir`` it brings up a lab of its own in a temporary directory and
stops it after.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchlib import (
    ROOT,
    SummaryRow,
    isolated_airflow_home,
    lab_arguments,
    own_lab,
    quiet_stdout,
    record_summary,
    wait_for,
)

HOME = isolated_airflow_home()


# A post's body: 512 characters that compress well (a phrase repeated) and 512 that do not (hex of a slice of
# an 8 MB pool of random bytes, wider than lz4's and gzip's windows): about 2x with lz4, as app data often is.
# (A body of one md5 repeated compressed about 10x: every compression type looked alike.) The pool is bytea:
# substr of a text in a UTF-8 database scans from its start.
POST_BODY = ("repeat(md5(g::text || random()::text), 16)"
             " || encode(substr(pool.b, 1 + (random() * 7999000)::int, 256), 'hex')")
RANDOM_POOL = "(SELECT decode(string_agg(md5(random()::text), ''), 'hex') AS b FROM generate_series(1, 500000)) pool"


def seed(dsn: str, size_mb: int) -> float:
    """Grow the app database to ``size_mb`` with posts (``POST_BODY``); return the size reached in MB."""
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
                f"INSERT INTO posts (account_id, body, status) "
                f"SELECT %s, {POST_BODY}, 'published' FROM generate_series(1, %s) g, {RANDOM_POOL}",
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

    result = subprocess.run(as_user(cmd, "postgres"), capture_output=True, text=True, timeout=3600)
    if result.returncode:
        tail = (result.stderr or result.stdout)[-500:]
        raise RuntimeError(f"{' '.join(cmd[:2])}... exit {result.returncode}: {tail}")


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


def restore_by_hand_posix(config: str) -> float:
    """``pgbackrest restore`` (files only) of the POSIX repository's newest backup; return seconds."""
    from resilience.lab.osuser import make_dir

    target = scratch()
    data = make_dir(target / "pgdata", "postgres", 0o700)
    started = time.monotonic()
    run_as_postgres(["pgbackrest", f"--config={config}", "--stanza=app", f"--pg1-path={data}", "restore"])
    elapsed = time.monotonic() - started
    shutil.rmtree(target)
    return elapsed


@dataclass(frozen=True)
class HandRestore:
    """A restore by hand: ``pgbackrest restore`` (files), then ``pg_ctl start`` until writable (start)."""

    files_s: float
    start_s: float | None  # None: not started (files only)
    restored_bytes: int

    @property
    def total_s(self) -> float:
        return self.files_s + (self.start_s or 0.0)


def sync_restore_command(config: str, pg_path: str) -> str:
    """``archive-get`` one segment per call, as pgBackRest's user guide writes it."""
    return f'pgbackrest --config={config} --stanza=app --repo=1 --pg1-path={pg_path} archive-get %f "%p"'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def restore_by_hand(lab: dict, target: Path, *options: str, start: bool = True, process_max: int = 2,
                    restore_command: str = "async", queue_mb: int = 1024) -> HandRestore:
    """``pgbackrest restore`` of repo1's newest backup into ``target/pgdata`` as an operator would (the
    drill's options: ``--type=default``, ``--archive-mode=off``, ``process_max`` 2; ``options`` add to
    them), then, with ``start``, ``pg_ctl start -w`` and ``pg_is_in_recovery()`` polled until
    false. ``restore_command`` is ``async`` (the drill's: a prefetch queue of ``queue_mb``) or ``sync``.
    The server is stopped after; ``target`` is kept (a later ``--delta`` restore reuses it)."""
    from resilience.dr.pgbackrest import async_restore_command
    from resilience.lab.osuser import make_dir

    config = lab["pgbackrest"]["config"]
    bindir = Path(lab["pg_bindir"])
    data = make_dir(target / "pgdata", "postgres", 0o700)
    run = make_dir(target / "run", "postgres", 0o755)  # the server's socket and log
    spool = make_dir(target / "spool", "postgres", 0o700)
    command = (async_restore_command(config, "app", str(data), str(spool), queue_bytes=queue_mb << 20, repo=1)
               if restore_command == "async" else sync_restore_command(config, str(data)))
    started = time.monotonic()
    run_as_postgres(["pgbackrest", f"--config={config}", "--stanza=app", "--repo=1", f"--pg1-path={data}",
                     "--archive-mode=off", "--type=default", f"--process-max={process_max}", *options,
                     f"--recovery-option=restore_command={command}", "restore"])
    files_s = time.monotonic() - started
    size = int(subprocess.run(["du", "-sb", str(data)], capture_output=True, text=True).stdout.split()[0])
    if not start:
        return HandRestore(files_s, None, size)
    port = free_port()
    server = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={run} -c archive_mode=off"
              f" -c synchronous_standby_names= -c hba_file={data / 'pg_hba.conf'}"
              f" -c ident_file={data / 'pg_ident.conf'}")
    started = time.monotonic()
    run_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(run / "postgres.log"), "-o", server,
                     "-w", "-t", "3600", "start"])
    try:
        wait_for(lambda: in_recovery(bindir, run, port) == "f", 3600, "the hand-restored copy promoted", 0.05)
        start_s = time.monotonic() - started
    finally:
        run_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
    return HandRestore(files_s, start_s, size)


def in_recovery(bindir: Path, sock: Path, port: int) -> str:
    from resilience.lab.osuser import as_user

    result = subprocess.run(as_user([str(bindir / "psql"), "-h", str(sock), "-p", str(port), "-d", "postgres",
                                     "-Atc", "SELECT pg_is_in_recovery()"], "postgres"),
                            capture_output=True, text=True, timeout=30)
    return result.stdout.strip()


def scratch() -> Path:
    target = Path(tempfile.mkdtemp(prefix="resilience-bench-restore-"))
    target.chmod(0o755)
    return target


def full_backup(lab: dict, *options: str) -> tuple[float, int]:
    """A full backup into repo1 with ``options``; return (seconds, bytes it holds in the repository)."""
    config = lab["pgbackrest"]["config"]
    started = time.monotonic()
    run_as_postgres(["pgbackrest", f"--config={config}", "--stanza=app", "--repo=1", "--type=full", *options,
                     "backup"])
    elapsed = time.monotonic() - started
    from resilience.lab.osuser import as_user

    info = json.loads(subprocess.run(as_user(["pgbackrest", f"--config={config}", "--stanza=app", "--repo=1",
                                              "--output=json", "info"], "postgres"),
                                     capture_output=True, text=True, check=True).stdout)
    return elapsed, int(info[0]["backup"][-1]["info"]["repository"]["delta"])


def drill_run(size_mb: float) -> dict:
    """One ``dr_monthly_drill`` through ``dag.test()``; its report's restore step and phases."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    reports = HOME / "reports" / "dr_monthly_drill"
    before = set(reports.glob("*.json")) if reports.exists() else set()
    with quiet_stdout():
        db.resetdb()
        dag = DagBag(dag_folder=str(ROOT / "dags" / "dr_monthly_drill.py")).get_dag("dr_monthly_drill")
        dag.deadline = None  # apache/airflow#73428: dag.test() crashes after a run when a deadline is set
        started = time.monotonic()
        dagrun = dag.test(run_conf={"environment": "lab", "dr_environment": "lab", "full_drill": False})
        wall_s = time.monotonic() - started
    report = json.loads(next(iter(set(reports.glob("*.json")) - before)).read_text())
    restore = report["phase_details"]["restore"]
    phases = {p["phase"]: p["duration_s"] for p in report["phases"]}
    return {"state": str(dagrun.state), "status": report["status"], "wall_s": wall_s, "size_mb": size_mb,
            "restore_s": restore["restore_s"], "total_s": restore["total_s"], "bytes": restore["restored_bytes"],
            "rto_s": report["rto"]["measured_s"], "rpo_s": report["rpo"]["measured_s"], "phases": phases}


def measure_size(lab: dict, size_mb: int, rounds: int) -> dict:
    """Seed to ``size_mb`` and back up; then ``rounds`` times the drill, the same restore by hand and the raw
    copy, interleaved (a load that comes and goes hits all three alike); medians."""
    reached = seed(lab["app_db"]["read_write_dsn"], size_mb)
    backup_s, _ = full_backup(lab)
    print(f"  {size_mb} MB: full backup {backup_s:.1f} s", file=sys.stderr)
    drills, hands, copies = [], [], []
    for n in range(1, rounds + 1):
        drills.append(drill_run(reached))
        target = scratch()
        hands.append(restore_by_hand(lab, target))
        shutil.rmtree(target)
        copies.append(raw_copy(lab["app_db"]["primary"]["data_dir"]))
        print(f"  {size_mb} MB round {n}: drill {drills[-1]['state']} restore to writable {drills[-1]['total_s']:.2f}"
              f" s, by hand {hands[-1].total_s:.2f} s, raw copy + sync {copies[-1][1]:.2f} s", file=sys.stderr)
    drill = {**drills[-1], **{key: statistics.median(d[key] for d in drills)
                              for key in ("total_s", "restore_s", "wall_s", "rto_s", "rpo_s")},
             "state": ",".join(sorted({d["state"] for d in drills})),
             "status": ",".join(sorted({d["status"] for d in drills}))}
    hand = HandRestore(statistics.median(h.files_s for h in hands), statistics.median(h.start_s or 0 for h in hands),
                       hands[-1].restored_bytes)
    return {"size_mb": reached, "backup_s": backup_s, "drill": drill, "hand": hand,
            "copy_s": statistics.median(c[0] for c in copies), "copy_sync_s": statistics.median(c[1] for c in copies),
            "copy_bytes": copies[-1][2]}


def sweep(lab: dict, replay_mb: int, rounds: int) -> list[tuple[str, str, str]]:
    """Each setting's effect on a restore by hand of the current database, medians of ``rounds`` (settings
    interleaved within a round): (setting, figures, vs the lab's default)."""
    rows: list[tuple[str, str, str]] = []

    def files(*options: str, process_max: int = 2) -> float:
        target = scratch()
        try:
            return restore_by_hand(lab, target, *options, start=False, process_max=process_max).files_s
        finally:
            shutil.rmtree(target)

    def median_of(measure: dict[str, Callable[[], float]]) -> dict[str, float]:
        values: dict[str, list[float]] = {name: [] for name in measure}
        for _ in range(rounds):
            for name, run in measure.items():
                values[name].append(run())
        return {name: statistics.median(v) for name, v in values.items()}

    kept = scratch()
    restore_by_hand(lab, kept)  # restored, started, promoted, stopped: the sandbox kept from last month

    def delta() -> float:  # then restored over with --delta (and started again: next round's starting point)
        return restore_by_hand(lab, kept, "--delta").files_s

    times = median_of({"2": files, "1": lambda: files(process_max=1), "4": lambda: files(process_max=4),
                       "delta": delta})
    shutil.rmtree(kept)
    base = times["2"]
    rows.append(("process-max 2 (lab default)", f"files {base:.2f} s", "1.00x"))
    for n in ("1", "4"):
        rows.append((f"process-max {n}", f"files {times[n]:.2f} s", f"{times[n] / base:.2f}x"))
    rows.append(("--delta over last restore's directory (started since)", f"files {times['delta']:.2f} s",
                 f"{times['delta'] / base:.2f}x"))
    # compared with each other (each measured after its own backup), lz4 first; the lab's default (zst level 1)
    # last: the lab is left with a backup of its own settings
    compression_base = None
    for kind, level in (("lz4", 1), ("none", None), ("zst", 3), ("gz", 6), ("zst", 1)):
        options = [f"--compress-type={kind}", *([f"--compress-level={level}"] if level is not None else [])]
        backup_s, stored = full_backup(lab, *options)
        elapsed = median_of({"files": files})["files"]
        name = f"backup {kind}" + (f" level {level}" if level is not None else "") + \
            (" (lab default)" if (kind, level) == ("zst", 1) else "")
        compression_base = compression_base or elapsed
        rows.append((name, f"backup {backup_s:.1f} s, {stored / 1e6:.0f} MB in repo, restore files {elapsed:.2f} s",
                     f"{elapsed / compression_base:.2f}x"))
        print(f"  sweep: {rows[-1]}", file=sys.stderr)
    wal_mb = write_wal(lab["app_db"]["read_write_dsn"], replay_mb)

    def replay(command: str, queue_mb: int) -> Callable[[], float]:
        def run() -> float:
            target = scratch()
            try:
                return restore_by_hand(lab, target, restore_command=command, queue_mb=queue_mb).start_s or 0.0
            finally:
                shutil.rmtree(target)
        return run

    replays = median_of({"sync": replay("sync", 0), "async, queue 128 MB": replay("async", 128),
                         "async, queue 1 GB (lab default)": replay("async", 1024)})
    default = replays["async, queue 1 GB (lab default)"]
    for name, elapsed in replays.items():
        rows.append((f"archive-get {name}", f"replay {wal_mb:.0f} MB of WAL + promote {elapsed:.2f} s",
                     f"{elapsed / default:.2f}x"))
    return rows


def write_wal(dsn: str, mb: int) -> float:
    """Write about ``mb`` MB of WAL after the newest backup (updates of seeded rows), archived; return MB written."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        begin = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        while True:
            written = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (begin,)).fetchone()[0]
            if written >= mb * 1e6:
                break
            conn.execute("UPDATE posts SET status = 'published' WHERE id IN (SELECT id FROM posts "
                         "ORDER BY random() LIMIT 20000)")
        wal = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
        conn.execute("SELECT pg_switch_wal()")
        wait_for(lambda: (conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0] or "") >= wal,
                 600, f"WAL {wal} archived", 0.5)
    return float(written) / 1e6


def slope(first: float, last: float, first_mb: float, last_mb: float) -> float:
    """Seconds per GB between two sizes."""
    return (last - first) / ((last_mb - first_mb) / 1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--sizes", default="1024,5120", help="database sizes in MB, comma-separated, ascending")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each measurement (medians)")
    parser.add_argument("--no-sweep", action="store_true", help="skip the settings sweep")
    parser.add_argument("--replay-mb", type=int, default=512, help="WAL replayed in the sweep's archive-get rows")
    parser.add_argument("--posix", action="store_true", help="also restore from a POSIX repository (issue 9)")
    lab_arguments(parser, 29320)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    results, sweep_rows, posix = [], [], None
    with own_lab(args.lab_dir, args.port_base, keep=args.keep_lab) as lab:
        for index, size_mb in enumerate(sizes):
            results.append(measure_size(lab, size_mb, args.rounds))
            if index == 0 and not args.no_sweep:
                sweep_rows = sweep(lab, args.replay_mb, args.rounds)
            if index == 0 and args.posix:
                config = posix_repository(lab)
                posix = restore_by_hand_posix(config)
                shutil.rmtree(Path(config).parent, ignore_errors=True)

    print("| database | drill restore to writable s | by hand: files + start = total s | drill - by hand s | "
          "raw cp -a + sync s | drill / raw | by hand files / raw | RTO s | RPO s | drill state |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        d, h = r["drill"], r["hand"]
        print(f"| {r['size_mb']:.0f} MB | {d['total_s']:.2f} (restore {d['restore_s']:.2f}) | {h.files_s:.2f} + "
              f"{h.start_s:.2f} = {h.total_s:.2f} | {d['total_s'] - h.total_s:+.2f} | {r['copy_sync_s']:.2f} | "
              f"{d['total_s'] / r['copy_sync_s']:.2f}x | {h.files_s / r['copy_sync_s']:.2f}x | {d['rto_s']:.1f} | "
              f"{d['rpo_s']:.1f} | {d['state']} ({d['status']}) |")
    summary = []
    if len(results) > 1:
        a, b = results[0], results[-1]
        mb = (a["size_mb"], b["size_mb"])
        slopes = {
            "drill restore to writable": slope(a["drill"]["total_s"], b["drill"]["total_s"], *mb),
            "by hand (files + start)": slope(a["hand"].total_s, b["hand"].total_s, *mb),
            "raw cp -a + sync": slope(a["copy_sync_s"], b["copy_sync_s"], *mb),
        }
        print(f"\nslope {a['size_mb']:.0f} -> {b['size_mb']:.0f} MB (s per GB): "
              + ", ".join(f"{k} {v:.2f}" for k, v in slopes.items()))
        summary.append(SummaryRow("restore slope, s per GB (drill to writable)", slopes["drill restore to writable"],
                                  slopes["raw cp -a + sync"], "raw cp -a + sync"))
    last = results[-1]
    summary += [
        SummaryRow(f"restore to writable, s, {last['size_mb'] / 1000:.1f} GB (drill step)", last["drill"]["total_s"],
                   last["hand"].total_s, "pgbackrest restore + pg_ctl start by hand"),
        SummaryRow(f"restore to writable, s, {last['size_mb'] / 1000:.1f} GB (drill step)", last["drill"]["total_s"],
                   last["copy_sync_s"], "raw cp -a + sync"),
    ]
    if sweep_rows:
        print(f"\nsettings sweep at {results[0]['size_mb']:.0f} MB (restore by hand, repo1):\n")
        print("| setting | figures | vs the first row of its block |\n|---|---|---|")
        for row in sweep_rows:
            print(f"| {' | '.join(row)} |")
    if posix is not None:
        print(f"\npgbackrest restore from a POSIX repository (same options): {posix:.2f} s")
    for r in results:
        print(f"drill at {r['size_mb']:.0f} MB: wall {r['drill']['wall_s']:.1f} s, phases {r['drill']['phases']}")
    record_summary("drill", summary)
    return 0 if all(r["drill"]["state"] == "success" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
