"""The lab's pgBackRest: a POSIX repo under the lab dir, stanza ``app``, WAL archiving, backups.

Every pgbackrest command runs as the postgres OS user (it reads the data dir and talks to
the primary over its Unix socket with peer auth).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

from resilience.lab.errors import CommandError, LabError
from resilience.lab.layout import NODES, STANZA, LabLayout
from resilience.lab.osuser import PG_OS_USER, as_postgres, make_dir, run_as_postgres, user_env

log = logging.getLogger(__name__)


def archive_command(config: Path, stanza: str = STANZA, pg_path: Path | None = None) -> str:
    """The ``archive_command`` that pushes WAL to the lab repo.

    ``pg_path`` names the node's own data dir, so whichever node is primary (after a failover
    too, before pgbackrest.conf follows it) archives its own WAL files.
    """
    extra = f" --pg1-path={pg_path}" if pg_path else ""
    return f"pgbackrest --config={config} --stanza={stanza}{extra} archive-push %p"


def restore_command(config: Path, stanza: str = STANZA, pg_path: Path | None = None) -> str:
    """The ``restore_command`` that fetches WAL from the lab repo (standby catch-up, pg_rewind)."""
    extra = f" --pg1-path={pg_path}" if pg_path else ""
    return f'pgbackrest --config={config} --stanza={stanza}{extra} archive-get %f "%p"'


def render_config(layout: LabLayout) -> str:
    """Both app nodes as pg1/pg2: pgBackRest finds the primary itself (backups follow a failover)."""
    root = layout.pgbackrest_dir
    nodes = []
    for index, name in enumerate(NODES, start=1):
        node = layout.node(name)
        nodes += [f"pg{index}-path={node.data_dir}", f"pg{index}-port={node.port}",
                  f"pg{index}-socket-path={node.socket_dir}", f"pg{index}-user=postgres"]
    return "\n".join([
        "# Written by resilience.lab on every `resilience lab up`.",
        "[global]",
        f"repo1-path={layout.pgbackrest_repo}",
        "repo1-retention-full=2",
        f"log-path={root / 'log'}",
        f"lock-path={root / 'lock'}",
        f"spool-path={root / 'spool'}",
        "log-level-console=warn",
        "log-level-file=info",
        "start-fast=y",
        "process-max=2",
        "compress-type=lz4",
        "",
        f"[{STANZA}]",
        *nodes,
        "",
    ])


def write_config(layout: LabLayout) -> Path:
    """Create the repo/log/lock/spool dirs (owned by postgres) and write pgbackrest.conf."""
    root = make_dir(layout.pgbackrest_dir, PG_OS_USER, 0o755)
    for name in ("repo", "log", "lock", "spool"):
        make_dir(root / name, PG_OS_USER, 0o750)
    conf = layout.pgbackrest_conf
    conf.write_text(render_config(layout))
    conf.chmod(0o644)
    return conf


def base_argv(config: Path, stanza: str = STANZA) -> list[str]:
    return ["pgbackrest", f"--config={config}", f"--stanza={stanza}"]


def stanza_exists(repo_path: Path, stanza: str = STANZA) -> bool:
    """True once ``stanza-create`` has run against this POSIX repo."""
    return (repo_path / "backup" / stanza / "backup.info").exists()


def check(config: Path, stanza: str = STANZA) -> None:
    """``pgbackrest check``: the primary in pgbackrest.conf archives into the repo (raises if not)."""
    log.info("Checking pgBackRest stanza %s (archive-push and repo)", stanza)
    run_as_postgres([*base_argv(config, stanza), "check"], timeout_s=120)


def stanza_create(config: Path, stanza: str = STANZA) -> None:
    """``stanza-create`` (idempotent: an existing valid stanza is left as is)."""
    log.info("Creating pgBackRest stanza %s (config %s)", stanza, config)
    run_as_postgres([*base_argv(config, stanza), "stanza-create"])


def info(config: Path, stanza: str = STANZA) -> dict[str, Any]:
    """The stanza's entry of ``pgbackrest info --output=json``."""
    out = run_as_postgres([*base_argv(config, stanza), "info", "--output=json"]).stdout
    entries = json.loads(out)
    if not entries:
        raise LabError(f"pgbackrest info returned no stanza {stanza!r} (config {config})")
    return entries[0]


def backup_count(config: Path, stanza: str = STANZA) -> int:
    try:
        return len(info(config, stanza).get("backup", []))
    except (CommandError, LabError, ValueError):
        return 0


def start_full_backup(config: Path, stanza: str = STANZA) -> subprocess.Popen[str]:
    """Start ``pgbackrest backup --type=full`` in the background; finish with :func:`wait_backup`."""
    log.info("Taking the first full pgBackRest backup of stanza %s (repo under %s)", stanza, config.parent)
    argv = as_postgres([*base_argv(config, stanza), "backup", "--type=full"])
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd="/",
                            env={**os.environ, **user_env(PG_OS_USER)})


def wait_backup(proc: subprocess.Popen[str], timeout_s: float = 120) -> None:
    out, _ = proc.communicate(timeout=timeout_s)
    if proc.returncode != 0:
        args = proc.args  # a list here (start_full_backup); typed as a command string or a sequence
        argv = list(map(str, args)) if isinstance(args, list | tuple) else [str(args)]
        raise CommandError(argv, proc.returncode, out or "")
    log.info("Full backup done")


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
