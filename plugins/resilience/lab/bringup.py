"""``resilience lab up``: bring every lab component up, idempotently, and write lab.json.

Order (slow starters first, independent ones overlapped): preflight (nothing started yet) ->
Prometheus, Redis, moto (not waited for), the lab CA and stunnel (the S3 endpoints of both regions) ->
control DB, etcd + both nodes' Patroni (Patroni elects a leader and clones the replica), and moto's
backup buckets (all in parallel; buckets before the first archive_command matters) -> databases and
schema -> pgBackRest stanza in both repositories + a full backup into each repository that has none
(in the background) -> supervisor (replicas boot meanwhile) ->
replica streaming from the leader -> writer -> S3 bucket + fault proxy ->
DNS zone and weighted records (missing ones only: weights are never reset) -> replicas healthy ->
load balancer -> load generator (resolves through DNS) -> first scrape of job ``lb`` -> current WAL
segment archived (a lab that was down long starts with a current archive) -> lab.json.
The DR region is not started here (see :func:`resilience.lab.control.start_dr_region`).
"""

from __future__ import annotations

import logging
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from resilience.lab import (
    dns_zone,
    fleet,
    lab_ca,
    patroni_cluster,
    pgbackrest_setup,
    postgres,
    prometheus_server,
    redis_server,
    releases,
    s3_server,
    workload,
)
from resilience.lab.layout import APP_DBNAME, CONTROL_DBNAME, LabLayout, include_dir, record_settings
from resilience.lab.osuser import PG_OS_USER, effective_user, make_dir
from resilience.lab.password import ensure_password
from resilience.lab.pg_roles import primary_node
from resilience.lab.preflight import preflight
from resilience.lab.state import app_read_write_dsn, build_state, write_lab_state
from resilience.lab.status import running_components

log = logging.getLogger(__name__)


def prepare_lab_dir(layout: LabLayout) -> str:
    """Create the lab dir skeleton, record the settings and roles, return the postgres password."""
    make_dir(layout.lab_dir, None, 0o755)
    make_dir(layout.run_dir, None, 0o755)
    make_dir(layout.sandbox_root, PG_OS_USER, 0o755)
    make_dir(layout.lab_dir / "pg", None, 0o755)
    record_settings(layout)
    return ensure_password(layout.password_file)


def start_databases(layout: LabLayout, password: str, moto_pid: int) -> subprocess.Popen[str] | None:
    """Control DB, the Patroni cluster's leader and the S3 repositories up, schema applied, stanza created
    in both repositories; return a running full backup (into each repository that has none)."""
    control = layout.control
    with ThreadPoolExecutor(max_workers=3) as pool:
        repos_up = pool.submit(pgbackrest_setup.start_s3_repos, layout, moto_pid)
        control_up = pool.submit(postgres.ensure_cluster, control, layout.password_file,
                                 postgres.base_settings(control))
        leader_up = pool.submit(patroni_cluster.ensure_cluster, layout)
        repos_up.result()
        control_up.result()
        leader_up.result()
    primary = primary_node(layout)
    postgres.ensure_database(control, password, CONTROL_DBNAME)
    postgres.ensure_database(primary, password, APP_DBNAME)
    postgres.apply_sql_file(primary, password, APP_DBNAME, include_dir() / "sql" / "app_schema.sql")
    conf = layout.pgbackrest_conf
    missing = pgbackrest_setup.repos_without_backup(conf)
    if not missing:
        log.info("pgBackRest stanza app has a backup in every repository: not taking another one")
        return None
    pgbackrest_setup.stanza_create(conf, repos=missing)  # idempotent; a fresh lab, or moto restarted
    return pgbackrest_setup.start_full_backup(conf, repos=missing)


def start_services(layout: LabLayout, password: str, moto_pid: int) -> None:
    """Replica node, writer, S3, app fleet, load generator; wait for Prometheus to see the LB."""
    dsn = app_read_write_dsn(layout, password)
    releases.ensure_history(layout, "primary")
    supervisor_pid = fleet.start_supervisor(layout, dsn)
    patroni_cluster.wait_replicas(layout)
    workload.start_writer(layout, dsn)
    s3_server.finish_start(layout, moto_pid)
    dns_zone.ensure_zone(layout)
    fleet.wait_replicas(layout, supervisor_pid)
    fleet.start_lb(layout)
    workload.start_loadgen(layout)
    prometheus_server.wait_for_first_scrape(layout, "lb")
    # last, once the writer has been writing for a few seconds: the archived segment holds those writes
    pgbackrest_setup.archive_current_wal(primary_node(layout).port, password)


def lab_up(layout: LabLayout) -> dict[str, Any]:
    """Bring the lab up (idempotent) and return the lab.json document."""
    started = time.monotonic()
    patroni_cluster.refuse_unmanaged_nodes(layout)
    running = {name: pid is not None for name, pid in running_components(layout).items()}
    preflight(layout, running)
    log.info("Bringing the lab up in %s (port base %d, %d replicas, load %g requests/s)", layout.lab_dir,
             layout.port_base, layout.replicas, layout.load_rate)
    password = prepare_lab_dir(layout)
    pgbackrest_setup.write_config(layout, lab_ca.ensure_ca(pgbackrest_setup.ca_dir(layout)))
    prometheus_server.start(layout)  # first: it needs nothing, and it syncs new targets only every ~5 s
    redis_server.start(layout)
    moto_pid = s3_server.start_moto(layout)  # ~1 s of imports: waited for later
    backup = start_databases(layout, password, moto_pid)
    try:
        start_services(layout, password, moto_pid)
    finally:
        if backup is not None:
            pgbackrest_setup.wait_backup(backup)
    state = build_state(layout, password, postgres.pg_bindir(), effective_user(PG_OS_USER))
    write_lab_state(layout, state)
    log.info("Lab up in %.1f s: %s", time.monotonic() - started, layout.lab_file)
    return state
