"""The lab's pgBackRest: two S3 repositories (repo1 in the primary region, repo2 in the DR region), stanza
``app``, WAL archiving to both, full backups in both.

The repositories live in moto behind stunnel (TLS verified with the lab CA): see :mod:`s3_tls`,
:mod:`lab_ca` and :mod:`pgbackrest_s3`. moto keeps its state in memory only, so every ``lab up``
creates the buckets, and creates the stanza and takes a full backup in a repository that has none.

Every pgbackrest command runs as the postgres OS user (it reads the data dir and talks to
the primary over its Unix socket with peer auth).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resilience.lab import lab_ca, pgbackrest_s3, s3_tls
from resilience.lab.app_process import wait_http_ok
from resilience.lab.daemons import is_alive
from resilience.lab.errors import CommandError, LabError
from resilience.lab.layout import NODES, STANZA, LabLayout
from resilience.lab.osuser import PG_OS_USER, as_postgres, make_dir, run_as_postgres, user_env

log = logging.getLogger(__name__)

IO_TIMEOUT_S = 10  # per S3 request: a dead region endpoint costs a few of these, not minutes (default 60)
REPOS = (1, 2)  # repo1: primary region, repo2: DR region (the order of s3_tls.region_endpoints)
SPOOL_DIR = "pgbackrest-spool"  # per node, under the node's root: async archive-push queue
LOCK_DIR = "pgbackrest-lock"  # per node: the async archive-push process's lock
ASYNC_MARKERS = ("archive-push:async", "archive-get:async")


def ca_dir(layout: LabLayout) -> Path:
    return layout.lab_dir / "ca"


def archive_command(config: Path, stanza: str = STANZA, pg_path: Path | None = None) -> str:
    """The ``archive_command`` that pushes WAL to every repository of the lab.

    ``pg_path`` names the node's own data dir, so whichever node is primary (after a failover
    too, before pgbackrest.conf follows it) archives its own WAL files. With ``pg_path`` the push
    is asynchronous (``--archive-async``): PostgreSQL's call returns once the segment is in both
    repositories, but one background process per node pushes the queue in parallel instead of one
    process start and TLS handshake per segment. Its spool and lock are the node's own (both nodes
    share this machine and pgbackrest.conf).
    """
    if pg_path is None:
        return f"pgbackrest --config={config} --stanza={stanza} archive-push %p"
    node_root = pg_path.parent
    return (f"pgbackrest --config={config} --stanza={stanza} --archive-async --spool-path={node_root / SPOOL_DIR}"
            f" --lock-path={node_root / LOCK_DIR} --pg1-path={pg_path} archive-push %p")


def restore_command(config: Path, stanza: str = STANZA, pg_path: Path | None = None) -> str:
    """The ``restore_command`` that fetches WAL from the lab repos (standby catch-up, pg_rewind)."""
    extra = f" --pg1-path={pg_path}" if pg_path else ""
    return f'pgbackrest --config={config} --stanza={stanza}{extra} archive-get %f "%p"'


def render_config(layout: LabLayout, ca: lab_ca.CaFiles | None = None) -> str:
    """repo1/repo2 on S3 (TLS verified with the lab CA); both app nodes as pg1/pg2: pgBackRest finds the
    primary itself (backups follow a failover)."""
    ca = ca or lab_ca.ca_files(ca_dir(layout))
    options = dataclasses.replace(pgbackrest_s3.lab_options(layout), io_timeout_s=IO_TIMEOUT_S)
    return pgbackrest_s3.render_config(pgbackrest_s3.lab_repos(layout, ca), options,
                                       [layout.node(n) for n in NODES])


def write_config(layout: LabLayout, ca: lab_ca.CaFiles | None = None) -> Path:
    """Create the log/lock/spool dirs (owned by postgres) and write pgbackrest.conf (0600: S3 keys)."""
    root = make_dir(layout.pgbackrest_dir, PG_OS_USER, 0o755)
    for name in ("log", "lock", "spool"):
        make_dir(root / name, PG_OS_USER, 0o750)
    return pgbackrest_s3.write_config(layout.pgbackrest_conf, render_config(layout, ca))


def start_s3_repos(layout: LabLayout, moto_pid: int, timeout_s: float = 20.0) -> lab_ca.CaFiles:
    """The lab CA, stunnel's two region endpoints, moto answering, both regions' buckets (idempotent).

    Call before PostgreSQL starts archiving: its first ``archive_command`` needs them.
    """
    ca = lab_ca.ensure_ca(ca_dir(layout))
    endpoints = s3_tls.region_endpoints(layout)
    s3_tls.start(layout, endpoints, ca)
    if not wait_http_ok(f"{layout.url('moto')}/moto-api/", timeout_s, lambda: is_alive(moto_pid)):
        raise LabError(f"moto S3 server not answering on {layout.url('moto')} within {timeout_s:.0f} s")
    s3_tls.ensure_buckets(layout.url("moto"), endpoints)
    return ca


def base_argv(config: Path, stanza: str = STANZA) -> list[str]:
    return ["pgbackrest", f"--config={config}", f"--stanza={stanza}"]


def check(config: Path, stanza: str = STANZA) -> None:
    """``pgbackrest check``: the primary in pgbackrest.conf archives into the repos (raises if not)."""
    log.info("Checking pgBackRest stanza %s (archive-push and repos)", stanza)
    run_as_postgres([*base_argv(config, stanza), "check"], timeout_s=120)


def stanza_create(config: Path, stanza: str = STANZA, repos: Sequence[int] = REPOS) -> None:
    """``stanza-create`` in every repository (idempotent: an existing valid stanza is left as is).

    After moto restarted (it keeps nothing), an ``archive-push --archive-async`` process started before may
    push a queued segment into the recreated bucket before the stanza exists there; pgBackRest then refuses
    ("archive directory not empty"). Such stray WAL in ``repos`` without an ``archive.info`` is removed (it
    belongs to no stanza, and the backups it would replay onto are gone) and the stanza created again."""
    log.info("Creating pgBackRest stanza %s (config %s)", stanza, config)
    create = [*base_argv(config, stanza), "stanza-create"]
    try:
        run_as_postgres(create)
    except CommandError as exc:
        if "archive directory not empty" not in exc.output or not clear_stray_archive(config, repos, stanza):
            raise
        run_as_postgres(create)


def clear_stray_archive(config: Path, repos: Sequence[int], stanza: str = STANZA) -> list[int]:
    """Remove ``archive/<stanza>`` from each of ``repos`` that has files there but no ``archive.info``;
    return the repositories cleared."""
    cleared = []
    for repo in repos:
        argv = [*base_argv(config, stanza), f"--repo={repo}"]
        listing = run_as_postgres([*argv, "repo-ls", f"archive/{stanza}"]).stdout.split()
        if listing and "archive.info" not in listing:
            log.warning("repo%d has WAL under archive/%s but no stanza (pushed after the repository was lost): "
                        "removing it before stanza-create", repo, stanza)
            run_as_postgres([*argv, "repo-rm", "--recurse", f"archive/{stanza}"])
            cleared.append(repo)
    return cleared


def info(config: Path, stanza: str = STANZA, repo: int | None = None) -> dict[str, Any]:
    """The stanza's entry of ``pgbackrest info --output=json`` (all repositories, or ``repo``)."""
    extra = [f"--repo={repo}"] if repo else []
    out = run_as_postgres([*base_argv(config, stanza), *extra, "info", "--output=json"]).stdout
    entries = json.loads(out)
    if not entries:
        raise LabError(f"pgbackrest info returned no stanza {stanza!r} (config {config})")
    return dict(entries[0])


