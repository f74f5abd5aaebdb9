"""What an environment runs on: one typed interface per capability, composed per environment.

The DAGs and the DR/chaos logic speak only to these interfaces, through :class:`Platform`: the lab
(``local``) provides every capability but the upload audit, which every platform takes from its Connections
(:func:`connection_capabilities`); a ``kubernetes`` environment composes the Kubernetes API (its
workloads, cache, mesh faults, memory hogs, releases), Patroni (its database), Route53 (traffic) and
pgBackRest (backups) from the sections ``environments.yaml`` gives it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, get_args

from resilience.config import Environment
from resilience.errors import RefusedError
from resilience.platforms.types import (
    AppRelease,
    CacheState,
    DatabaseEndpoint,
    DrApp,
    MemoryHog,
    ObjectStoreFault,
    PodCensus,
    RegionHealth,
    Replica,
    ReplicaDeletion,
    RestoreRequest,
    Sandbox,
    UploadAudit,
    WorkloadReady,
)

if TYPE_CHECKING:
    from resilience.patroni import PatroniClient


class Backups(Protocol):
    """The database's pgBackRest repositories, and the servers a restore must never overwrite."""

    def database_endpoints(self) -> list[DatabaseEndpoint]:
        """Every server of the environment's database (primary first): what a sandbox must never be."""

    def pgbackrest(self, args: list[str], timeout_s: float) -> str:
        """Run pgBackRest against the environment's repositories (``--repo=N`` in ``args`` picks one);
        return stdout, raise on failure."""


class Sandboxes(Protocol):
    """Throw-away databases (and apps) restored from backups, owned by one run."""

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


class Workloads(Protocol):
    """The app's replicas (pods, or the lab's processes) and its rollouts: pod-kill and preflight."""

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

    def pod_census(self) -> PodCensus:
        """The environment's pods that should be running, and how many of them are Running and Ready."""


class Cache(Protocol):
    """The app's cache (Redis): redis-unavailable."""

    def cache_state(self) -> CacheState:
        """The cache's replicas, wanted and answering, now."""

    def stop_cache(self, deadline_epoch_s: float | None = None) -> CacheState:
        """Stop every replica of the cache and wait until none answers; return the state it had (what the
        revert restores). With a deadline (UTC epoch s) it starts again by itself then unless
        ``start_cache`` came first, where the platform can (the lab's dead-man switch)."""

    def start_cache(self, replicas: int) -> CacheState:
        """Run exactly ``replicas`` replicas of the cache again and wait until all answer; idempotent."""


class ObjectStore(Protocol):
    """Faults on the app's calls to its object store (S3): s3-5xx."""

    def object_store_fault(self) -> ObjectStoreFault:
        """The fault the object store serves now (error rate 0: none; none past its expiry)."""

    def fail_object_store(self, fault: ObjectStoreFault) -> ObjectStoreFault:
        """Make a share of object-store requests fail with ``fault.status`` (until ``fault.expires_at`` where
        the platform can expire it by itself), labelled with ``fault.experiment``; returns what is served."""

    def clear_object_store_fault(self, experiment: str | None) -> ObjectStoreFault:
        """Remove experiment ``experiment``'s fault (None: every fault this product set); idempotent."""


class UploadAuditor(Protocol):
    """Reads back what the app acknowledged storing: s3-5xx's "no corrupted or partial upload"."""

    def audit_uploads(self, since_epoch_s: float, until_epoch_s: float) -> UploadAudit:
        """Every upload the app recorded in the window, read from its bucket (not through a fault) and
        compared with the size and SHA-256 the app recorded."""


class Database(Protocol):
    """The app's highly available database, through Patroni's REST API: postgres-failover, DR failover."""

    def database_cluster(self) -> PatroniClient:
        """The database's Patroni REST API (topology, switchover, failover, reinitialize)."""

    def database_replicas_expected(self) -> int:
        """How many replicas stream from the leader when the cluster is whole."""

    def database_roles(self) -> dict[str, Any]:
        """``{"primary", "replica", "primary_up", "replica_streaming"}`` (member names), from Patroni."""

    def failover_database(self) -> str:
        """Promote the best replica now (Patroni ``/failover``); returns the new leader."""

    def rebuild_database_replica(self) -> None:
        """Back to a writable leader with every replica streaming."""


