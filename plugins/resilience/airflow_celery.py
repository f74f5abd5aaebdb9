"""Airflow as teams deploy it, on this machine: CeleryExecutor, PostgreSQL metadata, Redis broker.

``resilience airflow up --executor celery`` starts, each as its own process with its own log
under ``$AIRFLOW_HOME/components/``: the API server, the scheduler, the DAG processor, two
triggerers and two Celery workers, plus a Redis of its own as the Celery broker (never the
lab's Redis: redis-unavailable stops that one). The metadata database is this home's database
on the lab's control-plane PostgreSQL (``airflow_local.metadata_db_uri``); Celery's result
backend is the same database. ``resilience airflow down`` stops every Airflow process of the
home (``airflow_local.down``: by PID, task processes included) and then the broker.

Ports: the API server on ``port`` (``$RESILIENCE_AIRFLOW_PORT``), then one log server port per
worker and per triggerer (two processes on one machine cannot share one), then the broker.

Failover settings (HA_SETTINGS) are shorter than Airflow's defaults so a killed part is noticed in
seconds on a laptop; production keeps its own. A triggerer heartbeats every 2 s and is declared dead
after 10 s without one (default 5 s / 30 s): its triggers move to a live triggerer ~10-12 s after it
dies. 10 s is five missed heartbeats: a 2-core machine under load stalls a loop for seconds, and a
live triggerer declared dead would run its guards twice (harmless: reverts are idempotent and
serialised, but noisy). A task whose worker vanished is failed after 30 s without a heartbeat
(default 300 s), and a restarted scheduler adopts the dead one's tasks within ~20 s.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resilience.airflow_local import (
    HOST,
    Standalone,
    airflow_env,
    ensure_blast_radius_pool,
    healthy,
    metadata_db_uri,
    prepare_home,
)

log = logging.getLogger(__name__)

TRIGGERERS = ("triggerer-1", "triggerer-2")
WORKERS = ("worker-1", "worker-2")
COMPONENTS = ("api-server", "scheduler", "dag-processor", *TRIGGERERS, *WORKERS)
WORKER_CONCURRENCY = 2  # task slots per Celery worker: 4 in all on a 2-core machine
HA_SETTINGS = {
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
}


@dataclass(frozen=True)
class CeleryTopology:
    """Where one Celery topology lives: the home and API port of ``sa``, the ports after it."""

    sa: Standalone

    def __post_init__(self) -> None:
        if self.broker_port > 65535:
            span = self.broker_port - self.sa.port
            raise ValueError(f"RESILIENCE_AIRFLOW_PORT: {self.sa.port} leaves no room for the {span} ports the "
                             f"topology uses after it (at most {65535 - span})")

    @property
    def components_dir(self) -> Path:
        return self.sa.home / "components"

    def logfile(self, component: str) -> Path:
        return self.components_dir / f"{component}.log"

    def log_server_port(self, component: str) -> int | None:
        """Each worker and triggerer serves its logs on a port of its own (after the API port)."""
        served = (*WORKERS, *TRIGGERERS)
        return self.sa.port + 1 + served.index(component) if component in served else None

    @property
    def broker_port(self) -> int:
        return self.sa.port + 1 + len(WORKERS) + len(TRIGGERERS)

    @property
    def broker_url(self) -> str:
        return f"redis://{HOST}:{self.broker_port}/0"

    @property
    def broker_dir(self) -> Path:
        return self.sa.home / "broker"

    @property
    def broker_pid_file(self) -> Path:
        return self.broker_dir / "redis.pid"


def celery_env(topo: CeleryTopology, lab_state: dict[str, Any], schedules: bool = True) -> dict[str, str]:
    """The environment every component shares: airflow_local's, CeleryExecutor on this broker, HA settings."""
    env = airflow_env(topo.sa, lab_state, schedules)
    metadata = metadata_db_uri(topo.sa, lab_state)
    env.update({
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": topo.broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata.replace("postgresql+psycopg2://", "postgresql://", 1),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        # deferred tasks hold no slot; 8 lets both workers' 4 slots fill while the scheduler queues the next
        "AIRFLOW__CORE__PARALLELISM": "8",
        **HA_SETTINGS,
    })
    return env


