"""The app fleet of a region: the supervisor (which owns the N replicas) and the load balancer in front.

The replicas get their configuration from the environment the supervisor passes on: the DSN,
Redis, the S3 endpoint and its keys. Region ``primary`` (started by ``lab up``): ``app-1..N``, S3
through the fault proxy, load balancer on 127.0.0.1. Region ``dr`` (started on demand, see
:mod:`resilience.lab.regions`): ``dr-1..N``, S3 straight from moto (its own endpoint, which the
primary's S3 faults do not reach), load balancer on 127.0.0.2 at the same port.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from resilience.lab.app import ENV_DSN, ENV_REDIS_URL, ENV_S3_BUCKET, ENV_S3_ENDPOINT, ENV_S3_REGION
from resilience.lab.app_process import http_ok, wait_http_ok
from resilience.lab.daemons import (
    current_pid,
    is_alive,
    log_tail,
    pid_matches,
    python_env,
    running_pid,
    start_daemon,
    stop_daemon,
    stop_pid,
    wait_for,
)
from resilience.lab.errors import LabError
from resilience.lab.layout import (
    HOST,
    REGION_HOSTS,
    S3_ACCESS_KEY,
    S3_BUCKET,
    S3_REGION,
    S3_SECRET_KEY,
    LabLayout,
)
from resilience.lab.state import redis_url

log = logging.getLogger(__name__)

SUPERVISOR, LB = "supervisor", "lb"


def _title(region: str, what: str) -> str:
    """``load balancer`` for the primary region (as logs always said), ``dr load balancer`` for DR."""
    return what if region == "primary" else f"{region} {what}"


def app_env(layout: LabLayout, dsn: str, region: str = "primary") -> dict[str, str]:
    """What every replica of ``region`` is configured with (secrets in the environment, never in argv)."""
    s3 = layout.url("s3_proxy" if region == "primary" else "moto")
    return {ENV_DSN: dsn, ENV_REDIS_URL: redis_url(layout), ENV_S3_ENDPOINT: s3,
            ENV_S3_BUCKET: S3_BUCKET, ENV_S3_REGION: S3_REGION, "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}


def supervisor_argv(layout: LabLayout, region: str = "primary", count: int | None = None) -> list[str]:
    """The primary's supervisor runs ``layout.replicas``; the DR region's ``count`` with ``--region dr``."""
    if region == "primary":
        return [sys.executable, "-m", "resilience.lab.supervisor", "--lab-dir", str(layout.lab_dir),
                "--replicas", str(layout.replicas)]
    names = layout.region_replica_names(region, count)  # the port base is explicit: a caller's env may differ
    return [sys.executable, "-m", "resilience.lab.supervisor", "--lab-dir", str(layout.lab_dir),
            "--port-base", str(layout.port_base), "--replicas", str(len(names)), "--region", region]


def lb_argv(layout: LabLayout, region: str = "primary", count: int | None = None) -> list[str]:
    names = layout.region_replica_names(region, count)
    backends = [f"--backend={n}=http://{HOST}:{layout.replica_port(n)}" for n in names]
    host = [] if region == "primary" else ["--host", REGION_HOSTS[region]]
    return [sys.executable, "-m", "resilience.lab.lb", "--port", str(layout.port("lb")), *host, *backends]


def supervisor_state(layout: LabLayout, region: str = "primary") -> dict[str, dict[str, Any]]:
    """The region's supervisor state file (empty when there is none yet)."""
    try:
        return dict(json.loads(layout.region_supervisor_state_file(region).read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def live_pid(entry: dict[str, Any]) -> int | None:
    """The PID of a supervisor state entry if that process still runs what the supervisor started."""
    pid, argv = entry.get("pid"), entry.get("argv")
    return int(pid) if pid and argv and pid_matches(pid, argv) else None


def replica_pids(layout: LabLayout, region: str = "primary", count: int | None = None) -> dict[str, int | None]:
    """PID of each replica of ``region`` that still runs what the supervisor started, else None."""
    state = supervisor_state(layout, region)
    return {name: live_pid(state.get(name, {})) for name in layout.region_replica_names(region, count)}


def start_supervisor(layout: LabLayout, dsn: str, region: str = "primary", count: int | None = None,
                     restart: bool = False) -> int:
    """Start the region's supervisor (it starts the replicas); do not wait: see :func:`wait_replicas`.

    ``restart``: stop a running one first (its DSN, passed in the environment, is not in its argv).
    """
    argv = supervisor_argv(layout, region, count)
    pid_file = layout.pid_file(layout.region_daemon(region, SUPERVISOR))
    title = _title(region, "supervisor")
    if restart:
        stop_daemon(pid_file, timeout_s=10, name=title)
    existing = current_pid(argv, pid_file, title)
    names = layout.region_replica_names(region, count)
    if existing is not None:
        log.info("Supervisor already up (pid %d, %d replicas)", existing, len(names))
        return existing
    log.info("Starting %s with %d app replicas on %s:%d..%d (metrics http://%s:%d)", title, len(names), HOST,
             layout.replica_port(names[0]), layout.replica_port(names[-1]), HOST,
             layout.region_supervisor_port(region))
    return start_daemon(argv, pid_file, layout.log_file(layout.region_daemon(region, SUPERVISOR)),
                        env=python_env(**app_env(layout, dsn, region)))


def wait_replicas(layout: LabLayout, supervisor_pid: int, timeout_s: float = 20.0, region: str = "primary",
                  count: int | None = None) -> None:
    """Wait until every replica answers ``/health``; LabError with the logs when one does not."""
    urls = {n: f"http://{HOST}:{layout.replica_port(n)}/health" for n in layout.region_replica_names(region, count)}
    if wait_for(lambda: all(http_ok(u, 0.5) for u in urls.values()) or not is_alive(supervisor_pid),
                timeout_s) and is_alive(supervisor_pid):
        return
    down = [n for n, u in urls.items() if not http_ok(u, 0.5)]
    supervisor_log = layout.log_file(layout.region_daemon(region, SUPERVISOR))
    tails = "\n".join(f"--- {layout.log_file(n)}:\n{log_tail(layout.log_file(n), 8)}" for n in down[:2])
    raise LabError(f"{region} app replicas {', '.join(down)} did not answer /health within {timeout_s:.0f} s\n"
                   f"--- {supervisor_log}:\n{log_tail(supervisor_log, 8)}\n{tails}")


def start_lb(layout: LabLayout, timeout_s: float = 15.0, region: str = "primary", count: int | None = None) -> int:
    """Start the region's load balancer and wait until a request through it reaches a replica."""
    argv = lb_argv(layout, region, count)
    name, url = layout.region_daemon(region, LB), layout.region_url(region)
    title = _title(region, "load balancer")
    existing = current_pid(argv, layout.pid_file(name), title)
    if existing is not None:
        log.info("Load balancer already up on %s (pid %d)", url, existing)
        return existing
    log.info("Starting %s on %s (round-robin over %d replicas)", title, url,
             len(layout.region_replica_names(region, count)))
    pid = start_daemon(argv, layout.pid_file(name), layout.log_file(name), env=python_env())
    if not wait_http_ok(f"{url}/health", timeout_s, lambda: is_alive(pid)):
        stop_daemon(layout.pid_file(name), timeout_s=5, name=title)
        raise LabError(f"{title} on {url} did not answer /health within {timeout_s:.0f} s\n"
                       f"--- {layout.log_file(name)}:\n{log_tail(layout.log_file(name))}")
    return pid


def stop_lb(layout: LabLayout, region: str = "primary") -> bool:
    """Stop the region's load balancer (its entry point goes dark); True if one was running."""
    title = _title(region, "load balancer")
    return stop_daemon(layout.pid_file(layout.region_daemon(region, LB)), timeout_s=5, name=title)


def is_running(layout: LabLayout, daemon: str) -> int | None:
    return running_pid(layout.pid_file(daemon))


def stop_fleet(layout: LabLayout, region: str = "primary") -> None:
    """Stop the region's load balancer, its supervisor (it stops its replicas), then any replica it left."""
    stop_lb(layout, region)
    stop_daemon(layout.pid_file(layout.region_daemon(region, SUPERVISOR)), timeout_s=10,
                name=_title(region, "supervisor"))
    for name, entry in supervisor_state(layout, region).items():
        pid, argv = entry.get("pid"), entry.get("argv")
        if pid and argv and stop_pid(pid, argv, timeout_s=5, name=f"orphaned replica {name}"):
            log.warning("Replica %s (pid %d) outlived its supervisor: stopped it", name, pid)
    layout.region_supervisor_state_file(region).unlink(missing_ok=True)
