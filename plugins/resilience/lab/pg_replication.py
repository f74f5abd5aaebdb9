"""Streaming replication between the two app nodes: clone, promote, rewind, slots, streaming state.

Everything runs as the postgres OS user over the nodes' Unix sockets (peer auth), so no
password travels. Replication settings (``primary_conninfo``, ``primary_slot_name``) live in
the node's ``lab.conf``, never in ``postgresql.auto.conf``, so a role change rewrites one file.
"""

from __future__ import annotations

import logging
import shutil
import time

from resilience.lab import postgres
from resilience.lab.daemons import wait_for
from resilience.lab.errors import CommandError, LabError
from resilience.lab.layout import PG_SUPERUSER, ClusterPaths
from resilience.lab.osuser import PG_OS_USER, is_root, run_as_postgres

log = logging.getLogger(__name__)


def application_name(node: ClusterPaths) -> str:
    """``node-a``: how a standby shows up in its primary's ``pg_stat_replication``."""
    return node.name.replace("_", "-")


def primary_conninfo(primary: ClusterPaths, standby: ClusterPaths) -> str:
    return (f"host={primary.socket_dir} port={primary.port} user={PG_SUPERUSER} "
            f"application_name={application_name(standby)}")


def psql(node: ClusterPaths, query: str, timeout_s: float = 10) -> str:
    """Run one query on ``node`` over its socket as postgres; return the unaligned output."""
    return run_as_postgres([postgres.pg_bin("psql"), "-h", str(node.socket_dir), "-p", str(node.port), "-U",
                            PG_SUPERUSER, "-d", "postgres", "-XAtqc", query], timeout_s=timeout_s).stdout.strip()


def in_recovery(node: ClusterPaths) -> bool | None:
    """``pg_is_in_recovery()`` of a running node, None when it does not answer."""
    if postgres.postmaster_pid(node) is None:
        return None
    try:
        return psql(node, "SELECT pg_is_in_recovery()", timeout_s=5) == "t"
    except CommandError:
        return None


def has_standby_signal(node: ClusterPaths) -> bool:
    return (node.data_dir / "standby.signal").exists()


def mark_standby(node: ClusterPaths) -> None:
    """Create ``standby.signal`` (owned by postgres): the node starts as a standby."""
    signal_file = node.data_dir / "standby.signal"
    signal_file.touch()
    if is_root():
        shutil.chown(signal_file, PG_OS_USER, PG_OS_USER)


def ensure_slot(primary: ClusterPaths, slot: str) -> None:
    """Create the physical replication slot on ``primary`` unless it exists."""
    created = psql(primary, f"SELECT pg_create_physical_replication_slot('{slot}') WHERE NOT EXISTS "
                            f"(SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}')")
    if created:
        log.info("Created replication slot %s on %s", slot, primary.title)


def drop_inactive_slot(primary: ClusterPaths, slot: str) -> None:
    if psql(primary, f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     f"WHERE slot_name = '{slot}' AND NOT active"):
        log.info("Dropped stale replication slot %s on %s", slot, primary.title)


def clone(primary: ClusterPaths, standby: ClusterPaths, slot: str) -> None:
    """``pg_basebackup -X stream -C -S slot`` from ``primary`` into ``standby``'s (absent) data dir."""
    postgres.prepare_dirs(standby)
    drop_inactive_slot(primary, slot)
    log.info("Cloning %s from %s into %s (slot %s)", standby.title, primary.title, standby.data_dir, slot)
    run_as_postgres([postgres.pg_bin("pg_basebackup"), "-h", str(primary.socket_dir), "-p", str(primary.port),
                     "-U", PG_SUPERUSER, "-D", str(standby.data_dir), "-X", "stream", "-C", "-S", slot,
                     "-c", "fast", "--no-password"])
    mark_standby(standby)


def stop_immediate(node: ClusterPaths) -> bool:
    """``pg_ctl stop -m immediate``: the node dies as if its host lost power. True if it ran."""
    pid = postgres.postmaster_pid(node)
    if pid is None:
        return False
    log.info("Stopping %s hard (pid %d, immediate shutdown)", node.title, pid)
    run_as_postgres([postgres.pg_bin("pg_ctl"), "stop", "-D", str(node.data_dir), "-m", "immediate", "-w", "-s"])
    return True


def promote(node: ClusterPaths, timeout_s: float = 30) -> float:
    """``pg_ctl promote -w`` and wait until the node accepts writes; return the seconds it took."""
    started = time.monotonic()
    log.info("Promoting %s to primary", node.title)
    run_as_postgres([postgres.pg_bin("pg_ctl"), "promote", "-D", str(node.data_dir), "-w", "-t",
                     str(int(timeout_s)), "-s"])
    if not wait_for(lambda: in_recovery(node) is False, timeout_s):
        raise LabError(f"{node.title} was promoted but still is in recovery after {timeout_s:.0f} s")
    return time.monotonic() - started


def rewind(target: ClusterPaths, source: ClusterPaths) -> bool:
    """``pg_rewind`` the stopped ``target`` onto ``source``'s timeline; False when it cannot.

    pg_rewind (PostgreSQL 13+) finishes crash recovery of an uncleanly stopped target itself
    (single-user mode) and fetches missing WAL with the target's ``restore_command``.
    """
    log.info("Rewinding %s onto %s (pg_rewind)", target.title, source.title)
    # A just-promoted node records its new timeline in pg_control only at its next checkpoint:
    # without one pg_rewind sees "the same timeline" and does nothing.
    psql(source, "CHECKPOINT", timeout_s=60)
    (target.data_dir / "standby.signal").unlink(missing_ok=True)  # single-user recovery refuses standby mode
    try:
        out = run_as_postgres([postgres.pg_bin("pg_rewind"), "-D", str(target.data_dir), "--source-server",
                               f"host={source.socket_dir} port={source.port} user={PG_SUPERUSER} dbname=postgres",
                               "--restore-target-wal"], timeout_s=300).stdout
    except CommandError as exc:
        log.warning("pg_rewind of %s failed (exit %d): %s", target.title, exc.returncode,
                    " | ".join(exc.output.strip().splitlines()[-3:]))
        return False
    log.info("pg_rewind: %s", " | ".join(out.strip().splitlines()[-2:]) or "done")
    return True


def remove_data_dir(node: ClusterPaths) -> None:
    """Delete a stopped node's data dir (before a fresh clone)."""
    if postgres.postmaster_pid(node) is not None:
        raise LabError(f"refusing to delete the data dir of running {node.title}")
    log.info("Removing data dir %s of %s", node.data_dir, node.title)
    shutil.rmtree(node.data_dir, ignore_errors=True)


def streaming(primary: ClusterPaths, standby: ClusterPaths) -> bool:
    """True when ``primary``'s ``pg_stat_replication`` shows ``standby`` streaming."""
    try:
        return psql(primary, "SELECT state FROM pg_stat_replication WHERE application_name = "
                             f"'{application_name(standby)}'", timeout_s=5) == "streaming"
    except CommandError:
        return False


def wait_streaming(primary: ClusterPaths, standby: ClusterPaths, timeout_s: float = 30) -> None:
    if not wait_for(lambda: streaming(primary, standby), timeout_s, interval_s=0.1):
        raise LabError(f"{standby.title} is not streaming from {primary.title} after {timeout_s:.0f} s "
                       f"(see {standby.log_file})")
    log.info("%s streams from %s", standby.title, primary.title)
