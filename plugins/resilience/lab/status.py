"""What of the lab is running: PIDs probed from pid files and /proc, endpoints from the layout.

The DR region is started on demand: its components are listed apart (``dr_region``) and do not
count in ``all_up``."""

from __future__ import annotations

import getpass
from typing import Any

from resilience.lab import (
    fleet,
    memhog,
    patroni_cluster,
    pgbackrest_setup,
    postgres,
    prometheus_server,
    redis_server,
    s3_tls,
    workload,
)
from resilience.lab.daemons import running_pid
from resilience.lab.layout import APP_DBNAME, CONTROL_DBNAME, DNS_RECORD, HOST, NODES, LabLayout
from resilience.lab.osuser import PG_OS_USER, effective_user
from resilience.lab.password import read_password
from resilience.lab.pg_roles import read_roles
from resilience.lab.state import build_state


def running_components(layout: LabLayout) -> dict[str, int | None]:
    """PID of each lab component that is up, None for those that are not (in start order)."""
    roles = read_roles(layout)
    return {
        "control_db": postgres.postmaster_pid(layout.control),
        "app_primary": postgres.postmaster_pid(layout.node(roles.primary)),
        "app_replica": postgres.postmaster_pid(layout.node(roles.replica)),
        "etcd": running_pid(layout.pid_file("etcd")),
        **{f"patroni_{n}": patroni_cluster.node_running(layout, n) for n in NODES},
        "redis": redis_server.is_running(layout),
        "moto": running_pid(layout.pid_file("moto")),
        "s3_tls": running_pid(layout.pid_file(s3_tls.STUNNEL)),
        "s3_proxy": running_pid(layout.pid_file("s3-proxy")),
        "writer": workload.is_running(layout),
        "supervisor": fleet.is_running(layout, fleet.SUPERVISOR),
        **fleet.replica_pids(layout),
        "lb": fleet.is_running(layout, fleet.LB),
        "loadgen": workload.loadgen_running(layout),
        "prometheus": prometheus_server.is_running(layout),
    }


def endpoints(layout: LabLayout) -> dict[str, tuple[str, str]]:
    """(title, endpoint) of each component, for people."""
    roles = read_roles(layout)
    primary, replica = layout.node(roles.primary), layout.node(roles.replica)
    replicas = {n: (f"app replica {n}", f"http://{HOST}:{layout.replica_port(n)}") for n in layout.replica_names}
    return {
        "control_db": ("control-plane PostgreSQL", f"{HOST}:{layout.control.port}/{CONTROL_DBNAME}"),
        "app_primary": (f"app PostgreSQL primary (node {roles.primary})", f"{HOST}:{primary.port}/{APP_DBNAME}"),
        "app_replica": (f"app PostgreSQL replica (node {roles.replica})"
                        + (", needs rebuild" if roles.needs_rebuild else ""), f"{HOST}:{replica.port}/{APP_DBNAME}"),
        "etcd": ("etcd (Patroni's DCS)", layout.url("etcd")),
        **{f"patroni_{n}": (f"Patroni REST API of node {n}", layout.patroni_url(n)) for n in NODES},
        "redis": ("Redis (cache)", f"redis://{HOST}:{layout.port('redis')}"),
        "moto": ("moto S3 server", layout.url("moto")),
        "s3_tls": ("S3 TLS endpoints (stunnel; backup repos per region)",
                   ", ".join(f"{e.lab_region} {e.url}" for e in s3_tls.region_endpoints(layout))),
        "s3_proxy": ("S3 fault proxy", f"{layout.url('s3_proxy')} (fault API /__fault__)"),
        "writer": ("writer (workload)", f"log {layout.log_file('writer')}"),
        "supervisor": ("replica supervisor", f"{layout.url('supervisor')}/metrics"),
        **replicas,
        "lb": ("load balancer (app URL)", layout.url("lb")),
        "loadgen": ("load generator", f"{layout.load_rate:g} requests/s to {DNS_RECORD} via DNS, metrics "
                    f"{layout.url('loadgen')}/metrics"),
        "prometheus": ("Prometheus", layout.url("prometheus")),
    }


