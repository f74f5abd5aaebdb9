"""Lab primitives the chaos faults and the DR DAGs call: small functions over the lab state (``lab.json``).

Each one is idempotent and logs one INFO line saying what it does to what. ``state`` is the
document :func:`resilience.lab.state.load_lab_state` returns; everything else (pid files,
the supervisor's state, the roles file, the release histories) is found from it.

Regions (see :mod:`resilience.lab.regions`): ``primary`` is what ``lab up`` starts; ``dr`` runs only
between :func:`start_dr_region` and :func:`stop_dr_region` (``lab down`` stops it too). Clients find
them through DNS (:func:`dns`): both entry points listen on the same port, on 127.0.0.1 and
127.0.0.2. To make a region misbehave: :func:`isolate_region` (entry point dark, like a lost
region) or :func:`deploy_release` with a ``fail_rate`` (a bad deploy: ``/api/*`` answers 500,
``/health`` stays 200). ``lab up`` starts an isolated primary load balancer again.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import urllib.error
import urllib.request
from typing import Any

from resilience.lab import deadman, memhog, patroni_cluster, redis_server, regions, releases, workload
from resilience.lab.app_process import http_ok
from resilience.lab.daemons import pid_matches
from resilience.lab.errors import LabError
from resilience.lab.fleet import supervisor_state
from resilience.lab.layout import DEFAULT_DR_REPLICAS, HOST, NODES, validate_region
from resilience.lab.pg_roles import read_roles
from resilience.lab.state import layout_of
from resilience.lab.supervisor import (
    NOT_RUNNING,
    SIGKILL_AT_ONCE,
    request_termination,
    withdraw_termination,
)

log = logging.getLogger(__name__)

State = dict[str, Any]


# -- app replicas ----------------------------------------------------------------------------

def replicas(state: State) -> dict[str, dict[str, Any]]:
    """``{name: {"pid": int|None, "port", "url", "healthy", "restarts", "release", "healthy_since"}}`` from the
    supervisor and ``/health`` (``release``: what the supervisor started the process with; ``healthy_since``:
    when its /health last started answering, as the supervisor's probe saw it)."""
    layout = layout_of(state)
    recorded = supervisor_state(layout)
    found = {}
    for name in layout.replica_names:
        entry = recorded.get(name, {})
        pid, argv = entry.get("pid"), entry.get("argv")
        live = pid if pid and argv and pid_matches(pid, argv) else None
        url = f"http://{HOST}:{layout.replica_port(name)}"
        found[name] = {"pid": live, "port": layout.replica_port(name), "url": url,
                       "healthy": live is not None and http_ok(f"{url}/health", 0.5),
                       "restarts": int(entry.get("restarts", 0)), "release": entry.get("release") if live else None,
                       "healthy_since": entry.get("healthy_since") if live else None}
    return found


def kill_replica(state: State, name: str, sig: signal.Signals = signal.SIGKILL) -> int:
    """Send ``sig`` to replica ``name``; return the PID signalled (0 if none was running)."""
    sig = signal.Signals(sig)
    current = replicas(state)
    if name not in current:
        raise LabError(f"replica: {name!r} is not one of {', '.join(current)}")
    pid = current[name]["pid"]
    if pid is None:
        log.info("Replica %s has no running process: nothing to %s", name, sig.name)
        return 0
    log.info("Sending %s to replica %s (pid %d, port %d)", sig.name, name, pid, current[name]["port"])
    os.kill(pid, sig)
    return int(pid)


TERMINATION_ACK_S = 5.0  # the supervisor reads requests every 0.1 s: silence this long means it is not running
TERMINATION_MARGIN_S = 10.0  # past the grace period: SIGKILL, reaping and the state write


def delete_replicas(state: State, names: list[str], grace_period_s: int, force: bool = False) -> dict[str, dict]:
    """Delete replicas like ``kubectl delete pod`` (and wait, as it does): forced = SIGKILL at once;
    graceful = the supervisor SIGTERMs each one (it leaves the load balancer, drains, exits) and
    SIGKILLs it after ``grace_period_s``. All are deleted together; returns, per name, how it ended:
    ``{"pid", "outcome", "exit", "grace_period_s", "terminated_in_s"}``."""
    current = replicas(state)
    unknown = [n for n in names if n not in current]
    if unknown:
        raise LabError(f"replica: {', '.join(map(repr, unknown))} not one of {', '.join(current)}")
    layout = layout_of(state)
    ended: dict[str, dict] = {}
    pending: dict[str, int] = {}
    for name in names:
        pid = current[name]["pid"]
        if pid is None:
            log.info("Replica %s has no running process: nothing to delete", name)
            ended[name] = {"pid": 0, "outcome": NOT_RUNNING, "exit": None, "grace_period_s": grace_period_s,
                           "terminated_in_s": 0.0}
        elif force:
            kill_replica(state, name, signal.SIGKILL)
            ended[name] = {"pid": int(pid), "outcome": SIGKILL_AT_ONCE, "exit": "signal 9", "grace_period_s": 0,
                           "terminated_in_s": 0.0}
        else:
            log.info("Deleting replica %s (pid %d) gracefully: grace period %d s", name, pid, grace_period_s)
            request_termination(layout, name, int(pid), grace_period_s)
            pending[name] = int(pid)
    if pending:
        ended.update(_wait_terminated(state, pending, grace_period_s))
    return {name: ended[name] for name in names}


def _wait_terminated(state: State, pending: dict[str, int], grace_period_s: int) -> dict[str, dict]:
    """The supervisor's record of each deletion, once it has one; withdraws requests nobody took."""
    layout = layout_of(state)
    started = time.monotonic()
    deadline = started + grace_period_s + TERMINATION_MARGIN_S
    ended: dict[str, dict] = {}
    while True:
        recorded = supervisor_state(layout)
        for name, pid in pending.items():
            entry = recorded.get(name, {})
            done = entry.get("termination") or {}
            if name not in ended and done.get("pid") == pid:
                ended[name] = done
                log.info("Replica %s (pid %d) %s (%s) %.2f s after SIGTERM", name, pid, done["outcome"],
                         done.get("exit"), done.get("terminated_in_s") or 0.0)
        if len(ended) == len(pending):
            return ended
        now = time.monotonic()
        acked = all(recorded.get(n, {}).get("terminating") or n in ended for n in pending)
        if not acked and now - started > TERMINATION_ACK_S:
            for name in pending:
                withdraw_termination(layout, name)
            raise LabError(f"the supervisor did not act on the deletion of {', '.join(sorted(pending))} within "
                           f"{TERMINATION_ACK_S:.0f} s: is it running? (lab status)")
        if now >= deadline:
            raise TimeoutError(f"replicas {', '.join(sorted(set(pending) - set(ended)))} not terminated within "
                               f"{grace_period_s} s grace + {TERMINATION_MARGIN_S:.0f} s")
        time.sleep(0.05)


def wait_replica_healthy(state: State, name: str, timeout_s: float, not_pid: int | None = None) -> int:
    """Wait until ``name`` runs a process other than ``not_pid`` that answers ``/health``; return its PID."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = replicas(state).get(name)
        if info is None:
            raise LabError(f"replica: {name!r} is not a replica of this lab")
        if info["pid"] is not None and info["pid"] != not_pid and info["healthy"]:
            log.info("Replica %s is healthy (pid %d, %d restart(s))", name, info["pid"], info["restarts"])
            return int(info["pid"])
        if time.monotonic() >= deadline:
            raise TimeoutError(f"replica {name} not healthy with a new process within {timeout_s:.1f} s "
                               f"(pid {info['pid']}, not_pid {not_pid})")
        time.sleep(0.05)


# -- Redis ------------------------------------------------------------------------------------

def redis_ping(state: State) -> bool:
    return redis_server.ping(state["redis"]["host"], int(state["redis"]["port"]))


REDIS_DEADMAN = "redis"


def stop_redis(state: State, deadline_epoch_s: float | None = None) -> None:
    """Stop the Redis server (SIGTERM: it flushes its AOF); a no-op when it is down.

    With ``deadline_epoch_s``, a dead-man switch (:mod:`resilience.lab.deadman`) is armed first: it starts
    Redis at that moment unless :func:`start_redis` cancelled it, even if the caller died meanwhile."""
    layout = layout_of(state)
    if deadline_epoch_s is not None:
        deadman.arm(layout, REDIS_DEADMAN, "start-redis", deadline_epoch_s)
    log.info("Stopping Redis on %s:%d (%s)", state["redis"]["host"], state["redis"]["port"],
             "no deadline" if deadline_epoch_s is None else
             f"it starts by itself in {deadline_epoch_s - time.time():.1f} s unless reverted first")
    redis_server.stop(layout)


def start_redis(state: State) -> None:
    """Start the Redis server (its AOF restores the data) and wait for PING, then disarm the dead-man switch
    (in that order: a caller that dies in between leaves a switch that only starts a running Redis)."""
    layout = layout_of(state)
    log.info("Starting Redis on %s:%d", state["redis"]["host"], state["redis"]["port"])
    redis_server.start(layout)
    deadman.cancel(layout, REDIS_DEADMAN)


# -- S3 -----------------------------------------------------------------------------------------

def _fault_api(state: State, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(state["s3"]["fault_api"], data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return dict(json.load(response))
    except urllib.error.HTTPError as exc:
        raise ValueError(f"S3 fault proxy refused {body}: {exc.read().decode(errors='replace')}") from exc


def s3_fault(state: State) -> dict[str, Any]:
    """``{"error_rate", "status", "expires_at", "expired_at", "injected", "forwarded"}`` of the S3 fault proxy
    (``error_rate`` is 0 once ``expires_at`` has passed; ``expired_at`` says when that happened)."""
    return _fault_api(state, "GET")


def set_s3_fault(state: State, error_rate: float, status: int = 503,
                 expires_at: float | None = None) -> dict[str, Any]:
    """Make the S3 endpoint answer ``status`` to a share ``error_rate`` of requests (0 turns it off), until
    ``expires_at`` (epoch s; the proxy's dead-man switch) or for good when None."""
    log.info("Setting S3 fault on %s: error_rate=%.3f status=%d, %s", state["s3"]["endpoint"], error_rate, status,
             "no expiry" if expires_at is None else f"expires in {expires_at - time.time():.1f} s")
    return _fault_api(state, "PUT", {"error_rate": error_rate, "status": status, "expires_at": expires_at})


# -- PostgreSQL ---------------------------------------------------------------------------------

def postgres_roles(state: State) -> dict[str, str]:
    """``{"primary": node, "replica": node}`` (nodes ``a``/``b``) as the lab records them now."""
    roles = read_roles(layout_of(state))
    return {"primary": roles.primary, "replica": roles.replica}


def patroni_endpoints(state: State) -> list[str]:
    """Every node's Patroni REST API (the product's database adapter talks to these)."""
    return layout_of(state).patroni_urls


def crash_postgres_node(state: State, node: str) -> dict[str, int | None]:
    """SIGKILL node ``node``'s Patroni and postmaster (a lost host); Patroni fails over after its TTL."""
    return patroni_cluster.crash_node(layout_of(state), node)


def start_postgres_nodes(state: State) -> list[str]:
    """Start the Patroni of every node that is down (it rejoins as a replica: pg_rewind or a fresh
    clone); return the nodes started."""
    layout = layout_of(state)
    started = [n for n in NODES if patroni_cluster.node_running(layout, n) is None]
    for node in started:
        log.info("Starting node %s's Patroni again: it rejoins the cluster as a replica", node)
        patroni_cluster.start_node(layout, node)
    return started


def acknowledged_writes(state: State, since_epoch_s: float) -> int:
    """Commits the lab writer was told succeeded since ``since_epoch_s`` (its journal; the database is not asked)."""
    return workload.acknowledged_writes(layout_of(state), since_epoch_s)


def acknowledged_writes_lost(state: State, since_epoch_s: float, until_epoch_s: float | None = None) -> dict[str, int]:
    """Writes the lab writer was told were committed (its journal) since ``since_epoch_s`` that the
    app database no longer has: ``{"acknowledged": n, "lost": m}``."""
    return workload.acknowledged_writes_lost(layout_of(state), state["app_db"]["read_write_dsn"], since_epoch_s,
                                             until_epoch_s)


# -- memory pressure ------------------------------------------------------------------------------

def start_memory_hog(state: State, name: str, limit_mb: int, hog_mb: int,
                     deadline_epoch_s: float | None = None) -> dict[str, Any]:
    """``stress-ng --vm`` of ``hog_mb`` MiB in a child cgroup limited to ``limit_mb``: ``{"pid", "cgroup"}``.

    With ``deadline_epoch_s`` the hog ends by itself then (stress-ng ``--timeout``); its cgroup stays until
    :func:`stop_memory_hog`."""
    log.info("Starting memory hog %s: %d MiB in a cgroup limited to %d MiB", name, hog_mb, limit_mb)
    return memhog.start(layout_of(state), name, limit_mb, hog_mb, deadline_epoch_s)


def stop_memory_hog(state: State, name: str) -> None:
    """Kill the hog and remove its cgroup (a no-op when there is none; found by its cgroup's name when its
    starter died before recording it)."""
    log.info("Stopping memory hog %s", name)
    memhog.stop(layout_of(state), name)


def memory_hog_counters(state: State, name: str) -> dict[str, Any]:
    """``{"oom_kill": int, "failcnt": int, "under_oom": bool}`` of the hog's cgroup."""
    return memhog.counters(layout_of(state), name)


# -- DNS and regions ------------------------------------------------------------------------------

def dns(state: State) -> dict[str, Any]:
    """The lab.json ``dns`` block: zone, record, per-region targets, port, Route53 endpoint, TTL."""
    block = state.get("dns")
    if not block or not block.get("zone_id"):
        raise LabError("dns: this lab.json has no DNS zone: run `resilience lab up` (it creates the zone on moto)")
    log.info("DNS of the lab: %s in zone %s (%s) on %s", block["record"], block["zone_name"], block["zone_id"],
             block["aws_endpoint"])
    return dict(block)


def start_dr_region(state: State, dsn: str, replicas: int = DEFAULT_DR_REPLICAS,
                    timeout_s: float = 30) -> dict[str, Any]:
    """Start the DR region on ``dsn`` (in the environment, never argv) and wait until every replica and
    its load balancer answer ``/health``; a DR region running on another DSN is restarted.

    Returns ``{"url": "http://127.0.0.2:<port>", "replicas": [{"name", "pid", "port", "url", "healthy",
    "release"}]}``. LabError (with the logs) when it does not come up in ``timeout_s``.
    """
    layout = layout_of(state)
    log.info("Starting the DR region: %d replica(s) behind %s", replicas, layout.region_url("dr"))
    try:
        return regions.start_dr(layout, dsn, replicas, timeout_s)
    except ValueError as exc:
        raise LabError(str(exc)) from exc


def stop_dr_region(state: State) -> bool:
    """Stop the DR region's load balancer, supervisor and replicas; True if it was running."""
    layout = layout_of(state)
    log.info("Stopping the DR region (%s)", layout.region_url("dr"))
    return regions.stop_dr(layout)


def dr_region_status(state: State) -> dict[str, Any]:
    """``{"running", "url", "supervisor_pid", "lb_pid", "replicas": {name: {"pid", "port", "url", "healthy",
    "restarts", "release"}}}`` (``replicas`` empty while the region is stopped)."""
    layout = layout_of(state)
    log.info("Reading the DR region's status (%s)", layout.region_url("dr"))
    return regions.dr_status(layout)


def _region(region: str) -> str:
    try:
        return validate_region(region)
    except ValueError as exc:
        raise LabError(str(exc)) from exc


def isolate_region(state: State, region: str) -> bool:
    """Take the region's entry point (its load balancer) down, as when the region is lost; its replicas
    and the databases keep running. True if it was up. ``lab up`` brings the primary's back."""
    layout = layout_of(state)
    log.info("Isolating region %s: stopping its load balancer on %s", _region(region), layout.region_url(region))
    return regions.isolate(layout, region)


def restore_region(state: State, region: str) -> int:
    """Bring the region's entry point back (the DR region must be running); return its PID."""
    layout = layout_of(state)
    log.info("Restoring region %s: starting its load balancer on %s", _region(region), layout.region_url(region))
    return regions.restore(layout, region)


def region_health(state: State, region: str) -> dict[str, Any]:
    """``{"entry_point_up": bool, "healthy_replicas": int, "replicas": int}`` measured over HTTP now
    (the DR region has 0 replicas while it is stopped)."""
    layout = layout_of(state)
    found = regions.health(layout, _region(region))
    log.info("Region %s: entry point %s, %d/%d replica(s) healthy", region,
             "up" if found["entry_point_up"] else "DOWN", found["healthy_replicas"], found["replicas"])
    return found


# -- app releases -----------------------------------------------------------------------------------

def app_release(state: State, region: str) -> dict[str, Any]:
    """``{"current", "previous", "history"}``: entries ``{"release", "fail_rate", "deployed_at"}``
    (``previous`` is None when there is nothing to roll back to)."""
    layout = layout_of(state)
    doc = releases.document(releases.read_history(layout, _region(region)))
    log.info("Region %s runs release %s (fail rate %g)", region, doc["current"]["release"],
             doc["current"]["fail_rate"])
    return doc


def deploy_release(state: State, region: str, release: str, fail_rate: float = 0.0,
                   timeout_s: float = 60) -> dict[str, Any]:
    """Record ``release`` for ``region`` and roll it out one replica at a time; return :func:`app_release`.

    ``fail_rate`` (0..1) is the share of ``/api/*`` requests the release answers 500. Deploying the
    current release again only finishes its rollout. A stopped DR region gets it at its next start.
    """
    layout = layout_of(state)
    log.info("Deploying release %r (fail rate %r) to region %s", release, fail_rate, _region(region))
    try:
        return regions.deploy(layout, region, release, fail_rate, timeout_s)
    except ValueError as exc:
        raise LabError(str(exc)) from exc


def rollback_release(state: State, region: str, timeout_s: float = 60) -> dict[str, Any]:
    """Deploy the previous release (with its fail rate) again and record the rollback; LabError when the
    region has none. A retried rollback finishes the same rollback rather than going further back."""
    layout = layout_of(state)
    log.info("Rolling back region %s to its previous release", _region(region))
    return regions.rollback(layout, region, timeout_s)
