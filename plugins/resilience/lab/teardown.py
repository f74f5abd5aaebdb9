"""``resilience lab down``: stop everything the lab (the DR region and DR sandboxes included) started;
optionally purge. Release histories stay in the lab dir (a region keeps its release across down/up)."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from resilience.lab import (
    deadman,
    fleet,
    memhog,
    patroni_cluster,
    pgbackrest_setup,
    postgres,
    prometheus_server,
    redis_server,
    regions,
    s3_server,
    s3_tls,
    workload,
)
from resilience.lab.app_process import stop_app
from resilience.lab.daemons import stop_daemon
from resilience.lab.errors import LabError
from resilience.lab.layout import LAB_FILE, LAYOUT_FILE, LabLayout

log = logging.getLogger(__name__)

# Sandboxes nest their data dirs a few levels under sandbox_root; never walk a whole data dir.
_SANDBOX_DEPTHS = ("*", "*/*", "*/*/*")


def _sandbox_files(root: Path, name: str) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted({p for depth in _SANDBOX_DEPTHS for p in root.glob(f"{depth}/{name}")})


def stop_sandboxes(layout: LabLayout) -> int:
    """Stop DR sandbox apps and PostgreSQL servers left under ``sandbox_root``; return how many."""
    stopped = 0
    for pid_file in _sandbox_files(layout.sandbox_root, "*.pid"):
        stopped += stop_daemon(pid_file, timeout_s=10, name=f"sandbox process ({pid_file.name})")
    for pm_file in _sandbox_files(layout.sandbox_root, "postmaster.pid"):
        stopped += postgres.stop_data_dir(pm_file.parent, f"sandbox PostgreSQL {pm_file.parent}")
    return stopped


def stop_app_databases(layout: LabLayout) -> None:
    """The Patroni cluster (replica first, then the leader, then etcd), the control DB, and data dirs a
    lab v1 left running."""
    patroni_cluster.stop_cluster(layout)
    for data_dir in layout.legacy_data_dirs:
        postgres.stop_data_dir(data_dir, f"lab v1 PostgreSQL {data_dir}")
    postgres.stop(layout.control)


def lab_down(layout: LabLayout, purge: bool = False) -> None:
    """Stop traffic, the DR region, the app fleet, Redis, Prometheus, memory hogs, sandboxes, databases,
    pgBackRest's leftover async archive processes, then S3 (its TLS endpoints and moto: the databases archive
    into it until they stop) (idempotent)."""
    started = time.monotonic()
    log.info("Stopping the lab in %s (port base %d)", layout.lab_dir, layout.port_base)
    if layout.lab_dir.is_dir():
        workload.stop_loadgen(layout)
        workload.stop_writer(layout)
        regions.stop_dr(layout)
        fleet.stop_fleet(layout)
        stop_app(layout.port("app"), layout.run_dir)  # the single demo app of a lab v1, if one runs
        deadman.cancel_all(layout)  # a switch left armed would start Redis in a lab that is down
        redis_server.stop(layout)
        prometheus_server.stop(layout)
        memhog.stop_all(layout)
        stop_sandboxes(layout)
        # before S3: a stopping PostgreSQL archives its last WAL into the S3 repositories (moto behind stunnel)
        stop_app_databases(layout)
        # after the databases: an async archive-push outlives its PostgreSQL (even -m immediate)
        pgbackrest_setup.stop_async_processes(layout)
        s3_tls.stop(layout)
        s3_server.stop(layout)
        layout.dns_file.unlink(missing_ok=True)  # moto's zone died with it
        layout.lab_file.unlink(missing_ok=True)
    else:
        log.info("Lab dir %s does not exist: nothing to stop", layout.lab_dir)
    if purge:
        purge_lab_dir(layout)
    log.info("Lab down in %.1f s", time.monotonic() - started)


def purge_lab_dir(layout: LabLayout) -> None:
    """Delete the lab dir, but only if it looks like one (never an arbitrary directory)."""
    directory = layout.lab_dir
    if not directory.exists():
        return
    markers = [directory / LAYOUT_FILE, directory / LAB_FILE]
    if not any(m.exists() for m in markers) and any(directory.iterdir()):
        raise LabError(f"refusing to purge {directory}: it has no {LAYOUT_FILE}, so it is not a lab dir")
    log.info("Purging lab dir %s", directory)
    shutil.rmtree(directory)
