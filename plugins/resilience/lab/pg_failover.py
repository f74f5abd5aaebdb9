"""Role changes of the app database: fail over to the replica, rebuild the old primary as a standby.

After each change the lab follows the primary: ``pg/roles.json``, the nodes' ``lab.conf``,
``pgbackrest.conf`` (``pg1-path``/port: backups and ``pgbackrest check`` keep working) and
``lab.json`` (``app_db.primary``/``replica`` keep their shape, their contents swap).
"""

from __future__ import annotations

import logging
import shutil
import time

from resilience.lab import pg_replication, pgbackrest_setup, postgres
from resilience.lab.errors import LabError
from resilience.lab.layout import REPLICA_SLOT, ClusterPaths, LabLayout
from resilience.lab.pg_nodes import configure_node
from resilience.lab.pg_replication import in_recovery
from resilience.lab.pg_roles import read_roles, write_roles
from resilience.lab.state import refresh_lab_state

log = logging.getLogger(__name__)


def follow_primary(layout: LabLayout) -> None:
    """Point pgbackrest.conf and lab.json at the current primary."""
    pgbackrest_setup.write_config(layout, layout.node(read_roles(layout).primary))
    refresh_lab_state(layout)


def failover(layout: LabLayout) -> str:
    """Stop the primary hard, promote the replica; return the new primary's node name.

    Idempotent, and re-entrant after a caller that died half-way: once the replica has been
    promoted (and not rebuilt yet) it only returns; a replica promoted while the roles still
    name the stopped old primary is recorded as the primary; a replica never promoted is
    promoted now (the old primary was stopped: starting it again instead could give two
    primaries if the promote was already under way).
    """
    roles = read_roles(layout)
    primary, replica = layout.node(roles.primary), layout.node(roles.replica)
    if roles.needs_rebuild and in_recovery(primary) is False:
        log.info("Failover already done: node %s is primary, node %s awaits a rebuild", roles.primary, roles.replica)
        return roles.primary
    started, replica_recovering = time.monotonic(), in_recovery(replica)
    if replica_recovering is False and postgres.postmaster_pid(primary) is None:
        log.warning("%s was promoted but the roles still name %s (down) as primary: a failover stopped half-way; "
                    "recording it", replica.title, primary.title)
    elif replica_recovering is not True:
        raise LabError(f"cannot fail over: {replica.title} is not a running standby "
                       f"(state: {'down' if postgres.postmaster_pid(replica) is None else 'not in recovery'})")
    else:
        pg_replication.stop_immediate(primary)
        pg_replication.promote(replica)
    swapped = roles.swapped()
    write_roles(layout, swapped)
    configure_node(layout, replica, swapped)  # no primary_conninfo for a primary
    follow_primary(layout)
    log.info("Failover done in %.2f s: node %s is primary on port %d, node %s (down) must be rebuilt",
             time.monotonic() - started, swapped.primary, replica.port, swapped.replica)
    return swapped.primary


def interrupted(layout: LabLayout) -> bool:
    """A failover stopped half-way: the recorded primary is down and no failover is recorded yet."""
    roles = read_roles(layout)
    return not roles.needs_rebuild and postgres.postmaster_pid(layout.node(roles.primary)) is None


def _drop_local_slots(node: ClusterPaths) -> None:
    """A rewound old primary keeps its own slots, which would pin WAL forever: remove them (node stopped)."""
    slots = node.data_dir / "pg_replslot"
    for entry in slots.iterdir() if slots.is_dir() else []:
        shutil.rmtree(entry, ignore_errors=True)


def _resync(primary: ClusterPaths, standby: ClusterPaths) -> None:
    """Make a stopped diverged node a copy of ``primary``'s timeline: pg_rewind, else a fresh clone."""
    if postgres.is_initialized(standby) and pg_replication.rewind(standby, primary):
        _drop_local_slots(standby)
        pg_replication.mark_standby(standby)
        return
    if postgres.is_initialized(standby):
        log.info("pg_rewind could not rebuild %s: taking a fresh base backup instead", standby.title)
        pg_replication.remove_data_dir(standby)
    pg_replication.clone(primary, standby, REPLICA_SLOT)


def rebuild(layout: LabLayout, timeout_s: float = 30) -> None:
    """Turn the replica-role node into a streaming standby of the primary; wait until it streams.

    Idempotent: a standby that already streams is left alone. A node that is not a standby
    (an old primary, or ``needs_rebuild``) is stopped, rewound (or re-cloned) and started.
    """
    roles = read_roles(layout)
    primary, standby = layout.node(roles.primary), layout.node(roles.replica)
    if in_recovery(primary) is not False:
        raise LabError(f"cannot rebuild the replica: {primary.title} (primary) is not running writable")
    diverged = roles.needs_rebuild or (postgres.is_initialized(standby)
                                       and not pg_replication.has_standby_signal(standby))
    if not diverged and in_recovery(standby) and pg_replication.streaming(primary, standby):
        log.info("%s already streams from %s: nothing to rebuild", standby.title, primary.title)
        return
    if diverged or not postgres.is_initialized(standby):
        pg_replication.stop_immediate(standby)  # a diverged node must never serve (split brain)
        _resync(primary, standby)
    pg_replication.ensure_slot(primary, REPLICA_SLOT)
    configure_node(layout, standby, roles)
    if postgres.postmaster_pid(standby) is None:
        postgres.start(standby)
    else:
        postgres.reload(standby)  # primary_conninfo may have changed
    pg_replication.wait_streaming(primary, standby, timeout_s)
    if roles.needs_rebuild:
        write_roles(layout, roles.rebuilt())
    follow_primary(layout)
    log.info("Rebuilt node %s as a streaming replica of node %s", roles.replica, roles.primary)


def ensure_replica(layout: LabLayout) -> None:
    """At ``up``: the replica-role node running as a standby (clone or rebuild it when needed)."""
    roles = read_roles(layout)
    standby = layout.node(roles.replica)
    pid = postgres.postmaster_pid(standby)
    if pid is not None and not roles.needs_rebuild and pg_replication.has_standby_signal(standby):
        log.info("%s already up on port %d (pid %d, replica)", standby.title, standby.port, pid)
        return
    rebuild(layout)
