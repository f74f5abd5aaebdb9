"""The values that cross the platform seam: what the DR and chaos code hand a platform, and what
it hands back. No behaviour and no imports of the package: every layer may import this module."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

RestoreMethod = Literal["latest", "pitr", "fast"]
RESTORE_METHODS: tuple[RestoreMethod, ...] = ("fast", "latest", "pitr")


@dataclass(frozen=True)
class DatabaseEndpoint:
    """Where a PostgreSQL server listens and where its data lives on its platform."""

    host: str
    port: int
    data_dir: str


@dataclass(frozen=True)
class Sandbox:
    """A throw-away database (and app) restored from backups, owned by one run."""

    name: str
    environment: str
    host: str
    port: int
    dbname: str
    data_dir: str
    app_url: str | None = None

    def dsn(self, user: str) -> str:
        """A DSN without password: safe for logs, XCom and reports."""
        return f"postgresql://{user}@{self.host}:{self.port}/{self.dbname}"

    def endpoint(self) -> DatabaseEndpoint:
        return DatabaseEndpoint(self.host, self.port, self.data_dir)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sandbox:
        return cls(**data)


@dataclass(frozen=True)
class RestoreRequest:
    """Restore this stanza's backups into a sandbox: how far, and from which repository.

    ``latest``: the newest backup and every archived WAL segment after it; ``pitr``: up to
    ``target_time`` (None: to the end of the archive); ``fast``: the newest backup to its
    consistent point only (no WAL after it). ``repo`` pins the backup *and* the WAL replayed after
    it to one repository (None: pgBackRest's order, repo1 first).
    """

    stanza: str
    method: RestoreMethod = "latest"
    target_time: datetime | None = None
    repo: int | None = None
    process_max: int = 2

    def __post_init__(self) -> None:
        if self.method not in RESTORE_METHODS:
            raise ValueError(f"restore method: {self.method!r} is not one of {list(RESTORE_METHODS)}")
        if self.target_time is not None and self.method != "pitr":
            raise ValueError(f"restore method {self.method!r} takes no target time (only 'pitr' does)")
        if self.target_time is not None and self.target_time.tzinfo is None:
            raise ValueError("restore target time must carry a time zone")

    def describe(self) -> str:
        """One line for logs and reports: ``PITR to 2026-11-28T10:30:00+00:00 from repo2``."""
        target = self.target_time.astimezone(UTC).isoformat() if self.target_time else "the end of the WAL archive"
        what = {"latest": "latest", "fast": "latest backup only (no WAL replay)", "pitr": f"PITR to {target}"}
        return what[self.method] + (f" from repo{self.repo}" if self.repo is not None else "")


@dataclass(frozen=True)
class Replica:
    """One running copy of the app: a pod, or in the lab a process behind the load balancer."""

    name: str
    ready: bool
    instance: str | None  # what a replacement changes: a pod's uid, a process's PID; None: not running
    restarts: int = 0
    release: str | None = None
    ready_since: float | None = None  # epoch s it last became ready (a pod's Ready transition), where known


@dataclass(frozen=True)
class ReplicaDeletion:
    """How one deleted replica ended: what the report shows, and the instance its replacement must differ from.

    ``outcome``: "exited within grace" (drained and exited after SIGTERM), "killed after grace" (SIGKILLed
    at the end of its grace period), "SIGKILL" (forced), "not running" (nothing to delete)."""

    name: str
    instance: str | None
    outcome: str
    terminated_in_s: float | None = None
    detail: str | None = None  # how the process ended (exit status, signal), where the platform knows

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WorkloadReady:
    """The workload back at its ready count after replicas were deleted: how long it took, and its replicas."""

    seconds: float
    replicas: tuple[Replica, ...]

    def instances(self) -> dict[str, str | None]:
        return {r.name: r.instance for r in self.replicas}


@dataclass(frozen=True)
class CacheState:
    """The cache as the platform runs it: replicas wanted (Kubernetes: the scale; the lab: its one
    redis-server) and replicas answering."""

    replicas: int
    ready: int

    @property
    def alive(self) -> bool:
        return self.ready > 0


@dataclass(frozen=True)
class ObjectStoreFault:
    """What the object store serves now: a share ``error_rate`` (0..1) of requests answered ``status``,
    until ``expires_at`` (UTC epoch s; None: until cleared), for the experiment (ledger entry) that set it.
    ``expired_at``: when an expiry switched it off by itself (the lab's proxy reports it)."""

    error_rate: float = 0.0
    status: int = 503
    expires_at: float | None = None
    experiment: str | None = None
    expired_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MemoryHog:
    """A memory hog next to the app in its own memory limit (memory-pressure), as the platform runs it.

    ``running``: it is in place and holding memory (a pod not yet ended, a process in its cgroup);
    ``oom_kills``: how many times the OOM killer killed it inside its limit (the lab: the cgroup's
    ``oom_kill`` counter; Kubernetes: its container's terminations with reason ``OOMKilled``);
    ``expires_at``: when it ends by itself (UTC epoch s; None: only when stopped); ``experiment``: the
    ledger entry that started it; ``ended``: why it no longer runs, where the platform says
    (``DeadlineExceeded``, ``OOMKilled``, ``Completed``); ``where``: what holds it, for reports."""

    name: str
    limit_mb: int
    hog_mb: int
    running: bool
    oom_kills: int = 0
    expires_at: float | None = None
    experiment: str | None = None
    ended: str | None = None
    where: str | None = None

    def describe(self) -> str:
        """One line for logs and reports, e.g. ``chaos-memory-hog: 256 MiB in a 64 MiB limit, OOM-killed 3 times,
        running``."""
        state = "running" if self.running else f"ended ({self.ended})" if self.ended else "ended"
        return (f"{self.name}: {self.hog_mb} MiB in a {self.limit_mb} MiB limit, OOM-killed {self.oom_kills} "
                f"time{'' if self.oom_kills == 1 else 's'}, {state}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Revision:
    """One revision of the app in a region (``kubectl rollout history``'s row): what it runs (``release``: the
    lab's release name; on Kubernetes the image(s) of its pod template), its number (increasing; a rollback is a
    new revision), when it was deployed (UTC epoch s, None: unknown), why (``change_cause``), and the release
    it rolled back when it is a rollback (``rollback_of``)."""

    release: str
    number: int
    deployed_at: float | None = None
    change_cause: str | None = None
    rollback_of: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AppRelease:
    """A region's app releases: the revision running (``current``), the one a rollback returns to (``previous``,
    None: nothing to roll back to), every revision kept (oldest first), who owns the releases (``managed_by``:
    None, or e.g. ``"Helm release ofm"``) and why a rollback cannot be done from here (``rollback_blocker``:
    None when it can; refused before any side effect)."""

    region: str
    current: Revision
    previous: Revision | None
    history: tuple[Revision, ...]
    managed_by: str | None = None
    rollback_blocker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RegionHealth:
    """A region measured now: its entry point answers (``/health`` 200 through the load balancer), and its
    app's replicas, healthy and wanted (0 and 0 for a DR app scaled to zero)."""

    region: str
    entry_point_up: bool
    healthy_replicas: int
    replicas: int

    @property
    def serving(self) -> bool:
        """The region can take traffic: its entry point answers and at least one replica is healthy."""
        return self.entry_point_up and self.healthy_replicas > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DrApp:
    """The app running in the DR region once healthy: its entry point and its replicas (names, all ready)."""

    url: str
    replicas: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PodCensus:
    """How many of the pods that should be running are Running and Ready (preflight: >= 80 %), and over
    what: a Kubernetes namespace's pods (completed Job pods left out), or the lab's app replicas."""

    ready: int
    total: int
    scope: str


@dataclass(frozen=True)
class UploadAudit:
    """Uploads the app acknowledged in a window, read back from the object store: ``missing`` (no object)
    and ``corrupt`` (its size or SHA-256 is not what the app recorded: partial or altered) by key."""

    checked: int
    missing: tuple[str, ...] = ()
    corrupt: tuple[str, ...] = ()
    limit_reached: bool = False  # only the first UPLOAD_AUDIT_LIMIT uploads of the window were read
    sized_only: int = 0  # read past the byte budget: compared by size, not by checksum

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
