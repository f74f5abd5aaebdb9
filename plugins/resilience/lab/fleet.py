"""The app fleet: the supervisor (which owns the N replicas) and the load balancer in front of them.

The replicas get their configuration from the environment the supervisor passes on: the
multi-host read-write DSN, Redis, the S3 endpoint (the fault proxy) and its keys.
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
from resilience.lab.layout import HOST, S3_ACCESS_KEY, S3_BUCKET, S3_REGION, S3_SECRET_KEY, LabLayout
from resilience.lab.state import redis_url

log = logging.getLogger(__name__)

SUPERVISOR, LB = "supervisor", "lb"


def app_env(layout: LabLayout, dsn: str) -> dict[str, str]:
    """What every replica is configured with (secrets in the environment, never in argv)."""
    return {ENV_DSN: dsn, ENV_REDIS_URL: redis_url(layout), ENV_S3_ENDPOINT: layout.url("s3_proxy"),
            ENV_S3_BUCKET: S3_BUCKET, ENV_S3_REGION: S3_REGION, "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}


def supervisor_argv(layout: LabLayout) -> list[str]:
    return [sys.executable, "-m", "resilience.lab.supervisor", "--lab-dir", str(layout.lab_dir),
            "--replicas", str(layout.replicas)]


def lb_argv(layout: LabLayout) -> list[str]:
    backends = [f"--backend={n}=http://{HOST}:{layout.replica_port(n)}" for n in layout.replica_names]
    return [sys.executable, "-m", "resilience.lab.lb", "--port", str(layout.port("lb")), *backends]


def supervisor_state(layout: LabLayout) -> dict[str, dict[str, Any]]:
    """The supervisor's state file (empty when there is none yet)."""
    try:
        return dict(json.loads(layout.supervisor_state_file.read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def replica_pids(layout: LabLayout) -> dict[str, int | None]:
    """PID of each replica ``app-1..N`` that still runs what the supervisor started, else None."""
    state = supervisor_state(layout)
    pids: dict[str, int | None] = {}
    for name in layout.replica_names:
        entry = state.get(name, {})
        pid, argv = entry.get("pid"), entry.get("argv")
        pids[name] = pid if pid and argv and pid_matches(pid, argv) else None
    return pids


def start_supervisor(layout: LabLayout, dsn: str) -> int:
    """Start the supervisor (it starts the replicas); do not wait: see :func:`wait_replicas`."""
    argv = supervisor_argv(layout)
    existing = current_pid(argv, layout.pid_file(SUPERVISOR), "supervisor")
    if existing is not None:
        log.info("Supervisor already up (pid %d, %d replicas)", existing, layout.replicas)
        return existing
    log.info("Starting supervisor with %d app replicas on %s:%d..%d (metrics %s)", layout.replicas, HOST,
             layout.replica_port("app-1"), layout.replica_port(layout.replica_names[-1]), layout.url("supervisor"))
    return start_daemon(argv, layout.pid_file(SUPERVISOR), layout.log_file(SUPERVISOR),
                        env=python_env(**app_env(layout, dsn)))


def wait_replicas(layout: LabLayout, supervisor_pid: int, timeout_s: float = 20.0) -> None:
    """Wait until every replica answers ``/health``; LabError with the logs when one does not."""
    urls = {n: f"http://{HOST}:{layout.replica_port(n)}/health" for n in layout.replica_names}
    if wait_for(lambda: all(http_ok(u, 0.5) for u in urls.values()) or not is_alive(supervisor_pid),
                timeout_s) and is_alive(supervisor_pid):
        return
    down = [n for n, u in urls.items() if not http_ok(u, 0.5)]
    tails = "\n".join(f"--- {layout.log_file(n)}:\n{log_tail(layout.log_file(n), 8)}" for n in down[:2])
    raise LabError(f"app replicas {', '.join(down)} did not answer /health within {timeout_s:.0f} s\n"
                   f"--- {layout.log_file(SUPERVISOR)}:\n{log_tail(layout.log_file(SUPERVISOR), 8)}\n{tails}")


def start_lb(layout: LabLayout, timeout_s: float = 15.0) -> int:
    """Start the load balancer and wait until a request through it reaches a replica."""
    argv = lb_argv(layout)
    existing = current_pid(argv, layout.pid_file(LB), "load balancer")
    if existing is not None:
        log.info("Load balancer already up on %s (pid %d)", layout.url("lb"), existing)
        return existing
    log.info("Starting load balancer on %s (round-robin over %d replicas)", layout.url("lb"), layout.replicas)
    pid = start_daemon(argv, layout.pid_file(LB), layout.log_file(LB), env=python_env())
    if not wait_http_ok(f"{layout.url('lb')}/health", timeout_s, lambda: is_alive(pid)):
        stop_daemon(layout.pid_file(LB), timeout_s=5, name="load balancer")
        raise LabError(f"load balancer on {layout.url('lb')} did not answer /health within {timeout_s:.0f} s\n"
                       f"--- {layout.log_file(LB)}:\n{log_tail(layout.log_file(LB))}")
    return pid


def is_running(layout: LabLayout, daemon: str) -> int | None:
    return running_pid(layout.pid_file(daemon))


def stop_fleet(layout: LabLayout) -> None:
    """Stop the load balancer, the supervisor (it stops its replicas), then any replica it left behind."""
    stop_daemon(layout.pid_file(LB), timeout_s=5, name="load balancer")
    stop_daemon(layout.pid_file(SUPERVISOR), timeout_s=10, name="supervisor")
    for name, entry in supervisor_state(layout).items():
        pid, argv = entry.get("pid"), entry.get("argv")
        if pid and argv and stop_pid(pid, argv, timeout_s=5, name=f"orphaned replica {name}"):
            log.warning("Replica %s (pid %d) outlived its supervisor: stopped it", name, pid)
    layout.supervisor_state_file.unlink(missing_ok=True)
