"""What a node says about replication, asked over its Unix socket as postgres (peer auth, no password).

Patroni sets replication up and changes roles (:mod:`resilience.lab.patroni_cluster`); these
queries are the lab's own probes (the exporter, the kill-matrix bench).
"""

from __future__ import annotations

from resilience.lab import postgres
from resilience.lab.errors import CommandError
from resilience.lab.layout import PG_SUPERUSER, ClusterPaths
from resilience.lab.osuser import run_as_postgres


def application_name(node: ClusterPaths) -> str:
    """``node-a``: how a standby shows up in its primary's ``pg_stat_replication``."""
    return node.name.replace("_", "-")


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


def streaming(primary: ClusterPaths, standby: ClusterPaths) -> bool:
    """True when ``primary``'s ``pg_stat_replication`` shows ``standby`` streaming."""
    try:
        return psql(primary, "SELECT state FROM pg_stat_replication WHERE application_name = "
                             f"'{application_name(standby)}'", timeout_s=5) == "streaming"
    except CommandError:
        return False
