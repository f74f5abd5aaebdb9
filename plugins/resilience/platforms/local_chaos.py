"""The lab's chaos primitives behind the Platform interface (mixed into LocalPlatform).

Each call re-reads lab.json (the lab may have been restarted with other ports). The database's
roles come from Patroni, never from a file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resilience.config import Environment
from resilience.platforms.types import (
    CacheState,
    MemoryHog,
    ObjectStoreFault,
    PodCensus,
    Replica,
    ReplicaDeletion,
    WorkloadReady,
)

if TYPE_CHECKING:
    from resilience.patroni import PatroniClient
    from resilience.platforms.patroni_database import PatroniDatabase

log = logging.getLogger(__name__)


class LocalChaos:
    lab_dir: Path
    environment: Environment

    def _state(self) -> dict[str, Any]:
        from resilience.lab.state import load_lab_state

        return load_lab_state(self.lab_dir)

    def requests_for(self, intent: str, arguments: Mapping[str, object]) -> list[str]:
        """Plan mode: what the lab would do for ``intent`` (its supervisor, proxy and servers, not an API)."""
        if intent in ("switchover", "failover_database", "rebuild_database_replica"):
            return self._patroni().requests_for(intent, arguments)
        lab = {
            "delete_replicas": f"the lab's supervisor takes {arguments.get('names')} out of the load balancer, "
                               f"SIGTERMs them and SIGKILLs any still running after {arguments.get('grace_period_s')} s"
                               + (" (force: SIGKILL at once)" if arguments.get("force") else ""),
            "wait_ready": f"GET /health of each replica until {arguments.get('expected')} new processes answer",
            "stop_cache": "stop the lab's redis-server (its dead-man switch starts it again at the deadline)",
            "start_cache": "start the lab's redis-server and wait until it answers PING",
            "fail_object_store": f"the lab's S3 proxy answers {arguments.get('error_rate')} of requests with HTTP "
                                 f"{arguments.get('status')} (its own expiry at the deadline)",
            "clear_object_store_fault": "the lab's S3 proxy serves every request again",
            "crash_database_node": f"SIGKILL {arguments.get('member')}'s Patroni and postmaster",
            "start_memory_hog": f"stress-ng allocating {arguments.get('hog_mb')} MB in a new cgroup limited to "
                                f"{arguments.get('limit_mb')} MB (it ends by itself at the deadline)",
            "stop_memory_hog": "kill the hog and remove its cgroup",
        }
        return [lab.get(intent, f"{intent}: reads only")]

    # -- app replicas (pod-kill) ------------------------------------------------------------

    def replicas(self) -> list[Replica]:
        from resilience.lab import control

        return [Replica(name, bool(info["healthy"]), None if info["pid"] is None else str(info["pid"]),
                        int(info["restarts"]), info.get("release"), info.get("healthy_since"))
                for name, info in sorted(control.replicas(self._state()).items())]

    def delete_replicas(self, names: list[str], grace_period_s: int, force: bool) -> list[ReplicaDeletion]:
        from resilience.lab import control
        from resilience.lab.state import layout_of

        state = self._state()
        known = layout_of(state).replica_names  # the names, without probing every replica's /health
        if unknown := [n for n in names if n not in known]:
            raise ValueError(f"replicas {unknown} are not replicas of the lab's app: {sorted(known)}")
        ended = control.delete_replicas(state, names, grace_period_s, force)
        return [ReplicaDeletion(name, str(e["pid"]) if e.get("pid") else None, str(e["outcome"]),
                                e.get("terminated_in_s"), e.get("exit")) for name, e in ended.items()]

    def wait_ready(self, expected: int, not_instances: set[str], timeout_s: float) -> WorkloadReady:
        """The lab's supervisor restarts a deleted replica under its name with a new PID."""
        from resilience.platforms.readiness import wait_ready

        return wait_ready(self.replicas, expected, not_instances, timeout_s, 0.05, "replicas (new processes)")

    def pod_census(self) -> PodCensus:
        """The lab has no namespace: its app replicas are what runs."""
        replicas = self.replicas()
        return PodCensus(sum(r.ready for r in replicas), len(replicas), "the lab's app replicas")

    def rollout_in_progress(self) -> str | None:
        """The lab has no deployments (no rollout controller): never in progress."""
        return None

    # -- cache (redis-unavailable) ------------------------------------------------------------

    def cache_state(self) -> CacheState:
        """The lab runs one redis-server: 1 replica while it answers PING, else 0."""
        from resilience.lab import control

        alive = int(control.redis_ping(self._state()))
        return CacheState(alive, alive)

    def stop_cache(self, deadline_epoch_s: float | None = None) -> CacheState:
        from resilience.lab import control

        before = self.cache_state()
        control.stop_redis(self._state(), deadline_epoch_s)
        return before

    def start_cache(self, replicas: int) -> CacheState:
        from resilience.lab import control

        if replicas != 1:
            raise ValueError(f"replicas: the lab runs one redis-server, not {replicas}")
        control.start_redis(self._state())
        return self.cache_state()

    # -- object store (s3-5xx) ------------------------------------------------------------------

    def object_store_fault(self) -> ObjectStoreFault:
        """The lab's fault proxy in front of moto serves one fault at a time."""
        from resilience.lab import control

        served = control.s3_fault(self._state())
        return ObjectStoreFault(float(served.get("error_rate") or 0.0), int(served.get("status") or 503),
                                served.get("expires_at"), served.get("experiment"), served.get("expired_at"))

    def fail_object_store(self, fault: ObjectStoreFault) -> ObjectStoreFault:
        from resilience.lab import control

        control.set_s3_fault(self._state(), fault.error_rate, fault.status, fault.expires_at)
        return self.object_store_fault()

    def clear_object_store_fault(self, experiment: str | None) -> ObjectStoreFault:
        from resilience.lab import control

        control.set_s3_fault(self._state(), 0.0)
        return self.object_store_fault()

    # -- database (postgres-failover; DR regional failover) --------------------------------------

    def database_cluster(self) -> PatroniClient:
        """The app database's Patroni REST API: the environment's Connection when it resolves, else the
        nodes lab.json lists (outside Airflow, e.g. ``resilience lab`` commands and tests)."""
        from resilience.patroni import PatroniClient, client_from_connection

        conn_id = self.environment.patroni_conn_id
        if conn_id:
            try:
                return client_from_connection(conn_id)
            except Exception as exc:  # noqa: BLE001 (no Airflow, or no such Connection here: lab.json knows)
                log.debug("Connection %s not usable (%s): using lab.json's Patroni endpoints", conn_id, exc)
        return PatroniClient(self._state()["app_db"]["patroni"]["urls"])

    def crash_database_node(self, member: str) -> dict[str, int | None]:
        """SIGKILL the member's Patroni and postmaster: the host is lost, Patroni fails over after its TTL."""
        from resilience.lab import control
        from resilience.lab.patroni_cluster import node_of_member

        return control.crash_postgres_node(self._state(), node_of_member(member))

    def start_database_nodes(self) -> list[str]:
        """Start every node whose Patroni is down (it rejoins as a replica)."""
        from resilience.lab import control

        return control.start_postgres_nodes(self._state())

    def acknowledged_writes(self, since_epoch_s: float) -> int:
        """Commits the lab writer was told succeeded since ``since_epoch_s``."""
        from resilience.lab import control

        return control.acknowledged_writes(self._state(), since_epoch_s)

    def acknowledged_writes_lost(self, since_epoch_s: float, until_epoch_s: float | None = None) -> dict[str, int]:
        """``{"acknowledged", "lost"}``: the lab writer's acknowledged commits in the window, and how many
        the database no longer has."""
        from resilience.lab import control

        return control.acknowledged_writes_lost(self._state(), since_epoch_s, until_epoch_s)

    def _patroni(self) -> PatroniDatabase:
        from resilience.lab.layout import NODES
        from resilience.platforms.patroni_database import PatroniDatabase

        return PatroniDatabase(self.database_cluster, self.start_database_nodes, len(NODES) - 1)

    def database_replicas_expected(self) -> int:
        return self._patroni().database_replicas_expected()

    def database_roles(self) -> dict[str, Any]:
        return self._patroni().database_roles()

    def failover_database(self) -> str:
        return self._patroni().failover_database()

    def rebuild_database_replica(self) -> None:
        self._patroni().rebuild_database_replica()

    # -- memory (memory-pressure) -------------------------------------------------------------

    def start_memory_hog(self, name: str, limit_mb: int, hog_mb: int, deadline_epoch_s: float | None = None,
                         experiment: str | None = None) -> MemoryHog:
        """stress-ng in a child cgroup limited to ``limit_mb`` (the lab's memhog); the experiment is not stored:
        the lab finds its hog by name."""
        from resilience.lab import control

        control.start_memory_hog(self._state(), name, limit_mb, hog_mb, deadline_epoch_s)
        hog = self.memory_hog(name)
        if hog is None:
            raise RuntimeError(f"memory hog {name} started but its cgroup is gone")
        return replace(hog, experiment=experiment)

    def stop_memory_hog(self, name: str) -> None:
        from resilience.lab import control

        control.stop_memory_hog(self._state(), name)

    def memory_hog(self, name: str) -> MemoryHog | None:
        """The hog from its cgroup (OOM kills: ``memory.oom_control``'s ``oom_kill``; stress-ng reports success even
        when its workers die) and its record; None when its cgroup is gone."""
        from resilience.lab import control, memhog
        from resilience.lab.errors import LabError
        from resilience.lab.state import layout_of

        state = self._state()
        layout = layout_of(state)
        try:
            counters = control.memory_hog_counters(state, name)
            cgroup = memhog._cgroup(layout, name)
            if cgroup is None:
                return None
            limit_mb = int((cgroup / "memory.limit_in_bytes").read_text()) // (1024 * 1024)
            procs = memhog._procs(cgroup)
        except (LabError, FileNotFoundError):
            return None  # no hog (never started, or already removed)
        record = memhog.read_record(layout, name) or {}
        deadline = record.get("deadline_epoch_s")
        running = bool(procs)
        ended = None if running else ("DeadlineExceeded" if deadline is not None and time.time() >= deadline - 1
                                      else "exited")  # stress-ng's --timeout is whole seconds, rounded down
        return MemoryHog(name, limit_mb, int(record.get("hog_mb") or 0), running, int(counters["oom_kill"]),
                         deadline, ended=ended,
                         where=f"stress-ng (pid {procs[0] if procs else record.get('pid')}) in cgroup {cgroup}")
