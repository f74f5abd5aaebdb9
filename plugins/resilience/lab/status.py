"""What of the lab is running: PIDs probed from pid files and /proc, endpoints from the layout."""

from __future__ import annotations

import getpass
from typing import Any

from resilience.lab import pgbackrest_setup, postgres, prometheus_server, workload
from resilience.lab.app_process import app_is_running
from resilience.lab.layout import APP_DBNAME, CONTROL_DBNAME, HOST, LabLayout
from resilience.lab.osuser import PG_OS_USER, effective_user
from resilience.lab.password import read_password
from resilience.lab.state import build_state

ORDER = ("control_db", "app_primary", "app_replica", "writer", "app", "prometheus")


def running_components(layout: LabLayout) -> dict[str, int | None]:
    """PID of each lab component that is up, None for those that are not."""
    return {
        "control_db": postgres.postmaster_pid(layout.control),
        "app_primary": postgres.postmaster_pid(layout.primary),
        "app_replica": postgres.postmaster_pid(layout.replica),
        "writer": workload.is_running(layout),
        "app": app_is_running(layout.port("app"), layout.run_dir),
        "prometheus": prometheus_server.is_running(layout),
    }


def endpoints(layout: LabLayout) -> dict[str, tuple[str, str]]:
    """(title, endpoint) of each component, for people."""
    return {
        "control_db": ("control-plane PostgreSQL", f"{HOST}:{layout.control.port}/{CONTROL_DBNAME}"),
        "app_primary": ("app primary PostgreSQL", f"{HOST}:{layout.primary.port}/{APP_DBNAME}"),
        "app_replica": ("app replica PostgreSQL", f"{HOST}:{layout.replica.port}/{APP_DBNAME}"),
        "writer": ("writer (workload)", f"log {layout.run_dir / 'writer.log'}"),
        "app": ("demo app", f"http://{HOST}:{layout.port('app')}"),
        "prometheus": ("Prometheus", f"http://{HOST}:{layout.port('prometheus')}"),
    }


def backup_summary(layout: LabLayout) -> dict[str, Any]:
    """Stanza status and backup count from ``pgbackrest info`` (empty when not set up)."""
    if not layout.pgbackrest_conf.exists() or not postgres.is_initialized(layout.primary):
        return {}
    try:
        entry = pgbackrest_setup.info(layout.pgbackrest_conf)
    except Exception as exc:  # status must print even when pgbackrest is broken
        return {"status": f"error: {type(exc).__name__}"}
    return {"stanza": entry.get("name"), "status": entry.get("status", {}).get("message"),
            "backups": len(entry.get("backup", []))}


def lab_status(layout: LabLayout, with_backups: bool = True) -> dict[str, Any]:
    """The lab.json document (computed) plus ``components`` and ``all_up``."""
    pids = running_components(layout)
    names = endpoints(layout)
    password = read_password(layout.password_file) if layout.password_file.exists() else ""
    os_user = effective_user(PG_OS_USER) if layout.lab_dir.exists() else getpass.getuser()
    doc = build_state(layout, password, postgres.pg_bindir(), os_user)
    doc["components"] = {
        name: {"title": names[name][0], "endpoint": names[name][1], "running": pids[name] is not None,
               "pid": pids[name]}
        for name in ORDER
    }
    doc["all_up"] = all(pid is not None for pid in pids.values())
    doc["lab_json"] = str(layout.lab_file) if layout.lab_file.exists() else None
    if with_backups:
        doc["pgbackrest"]["summary"] = backup_summary(layout)
    return doc


def format_table(doc: dict[str, Any]) -> str:
    """A readable table of :func:`lab_status`'s document."""
    rows = [("COMPONENT", "STATE", "PID", "ENDPOINT")]
    for comp in doc["components"].values():
        rows.append((comp["title"], "up" if comp["running"] else "down", str(comp["pid"] or "-"),
                     comp["endpoint"]))
    summary = doc["pgbackrest"].get("summary")
    if summary:
        rows.append((f"pgBackRest stanza {doc['pgbackrest']['stanza']}", str(summary.get("status", "?")), "-",
                     f"{summary.get('backups', 0)} backup(s) in {doc['pgbackrest']['repo_path']}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    lines.append("")
    lines.append(f"lab dir {doc['lab_dir']} (port base {doc['port_base']}); "
                 + ("all components up" if doc["all_up"] else "NOT all components up"))
    return "\n".join(lines)

