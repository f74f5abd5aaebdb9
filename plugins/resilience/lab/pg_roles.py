"""Which app PostgreSQL node is the primary: ``<lab_dir>/pg/roles.json``.

The data dirs are named after nodes (``pg/node-a``, ``pg/node-b``), never after roles, so a
failover only rewrites this small file. ``needs_rebuild`` marks a replica role held by an old
primary that has not been turned into a standby yet (after :func:`failover <resilience.lab.pg_failover>`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from resilience.lab.layout import NODES, ClusterPaths, LabLayout


@dataclass(frozen=True)
class Roles:
    """The node names holding each role, and whether the replica must be rebuilt."""

    primary: str = "a"
    replica: str = "b"
    needs_rebuild: bool = False
    changed_at: float = 0.0

    def swapped(self) -> Roles:
        """The roles after promoting the replica: the old primary must be rebuilt."""
        return Roles(self.replica, self.primary, True, time.time())

    def rebuilt(self) -> Roles:
        return Roles(self.primary, self.replica, False, time.time())

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def read_roles(layout: LabLayout) -> Roles:
    """The recorded roles; a lab without a roles file has node a as primary."""
    try:
        doc = json.loads(layout.roles_file.read_text())
    except FileNotFoundError:
        return Roles()
    roles = Roles(str(doc["primary"]), str(doc["replica"]), bool(doc.get("needs_rebuild", False)),
                  float(doc.get("changed_at", 0.0)))
    if {roles.primary, roles.replica} != set(NODES):
        raise ValueError(f"{layout.roles_file}: roles {roles.primary!r}/{roles.replica!r} are not nodes {NODES}")
    return roles


def write_roles(layout: LabLayout, roles: Roles) -> Path:
    """Write the roles file atomically (a reader never sees half a file)."""
    layout.roles_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = layout.roles_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(roles.as_dict()) + "\n")
    tmp.replace(layout.roles_file)
    return layout.roles_file


def primary_node(layout: LabLayout) -> ClusterPaths:
    return layout.node(read_roles(layout).primary)


def replica_node(layout: LabLayout) -> ClusterPaths:
    return layout.node(read_roles(layout).replica)
