"""Where the lab lives: the lab directory, the port plan and every path under it.

Everything here is pure (no processes, no sockets) so other code can compute the
lab's endpoints without touching it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT_BASE = 54320
ENV_LAB_DIR = "RESILIENCE_LAB_DIR"
ENV_PORT_BASE = "RESILIENCE_LAB_PORT_BASE"
ENV_PG_BINDIR = "RESILIENCE_PG_BINDIR"
HOST = "127.0.0.1"
STANZA = "app"
APP_DBNAME = "app"
CONTROL_DBNAME = "resilience"
PG_SUPERUSER = "postgres"
REPLICA_SLOT = "replica_slot"
LAYOUT_FILE = "layout.json"
LAB_FILE = "lab.json"

# Offsets from the port base. Sandboxes of the DR drill use base+30 and up.
PORT_OFFSETS = {"control_db": 0, "app_primary": 1, "app_replica": 2, "app": 10, "prometheus": 20}
SANDBOX_PORT_OFFSET = 30
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

    def port(self, component: str) -> int:
        return self.port_base + PORT_OFFSETS[component]

    @property
    def sandbox_port_min(self) -> int:
        return self.port_base + SANDBOX_PORT_OFFSET

    @property
    def control(self) -> ClusterPaths:
        return ClusterPaths("control_db", "control-plane PostgreSQL", self.port("control_db"),
                            self.lab_dir / "pg" / "control")

    @property
    def primary(self) -> ClusterPaths:
        return ClusterPaths("app_primary", "app primary PostgreSQL", self.port("app_primary"),
                            self.lab_dir / "pg" / "primary")

    @property
    def replica(self) -> ClusterPaths:
        return ClusterPaths("app_replica", "app replica PostgreSQL", self.port("app_replica"),
                            self.lab_dir / "pg" / "replica")

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


def recorded_port_base(lab_dir: Path) -> int | None:
    """The port base a lab dir was created with (None for a new lab dir)."""
    try:
        return int(json.loads((lab_dir / LAYOUT_FILE).read_text())["port_base"])
    except FileNotFoundError:
        return None


def resolve_layout(lab_dir: Path | str | None = None, port_base: int | None = None) -> LabLayout:
    """Build the layout from flags, then env, then the lab dir's record, then defaults.

    An explicit port base that differs from the one a lab dir was created with is refused:
    the clusters in it are configured for their ports.
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
    return LabLayout(directory, validate_port_base(chosen))
