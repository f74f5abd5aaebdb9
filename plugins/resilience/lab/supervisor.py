"""The lab's supervisor: owns one region's app replicas and restarts a dead one within ~1 s, like a kubelet.

``python -m resilience.lab.supervisor --lab-dir DIR --replicas N [--region primary|dr]``; the app's
configuration (DSN, Redis, S3) comes from the environment and is passed on to the replicas, with
the region's current release (``run/releases-<region>.json``) read at each (re)start of a replica.

- replica ``app-i`` listens on base+10+i (DR region: ``dr-i`` on base+20+i); its output goes to
  ``run/<name>.log``;
- a replica that exits is started again after a back-off (0.1 s, doubling up to 5 s while it
  keeps dying within 10 s of its start, like CrashLoopBackOff); its restart counter goes up;
- a replica that fails ``/health`` 6 times in a row (3 s) after answering once is SIGKILLed
  and restarted (a liveness probe: a SIGSTOPped replica does not hang forever);
- graceful deletion, the kubelet's part of it: a request in ``run/terminate-<name>.json`` (``pid``,
  ``grace_period_s``; see :func:`request_termination`) makes it SIGTERM that replica (which drains),
  SIGKILL it if it still runs after the grace period, record how it ended in the state's
  ``termination`` and start its replacement at once (a deletion is not a crash: no back-off).
  The supervisor does it, not the caller: it owns the process, it knows not to liveness-kill a
  draining replica, and the grace period is enforced even if the caller dies meanwhile;
- state is written atomically to ``run/supervisor.json`` (DR: ``run/supervisor-dr.json``):
  ``{"app-1": {"pid", "port", "restarts", "release", "terminating", "termination", ...}}``; metrics on
  base+6 (DR: base+8):
  ``lab_replica_restarts_total{replica}``, ``lab_replica_up{replica}`` and, for the primary region
  only, the component probes of :mod:`resilience.lab.lab_exporter`.
SIGTERM stops the replicas (SIGTERM, then SIGKILL after 5 s) and then the supervisor.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from resilience.lab.daemons import pid_matches, stop_pid
from resilience.lab.jsonfile import write_json
from resilience.lab.lab_exporter import ComponentProbes, HttpProbe, serve_metrics
from resilience.lab.layout import HOST, REGIONS, LabLayout, resolve_layout, validate_port_base
from resilience.lab.password import read_password
from resilience.lab.releases import ENV_RELEASE, release_env

log = logging.getLogger("resilience.lab.supervisor")

TICK_S = 0.1
STABLE_AFTER_S = 10.0
MAX_BACKOFF_S = 5.0
LIVENESS_FAILURES = 6
# how a deleted replica ended (``termination.outcome``); SIGKILL_AT_ONCE is the forced variant's
EXITED_WITHIN_GRACE = "exited within grace"
KILLED_AFTER_GRACE = "killed after grace"
SIGKILL_AT_ONCE = "SIGKILL"
NOT_RUNNING = "not running"


def termination_request_file(layout: LabLayout, name: str) -> Path:
    return layout.run_dir / f"terminate-{name}.json"


def request_termination(layout: LabLayout, name: str, pid: int, grace_period_s: int) -> None:
    """Ask the supervisor to delete replica ``name`` (process ``pid``) gracefully, like a pod deletion."""
    write_json(termination_request_file(layout, name),
               {"pid": pid, "grace_period_s": grace_period_s, "requested_at": time.time()})


def withdraw_termination(layout: LabLayout, name: str) -> None:
    termination_request_file(layout, name).unlink(missing_ok=True)


@dataclass
class Termination:
    """A deletion in progress: SIGTERM sent at ``sigterm_at`` (monotonic), SIGKILL due at ``deadline``."""

    pid: int
    grace_period_s: int
    sigterm_at: float
    deadline: float
    killed: bool = False


def replica_argv(name: str, port: int) -> list[str]:
    return [sys.executable, "-m", "resilience.lab.app", "--port", str(port), "--name", name]


@dataclass
class Replica:
    name: str
    port: int
    log_file: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start_at: float = 0.0
    quick_deaths: int = 0
    healthy: bool = False
    healthy_since: float | None = None  # when /health last started answering (a pod's Ready transition)
    answered: bool = False
    health_failures: int = 0
    argv: list[str] = field(default_factory=list)
    health: HttpProbe | None = None
    release: str = ""
    terminating: Termination | None = None
    termination: dict[str, object] | None = None  # how the last deletion of this replica ended

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def record(self) -> dict[str, object]:
        return {"pid": self.pid, "port": self.port, "restarts": self.restarts, "healthy": self.healthy,
                "started_at": self.started_at, "healthy_since": self.healthy_since, "argv": self.argv,
                "release": self.release,
                "terminating": self.terminating is not None, "termination": self.termination}


def kill_orphans(state_file: Path) -> None:
    """Stop replicas a previous supervisor left running (it was killed): their ports must be free."""
    try:
        previous = json.loads(state_file.read_text())
    except (FileNotFoundError, ValueError):
        return
    for name, entry in previous.items():
        if entry.get("pid") and entry.get("argv") and pid_matches(entry["pid"], entry["argv"]):
            stop_pid(entry["pid"], entry["argv"], timeout_s=3, name=f"orphaned replica {name}")


class Supervisor(Collector):
    def __init__(self, layout: LabLayout, stop: threading.Event, region: str = "primary",
                 count: int | None = None) -> None:
        self.layout = layout
        self.stop = stop
        self.region = region
        self.state_file = layout.region_supervisor_state_file(region)
        self.replicas = [Replica(n, layout.replica_port(n), layout.log_file(n))
                         for n in layout.region_replica_names(region, count)]
        self._written = ""

    def start_replica(self, replica: Replica) -> None:
        replica.argv = replica_argv(replica.name, replica.port)
        env = {**os.environ, **release_env(self.layout, self.region)}  # a restart picks up a new release
        with open(replica.log_file, "ab") as out:
            replica.proc = subprocess.Popen(replica.argv, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, cwd="/", close_fds=True, env=env)
        replica.started_at = time.time()
        replica.release = env[ENV_RELEASE]
        replica.healthy = replica.answered = False
        replica.healthy_since = None
        replica.health_failures = 0
        log.info("Started %s on %s:%d (pid %d, restarts %d, release %s)", replica.name, HOST, replica.port,
                 replica.proc.pid, replica.restarts, replica.release)

    def reap(self, replica: Replica, now: float) -> None:
        """Notice a dead replica and schedule its restart (with back-off when it keeps dying)."""
        assert replica.proc is not None
        code = replica.proc.returncode
        how = f"signal {-code}" if code < 0 else f"exit code {code}"
        lived = time.time() - replica.started_at
        term = replica.terminating
        if term is not None and term.pid == replica.proc.pid:
            outcome = KILLED_AFTER_GRACE if term.killed else EXITED_WITHIN_GRACE
            took = time.monotonic() - term.sigterm_at
            replica.termination = {"pid": term.pid, "outcome": outcome, "exit": how,
                                   "grace_period_s": term.grace_period_s, "terminated_in_s": round(took, 3)}
            log.info("%s (pid %d) deleted: %s (%s) %.2f s after SIGTERM: starting its replacement now",
                     replica.name, term.pid, outcome, how, took)
            replica.terminating = None
            replica.proc = None
            replica.healthy = False
            replica.restarts += 1
            replica.next_start_at = now
            return
        replica.quick_deaths = replica.quick_deaths + 1 if lived < STABLE_AFTER_S else 0
        delay = 0.0 if replica.quick_deaths <= 1 else min(0.1 * 2 ** (replica.quick_deaths - 1), MAX_BACKOFF_S)
        log.warning("%s (pid %d) died (%s) after %.1f s: restarting in %.1f s", replica.name, replica.proc.pid,
                    how, lived, delay)
        replica.proc = None
        replica.healthy = False
        replica.restarts += 1
        replica.next_start_at = now + delay

    def take_termination_request(self, replica: Replica, now: float) -> None:
        """Act on a pending deletion of ``replica``: SIGTERM now, SIGKILL at the end of the grace period."""
        path = termination_request_file(self.layout, replica.name)
        try:
            request = json.loads(path.read_text())
            pid, grace_period_s = int(request["pid"]), int(request["grace_period_s"])
        except FileNotFoundError:
            return
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("Ignoring an unreadable termination request for %s (%s): %s", replica.name, path, exc)
            path.unlink(missing_ok=True)
            return
        path.unlink(missing_ok=True)
        if replica.terminating is not None and replica.terminating.pid == pid:
            return  # already terminating: the first request's grace period stands, as in Kubernetes
        if replica.proc is None or replica.proc.pid != pid or replica.proc.poll() is not None:
            log.warning("Not terminating %s pid %d: it is no longer running (current pid %s)", replica.name, pid,
                        replica.pid)
            replica.termination = {"pid": pid, "outcome": NOT_RUNNING, "exit": None,
                                   "grace_period_s": grace_period_s, "terminated_in_s": 0.0}
            return
        log.info("Deleting %s (pid %d): SIGTERM, grace period %d s (SIGKILL if it still runs then)", replica.name,
                 pid, grace_period_s)
        replica.proc.terminate()
        replica.terminating = Termination(pid, grace_period_s, now, now + grace_period_s)
        replica.healthy = False

    def enforce_grace(self, replica: Replica, now: float) -> None:
        term = replica.terminating
        if term is None or term.killed or now < term.deadline or replica.proc is None:
            return
        log.warning("%s (pid %d) still runs %d s after SIGTERM (grace period over): SIGKILL", replica.name, term.pid,
                    term.grace_period_s)
        replica.proc.kill()
        term.killed = True

    def tick(self) -> None:
        now = time.monotonic()
        for replica in self.replicas:
            self.take_termination_request(replica, now)
            if replica.proc is not None and replica.proc.poll() is not None:
                self.reap(replica, now)
            self.enforce_grace(replica, now)
            if replica.proc is None and now >= replica.next_start_at and not self.stop.is_set():
                self.start_replica(replica)
        self.write_state()

    def probe(self, replica: Replica) -> None:
        """Readiness for ``lab_replica_up``; liveness: SIGKILL a replica that stopped answering."""
        proc = replica.proc  # the main thread may replace it meanwhile
        replica.health = replica.health or HttpProbe(replica.port, "/health")
        ok = proc is not None and proc.poll() is None and replica.health()
        if ok and not replica.healthy:
            replica.healthy_since = time.time()
        replica.healthy = ok
        replica.answered = replica.answered or ok
        replica.health_failures = 0 if ok else replica.health_failures + 1
        if replica.terminating is not None:
            return  # draining answers 503 by design; the grace period bounds it, not the liveness probe
        if proc is not None and replica.answered and replica.health_failures >= LIVENESS_FAILURES:
            log.warning("%s (pid %d) failed /health %d times in a row: killing it", replica.name, proc.pid,
                        replica.health_failures)
            proc.kill()

    def probe_loop(self) -> None:
        while not self.stop.wait(0.5):
            for replica in self.replicas:
                self.probe(replica)

    def write_state(self) -> None:
        text = json.dumps({r.name: r.record() for r in self.replicas}, indent=1)
        if text == self._written:
            return
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(text + "\n")
        tmp.replace(self.state_file)
        self._written = text

    def stop_all(self) -> None:
        for replica in self.replicas:
            if replica.proc is not None and replica.proc.poll() is None:
                replica.proc.terminate()
        deadline = time.monotonic() + 5
        for replica in self.replicas:
            if replica.proc is None:
                continue
            try:
                replica.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM: SIGKILL", replica.name, replica.proc.pid)
                replica.proc.kill()
                replica.proc.wait(5)
            replica.proc = None
        self.write_state()

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        restarts = CounterMetricFamily("lab_replica_restarts", "Restarts of the replica by the supervisor",
                                       labels=["replica"])
        up = GaugeMetricFamily("lab_replica_up", "1 while the replica runs and answers /health",
                               labels=["replica"])
        for replica in self.replicas:
            restarts.add_metric([replica.name], replica.restarts)
            up.add_metric([replica.name], 1.0 if replica.healthy else 0.0)
        yield restarts
        yield up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resilience.lab.supervisor", description=__doc__.split("\n")[0])
    parser.add_argument("--lab-dir", required=True)
    parser.add_argument("--replicas", type=int, required=True)
    parser.add_argument("--region", choices=REGIONS, default="primary",
                        help="primary: app-1..N, with the component probes; dr: dr-1..N, no probes")
    parser.add_argument("--port-base", type=int, help="the lab's port base (default: as the lab dir records it)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.region == "primary":
        layout = resolve_layout(args.lab_dir, args.port_base, replicas=args.replicas)
    else:  # started by whoever calls start_dr_region: only the lab dir and port base matter, not their env
        layout = LabLayout(Path(args.lab_dir).absolute(), validate_port_base(args.port_base or 0))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    kill_orphans(layout.region_supervisor_state_file(args.region))
    supervisor = Supervisor(layout, stop, args.region, args.replicas)
    registry = CollectorRegistry()
    registry.register(supervisor)
    probes = None
    if args.region == "primary":  # the lab's stateful components are probed once, by the primary's
        probes = ComponentProbes(layout, read_password(layout.password_file), stop)
        registry.register(probes)
    port = layout.region_supervisor_port(args.region)
    server = serve_metrics(registry, port)
    if probes is not None:
        probes.start()
    threading.Thread(target=supervisor.probe_loop, name="replica-probes", daemon=True).start()
    log.info("Supervisor of %d replicas of region %s; metrics on http://%s:%d/metrics", args.replicas,
             args.region, HOST, port)
    while not stop.is_set():
        supervisor.tick()
        stop.wait(TICK_S)
    log.info("Supervisor stopping (SIGTERM): stopping the replicas")
    supervisor.stop_all()
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
