"""What an environment runs on: one interface, one implementation per kind of platform.

The DAGs and the DR/chaos logic speak only to this interface; ``local`` drives the lab on
this machine, ``kubernetes`` (Kubernetes + AWS hooks) a real cluster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from resilience.config import Environment
from resilience.platforms.types import (
    CacheState,
    DatabaseEndpoint,
    ObjectStoreFault,
    Replica,
    ReplicaDeletion,
    RestoreRequest,
    Sandbox,
    WorkloadReady,
)

if TYPE_CHECKING:
    from resilience.patroni import PatroniClient
    from resilience.platforms.local import LocalPlatform


class Platform(Protocol):
    """The operations the DAGs need from an environment's platform."""

    environment: Environment

    def database_endpoints(self) -> list[DatabaseEndpoint]:
        """Every server of the environment's database (primary first): what a sandbox must never be."""

    def pgbackrest(self, args: list[str], timeout_s: float) -> str:
        """Run pgBackRest against the environment's repositories (``--repo=N`` in ``args`` picks one);
        return stdout, raise on failure."""

    def plan_sandbox(self, name: str, dbname: str) -> Sandbox:
        """Where a new sandbox ``name`` would live (host, port, data directory), creating nothing: the
        caller proves it is not a source before :meth:`create_sandbox` (``dr.sandbox.open_sandbox``)."""

    def create_sandbox(self, sandbox: Sandbox) -> Sandbox:
        """Create the planned sandbox, empty (a leftover of the same name from an earlier attempt of
        the run is dropped first); raise RefusedError if its place holds something that is not a sandbox."""

    def restore_sandbox(self, sandbox: Sandbox, request: RestoreRequest, timeout_s: float) -> int:
        """Restore ``request`` into the sandbox and start its server; return the restored size in bytes.
        The backup and the WAL replayed after it come from ``request.repo`` only when it is set."""

    def amcheck(self, sandbox: Sandbox, user: str, password: str | None, timeout_s: float) -> tuple[bool, str]:
        """Run pg_amcheck on every database of the sandbox: (clean, summary)."""

    def start_app(self, sandbox: Sandbox, dsn: str) -> str:
        """Start the application against ``dsn`` next to the sandbox; return its base URL."""

    def list_sandboxes(self) -> list[tuple[Sandbox, float]]:
        """Sandboxes that exist (kept with no_cleanup, or left by a dead run), with creation epoch s."""

    def drop_sandbox(self, sandbox: Sandbox) -> None:
        """Stop and delete everything the sandbox holds; idempotent."""


