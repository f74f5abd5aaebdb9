"""Role changes of an HA PostgreSQL cluster through Patroni, the same for every platform.

A platform supplies the Patroni client (its Connection) and, where it can, two node-level acts
Patroni cannot do itself: crash a node (the lab SIGKILLs it; a cloud would stop the instance or
delete the pod) and start the nodes that are down (the lab restarts their Patroni; on
Kubernetes the StatefulSet controller does it). Everything else (switchover, failover, waiting
for a writable leader, waiting for the replicas to stream again, reinitialising one that
cannot rejoin, switching back) is here, once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from resilience.patroni import STREAMING_LAG_BYTES, PatroniClient, PatroniError, Topology

log = logging.getLogger(__name__)

REJOIN_BEFORE_REINIT_S = 60.0  # a member not streaming this long after the heal began is reinitialised


class DatabaseHAError(RuntimeError):
    """The cluster is not in a state the requested change needs; the message says what it is in."""


@dataclass(frozen=True)
class FailoverTiming:
    """What a role change took, measured from ``started_at`` (epoch s)."""

    new_leader: str
    writable_after_s: float  # a writable leader other than the old one answered
    timeline_switch_after_s: float | None  # Patroni's own record of the promotion (``/history``)


def healthy_replica_count(topology: Topology) -> int:
    return len(topology.streaming_replicas(STREAMING_LAG_BYTES))


def require_failover_ready(topology: Topology, synchronous_mode: bool = False) -> tuple[str, str]:
    """(leader, candidate) when a role change can lose nothing; else raise naming what is missing.

    The candidate is the synchronous standby when there is one (Patroni promotes only that one in
    synchronous mode), else the streaming replica with the least lag."""
    leader = topology.leader
    if leader is None:
        raise DatabaseHAError(f"no running leader: {topology.describe()}")
    streaming = topology.streaming_replicas(STREAMING_LAG_BYTES)
    if not streaming:
        raise DatabaseHAError(f"no replica streams from {leader.name}; a failover would lose data "
                              f"({topology.describe()})")
    if synchronous_mode and not any(m.is_sync_standby for m in streaming):
        raise DatabaseHAError(f"synchronous mode is on but no replica is the synchronous standby yet; Patroni "
                              f"would promote none ({topology.describe()})")
    candidate = next((m for m in streaming if m.is_sync_standby), None) or min(
        streaming, key=lambda m: m.lag_bytes or 0)
    return leader.name, candidate.name


def wait_new_leader(client: PatroniClient, old_leader: str, started_at: float, timeout_s: float) -> FailoverTiming:
    """Wait until a writable leader other than ``old_leader`` answers; time it from ``started_at``."""
    topology = client.wait_writable_leader(timeout_s, not_named=old_leader)
    if topology is None or topology.leader is None:
        raise DatabaseHAError(f"no new writable leader {timeout_s:.0f} s after losing {old_leader}")
    writable_after = time.time() - started_at
    promoted = promoted_at(client, started_at)
    return FailoverTiming(topology.leader.name, round(writable_after, 3),
                          None if promoted is None else round(max(0.0, promoted - started_at), 3))


def promoted_at(client: PatroniClient, since_epoch_s: float) -> float | None:
    """When Patroni promoted a new leader after ``since_epoch_s`` (epoch s, its ``/history``), or None when
    it has recorded none or no API answers. The first switch counts: a later one is a switch back.
    Patroni writes the time with second precision, hence the one-second slack."""
    try:
        switches = [h.at_epoch_s for h in client.history() if h.at_epoch_s >= since_epoch_s - 1]
    except (PatroniError, ValueError):
        return None
    return switches[0] if switches else None


def switchover(client: PatroniClient, timeout_s: float = 60) -> FailoverTiming:
    """Planned: the leader hands over to its (synchronous) standby; returns when the new one takes writes."""
    leader, candidate = require_failover_ready(client.topology(), client.synchronous_mode())
    started = time.time()
    log.info("Switchover: %s -> %s", leader, candidate)
    client.switchover(leader, candidate)
    return wait_new_leader(client, leader, started, timeout_s)


def failover(client: PatroniClient, timeout_s: float = 60) -> FailoverTiming:
    """Unplanned, on request: promote the best replica now (Patroni's ``/failover``)."""
    leader, candidate = require_failover_ready(client.topology(), client.synchronous_mode())
    started = time.time()
    log.info("Failover: promoting %s (leader was %s)", candidate, leader)
    client.failover(candidate)
    return wait_new_leader(client, leader, started, timeout_s)


def heal(client: PatroniClient, start_nodes: Callable[[], list[str]], replicas: int, timeout_s: float = 180,
         rejoin_before_reinit_s: float = REJOIN_BEFORE_REINIT_S, sync_standby: bool = False) -> Topology:
    """Back to a writable leader with ``replicas`` replicas streaming (one synchronous with
    ``sync_standby``): start nodes that are down, wait for them to rejoin (pg_rewind or a fresh clone,
    Patroni's choice), reinitialise one still not streaming after ``rejoin_before_reinit_s``.
    Idempotent: a healthy cluster returns at once."""
    started = time.monotonic()
    reinitialised: set[str] = set()
    restarted = start_nodes()
    if restarted:
        log.info("Started node(s) that were down: %s", ", ".join(restarted))
    while True:
        try:
            topology = client.topology()
        except PatroniError:
            topology = None
        if topology is not None and topology.whole(replicas, sync_standby) and topology.leader is not None \
                and client.writable(topology.leader):
            log.info("Database cluster healthy after %.1f s: %s", time.monotonic() - started, topology.describe())
            return topology
        elapsed = time.monotonic() - started
        if topology is not None and topology.leader is not None and elapsed >= rejoin_before_reinit_s:
            streaming = {m.name for m in topology.streaming_replicas(STREAMING_LAG_BYTES)}
            for member in topology.replicas:
                busy = member.state == "creating replica"  # a clone under way: give it its time
                if member.name not in streaming and member.name not in reinitialised and not busy:
                    log.warning("%s has not rejoined after %.0f s (%s, timeline %s): reinitialising it from %s",
                                member.name, elapsed, member.state, member.timeline, topology.leader.name)
                    client.reinitialize(member)
                    reinitialised.add(member.name)
        if elapsed >= timeout_s:
            raise DatabaseHAError(f"the database cluster is not healthy {timeout_s:.0f} s after the heal began "
                                  f"(want a writable leader and {replicas} streaming replica(s)): "
                                  f"{topology.describe() if topology else 'no Patroni API answers'}")
        time.sleep(0.5)
