"""postgres-failover: the database's leader changes under load, through Patroni, in one of two ways.

- ``switchover`` (default): planned; Patroni hands the leader role to the synchronous standby.
- ``crash``: the leader's node is lost (its Patroni and postmaster SIGKILLed); Patroni promotes the
  standby by itself once the leader key expires (its TTL).

Revert brings the cluster back to a writable leader with every replica streaming (a crashed node is
started again and rejoins by pg_rewind, or is reinitialised), and with ``switch_back`` hands the
role back to the original leader. It also measures the runbook's expectations: how long until a
new writable leader (< 30 s), whether clients reconnected (the lab writer committed again), and
how many writes acknowledged to a client are missing afterwards (must be 0; with asynchronous
replication a crash can lose some, Patroni's ``synchronous_mode`` prevents it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from resilience.chaos.expectations import Measurement
from resilience.plan import PlannedCall

if TYPE_CHECKING:
    from resilience.platforms.base import Platform

log = logging.getLogger(__name__)

MODES = ("switchover", "crash")
OPTIONS = ("mode", "switch_back")
FAILOVER_TARGET_S = 30.0      # runbook: "Failover completes within 30 seconds"
LOSS_WINDOW_BEFORE_S = 30.0   # acknowledged writes at risk: those shortly before the change, and all after
SWITCHOVER_TIMEOUT_S = 60.0
HEAL_TIMEOUT_S = 180.0
RECONNECT_WAIT_S = 30.0       # runbook: connections recover automatically (the writer backs off <= 2 s)


def validate_options(options: dict[str, Any]) -> tuple[str, bool]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"options: {unknown} not allowed for postgres-failover (allowed: {list(OPTIONS)})")
    mode = options.get("mode", "switchover")
    if mode not in MODES:
        raise ValueError(f"options.mode: {mode!r} is not one of {list(MODES)}")
    switch_back = options.get("switch_back", False)
    if not isinstance(switch_back, bool):
        raise ValueError(f"options.switch_back: {switch_back!r} must be true or false")
    return mode, switch_back


def measurements(observed: dict[str, Any]) -> dict[str, Measurement]:
    """The runbook's expectations as measured by revert: failover time, acknowledged writes lost, and
    writes acknowledged after the failover (connections recovered). A missing one has no value."""
    writes = observed.get("acknowledged_writes")
    replication = "synchronous" if observed.get("synchronous_mode") else "asynchronous"
    if not isinstance(writes, dict):
        lost = after = Measurement(None, "acknowledged writes not checked")
    else:
        lost = Measurement(writes.get("lost"), f"of {writes.get('acknowledged')} acknowledged, {replication} "
                                               "replication")
        after = Measurement(writes.get("after_failover"), "" if writes.get("after_failover") else
                            "connections did not recover")
    return {"failover_s": Measurement(observed.get("failover_s"), str(observed.get("mode") or "")),
            "acked_writes_lost": lost, "writes_after_failover": after}


def _down_nodes_starter(platform: Platform) -> Callable[[], list[str]]:
    """Starts the database nodes that are down where the platform can (the lab); elsewhere Patroni's own
    restarts bring them back and ``heal`` reinitialises a member that does not rejoin."""
    if platform.missing(["database_hosts"]):
        return lambda: []
    return platform.database_hosts.start_database_nodes


def _writes_after(platform: Platform, since_epoch_s: float, wait_s: float = RECONNECT_WAIT_S) -> int:
    """Writes acknowledged since ``since_epoch_s``, waiting up to ``wait_s`` for the first one (clients
    reconnect with a backoff)."""
    deadline = time.monotonic() + wait_s
    while True:
        count = platform.write_probe.acknowledged_writes(since_epoch_s)
        if count or time.monotonic() >= deadline:
            return int(count)
        time.sleep(0.5)


class PostgresFailover:
    scenario: ClassVar[str] = "postgres-failover"
    measurements = staticmethod(measurements)

    def plan(self, platform: Platform, options: dict[str, Any]) -> dict[str, Any]:
        from resilience.ha_database import DatabaseHAError, require_failover_ready

        mode, switch_back = validate_options(options)
        client = platform.database.database_cluster()
        topology, synchronous = client.topology(), client.synchronous_mode()
        try:
            leader, candidate = require_failover_ready(topology, synchronous)
        except DatabaseHAError as exc:
            raise ValueError(f"postgres-failover: {exc}") from None
        return {"mode": mode, "switch_back": switch_back, "old_leader": leader, "candidate": candidate,
                "synchronous_mode": synchronous, "replicas": platform.database.database_replicas_expected(),
                "topology": topology.to_dict()}

    def planned_calls(self, plan: dict[str, Any]) -> list[PlannedCall]:
        inject = (PlannedCall("inject", "database_hosts", "crash_database_node", {"member": plan["old_leader"]})
                  if plan["mode"] == "crash" else
                  PlannedCall("inject", "database", "switchover", {"leader": plan["old_leader"],
                                                                   "candidate": plan["candidate"]}))
        revert = [PlannedCall("revert", "database", "rebuild_database_replica", {"replicas": plan["replicas"]})]
        if plan.get("switch_back"):
            revert.append(PlannedCall("revert", "database", "switchover", {"candidate": plan["old_leader"]}))
        return [inject, *revert]

    def inject(self, platform: Platform, plan: dict[str, Any]) -> dict[str, Any]:
        from resilience.ha_database import switchover

        started = time.time()
        if plan["mode"] == "crash":
            killed = platform.database_hosts.crash_database_node(plan["old_leader"])
            return {"mode": "crash", "changed_at": started, "crashed": plan["old_leader"], "killed": killed}
        timing = switchover(platform.database.database_cluster(), SWITCHOVER_TIMEOUT_S)
        return {"mode": "switchover", "changed_at": started, "new_leader": timing.new_leader,
                "failover_s": timing.writable_after_s}

    def revert(self, platform: Platform, plan: dict[str, Any], revert_info: dict[str, Any]) -> dict[str, Any]:
        """Idempotent: a healthy cluster (either node leading) needs nothing but the measurements."""
        from resilience.ha_database import heal

        client = platform.database.database_cluster()
        replicas, sync = int(plan.get("replicas", 1)), bool(plan.get("synchronous_mode"))
        topology = heal(client, _down_nodes_starter(platform), replicas, HEAL_TIMEOUT_S, sync_standby=sync)
        changed_at = revert_info.get("changed_at")
        observed: dict[str, Any] = {"mode": plan.get("mode"), "synchronous_mode": plan.get("synchronous_mode"),
                                    "leader": topology.leader.name if topology.leader else None,
                                    "topology": topology.to_dict()}
        if changed_at is not None:
            observed.update(self._measure(platform, client, plan, revert_info, float(changed_at)))
        if plan.get("switch_back"):
            if topology.leader is not None and topology.leader.name != plan["old_leader"]:
                observed.update(self._switch_back(platform, client, plan, replicas, sync))
            else:  # it leads already (a crash healed before its leader key expired keeps its leader)
                observed["switched_back"] = True
        return observed

    @staticmethod
    def _switch_back(platform: Platform, client: Any, plan: dict[str, Any], replicas: int,
                     sync: bool) -> dict[str, Any]:
        """Hand the role back to the original leader. The fault is reverted already (the cluster is whole):
        a refused switch-back is reported, not raised, so the revert is not retried for it."""
        from resilience.ha_database import heal
        from resilience.patroni import PatroniError

        topology = client.topology()
        log.info("Switching the leader back to %s", plan["old_leader"])
        try:
            client.switchover(topology.leader.name, plan["old_leader"])
        except PatroniError as exc:
            log.warning("Switch-back refused: %s", exc)
            return {"switched_back": False, "switch_back_error": str(exc)}
        back = client.wait_writable_leader(SWITCHOVER_TIMEOUT_S, not_named=topology.leader.name)
        topology = heal(client, _down_nodes_starter(platform), replicas, HEAL_TIMEOUT_S, sync_standby=sync)
        leader = topology.leader.name if topology.leader else None
        return {"switched_back": back is not None and leader == plan["old_leader"], "leader": leader,
                "topology": topology.to_dict()}

    @staticmethod
    def _measure(platform: Platform, client: Any, plan: dict[str, Any], revert_info: dict[str, Any],
                 changed_at: float) -> dict[str, Any]:
        """Failover time (switchover: measured by inject; crash: Patroni's timeline switch after the kill)
        and the acknowledged writes lost around the change."""
        from resilience.ha_database import promoted_at as recorded_promotion

        failover_s = revert_info.get("failover_s")
        promoted_at = None if failover_s is None else changed_at + float(failover_s)
        if failover_s is None:
            promoted_at = recorded_promotion(client, changed_at)
            if promoted_at is not None:
                failover_s = round(max(0.0, promoted_at - changed_at), 3)
        writes = platform.write_probe.acknowledged_writes_lost(changed_at - LOSS_WINDOW_BEFORE_S)
        if writes is not None and promoted_at is not None:
            writes = {**writes, "after_failover": _writes_after(platform, promoted_at)}
        log.info("postgres-failover (%s): new writable leader after %s s; acknowledged writes %s",
                 plan.get("mode"), failover_s, writes)
        return {"failover_s": failover_s, "acknowledged_writes": writes}