def component_env(topo: CeleryTopology, component: str, env: dict[str, str]) -> dict[str, str]:
    port = topo.log_server_port(component)
    if component in WORKERS and port:
        return {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port)}
    if component in TRIGGERERS and port:
        return {**env, "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(port)}
    return env


def component_argv(component: str) -> list[str]:
    airflow = str(Path(sys.executable).with_name("airflow"))
    if component in WORKERS:
        # a node name of its own: two workers called celery@<host> would be one to Celery's remote control
        return [airflow, "celery", "worker", "--concurrency", str(WORKER_CONCURRENCY),
                "--celery-hostname", f"{component}@%h"]
    if component in TRIGGERERS:
        return [airflow, "triggerer"]
    if component == "api-server":
        return [airflow, "api-server"]
    return [airflow, component]


def start_component(topo: CeleryTopology, component: str, env: dict[str, str]) -> subprocess.Popen:
    """Start one component in its own session, output appended to its log; the caller waits for it."""
    if component not in COMPONENTS:
        raise ValueError(f"component: {component!r} is not one of {list(COMPONENTS)}")
    topo.components_dir.mkdir(parents=True, exist_ok=True)
    with topo.logfile(component).open("ab") as out:
        proc = subprocess.Popen(component_argv(component), env=component_env(topo, component, env),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=topo.sa.home)
    (topo.components_dir / f"{component}.pid").write_text(f"{proc.pid}\n")
    log.info("Started %s (pid %d; log %s)", component, proc.pid, topo.logfile(component))
    return proc


def component_pid(topo: CeleryTopology, component: str) -> int | None:
    """The PID ``start_component`` last recorded for ``component``, while it is alive."""
    from resilience.lab.daemons import is_alive

    try:
        pid = int((topo.components_dir / f"{component}.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if is_alive(pid) else None


# -- the broker ------------------------------------------------------------------------------------

def start_broker(topo: CeleryTopology, timeout_s: float = 10) -> int:
    """The Celery broker: a redis-server of this home (idempotent), no persistence (a lost broker loses
    queued messages; the scheduler's adoption and heartbeat timeouts deal with what was in flight)."""
    from resilience.lab.daemons import log_tail, start_daemon, wait_for
    from resilience.lab.redis_server import ping

    binary = shutil.which("redis-server")
    if not binary:
        raise RuntimeError("redis-server not found: apt-get install redis-server (make deps)")
    topo.broker_dir.mkdir(parents=True, exist_ok=True)
    conf = topo.broker_dir / "redis.conf"
    conf.write_text("\n".join([f"bind {HOST}", f"port {topo.broker_port}", "protected-mode yes",
                               f"dir {topo.broker_dir}", 'save ""', "appendonly no", "daemonize no",
                               "set-proc-title no", 'logfile ""', ""]))
    pid = start_daemon([binary, str(conf)], topo.broker_pid_file, topo.broker_dir / "redis.log")
    if not wait_for(lambda: ping(HOST, topo.broker_port), timeout_s):
        raise RuntimeError(f"the Celery broker on {HOST}:{topo.broker_port} did not answer PING within "
                           f"{timeout_s:g} s\n{log_tail(topo.broker_dir / 'redis.log')}")
    return pid


def stop_broker(topo: CeleryTopology) -> bool:
    from resilience.lab.daemons import stop_daemon

    return stop_daemon(topo.broker_pid_file, name="Celery broker (redis-server)")


# -- up / down ---------------------------------------------------------------------------------------

def migrate(topo: CeleryTopology, env: dict[str, str], timeout_s: float = 300) -> None:
    """``airflow db migrate`` once, before any component starts (standalone does it itself)."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    topo.components_dir.mkdir(parents=True, exist_ok=True)
    with topo.logfile("db-migrate").open("ab") as out:
        done = subprocess.run([airflow, "db", "migrate"], env=env, stdout=out, stderr=subprocess.STDOUT,
                              cwd=topo.sa.home, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate exited {done.returncode}; see {topo.logfile('db-migrate')}")


def live_jobs(topo: CeleryTopology, lab_state: dict[str, Any], job_type: str) -> list[tuple[int, float]]:
    """(job id, seconds since its last heartbeat) of the running ``job_type`` jobs (``TriggererJob``,
    ``SchedulerJob``, ``DagProcessorJob``) within their health threshold, from the metadata DB."""
    import psycopg

    threshold = float(HA_SETTINGS["AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD"])
    with psycopg.connect(metadata_dsn(topo, lab_state), connect_timeout=5) as conn:
        table = conn.execute("SELECT to_regclass('job') IS NOT NULL").fetchone()
        if not (table and table[0]):
            return []
        rows = conn.execute(
            "SELECT id, extract(epoch FROM clock_timestamp() - latest_heartbeat)::float8 FROM job"
            " WHERE job_type = %s AND end_date IS NULL AND state = 'running'"
            " AND latest_heartbeat > clock_timestamp() - make_interval(secs => %s) ORDER BY id",
            (job_type, threshold)).fetchall()
    return [(int(i), float(age)) for i, age in rows]


def metadata_dsn(topo: CeleryTopology, lab_state: dict[str, Any]) -> str:
    """The metadata DB as a libpq URI (psycopg 3), for reading Airflow's own tables."""
    return metadata_db_uri(topo.sa, lab_state).replace("postgresql+psycopg2://", "postgresql://", 1)


def worker_ready_since(topo: CeleryTopology, worker: str, offset: int) -> bool:
    """The worker logged ``... ready.`` after byte ``offset`` of its log (this start, not an earlier one)."""
    try:
        with topo.logfile(worker).open("rb") as f:
            f.seek(offset)
            return b" ready." in f.read()
    except OSError:
        return False


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def up(topo: CeleryTopology, lab_state: dict[str, Any] | None, timeout_s: float = 240,
       schedules: bool = True, extra_env: dict[str, str] | None = None) -> None:
    """Start the whole topology (idempotent: a home whose API answers is left as it is) and wait until
    the API answers, both triggerers heartbeat and both workers consume the queue. ``extra_env``
    overrides the shared environment (a benchmark's DAG folder)."""
    if not lab_state:
        raise RuntimeError("the Celery topology keeps its metadata on the lab's control-plane PostgreSQL: "
                           "run `resilience lab up` first")
    sa = topo.sa
    if not prepare_home(sa, lab_state):
        return
    env = {**celery_env(topo, lab_state, schedules), **(extra_env or {})}
    started = time.monotonic()
    start_broker(topo)
    log.info("Migrating the metadata DB of %s", sa.home)
    migrate(topo, env)
    ensure_blast_radius_pool(env)
    offsets = {w: _log_size(topo.logfile(w)) for w in WORKERS}
    procs = {c: start_component(topo, c, env) for c in COMPONENTS}
    deadline = started + timeout_s

    def ready() -> list[str]:
        waiting = [] if healthy(sa) else ["api-server"]
        waiting += [w for w in WORKERS if not worker_ready_since(topo, w, offsets[w])]
        if not waiting and len(live_jobs(topo, lab_state, "TriggererJob")) < len(TRIGGERERS):
            waiting.append("triggerers' heartbeats")
        return waiting

    while waiting := ready():
        dead = {c: p.returncode for c, p in procs.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"Airflow components exited: {dead}; see their logs in {topo.components_dir}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Celery topology not ready after {timeout_s:g} s (waiting for {waiting}); "
                               f"see {topo.components_dir}")
        time.sleep(1)
    log.info("Celery topology up in %.0f s at %s: %s", time.monotonic() - started, sa.base_url,
             ", ".join(f"{c} {p.pid}" for c, p in procs.items()))


def down(topo: CeleryTopology, timeout_s: float = 30) -> None:
    """Stop every Airflow process of the home (workers' task processes included), then the broker."""
    from resilience import airflow_local

    airflow_local.down(topo.sa, timeout_s)
    if stop_broker(topo):
        log.info("Stopped the Celery broker on %s:%d", HOST, topo.broker_port)
    with contextlib.suppress(OSError):
        for pid_file in topo.components_dir.glob("*.pid"):
            pid_file.unlink()


def from_env() -> CeleryTopology:
    return CeleryTopology(Standalone.from_env())


def is_celery_home(sa: Standalone) -> bool:
    """Whether ``sa``'s home holds a Celery topology (its broker's pid file or component logs)."""
    topo = CeleryTopology(sa)
    return topo.broker_pid_file.exists() or topo.components_dir.is_dir()