class ChaosPlatform(Protocol):
    """What the fault modules need from a platform (the lab's supervisor, Redis, S3 proxy, ...)."""

    def replicas(self) -> list[Replica]:
        """The app's replicas (pods / lab processes), ready or not."""

    def delete_replicas(self, names: list[str], grace_period_s: int, force: bool) -> list[ReplicaDeletion]:
        """Delete the named replicas and wait until they are gone, like ``kubectl delete pod``: graceful
        (out of the load balancer, SIGTERM, SIGKILL after ``grace_period_s``) or ``force`` (at once).
        A name that is not a replica raises ValueError before anything is deleted."""

    def wait_ready(self, expected: int, not_instances: set[str], timeout_s: float) -> WorkloadReady:
        """Wait until ``expected`` replicas are ready, none of them one of ``not_instances`` (the deleted
        ones: their replacements must be new); raise TimeoutError naming what is missing."""

    def rollout_in_progress(self) -> str | None:
        """What is being rolled out right now, or None."""

    def cache_state(self) -> CacheState:
        """The cache's replicas, wanted and answering, now."""

    def stop_cache(self, deadline_epoch_s: float | None = None) -> CacheState:
        """Stop every replica of the cache and wait until none answers; return the state it had (what the
        revert restores). With a deadline (UTC epoch s) it starts again by itself then unless
        ``start_cache`` came first, where the platform can (the lab's dead-man switch)."""

    def start_cache(self, replicas: int) -> CacheState:
        """Run exactly ``replicas`` replicas of the cache again and wait until all answer; idempotent."""

    def object_store_fault(self) -> ObjectStoreFault:
        """The fault the object store serves now (error rate 0: none; none past its expiry)."""

    def fail_object_store(self, fault: ObjectStoreFault) -> ObjectStoreFault:
        """Make a share of object-store requests fail with ``fault.status`` (until ``fault.expires_at`` where
        the platform can expire it by itself), labelled with ``fault.experiment``; returns what is served."""

    def clear_object_store_fault(self, experiment: str | None) -> ObjectStoreFault:
        """Remove experiment ``experiment``'s fault (None: every fault this product set); idempotent."""

    def database_cluster(self) -> PatroniClient:
        """The database's Patroni REST API (topology, switchover, failover, reinitialize)."""

    def crash_database_node(self, member: str) -> dict[str, int | None]:
        """Lose the member's host (its Patroni and PostgreSQL die at once); returns what was killed."""

    def start_database_nodes(self) -> list[str]:
        """Start the database nodes that are down (they rejoin as replicas); returns their names."""

    def database_replicas_expected(self) -> int:
        """How many replicas stream from the leader when the cluster is whole."""

    def acknowledged_writes(self, since_epoch_s: float) -> int:
        """How many writes a client was told were committed since ``since_epoch_s``."""

    def acknowledged_writes_lost(self, since_epoch_s: float, until_epoch_s: float | None = None) -> dict[str, int]:
        """``{"acknowledged", "lost"}``: writes a client was told were committed in the window, and how
        many of them the database no longer has."""

    def database_roles(self) -> dict[str, Any]:
        """``{"primary", "replica", "primary_up", "replica_streaming"}`` (member names), from Patroni."""

    def failover_database(self) -> str:
        """Promote the best replica now (Patroni ``/failover``); returns the new leader."""

    def rebuild_database_replica(self) -> None:
        """Back to a writable leader with every replica streaming."""

    def start_memory_hog(self, name: str, limit_mb: int, hog_mb: int,
                         deadline_epoch_s: float | None = None) -> dict[str, Any]:
        """Start the hog; with a deadline (UTC epoch s) it ends by itself then."""

    def stop_memory_hog(self, name: str) -> None:
        """Kill the hog and remove what holds it, found by ``name`` alone (idempotent)."""

    def memory_hog_counters(self, name: str) -> dict[str, Any] | None:
        """The hog's cgroup counters (``oom_kill``, ``failcnt``), None when it is gone."""


class RegionPlatform(Protocol):
    """What the DR DAGs need from a platform hosting a region (``primary`` or ``dr``)."""

    def region_health(self, region: str) -> dict[str, Any]:
        """``{"entry_point_up", "healthy_replicas", "replicas"}`` measured now."""

    def region_url(self, region: str) -> str:
        """The region's entry point (its DNS answer plus the service port)."""

    def start_dr_app(self, dsn: str, replicas: int) -> dict[str, Any]:
        """Deploy the app in the DR region against ``dsn``; ``{"url", "replicas"}`` once healthy."""

    def stop_dr_app(self) -> None: ...

    def app_release(self, region: str) -> dict[str, Any]:
        """``{"current", "previous", "history"}`` of the region's app releases."""

    def rollback_app(self, region: str) -> dict[str, Any]:
        """Roll the region's app back to its previous release; returns :meth:`app_release`."""


def get_platform(environment: Environment) -> Platform:
    """The platform implementation for ``environment`` (validated before any side effect)."""
    return _implementation(environment)


def get_chaos_platform(environment: Environment) -> ChaosPlatform:
    """:func:`get_platform` as the chaos faults and preflight drive it."""
    return _implementation(environment)


def _implementation(environment: Environment) -> LocalPlatform:
    if environment.platform == "local":
        from resilience.platforms.local import LocalPlatform

        return LocalPlatform(environment)
    raise ValueError(not_available(environment))


def not_available(environment: Environment) -> str:
    """Why a non-lab environment is refused (before any side effect), naming what is missing and what
    is configured already."""
    ready = []
    if environment.patroni_conn_id:
        ready.append(f"database through Patroni (Connection {environment.patroni_conn_id})")
    repos = environment.settings.get("pgbackrest", {}).get("repos") or []
    if repos:
        ready.append(f"{len(repos)} pgBackRest repositories")
    return (f"environments.{environment.name}.platform: {environment.platform!r} is not available in this "
            f"release (available: ['local']): its workloads, cache, object-store faults and traffic have no "
            f"implementation yet" + (f"; configured already: {', '.join(ready)}" if ready else ""))
