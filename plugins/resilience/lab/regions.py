"""The lab's two regions: the DR region started on demand, entry points taken down and brought back,
health measured from outside, and app releases rolled out replica by replica.

Region ``primary`` is what ``lab up`` starts. Region ``dr`` (supervisor ``--region dr`` with
replicas ``dr-1..N`` on base+21.., load balancer on 127.0.0.2 at the primary's port) runs only
between :func:`start_dr` and :func:`stop_dr`; ``run/dr-region.json`` records how it was started
(replica count, a SHA-256 of its DSN: the DSN itself travels in the environment only).
Isolating a region stops its load balancer: its entry point goes dark, as when a region is lost,
while replicas and databases keep running. ``lab up`` starts the primary's load balancer again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import time
import urllib.error
import urllib.request
from typing import Any

from resilience.lab import fleet, prometheus_server, releases
from resilience.lab.app_process import http_ok
from resilience.lab.daemons import running_pid, wait_for
from resilience.lab.errors import LabError
from resilience.lab.layout import HOST, REGION_HOSTS, LabLayout, recorded_dr_region, validate_replicas
from resilience.lab.preflight import port_free
from resilience.lab.state import refresh_lab_state

log = logging.getLogger(__name__)

DR = "dr"


def dsn_fingerprint(dsn: str) -> str:
    return hashlib.sha256(dsn.encode()).hexdigest()


def supervisor_pid(layout: LabLayout, region: str) -> int | None:
    return running_pid(layout.pid_file(layout.region_daemon(region, fleet.SUPERVISOR)))


def lb_pid(layout: LabLayout, region: str) -> int | None:
    return running_pid(layout.pid_file(layout.region_daemon(region, fleet.LB)))


def region_replica_names(layout: LabLayout, region: str) -> list[str]:
    """The replicas a region has now: the primary's always, the DR region's only while it runs."""
    if region == DR and recorded_dr_region(layout) is None:
        return []
    return layout.region_replica_names(region)


def replica_release(port: int, timeout_s: float = 0.5) -> tuple[str, float] | None:
    """(release, fail rate) a replica reports on ``/health`` (its response headers), None if no 200."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=timeout_s) as response:
            if response.status != 200:
                return None
            return str(response.headers.get("X-App-Release")), float(response.headers.get("X-App-Fail-Rate", "nan"))
    except (OSError, urllib.error.URLError, ValueError):
        return None


def replica_info(layout: LabLayout, region: str) -> dict[str, dict[str, Any]]:
    """``{name: {"pid", "port", "url", "healthy", "restarts", "release"}}`` of the region's replicas."""
    recorded = fleet.supervisor_state(layout, region)
    found = {}
    for name in region_replica_names(layout, region):
        entry, port = recorded.get(name, {}), layout.replica_port(name)
        pid = fleet.live_pid(entry)
        reported = replica_release(port) if pid is not None else None
        found[name] = {"pid": pid, "port": port, "url": f"http://{HOST}:{port}", "healthy": reported is not None,
                       "restarts": int(entry.get("restarts", 0)), "release": reported[0] if reported else None}
    return found


# -- the DR region ------------------------------------------------------------------------------

def _check_dr_ports(layout: LabLayout, replicas: int) -> None:
    ports = [(f"DR replica {n}", HOST, layout.replica_port(n)) for n in layout.region_replica_names(DR, replicas)]
    ports += [("DR supervisor metrics", HOST, layout.port("dr_supervisor")),
              ("DR load balancer", REGION_HOSTS[DR], layout.port("lb"))]
    for title, host, port in ports:
        if not port_free(port, host):
            raise LabError(f"port {port} on {host} for the lab's {title} (port base {layout.port_base} + "
                           f"{port - layout.port_base}) is already in use: stop what holds it")


def start_dr(layout: LabLayout, dsn: str, replicas: int, timeout_s: float) -> dict[str, Any]:
    """Start (or keep, or restart on another DSN) the DR region and wait until it serves."""
    if not isinstance(dsn, str) or not dsn.strip():
        raise ValueError("dsn: the DR region needs a PostgreSQL DSN (got an empty one)")
    validate_replicas(replicas, "replicas argument of start_dr_region")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0:
        raise ValueError(f"timeout_s: {timeout_s!r} is not a positive number of seconds")
    deadline = time.monotonic() + timeout_s
    record, running = recorded_dr_region(layout), supervisor_pid(layout, DR)
    other_dsn = running is not None and (record or {}).get("dsn_sha256") != dsn_fingerprint(dsn)
    if running is None:
        fleet.stop_fleet(layout, DR)  # a DR load balancer left without its supervisor
        _check_dr_ports(layout, replicas)
    releases.ensure_history(layout, DR)
    tmp = layout.dr_region_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"replicas": replicas, "dsn_sha256": dsn_fingerprint(dsn),
                               "started_at": time.time()}) + "\n")
    tmp.replace(layout.dr_region_file)
    try:
        pid = fleet.start_supervisor(layout, dsn, DR, replicas, restart=other_dsn)
        fleet.wait_replicas(layout, pid, max(1.0, deadline - time.monotonic()), DR, replicas)
        fleet.start_lb(layout, max(1.0, deadline - time.monotonic()), DR, replicas)
    except LabError:
        stop_dr(layout)
        raise
    _sync_prometheus(layout)
    refresh_lab_state(layout)
    info = replica_info(layout, DR)
    return {"url": layout.region_url(DR),
            "replicas": [{"name": name, **{k: v for k, v in entry.items() if k != "restarts"}}
                         for name, entry in info.items()]}