class DatabaseHosts(Protocol):
    """The database's hosts themselves: postgres-failover's crash variant loses one."""

    def crash_database_node(self, member: str) -> dict[str, int | None]:
        """Lose the member's host (its Patroni and PostgreSQL die at once); returns what was killed."""

    def start_database_nodes(self) -> list[str]:
        """Start the database nodes that are down (they rejoin as replicas); returns their names."""


class WriteProbe(Protocol):
    """A client that writes steadily and remembers what it was told was committed: lost writes are counted."""

    def acknowledged_writes(self, since_epoch_s: float) -> int:
        """How many writes a client was told were committed since ``since_epoch_s``."""

    def acknowledged_writes_lost(self, since_epoch_s: float, until_epoch_s: float | None = None) -> dict[str, int]:
        """``{"acknowledged", "lost"}``: writes a client was told were committed in the window, and how
        many of them the database no longer has."""


class MemoryPressure(Protocol):
    """A memory hog next to the app, in its own memory limit (the lab: a cgroup; Kubernetes: a stress pod's
    container limit), so the OOM killer acts on it alone: memory-pressure."""

    def start_memory_hog(self, name: str, limit_mb: int, hog_mb: int, deadline_epoch_s: float | None = None,
                         experiment: str | None = None) -> MemoryHog:
        """Start a hog of ``hog_mb`` MiB limited to ``limit_mb`` MiB, labelled with ``experiment`` (its ledger
        entry); idempotent by name (a running hog of that name is returned as it is). With a deadline (UTC epoch
        s) it ends by itself then: the dead-man switch."""

    def stop_memory_hog(self, name: str) -> None:
        """Kill the hog and remove what holds it, found by ``name`` alone (idempotent)."""

    def memory_hog(self, name: str) -> MemoryHog | None:
        """The hog now (running or ended, its OOM kills), None when nothing of it is left."""


class Regions(Protocol):
    """The environment's regions (``primary``, ``dr``): their health, entry points and the DR app. The lab is
    both regions; a Kubernetes environment is one region (a DR environment is region ``dr``)."""

    def region_health(self, region: str) -> RegionHealth:
        """The region's entry point and app replicas, measured now."""

    def region_url(self, region: str) -> str:
        """The region's entry point (its DNS answer plus the service port; on Kubernetes ``kubernetes.app.url``)."""

    def start_dr_app(self, dsn: str, replicas: int) -> DrApp:
        """Run ``replicas`` replicas of the app in the DR region against ``dsn`` and wait until every one is
        healthy; idempotent."""

    def stop_dr_app(self) -> None:
        """Stop the DR region's app (scale it to zero); idempotent."""


class Releases(Protocol):
    """The app's releases per region: the emergency rollback."""

    def app_release(self, region: str) -> AppRelease:
        """The region's current and previous revisions, and its history."""

    def rollback_app(self, region: str) -> AppRelease:
        """Roll the region's app back to its previous revision and wait until every replica runs it; returns
        :meth:`app_release`. A region whose current revision is already a rollback only has that rollback
        finished (a retried task never goes one release further back); RefusedError when
        ``rollback_blocker`` is set."""


Capability = Literal["workloads", "cache", "object_store", "memory", "database", "database_hosts", "write_probe",
                     "backups", "sandboxes", "regions", "releases", "upload_audit"]
CAPABILITIES: tuple[Capability, ...] = get_args(Capability)


class MissingCapabilityError(RefusedError):
    """The environment does not configure what a run needs; raised at its start, before any side effect."""


@dataclass(frozen=True)
class Provider:
    """What provides a capability (for reports and plans), and how to build it: on first use, so a run
    builds only the clients its steps need."""

    name: str
    build: Callable[[], object]


