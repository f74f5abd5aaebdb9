"""``resilience lab up``: bring every lab component up, idempotently, and write lab.json.

Order: preflight (nothing started yet) -> Prometheus -> control and app primary clusters
(in parallel) -> databases and schema -> pgBackRest stanza + first full backup (in the
background) -> streaming replica -> writer -> demo app -> first scrape of job ``api`` -> lab.json.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from resilience.lab import pgbackrest_setup, postgres, prometheus_server, workload
from resilience.lab.app_process import start_app
from resilience.lab.errors import PreflightError
from resilience.lab.layout import (
    APP_DBNAME,
    CONTROL_DBNAME,
    HOST,
    REPLICA_SLOT,
    ClusterPaths,
    LabLayout,
    include_dir,
)
from resilience.lab.osuser import PG_OS_USER, effective_user, make_dir
from resilience.lab.password import ensure_password
from resilience.lab.preflight import preflight
from resilience.lab.state import app_read_write_dsn, build_state, write_lab_state
from resilience.lab.status import running_components

log = logging.getLogger(__name__)

ARCHIVE_TIMEOUT = "15s"


def _archive_settings(layout: LabLayout, own_data_dir: ClusterPaths | None = None) -> dict[str, object]:
    command = pgbackrest_setup.archive_command(layout.pgbackrest_conf,
                                               pg_path=own_data_dir.data_dir if own_data_dir else None)
    return {"archive_mode": "on", "archive_command": command, "archive_timeout": ARCHIVE_TIMEOUT}


def prepare_lab_dir(layout: LabLayout) -> str:
    """Create the lab dir skeleton, record the port base, return the postgres password."""
    make_dir(layout.lab_dir, None, 0o755)
    make_dir(layout.run_dir, None, 0o755)
    make_dir(layout.sandbox_root, PG_OS_USER, 0o755)
    if not layout.layout_file.exists():
        layout.layout_file.write_text(json.dumps({"port_base": layout.port_base}) + "\n")
    return ensure_password(layout.password_file)


def ensure_cluster(cluster: ClusterPaths, password_file: Path, settings: dict[str, object]) -> None:
    """initdb if needed, (re)write its configuration, start it unless it already runs."""
    pid = postgres.postmaster_pid(cluster)
    if pid is not None:
        log.info("%s already up on %s:%d (pid %d)", cluster.title, HOST, cluster.port, pid)
        return
    if not postgres.is_initialized(cluster):
        postgres.initdb(cluster, password_file)
    postgres.configure(cluster, settings)
    postgres.start(cluster)


def refuse_split_brain(layout: LabLayout) -> None:
    """Never start the old primary while the replica has been promoted (two writable nodes)."""
    replica = layout.replica
    promoted = postgres.is_initialized(replica) and not (replica.data_dir / "standby.signal").exists()
    if promoted and postgres.postmaster_pid(layout.primary) is None:
        raise PreflightError(
            f"the app replica ({replica.data_dir}) has been promoted and the old primary is down: "
            "starting it would give two writable primaries. Rebuild it as a standby (pg_rewind) or "
            "start over with `resilience lab down --purge`"
        )


def ensure_replica(layout: LabLayout) -> None:
    """Clone the replica from the primary if it has no data dir yet, configure it, start it."""
    replica = layout.replica
    pid = postgres.postmaster_pid(replica)
    if pid is not None:
        log.info("%s already up on %s:%d (pid %d)", replica.title, HOST, replica.port, pid)
        return
    if not postgres.is_initialized(replica):
        postgres.clone_replica(layout.primary, replica, REPLICA_SLOT)
    postgres.configure(replica, {**postgres.base_settings(replica), **_archive_settings(layout, replica)})
    postgres.start(replica)


def lab_up(layout: LabLayout) -> dict[str, Any]:
    """Bring the lab up (idempotent) and return the lab.json document."""
    started = time.monotonic()
    running = {name: pid is not None for name, pid in running_components(layout).items()}
    preflight(layout, running)
    refuse_split_brain(layout)
    log.info("Bringing the lab up in %s (port base %d)", layout.lab_dir, layout.port_base)
    password = prepare_lab_dir(layout)
    conf = pgbackrest_setup.write_config(layout, layout.primary)
    prometheus_server.start(layout)  # first: it needs nothing, and it syncs new targets only every ~5 s

    control, primary = layout.control, layout.primary
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(ensure_cluster, control, layout.password_file, postgres.base_settings(control)),
            pool.submit(ensure_cluster, primary, layout.password_file,
                        {**postgres.base_settings(primary), **_archive_settings(layout)}),
        ]
        for future in futures:
            future.result()
    postgres.ensure_database(control, password, CONTROL_DBNAME)
    postgres.ensure_database(primary, password, APP_DBNAME)
    postgres.apply_sql_file(primary, password, APP_DBNAME, include_dir() / "sql" / "app_schema.sql")

    if pgbackrest_setup.stanza_exists(layout.pgbackrest_repo):
        log.info("pgBackRest stanza app already exists in %s", layout.pgbackrest_repo)
    else:
        pgbackrest_setup.stanza_create(conf)
    backup = None
    if pgbackrest_setup.backup_count(conf) == 0:
        backup = pgbackrest_setup.start_full_backup(conf)
    else:
        log.info("pgBackRest stanza app already has a backup: not taking another one")
    try:
        ensure_replica(layout)
        dsn = app_read_write_dsn(layout, password)
        workload.start_writer(layout, dsn)
        start_app(dsn, layout.port("app"), layout.run_dir)
        prometheus_server.wait_for_first_scrape(layout, "api")
    finally:
        if backup is not None:
            pgbackrest_setup.wait_backup(backup)

    state = build_state(layout, password, postgres.pg_bindir(), effective_user(PG_OS_USER))
    write_lab_state(layout, state)
    log.info("Lab up in %.1f s: %s", time.monotonic() - started, layout.lab_file)
    return state