def dr_components(layout: LabLayout) -> dict[str, dict[str, Any]]:
    """The DR region's supervisor, replicas and load balancer: title, endpoint, running, pid."""
    supervisor = fleet.is_running(layout, layout.region_daemon("dr", fleet.SUPERVISOR))
    found = {"dr_supervisor": ("DR region supervisor", f"http://{HOST}:{layout.port('dr_supervisor')}/metrics",
                               supervisor)}
    replica_pids = fleet.replica_pids(layout, "dr")
    for name, pid in replica_pids.items():
        found[name] = (f"DR app replica {name}", f"http://{HOST}:{layout.replica_port(name)}", pid)
    found["dr_lb"] = ("DR load balancer (DR entry point)", layout.region_url("dr"),
                      fleet.is_running(layout, layout.region_daemon("dr", fleet.LB)))
    return {name: {"title": title, "endpoint": endpoint, "running": pid is not None, "pid": pid}
            for name, (title, endpoint, pid) in found.items()}


def backup_summary(layout: LabLayout) -> dict[str, Any]:
    """Stanza status and backup count (per repository too) from ``pgbackrest info`` (empty when the lab's
    S3 endpoints are not up: nothing to ask)."""
    if not layout.pgbackrest_conf.exists() or running_pid(layout.pid_file(s3_tls.STUNNEL)) is None:
        return {}
    try:
        entry = pgbackrest_setup.info(layout.pgbackrest_conf)
    except Exception as exc:  # status must print even when pgbackrest is broken
        return {"status": f"error: {type(exc).__name__}"}
    repos = pgbackrest_setup.repo_summary(entry)
    return {"stanza": entry.get("name"), "status": entry.get("status", {}).get("message"),
            "backups": len(entry.get("backup", [])),
            "repos": {f"repo{k}": {"status": v["message"], "backups": v["backups"]} for k, v in sorted(repos.items())}}


def memory_hogs(layout: LabLayout) -> dict[str, dict[str, Any]]:
    """Memory hogs recorded in the lab dir (they are faults: not counted in ``all_up``)."""
    if not layout.run_dir.is_dir():
        return {}
    names = [p.name[len("memhog-"):-len(".json")] for p in layout.run_dir.glob("memhog-*.json")]
    return {name: record for name in names if (record := memhog.read_record(layout, name)) is not None}


def lab_status(layout: LabLayout, with_backups: bool = True) -> dict[str, Any]:
    """The lab.json document (computed) plus ``components``, ``memory_hogs`` and ``all_up``."""
    pids = running_components(layout)
    names = endpoints(layout)
    password = read_password(layout.password_file) if layout.password_file.exists() else ""
    os_user = effective_user(PG_OS_USER) if layout.lab_dir.exists() else getpass.getuser()
    doc = build_state(layout, password, postgres.pg_bindir(), os_user)
    doc["components"] = {
        name: {"title": names[name][0], "endpoint": names[name][1], "running": pid is not None, "pid": pid}
        for name, pid in pids.items()
    }
    doc["dr_region"] = {"components": dr_components(layout)}
    doc["memory_hogs"] = memory_hogs(layout)
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
    for comp in doc.get("dr_region", {}).get("components", {}).values():
        rows.append((comp["title"], "up" if comp["running"] else "off (on demand)", str(comp["pid"] or "-"),
                     comp["endpoint"]))
    for name, hog in doc.get("memory_hogs", {}).items():
        rows.append((f"memory hog {name}", "fault", str(hog["pid"]),
                     f"{hog['hog_mb']} MiB in cgroup limited to {hog['limit_mb']} MiB"))
    summary = doc["pgbackrest"].get("summary")
    if summary:
        rows.append((f"pgBackRest stanza {doc['pgbackrest']['stanza']}", str(summary.get("status", "?")), "-",
                     f"{summary.get('backups', 0)} backup(s) in "
                     + ", ".join(f"repo{r['repo']} s3://{r['bucket']} ({r['region']})"
                                 for r in doc["pgbackrest"]["repos"])))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    lines.append("")
    lines.append(f"lab dir {doc['lab_dir']} (port base {doc['port_base']}); "
                 + ("all components up" if doc["all_up"] else "NOT all components up"))
    return "\n".join(lines)