@dataclass(frozen=True)
class Platform:
    """An environment's platform: one implementation per capability, composed by :func:`get_platform` from
    what ``environments.yaml`` configures (the lab provides them all; a Kubernetes environment may take its
    database from Patroni and its traffic from Route53). A capability it lacks raises
    :class:`MissingCapabilityError` naming it and the setting that would provide it."""

    environment: Environment
    provided: Mapping[Capability, Provider]
    how_to_configure: Mapping[Capability, str] = field(default_factory=dict)
    _built: dict[Capability, object] = field(default_factory=dict, repr=False, compare=False)

    def missing(self, needed: Iterable[Capability]) -> list[Capability]:
        return [c for c in needed if c not in self.provided]

    def require(self, needed: Iterable[Capability], purpose: str) -> None:
        """Refuse at a run's start when a capability ``purpose`` needs is not configured."""
        if missing := self.missing(needed):
            raise MissingCapabilityError(
                f"environments.{self.environment.name}: {purpose} needs "
                + "; ".join(f"capability {c!r}, which this environment does not provide"
                            + (f" ({self.how_to_configure[c]})" if c in self.how_to_configure else "")
                            for c in missing))

    def describe(self) -> dict[str, str]:
        """Capability -> what provides it (reports, plans)."""
        return {c: provider.name for c, provider in self.provided.items()}

    def capability(self, capability: Capability) -> object:
        """The implementation providing ``capability`` (built on first use; refused when not configured)."""
        return self._get(capability)

    def _get(self, capability: Capability) -> object:
        if capability not in self._built:
            self.require([capability], f"this step ({capability})")
            self._built[capability] = self.provided[capability].build()
        return self._built[capability]

    @property
    def workloads(self) -> Workloads:
        return cast(Workloads, self._get("workloads"))

    @property
    def cache(self) -> Cache:
        return cast(Cache, self._get("cache"))

    @property
    def object_store(self) -> ObjectStore:
        return cast(ObjectStore, self._get("object_store"))

    @property
    def memory(self) -> MemoryPressure:
        return cast(MemoryPressure, self._get("memory"))

    @property
    def database(self) -> Database:
        return cast(Database, self._get("database"))

    @property
    def database_hosts(self) -> DatabaseHosts:
        return cast(DatabaseHosts, self._get("database_hosts"))

    @property
    def write_probe(self) -> WriteProbe:
        return cast(WriteProbe, self._get("write_probe"))

    @property
    def backups(self) -> Backups:
        return cast(Backups, self._get("backups"))

    @property
    def sandboxes(self) -> Sandboxes:
        return cast(Sandboxes, self._get("sandboxes"))

    @property
    def regions(self) -> Regions:
        return cast(Regions, self._get("regions"))

    @property
    def releases(self) -> Releases:
        return cast(Releases, self._get("releases"))

    @property
    def upload_audit(self) -> UploadAuditor:
        return cast(UploadAuditor, self._get("upload_audit"))


def connection_capabilities(environment: Environment) -> dict[Capability, Provider]:
    """What every platform provides the same way, through Airflow Connections, when configured."""
    provided: dict[Capability, Provider] = {}
    uploads = environment.uploads
    if uploads is not None:
        def build() -> object:
            from resilience.platforms.upload_audit import ConnectionUploadAudit

            return ConnectionUploadAudit(environment.database_conn_id, uploads.aws_conn_id, uploads.bucket,
                                         uploads.key_prefix)

        provided["upload_audit"] = Provider(f"bucket {uploads.bucket} (Connection {uploads.aws_conn_id}) against the "
                                            f"uploads table (Connection {environment.database_conn_id})", build)
    return provided


UPLOAD_AUDIT_HOW = "uploads: aws_conn_id, bucket and key_prefix (the app's upload bucket; the uploads table is " \
                   "read through database.conn_id)"


def get_platform(environment: Environment) -> Platform:
    """The platform of ``environment``, composed from its configuration (validated before any side effect)."""
    if environment.platform == "local":
        from resilience.platforms.local import LocalPlatform

        lab = LocalPlatform(environment)
        shared = connection_capabilities(environment)
        provided = {c: Provider("the lab", lambda: lab) for c in CAPABILITIES if c != "upload_audit"} | shared
        return Platform(environment, provided, {} if "upload_audit" in shared else {"upload_audit": UPLOAD_AUDIT_HOW})
    if environment.platform == "kubernetes":
        from resilience.platforms.kubernetes.compose import kubernetes_capabilities

        provided, how = kubernetes_capabilities(environment)
        return Platform(environment, provided, how)
    raise ValueError(f"environments.{environment.name}.platform: {environment.platform!r} is not one of "
                     f"['local', 'kubernetes']")
