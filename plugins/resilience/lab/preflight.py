"""Checks made before ``resilience lab up`` starts anything: tools, lab dir access, free ports."""

from __future__ import annotations

import errno
import shutil
import socket
from collections.abc import Mapping

from resilience.lab.errors import PreflightError
from resilience.lab.layout import ENV_LAB_DIR, ENV_PORT_BASE, HOST, LabLayout
from resilience.lab.osuser import NOBODY, PG_OS_USER, check_traversable, is_root
from resilience.lab.postgres import pg_bindir

COMPONENT_TITLES = {
    "control_db": "control-plane PostgreSQL",
    "app_primary": "app primary PostgreSQL",
    "app_replica": "app replica PostgreSQL",
    "app": "demo app",
    "prometheus": "Prometheus",
}


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


def check_ports(layout: LabLayout, running: Mapping[str, bool]) -> None:
    """Refuse to start when a port of a component that is not already ours-and-up is taken."""
    for component, title in COMPONENT_TITLES.items():
        port = layout.port(component)
        if running.get(component) or port_free(port):
            continue
        raise PreflightError(
            f"port {port} for the lab's {title} (port base {layout.port_base} + "
            f"{port - layout.port_base}) is already in use by another process on {HOST}; "
            f"choose another port base with --port-base or {ENV_PORT_BASE} "
            f"(the lab uses base+0..base+20, DR sandboxes base+30 and up)"
        )


def check_tools() -> None:
    """Refuse early when a binary the lab runs is missing."""
    missing = [name for name in ("pgbackrest", "prometheus") if not shutil.which(name)]
    if is_root() and not shutil.which("setpriv"):
        missing.append("setpriv")
    if missing:
        raise PreflightError(f"missing commands for the lab: {', '.join(missing)} "
                       "(apt-get install postgresql pgbackrest prometheus util-linux)")
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
    """All checks, in order of how cheap and how fundamental they are."""
    check_tools()
    check_lab_dir(layout)
    check_ports(layout, running)