def repo_summary(entry: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Per repository key of an ``info`` entry: ``{"status": code, "message": ..., "backups": n}``.

    Status 1 is "missing stanza path" (no stanza-create yet, or moto restarted and lost it).
    """
    found: dict[int, dict[str, Any]] = {}
    for repo in entry.get("repo", []):
        status = repo.get("status", {})
        found[int(repo["key"])] = {"status": int(status.get("code", -1)), "message": status.get("message", ""),
                                   "backups": 0}
    for backup in entry.get("backup", []):
        key = int(backup.get("database", {}).get("repo-key", 1))
        found.setdefault(key, {"status": 0, "message": "", "backups": 0})["backups"] += 1
    return found


def stanza_exists(config: Path, stanza: str = STANZA) -> bool:
    """True when every repository has the stanza (asks pgBackRest: S3 repos are not on disk)."""
    try:
        summary = repo_summary(info(config, stanza))
    except (CommandError, LabError, ValueError):
        return False
    return bool(summary) and all(r["status"] != 1 for r in summary.values())


def backup_count(config: Path, stanza: str = STANZA) -> int:
    """Backups in the repository with the fewest (a lab needs one in each)."""
    try:
        summary = repo_summary(info(config, stanza))
    except (CommandError, LabError, ValueError):
        return 0
    return min((r["backups"] for r in summary.values()), default=0)


def repos_without_backup(config: Path, stanza: str = STANZA, repos: Sequence[int] = REPOS) -> list[int]:
    try:
        summary = repo_summary(info(config, stanza))
    except (CommandError, LabError, ValueError):
        return list(repos)
    return [r for r in repos if summary.get(r, {}).get("backups", 0) == 0]


def start_full_backup(config: Path, stanza: str = STANZA, repos: Sequence[int] = REPOS) -> subprocess.Popen[str]:
    """Start ``pgbackrest backup --type=full`` into each of ``repos`` in turn (pgBackRest backs up one
    repository per run, and one backup per stanza at a time), in the background; finish with
    :func:`wait_backup`."""
    log.info("Taking a full pgBackRest backup of stanza %s into repo %s", stanza, ", ".join(map(str, repos)))
    script = " && ".join(shlex.join([*base_argv(config, stanza), f"--repo={r}", "backup", "--type=full"])
                         for r in repos)
    argv = as_postgres(["sh", "-c", script])
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/",
                            env={**os.environ, **user_env(PG_OS_USER)})


def wait_backup(proc: subprocess.Popen[str], timeout_s: float = 240) -> None:
    out, _ = proc.communicate(timeout=timeout_s)
    if proc.returncode != 0:
        args = proc.args  # a list here (start_full_backup); typed as a command string or a sequence
        argv = list(map(str, args)) if isinstance(args, list | tuple) else [str(args)]
        raise CommandError(argv, proc.returncode, out or "")
    log.info("Full backup done")


def async_processes(layout: LabLayout) -> list[int]:
    """PIDs of pgBackRest's ``archive-push:async`` / ``archive-get:async`` processes of this lab (they
    outlive PostgreSQL, even a ``pg_ctl stop -m immediate``): found by their command line naming this
    lab's pgbackrest.conf or a path under the lab dir."""
    lab_dir = str(layout.lab_dir)
    pattern = re.compile(rf"=({re.escape(lab_dir)})(/|\x00|$)")
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "pgbackrest" in cmdline and any(m in cmdline for m in ASYNC_MARKERS) and pattern.search(cmdline):
            found.append(int(proc.name))
    return found


def stop_async_processes(layout: LabLayout, timeout_s: float = 5.0) -> int:
    """SIGTERM, then SIGKILL, this lab's leftover async archive processes; return how many there were."""
    import signal
    import time

    pids = async_processes(layout)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(is_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if is_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if pids:
        log.info("Stopped %d leftover pgBackRest async archive process(es)", len(pids))
    return len(pids)


def archive_current_wal(port: int, password: str, timeout_s: float = 30.0) -> str | None:
    """Switch to a new WAL segment and wait until the finished one is archived; return its name.

    A lab that was down for a while would otherwise start with a WAL archive as old as its
    downtime (archive_timeout only acts once there is new WAL), and every RPO check would fail.
    """
    import time

    from resilience.lab.postgres import connect, fetch_one

    with connect(port, password) as conn:
        segment = fetch_one(conn, "SELECT pg_walfile_name(pg_switch_wal())")[0]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            archived = fetch_one(conn, "SELECT last_archived_wal FROM pg_stat_archiver")[0]
            if archived is not None and archived >= segment:
                log.info("WAL archive current: %s archived", archived)
                return str(archived)
            time.sleep(0.1)
    log.warning("WAL segment %s not archived within %.0f s: check the pgBackRest log", segment, timeout_s)
    return None
