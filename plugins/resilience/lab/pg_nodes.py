"""The two app PostgreSQL nodes at bring-up: settings per role, start the primary, then the replica.

A node's ``lab.conf`` is rewritten from its current role on every ``up`` and after every role
change: WAL archiving (each node pushes with its own ``--pg1-path``, so a promoted node keeps
archiving), ``restore_command`` from the pgBackRest repo, and for the replica role
``primary_conninfo`` + ``primary_slot_name`` pointing at the current primary.
"""

from __future__ import annotations

import logging

from resilience.lab import pg_replication, pgbackrest_setup, postgres
from resilience.lab.errors import PreflightError
from resilience.lab.layout import REPLICA_SLOT, ClusterPaths, LabLayout
from resilience.lab.pg_roles import Roles, read_roles

log = logging.getLogger(__name__)

ARCHIVE_TIMEOUT = "15s"


def node_settings(layout: LabLayout, node: ClusterPaths, roles: Roles) -> dict[str, object]:
    """Everything in the node's ``lab.conf`` for its role in ``roles``."""
    conf = layout.pgbackrest_conf
    settings: dict[str, object] = {
        **postgres.base_settings(node),
        "archive_mode": "on",
        "archive_command": pgbackrest_setup.archive_command(conf, pg_path=node.data_dir),
        "archive_timeout": ARCHIVE_TIMEOUT,
        "restore_command": pgbackrest_setup.restore_command(conf, pg_path=node.data_dir),
    }
    if node.name == f"node_{roles.replica}":
        primary = layout.node(roles.primary)
        settings["primary_conninfo"] = pg_replication.primary_conninfo(primary, node)
        settings["primary_slot_name"] = REPLICA_SLOT
    return settings


def configure_node(layout: LabLayout, node: ClusterPaths, roles: Roles | None = None) -> None:
    postgres.configure(node, node_settings(layout, node, roles or read_roles(layout)))


def refuse_legacy_layout(layout: LabLayout) -> None:
    """A lab v1 dir (``pg/primary``, ``pg/replica``) cannot be reused: the names lie after a failover."""
    old = [d for d in layout.legacy_data_dirs if (d / "PG_VERSION").exists()]
    if old:
        raise PreflightError(
            f"lab dir {layout.lab_dir} was created by lab v1 ({', '.join(str(d.parent) for d in old)}); "
            f"lab v2 keeps nodes in pg/node-a and pg/node-b: run `resilience lab down --purge` first"
        )


def ensure_primary(layout: LabLayout) -> ClusterPaths:
    """Start the primary-role node (initdb first on a new lab); return it."""
    roles = read_roles(layout)
    primary = layout.node(roles.primary)
    if not postgres.is_initialized(primary) and postgres.is_initialized(layout.node(roles.replica)):
        raise PreflightError(f"{primary.title} has no data dir but {layout.node(roles.replica).title} has: "
                             f"the lab is inconsistent; `resilience lab down --purge` and start over")
    postgres.ensure_cluster(primary, layout.password_file, node_settings(layout, primary, roles))
    return primary
