"""Which app PostgreSQL node is the primary: Patroni's answer, remembered in ``<lab_dir>/pg/roles.json``.

Patroni decides the roles; the lab asks its REST API and keeps the last answer, so code that
must name a node while every API is down (``lab down`` of a crashed cluster, ``lab status``)
still has the last known roles. ``needs_rebuild`` says the replica-role node was not streaming
from the leader when the roles were last read.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from resilience.lab.layout import NODES, ClusterPaths, LabLayout


@dataclass(frozen=True)
class Roles:
    """The node names holding each role, and whether the replica was not streaming."""

    primary: str = "a"
    replica: str = "b"
    needs_rebuild: bool = False
    changed_at: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _recorded(layout: LabLayout) -> Roles:
    try:
        doc = json.loads(layout.roles_file.read_text())
    except FileNotFoundError:
        return Roles()
    roles = Roles(str(doc["primary"]), str(doc["replica"]), bool(doc.get("needs_rebuild", False)),
                  float(doc.get("changed_at", 0.0)))
    if {roles.primary, roles.replica} != set(NODES):
        raise ValueError(f"{layout.roles_file}: roles {roles.primary!r}/{roles.replica!r} are not nodes {NODES}")
    return roles


def read_roles(layout: LabLayout) -> Roles:
    """The roles as Patroni reports them now (recorded), else as last recorded, else node a primary."""
    from resilience.lab import patroni_cluster
    from resilience.patroni import STREAMING_LAG_BYTES, PatroniError

    recorded = _recorded(layout)
    try:
        topology = patroni_cluster.client(layout, 1.0).topology()
    except PatroniError:
        return recorded
    leader = topology.leader
    if leader is None:
        return recorded
    primary = patroni_cluster.node_of_member(leader.name)
    replica = next(n for n in NODES if n != primary)
    streaming = {m.name for m in topology.streaming_replicas(STREAMING_LAG_BYTES)}
    current = Roles(primary, replica, patroni_cluster.member_name(replica) not in streaming,
                    recorded.changed_at if recorded.primary == primary else time.time())
    if current != recorded:
        write_roles(layout, current)
    return current


def write_roles(layout: LabLayout, roles: Roles) -> Path:
    """Write the roles file atomically (a reader never sees half a file)."""
    layout.roles_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = layout.roles_file.with_suffix(f".json.{time.monotonic_ns()}.tmp")
    tmp.write_text(json.dumps(roles.as_dict()) + "\n")
    tmp.replace(layout.roles_file)
    return layout.roles_file


def primary_node(layout: LabLayout) -> ClusterPaths:
    return layout.node(read_roles(layout).primary)


def replica_node(layout: LabLayout) -> ClusterPaths:
    return layout.node(read_roles(layout).replica)
