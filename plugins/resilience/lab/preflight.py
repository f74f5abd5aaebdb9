"""Checks made before ``resilience lab up`` starts anything: tools, lab dir access, free ports."""

from __future__ import annotations

import errno
import importlib.util
import logging
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path

from resilience.lab.daemons import wait_for
from resilience.lab.errors import PreflightError
from resilience.lab.layout import ENV_LAB_DIR, ENV_PORT_BASE, HOST, LAST_LAB_PORT_OFFSET, NODES, LabLayout
from resilience.lab.osuser import NOBODY, PG_OS_USER, check_traversable, is_root
from resilience.lab.pg_roles import read_roles
from resilience.lab.postgres import pg_bindir
from resilience.lab.s3_tls import region_endpoints

log = logging.getLogger(__name__)

RESERVED_PORTS = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def component_ports(layout: LabLayout) -> dict[str, tuple[str, int]]:
    """(title, port) of every component, keyed like ``status.running_components``."""
    roles = read_roles(layout)
    return {
        "control_db": ("control-plane PostgreSQL", layout.port("control_db")),
        "app_primary": ("app primary PostgreSQL", layout.node(roles.primary).port),
        "app_replica": ("app replica PostgreSQL", layout.node(roles.replica).port),
        "etcd": ("etcd", layout.port("etcd")),
        "etcd_peer": ("etcd peer", layout.port("etcd_peer")),
        **{f"patroni_{n}": (f"Patroni REST API of node {n}", layout.port(f"patroni_{n}")) for n in NODES},
        "redis": ("Redis", layout.port("redis")),
        "moto": ("moto S3 server", layout.port("moto")),
        "s3_proxy": ("S3 fault proxy", layout.port("s3_proxy")),
        "s3_tls": ("S3 TLS endpoint of the primary region", region_endpoints(layout)[0].port),
        "supervisor": ("replica supervisor", layout.port("supervisor")),
        **{n: (f"app replica {n}", layout.replica_port(n)) for n in layout.replica_names},
        "lb": ("load balancer", layout.port("lb")),
        "loadgen": ("load generator metrics", layout.port("loadgen")),
        "prometheus": ("Prometheus", layout.port("prometheus")),
    }


def _ranges(text: str) -> list[tuple[int, int]]:
    found = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        found.append((int(low), int(high or low)))
    return found


def in_ephemeral_range(layout: LabLayout, sysctl: Path = EPHEMERAL_RANGE) -> bool:
    """Whether the lab's ports overlap the kernel's ephemeral range (the default base does not)."""
    try:
        low, high = (int(v) for v in sysctl.read_text().split())
    except (OSError, ValueError):
        return True
    return layout.port_base <= high and layout.port_base + LAST_LAB_PORT_OFFSET >= low


def reserve_ports(layout: LabLayout, sysctl: Path = RESERVED_PORTS) -> bool:
    """Keep base..base+29 (DR region replicas included) out of the ephemeral port range (root, best effort).

    Only for a port base chosen inside the ephemeral range (32768-60999): a client connection from
    anywhere could take one, and its TIME_WAIT then blocks the lab's server from binding that
    port for 60 s. ``net.ipv4.ip_local_reserved_ports`` only stops automatic allocation;
    explicit binds (the lab's servers) still work. Returns True when the range is reserved.
    """
    low, high = layout.port_base, layout.port_base + LAST_LAB_PORT_OFFSET
    try:
        current = sysctl.read_text().strip()
        if any(a <= low and high <= b for a, b in _ranges(current)):
            return True
        sysctl.write_text(",".join(filter(None, [current, f"{low}-{high}"])) + "\n")
    except (OSError, ValueError) as exc:
        log.debug("Could not reserve ports %d-%d in %s: %s", low, high, sysctl, exc)
        return False
    log.info("Reserved ports %d-%d from ephemeral allocation (%s)", low, high, sysctl)
    return True


def port_free(port: int, host: str = HOST) -> bool:
    """True if ``host:port`` can be bound (SO_REUSEADDR, like the servers themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def only_time_wait(port: int, tables: tuple[str, ...] = ("/proc/net/tcp", "/proc/net/tcp6")) -> bool:
    """True if every socket on local ``port`` is a closed connection in TIME_WAIT (state 06)."""
    states = []
    for table in tables:
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        states += [f[3] for f in (r.split() for r in rows) if int(f[1].rsplit(":", 1)[1], 16) == port]
    return bool(states) and all(state == "06" for state in states)


def wait_time_wait(port: int, title: str, timeout_s: float = 65.0) -> bool:
    """Wait for a port held only by TIME_WAIT connections (they expire within 60 s)."""
    if not only_time_wait(port):
        return False
    log.info("Port %d for the lab's %s is held by closed connections in TIME_WAIT: waiting (up to 60 s)",
             port, title)
    return wait_for(lambda: port_free(port), timeout_s, interval_s=0.5)


def check_ports(layout: LabLayout, running: Mapping[str, bool]) -> None:
    """Refuse to start when a port of a component that is not already ours-and-up is taken."""
    wanted = [(component, title, port, HOST) for component, (title, port) in component_ports(layout).items()]
    wanted += [("s3_tls", f"S3 TLS endpoint of the {e.lab_region} region", e.port, e.host)
               for e in region_endpoints(layout) if e.host != HOST]  # the DR region's: same port on 127.0.0.2
    for component, title, port, host in wanted:
        owner = component.removesuffix("_peer")  # etcd's peer port is etcd's
        if running.get(owner) or port_free(port, host) or wait_time_wait(port, title):
            continue
        raise PreflightError(
            f"port {port} for the lab's {title} (port base {layout.port_base} + "
            f"{port - layout.port_base}) is already in use on {host} (by another process, or a closed "
            f"client connection in TIME_WAIT for up to 60 s); "
            f"choose another port base with --port-base or {ENV_PORT_BASE} "
            f"(the lab uses base+0..base+33, DR sandboxes base+40 and up)"
        )


def check_tools() -> None:
    """Refuse early when a binary the lab runs is missing."""
    tools = ("pgbackrest", "prometheus", "redis-server", "patroni", "etcd", "stunnel4")
    missing = [name for name in tools if not shutil.which(name)]
    if is_root() and not shutil.which("setpriv"):
        missing.append("setpriv")
    if missing:
        raise PreflightError(f"missing commands for the lab: {', '.join(missing)} "
                             "(apt-get install postgresql pgbackrest prometheus redis-server patroni etcd-server "
                             "stunnel4 util-linux)")
    if importlib.util.find_spec("moto") is None:
        raise PreflightError("Python package moto is missing: pip install 'moto[server]' (make venv)")
    if not (pg_bindir() / "initdb").exists():
        raise PreflightError(f"initdb not found in {pg_bindir()}: install postgresql or set RESILIENCE_PG_BINDIR")


def check_lab_dir(layout: LabLayout) -> None:
    """The server users (postgres, and nobody for Prometheus) must reach the lab dir.

    Only its parents are checked: ``up`` creates the lab dir itself with mode 0755.
    """
    if is_root():
        for user in (PG_OS_USER, NOBODY):
            check_traversable(layout.lab_dir, user, ENV_LAB_DIR, include_self=False)


def preflight(layout: LabLayout, running: Mapping[str, bool]) -> None:
    """All checks, in order of how cheap and how fundamental they are; then, for a port base inside
    the ephemeral range only, reserve the ports (the default base lies below it: nothing to change)."""
    check_tools()
    check_lab_dir(layout)
    check_ports(layout, running)
    if is_root() and in_ephemeral_range(layout):
        reserve_ports(layout)
