"""The database capability of any Patroni cluster, through its REST API: roles, failover, heal.

The lab and a cluster elsewhere (``database.patroni_conn_id``: an HTTP Connection listing every
member's API) share it; only how the client is found and how dead nodes are started differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resilience.patroni import PatroniClient


class PatroniDatabase:
    """``client``: the cluster's Patroni API (built per call: the lab's ports may change between calls);
    ``start_nodes``: start the nodes that are down (only where the platform can: the lab);
    ``replicas_expected``: replicas streaming when the cluster is whole (None: every listed member but one)."""

    def __init__(self, client: Callable[[], PatroniClient], start_nodes: Callable[[], list[str]] | None = None,
                 replicas_expected: int | None = None) -> None:
        self._client = client
        self._start_nodes = start_nodes or (lambda: [])
        self._replicas_expected = replicas_expected

    @classmethod
    def from_connection(cls, conn_id: str) -> PatroniDatabase:
        from resilience.patroni import client_from_connection

        return cls(lambda: client_from_connection(conn_id))

    def requests_for(self, intent: str, arguments: Mapping[str, object]) -> list[str]:
        """Plan mode: the Patroni REST requests ``intent`` would send."""
        if intent == "switchover":
            leader = arguments.get("leader") or "<the leader then>"
            return [f"POST /switchover {{leader: {leader}, candidate: {arguments.get('candidate')}}}",
                    "GET /cluster until a new leader accepts writes"]
        if intent == "failover_database":
            return ["POST /failover {candidate: the healthiest replica}", "GET /cluster until it accepts writes"]
        if intent == "rebuild_database_replica":
            return [f"GET /cluster until a writable leader and {arguments.get('replicas')} replica(s) stream; "
                    "POST /reinitialize on a member that does not rejoin"]
        return [f"{intent}: reads only"]

    def database_cluster(self) -> PatroniClient:
        return self._client()

    def database_replicas_expected(self) -> int:
        """The Connection lists every member's API, so the whole cluster is all of them but the leader."""
        if self._replicas_expected is not None:
            return self._replicas_expected
        return max(len(self._client().endpoints) - 1, 0)

    def database_roles(self) -> dict[str, Any]:
        """``{"primary", "replica", "primary_up", "replica_streaming", "topology"}`` from Patroni."""
        from resilience.ha_database import healthy_replica_count
        from resilience.patroni import PatroniError

        try:
            topology = self._client().topology()
        except PatroniError as exc:
            return {"primary": None, "replica": None, "primary_up": False, "replica_streaming": False,
                    "error": str(exc).splitlines()[0]}
        leader = topology.leader
        return {"primary": leader.name if leader else None,
                "replica": next((m.name for m in topology.replicas), None),
                "primary_up": leader is not None, "replica_streaming": healthy_replica_count(topology) > 0,
                "topology": topology.to_dict()}

    def failover_database(self) -> str:
        """Promote the best replica now (Patroni ``/failover``); returns the new leader's member name."""
        from resilience.ha_database import failover

        return failover(self._client()).new_leader

    def rebuild_database_replica(self) -> None:
        """Back to a writable leader with every replica streaming (nodes that are down are started where
        the platform can; elsewhere Patroni's own restarts and a reinitialise bring them back)."""
        from resilience.ha_database import heal

        heal(self._client(), self._start_nodes, self.database_replicas_expected())
