"""Benchmark the archive lag: a committed write -> its WAL segment in each S3 repository (this bounds RPO).

A lab of its own (writer at ~10 commits/s, WAL archived asynchronously to repo1 in the primary
region and repo2 in the DR region, ``archive_timeout`` 15 s). Every ``--interval`` seconds for
``--duration`` seconds the benchmark commits a marker row and notes the WAL segment holding it and
the commit time. At the end it waits for the last segment to be archived, lists each repository's
archive (``pgbackrest repo-ls --output=json``: each file's time, whole seconds) and reports, per
repository and for "both", the lag from commit to the segment being there: median and max.

The reference measured in the same run is ``archive_timeout`` itself: a segment is switched at the
latest that long after its first write, so lag / archive_timeout shows how much the push adds.
Usage: ``python bench/archive_lag.py [--duration 300] [--interval 5] [--lab-dir DIR --port-base N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from benchlib import SummaryRow, isolated_airflow_home, lab_arguments, own_lab, record_summary

isolated_airflow_home()

ARCHIVE_TIMEOUT_S = 15.0  # the lab's archive_timeout (patroni_cluster / pgbackrest_setup)


def repo_times(config: str, repo: int, stanza: str = "app") -> dict[str, float]:
    """{segment name: time it reached repository ``repo``} for every archived WAL segment."""
    from resilience.lab.osuser import run_as_postgres

    out = run_as_postgres(["pgbackrest", f"--config={config}", f"--stanza={stanza}", f"--repo={repo}",
                           "repo-ls", "--recurse", "--output=json", f"archive/{stanza}"], timeout_s=120).stdout
    times: dict[str, float] = {}
    for name, entry in json.loads(out).items():
        base = name.rsplit("/", 1)[-1]
        if entry.get("type") == "file" and len(base) > 24 and base[24] == "-":
            times[base[:24]] = min(times.get(base[:24], float("inf")), float(entry["time"]))
    return times


def stats(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} (max {max(values):.1f})" if values else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=300)
    parser.add_argument("--interval", type=float, default=5)
    lab_arguments(parser, 26720)
    args = parser.parse_args()
    import psycopg

    with own_lab(args.lab_dir, args.port_base, keep=args.keep_lab) as lab:
        samples: list[tuple[float, str]] = []
        with psycopg.connect(lab["app_db"]["read_write_dsn"], autocommit=True) as conn:
            started = time.time()
            while time.time() - started < args.duration:
                conn.execute("INSERT INTO accounts (email, display_name) VALUES (%s, 'archive lag')",
                             (f"lag-{time.time_ns()}@bench.example",))
                committed = time.time()
                segment = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())").fetchone()[0]
                samples.append((committed, segment))
                time.sleep(max(0.0, args.interval - (time.time() - committed)))
            last = samples[-1][1]
            deadline = time.time() + 4 * ARCHIVE_TIMEOUT_S
            while time.time() < deadline:  # the last sample's segment switched and archived
                archived = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()[0]
                if archived and archived >= last:
                    break
                time.sleep(1)
        config = lab["pgbackrest"]["config"]
        repos = {r["repo"]: repo_times(config, r["repo"]) for r in lab["pgbackrest"]["repos"]}
        lags: dict[str, list[float]] = {f"repo{n}": [] for n in repos} | {"both": []}
        missing = 0
        for committed, segment in samples:
            arrived = [times.get(segment) for times in repos.values()]
            if any(a is None for a in arrived):
                missing += 1
                continue
            for n, at in zip(repos, arrived, strict=True):
                lags[f"repo{n}"].append(max(0.0, at - committed))  # type: ignore[operator]
            lags["both"].append(max(0.0, max(arrived) - committed))  # type: ignore[type-var]
    print(f"Archive lag, commit -> WAL segment in the repository ({len(samples)} writes over "
          f"{args.duration:g} s, one every {args.interval:g} s; repo-ls times are whole seconds)\n")
    print("| repository | lag s, median (max) | median / archive_timeout |")
    print("|---|---|---|")
    for name, values in lags.items():
        ratio = f"{statistics.median(values) / ARCHIVE_TIMEOUT_S:.2f}x" if values else "-"
        print(f"| {name} | {stats(values)} | {ratio} |")
    print(f"\nreference: archive_timeout {ARCHIVE_TIMEOUT_S:g} s; writes whose segment was not in every "
          f"repository at the end: {missing}")
    if lags["both"]:
        record_summary("archive_lag", [SummaryRow("commit -> WAL in both S3 repositories, median s",
                                                  statistics.median(lags["both"]), ARCHIVE_TIMEOUT_S,
                                                  "archive_timeout")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
