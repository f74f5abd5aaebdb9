"""Where the lab lives: the lab directory, the port plan, the lab's settings and every path under it.

Everything here is pure (no processes, no sockets) so other code can compute the
lab's endpoints without touching it. The app database runs on two *nodes* (``pg/node-a``,
``pg/node-b``, ports base+1 and base+2); which node is primary is state (``pg_roles``).

Two regions serve the app: ``primary`` (load balancer on 127.0.0.1, replicas ``app-1..N``) and
``dr`` (load balancer on 127.0.0.2 at the *same* port, replicas ``dr-1..N``, started on demand).
A DNS A record carries only an address, so each region's entry point differs by IP alone; on
Linux all of 127.0.0.0/8 is loopback.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT_BASE = 24320  # below the kernel's ephemeral range (32768-60999): no client connection takes one
ENV_LAB_DIR = "RESILIENCE_LAB_DIR"
ENV_PORT_BASE = "RESILIENCE_LAB_PORT_BASE"
ENV_PG_BINDIR = "RESILIENCE_PG_BINDIR"
ENV_REPLICAS = "RESILIENCE_LAB_REPLICAS"
ENV_LOAD_RATE = "RESILIENCE_LAB_LOAD_RATE"
HOST = "127.0.0.1"
DR_HOST = "127.0.0.2"
REGIONS = ("primary", "dr")
REGION_HOSTS = {"primary": HOST, "dr": DR_HOST}
REGION_REPLICA_PREFIX = {"primary": "app", "dr": "dr"}
DNS_ZONE = "resilience.lab."
DNS_RECORD = "api.resilience.lab."
DNS_TTL_S = 1
STANZA = "app"
APP_DBNAME = "app"
CONTROL_DBNAME = "resilience"
PG_SUPERUSER = "postgres"
S3_BUCKET = "uploads"
S3_REGION = "us-east-1"
S3_ACCESS_KEY = "resilience-lab"  # moto accepts any key; these only look like credentials
S3_SECRET_KEY = "resilience-lab-secret"
LAYOUT_FILE = "layout.json"
LAB_FILE = "lab.json"

# Offsets from the port base. App replicas use base+11..base+19, DR region replicas base+21..base+29,
# etcd base+30/31, the nodes' Patroni REST APIs base+32/33, DR sandboxes base+40 and up. The DR
# region's load balancer shares "lb"'s port on DR_HOST.
PORT_OFFSETS = {"control_db": 0, "node_a": 1, "node_b": 2, "redis": 3, "moto": 4, "s3_proxy": 5, "supervisor": 6,
                "dr_supervisor": 8, "loadgen": 9, "lb": 10, "app": 10, "prometheus": 20,
                "etcd": 30, "etcd_peer": 31, "patroni_a": 32, "patroni_b": 33}
NODES = ("a", "b")
REPLICA_PORT_OFFSET = 10
REGION_REPLICA_PORT_OFFSET = {"primary": REPLICA_PORT_OFFSET, "dr": 20}
MAX_REPLICAS = 9
DEFAULT_REPLICAS = 3
DEFAULT_DR_REPLICAS = 2
LAST_LAB_PORT_OFFSET = 33  # node b's Patroni REST API; sandboxes start at SANDBOX_PORT_OFFSET
DEFAULT_LOAD_RATE = 20.0
MAX_LOAD_RATE = 500.0
SANDBOX_PORT_OFFSET = 40
MAX_PORT = 65535


def project_root() -> Path:
    """The directory holding pyproject.toml, found upwards from this file."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    raise FileNotFoundError(
        f"no pyproject.toml above {Path(__file__).resolve()}: cannot find the project root "
        f"(set {ENV_LAB_DIR} and run from a source checkout)"
    )


def include_dir() -> Path:
    """The project's ``include/`` directory (SQL, Prometheus templates)."""
    return project_root() / "include"