def stop_dr(layout: LabLayout) -> bool:
    """Stop the DR load balancer, supervisor and replicas; True if any of them was running."""
    was_running = supervisor_pid(layout, DR) is not None or lb_pid(layout, DR) is not None
    fleet.stop_fleet(layout, DR)
    layout.dr_region_file.unlink(missing_ok=True)
    refresh_lab_state(layout)
    return was_running


def dr_status(layout: LabLayout) -> dict[str, Any]:
    """``{"running", "url", "supervisor_pid", "lb_pid", "replicas": {name: {...}}}`` of the DR region."""
    sup = supervisor_pid(layout, DR)
    return {"running": sup is not None, "url": layout.region_url(DR), "supervisor_pid": sup,
            "lb_pid": lb_pid(layout, DR), "replicas": replica_info(layout, DR) if sup is not None else {}}


def _sync_prometheus(layout: LabLayout) -> None:
    """Scrape the DR replicas the region runs now (Prometheus reloads only when the config changed)."""
    if prometheus_server.is_running(layout) is not None and prometheus_server.write_config(layout):
        prometheus_server.reload(layout)


# -- entry points ---------------------------------------------------------------------------------

def isolate(layout: LabLayout, region: str) -> bool:
    """Stop the region's load balancer; True if it was running."""
    return fleet.stop_lb(layout, region)


def restore(layout: LabLayout, region: str, timeout_s: float = 15.0) -> int:
    """Start the region's load balancer again (the DR region must be running); return its PID."""
    if region == DR and supervisor_pid(layout, DR) is None:
        raise LabError("region: the dr region is not running, so its entry point cannot be restored: "
                       "start it with start_dr_region first")
    return fleet.start_lb(layout, timeout_s, region)


def health(layout: LabLayout, region: str) -> dict[str, Any]:
    """``{"entry_point_up", "healthy_replicas", "replicas"}`` measured over HTTP: the entry point is up
    when its ``/health`` answers 200 (a load balancer with no healthy replica answers 503)."""
    names = region_replica_names(layout, region)
    healthy = sum(http_ok(f"http://{HOST}:{layout.replica_port(n)}/health", 0.5) for n in names)
    return {"entry_point_up": http_ok(f"{layout.region_url(region)}/health", 1.0), "healthy_replicas": healthy,
            "replicas": len(names)}


# -- releases ---------------------------------------------------------------------------------------

def _wait_release(layout: LabLayout, region: str, name: str, old_pid: int | None, target: tuple[str, float],
                  deadline: float) -> None:
    port = layout.replica_port(name)

    def rolled() -> bool:
        pid = fleet.live_pid(fleet.supervisor_state(layout, region).get(name, {}))
        return pid is not None and pid != old_pid and replica_release(port) == target

    if not wait_for(rolled, max(0.0, deadline - time.monotonic()), interval_s=0.1):
        raise LabError(f"region {region}: replica {name} did not come back healthy with release {target[0]} "
                       f"(fail rate {target[1]:g}) in time (it reports {replica_release(port)}; see "
                       f"{layout.log_file(name)})")


def rollout(layout: LabLayout, region: str, target: dict[str, Any], timeout_s: float) -> list[str]:
    """Restart, one at a time, each replica not running ``target``; return the replicas restarted.

    SIGTERM, then wait until the supervisor has a new process answering ``/health`` with the new
    release before the next one: the others keep serving meanwhile.
    """
    names = region_replica_names(layout, region)
    if not names or supervisor_pid(layout, region) is None:
        log.info("Region %s runs no replicas: release %s recorded, it applies when the region starts", region,
                 target["release"])
        return []
    wanted = (str(target["release"]), float(target["fail_rate"]))
    deadline = time.monotonic() + timeout_s
    restarted = []
    for name in names:
        if replica_release(layout.replica_port(name)) == wanted:
            continue
        pid = fleet.live_pid(fleet.supervisor_state(layout, region).get(name, {}))
        if pid is not None:
            log.info("Rolling %s replica %s (pid %d) to release %s (fail rate %g)", region, name, pid, wanted[0],
                     wanted[1])
            os.kill(pid, signal.SIGTERM)
        _wait_release(layout, region, name, pid, wanted, deadline)
        restarted.append(name)
    return restarted


def deploy(layout: LabLayout, region: str, release: str, fail_rate: float, timeout_s: float) -> dict[str, Any]:
    """Record ``release`` (unless it is already the current one) and roll it out."""
    release = releases.validate_release(release)
    fail_rate = releases.validate_fail_rate(fail_rate)
    history = releases.read_history(layout, region)
    target = releases.entry(release, fail_rate)
    if not releases.same_release(history[-1], target):
        history.append(target)
        releases.write_history(layout, region, history)
    rollout(layout, region, history[-1], timeout_s)
    return releases.document(releases.read_history(layout, region))


def rollback(layout: LabLayout, region: str, timeout_s: float) -> dict[str, Any]:
    """Return to the previous release; a region whose current release is already a rollback only has
    that rollback finished (so a retried rollback never goes one release further back)."""
    history = releases.read_history(layout, region)
    current = history[-1]
    if not current.get("rollback_of"):
        previous = releases.previous_of(history)
        if previous is None:
            raise LabError(f"region {region}: no previous release to roll back to (current release "
                           f"{current['release']}, fail rate {float(current['fail_rate']):g})")
        current["rolled_back"] = True
        history.append(releases.entry(previous["release"], float(previous["fail_rate"]),
                                      rollback_of=current["release"]))
        releases.write_history(layout, region, history)
    rollout(layout, region, history[-1], timeout_s)
    return releases.document(releases.read_history(layout, region))