def validate_port_base(port_base: int) -> int:
    """Return ``port_base`` or raise ValueError naming the setting and the allowed range."""
    if not isinstance(port_base, int) or isinstance(port_base, bool):
        raise TypeError(f"port_base: {port_base!r} is not an int")
    top = MAX_PORT - SANDBOX_PORT_OFFSET - 100
    if not 1024 <= port_base <= top:
        raise ValueError(f"port_base: {port_base} is not in 1024..{top} (--port-base / {ENV_PORT_BASE})")
    return port_base


def validate_replicas(replicas: object, setting: str = f"--replicas / {ENV_REPLICAS}") -> int:
    """Return ``replicas`` or raise ValueError naming the setting and the allowed range."""
    if not isinstance(replicas, int) or isinstance(replicas, bool) or not 1 <= replicas <= MAX_REPLICAS:
        raise ValueError(f"replicas: {replicas!r} is not an integer in 1..{MAX_REPLICAS} ({setting})")
    return replicas


def validate_region(region: str) -> str:
    """Return ``region`` or raise ValueError naming the argument and the regions there are."""
    if region not in REGIONS:
        raise ValueError(f"region: {region!r} is not one of {', '.join(REGIONS)}")
    return region


def validate_load_rate(rate: object) -> float:
    """Return ``rate`` (requests per second of the load generator) or raise ValueError."""
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= MAX_LOAD_RATE:
        raise ValueError(f"load_rate: {rate!r} is not a number in (0, {MAX_LOAD_RATE:g}] "
                         f"(--load-rate / {ENV_LOAD_RATE})")
    return float(rate)


@dataclass(frozen=True)
class ClusterPaths:
    """Paths and port of one PostgreSQL cluster of the lab."""

    name: str
    title: str
    port: int
    root: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"


@dataclass(frozen=True)
class LabLayout:
    """The lab directory and port base, and every path and port derived from them."""

    lab_dir: Path
    port_base: int = DEFAULT_PORT_BASE
    replicas: int = DEFAULT_REPLICAS
    load_rate: float = DEFAULT_LOAD_RATE

    def port(self, component: str) -> int:
        return self.port_base + PORT_OFFSETS[component]

    def url(self, component: str) -> str:
        return f"http://{HOST}:{self.port(component)}"

    @property
    def replica_names(self) -> list[str]:
        """``app-1`` .. ``app-N``."""
        return [f"app-{i}" for i in range(1, self.replicas + 1)]

    def replica_port(self, name: str) -> int:
        """Port of ``app-i`` (base+10+i, primary region) or ``dr-i`` (base+20+i, DR region)."""
        prefix, _, index = name.rpartition("-")
        region = next((r for r, p in REGION_REPLICA_PREFIX.items() if p == prefix), None)
        if region is None or not index.isdigit() or not 1 <= int(index) <= MAX_REPLICAS:
            raise ValueError(f"replica: {name!r} is not app-1..app-{MAX_REPLICAS} or dr-1..dr-{MAX_REPLICAS}")
        return self.port_base + REGION_REPLICA_PORT_OFFSET[region] + int(index)

    def region_replica_names(self, region: str, count: int | None = None) -> list[str]:
        """``app-1..N`` (primary, N = ``replicas``) or ``dr-1..N`` (DR, N = ``count``, else as the running
        DR region was started, else 2)."""
        if validate_region(region) == "primary":
            return self.replica_names
        count = dr_replica_count(self) if count is None else count
        return [f"{REGION_REPLICA_PREFIX[region]}-{i}" for i in range(1, count + 1)]

    def region_url(self, region: str) -> str:
        """The region's entry point (its load balancer): what the DNS record's answer points at."""
        return f"http://{REGION_HOSTS[validate_region(region)]}:{self.port('lb')}"

    def region_supervisor_port(self, region: str) -> int:
        return self.port("supervisor" if validate_region(region) == "primary" else "dr_supervisor")

    def region_daemon(self, region: str, daemon: str) -> str:
        """Pid/log file name of a region's daemon: ``lb`` / ``supervisor``, ``dr-lb`` / ``dr-supervisor``."""
        return daemon if validate_region(region) == "primary" else f"{region}-{daemon}"

    @property
    def sandbox_port_min(self) -> int:
        return self.port_base + SANDBOX_PORT_OFFSET

    @property
    def control(self) -> ClusterPaths:
        return ClusterPaths("control_db", "control-plane PostgreSQL", self.port("control_db"),
                            self.lab_dir / "pg" / "control")

    def node(self, name: str) -> ClusterPaths:
        """App PostgreSQL node ``a`` or ``b`` (its role, primary or replica, is in ``pg_roles``)."""
        if name not in NODES:
            raise ValueError(f"node: {name!r} is not one of {', '.join(NODES)}")
        return ClusterPaths(f"node_{name}", f"app PostgreSQL node {name}", self.port(f"node_{name}"),
                            self.lab_dir / "pg" / f"node-{name}")

    @property
    def roles_file(self) -> Path:
        """The roles Patroni last reported (read when its REST API does not answer)."""
        return self.lab_dir / "pg" / "roles.json"

    def patroni_url(self, name: str) -> str:
        """Node ``a``/``b``'s Patroni REST API."""
        self.node(name)
        return self.url(f"patroni_{name}")

    @property
    def patroni_urls(self) -> list[str]:
        return [self.patroni_url(n) for n in NODES]

    def patroni_config(self, name: str) -> Path:
        return self.node(name).root / "patroni.yml"

    @property
    def etcd_dir(self) -> Path:
        return self.lab_dir / "etcd"

    @property
    def legacy_data_dirs(self) -> list[Path]:
        """Data dirs of a lab v1 (``pg/primary``, ``pg/replica``): names that lie after a failover."""
        return [self.lab_dir / "pg" / old / "data" for old in ("primary", "replica")]

    @property
    def redis_dir(self) -> Path:
        return self.lab_dir / "redis"

    @property
    def supervisor_state_file(self) -> Path:
        """Written by the supervisor: ``{"app-1": {"pid": .., "port": .., "restarts": n, ...}}``."""
        return self.run_dir / "supervisor.json"

    def region_supervisor_state_file(self, region: str) -> Path:
        """``run/supervisor.json`` (primary) or ``run/supervisor-dr.json``."""
        if validate_region(region) == "primary":
            return self.supervisor_state_file
        return self.run_dir / f"supervisor-{region}.json"

    def releases_file(self, region: str) -> Path:
        """The region's app release history: ``run/releases-<region>.json``."""
        return self.run_dir / f"releases-{validate_region(region)}.json"

    @property
    def dns_file(self) -> Path:
        """The hosted zone's id as moto gave it (it changes when moto restarts)."""
        return self.run_dir / "dns.json"

    @property
    def dr_region_file(self) -> Path:
        """How the DR region was started (replica count, DSN fingerprint); absent while it is stopped."""
        return self.run_dir / "dr-region.json"

    @property
    def password_file(self) -> Path:
        return self.lab_dir / "postgres.password"

    @property
    def pgbackrest_dir(self) -> Path:
        return self.lab_dir / "pgbackrest"

    @property
    def pgbackrest_conf(self) -> Path:
        return self.pgbackrest_dir / "pgbackrest.conf"

    @property
    def pgbackrest_repo(self) -> Path:
        return self.pgbackrest_dir / "repo"

    @property
    def run_dir(self) -> Path:
        """Pid files and logs of the lab's daemons (writer, demo app, Prometheus)."""
        return self.lab_dir / "run"

    def pid_file(self, daemon: str) -> Path:
        return self.run_dir / f"{daemon}.pid"

    def log_file(self, daemon: str) -> Path:
        return self.run_dir / f"{daemon}.log"

    @property
    def prometheus_dir(self) -> Path:
        return self.lab_dir / "prometheus"

    @property
    def sandbox_root(self) -> Path:
        return self.lab_dir / "sandboxes"

    @property
    def lab_file(self) -> Path:
        return self.lab_dir / LAB_FILE

    @property
    def layout_file(self) -> Path:
        return self.lab_dir / LAYOUT_FILE


def default_lab_dir() -> Path:
    """``$RESILIENCE_LAB_DIR`` or ``<project root>/.lab``."""
    env = os.environ.get(ENV_LAB_DIR)
    return Path(env) if env else project_root() / ".lab"


def recorded_settings(lab_dir: Path) -> dict[str, object]:
    """``layout.json`` of a lab dir: port base, replicas, load rate (empty for a new lab dir)."""
    try:
        return dict(json.loads((lab_dir / LAYOUT_FILE).read_text()))
    except FileNotFoundError:
        return {}


def recorded_port_base(lab_dir: Path) -> int | None:
    """The port base a lab dir was created with (None for a new lab dir)."""
    value = recorded_settings(lab_dir).get("port_base")
    return int(str(value)) if value is not None else None


def record_settings(layout: LabLayout) -> None:
    """Remember port base, replicas and load rate for the next command on this lab dir."""
    doc = {"port_base": layout.port_base, "replicas": layout.replicas, "load_rate": layout.load_rate}
    tmp = layout.layout_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc) + "\n")
    tmp.replace(layout.layout_file)


def recorded_dr_region(layout: LabLayout) -> dict[str, object] | None:
    """How the running DR region was started (``run/dr-region.json``), None while it is stopped."""
    try:
        return dict(json.loads(layout.dr_region_file.read_text()))
    except (FileNotFoundError, ValueError):
        return None


def dr_replica_count(layout: LabLayout) -> int:
    """Replicas of the DR region: as it was started, else the default (what it would start with)."""
    record = recorded_dr_region(layout) or {}
    return int(str(record.get("replicas", DEFAULT_DR_REPLICAS)))


def _from_env(name: str, kind: type) -> int | float | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name}: {raw!r} is not a{'n integer' if kind is int else ' number'}") from None


def resolve_layout(lab_dir: Path | str | None = None, port_base: int | None = None,
                   replicas: int | None = None, load_rate: float | None = None) -> LabLayout:
    """Build the layout from flags, then env, then the lab dir's record, then defaults.

    An explicit port base that differs from the one a lab dir was created with is refused:
    the clusters in it are configured for their ports. Replicas and load rate may change.
    """
    directory = Path(lab_dir) if lab_dir else default_lab_dir()
    directory = directory.expanduser().absolute()
    explicit = port_base
    if explicit is None and os.environ.get(ENV_PORT_BASE):
        raw = os.environ[ENV_PORT_BASE]
        try:
            explicit = int(raw)
        except ValueError:
            raise ValueError(f"{ENV_PORT_BASE}: {raw!r} is not an integer port") from None
    recorded = recorded_port_base(directory)
    if explicit is not None and recorded is not None and explicit != recorded:
        raise ValueError(
            f"port_base: lab dir {directory} was created with port base {recorded}, not {explicit}; "
            f"use --port-base {recorded} or `resilience lab down --purge` first"
        )
    chosen = explicit if explicit is not None else (recorded or DEFAULT_PORT_BASE)
    record = recorded_settings(directory)
    count = next(v for v in (replicas, _from_env(ENV_REPLICAS, int), record.get("replicas"), DEFAULT_REPLICAS)
                 if v is not None)
    rate = next(v for v in (load_rate, _from_env(ENV_LOAD_RATE, float), record.get("load_rate"),
                            DEFAULT_LOAD_RATE) if v is not None)
    return LabLayout(directory, validate_port_base(chosen), validate_replicas(count), validate_load_rate(rate))
