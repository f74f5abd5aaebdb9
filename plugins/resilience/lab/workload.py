"""Start/stop the lab's workload daemons: the writer (:mod:`resilience.lab.writer`, straight into
PostgreSQL, so RPO is measurable) and the load generator (:mod:`resilience.lab.loadgen`, HTTP
traffic to the region DNS points at, so the SLOs have something to measure and a cutover moves it)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from resilience.lab.daemons import current_pid, python_env, running_pid, start_daemon, stop_daemon
from resilience.lab.layout import DNS_RECORD, DNS_TTL_S, DNS_ZONE, S3_ACCESS_KEY, S3_SECRET_KEY, LabLayout
from resilience.lab.writer import ENV_DSN, missing_posts, read_journal

log = logging.getLogger(__name__)

LOADGEN = "loadgen"


def pid_file(layout: LabLayout) -> Path:
    return layout.run_dir / "writer.pid"


def journal_file(layout: LabLayout) -> Path:
    """The writer's journal of acknowledged commits (``post_id epoch`` per line)."""
    return layout.run_dir / "writer-acked.log"


def argv(layout: LabLayout, rate_per_s: float = 10.0) -> list[str]:
    return [sys.executable, "-m", "resilience.lab.writer", "--rate", f"{rate_per_s:g}", "--label", str(layout.lab_dir),
            "--journal", str(journal_file(layout))]


def acknowledged_writes(layout: LabLayout, since_epoch_s: float) -> int:
    """How many commits the writer was told succeeded since ``since_epoch_s`` (its journal only)."""
    return len(read_journal(journal_file(layout), since_epoch_s, None))


def acknowledged_writes_lost(layout: LabLayout, dsn: str, since_epoch_s: float,
                             until_epoch_s: float | None = None) -> dict[str, int]:
    """How many commits the writer was told succeeded in the window, and how many of them the app
    database no longer has (a failover that lost acknowledged writes)."""
    acked = read_journal(journal_file(layout), since_epoch_s, until_epoch_s)
    return {"acknowledged": len(acked), "lost": len(missing_posts(dsn, acked))}


def is_running(layout: LabLayout) -> int | None:
    return running_pid(pid_file(layout))


def start_writer(layout: LabLayout, dsn: str, rate_per_s: float = 10.0) -> int:
    """Start the writer on ``dsn`` (passed in the environment); no-op if it already runs."""
    existing = is_running(layout)
    if existing is not None:
        log.info("Writer already up (pid %d)", existing)
        return existing
    log_file = layout.run_dir / "writer.log"
    log.info("Starting writer: %g transactions/s into the app database via the read-write DSN (log %s)",
             rate_per_s, log_file)
    return start_daemon(argv(layout, rate_per_s), pid_file(layout), log_file, env=python_env(**{ENV_DSN: dsn}))


def stop_writer(layout: LabLayout) -> bool:
    return stop_daemon(pid_file(layout), timeout_s=10, name="writer")


def loadgen_argv(layout: LabLayout) -> list[str]:
    """Resolve ``api.resilience.lab.`` on moto's Route53 every TTL; the keys go in the environment."""
    return [sys.executable, "-m", "resilience.lab.loadgen", "--dns-endpoint", layout.url("moto"),
            "--dns-zone", DNS_ZONE, "--dns-record", DNS_RECORD, "--dns-ttl", f"{DNS_TTL_S:g}",
            "--port", str(layout.port("lb")), "--metrics-port", str(layout.port("loadgen")),
            "--rate", f"{layout.load_rate:g}"]


def loadgen_running(layout: LabLayout) -> int | None:
    return running_pid(layout.pid_file(LOADGEN))


def start_loadgen(layout: LabLayout) -> int:
    """Start the load generator at ``layout.load_rate`` requests/s (restarted when the rate changed)."""
    command = loadgen_argv(layout)
    existing = current_pid(command, layout.pid_file(LOADGEN), "load generator")
    if existing is not None:
        log.info("Load generator already up (pid %d, %g requests/s)", existing, layout.load_rate)
        return existing
    log.info("Starting load generator: %g requests/s to %s via DNS (port %d; metrics %s; log %s)",
             layout.load_rate, DNS_RECORD, layout.port("lb"), layout.url("loadgen"), layout.log_file(LOADGEN))
    env = python_env(AWS_ACCESS_KEY_ID=S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET_KEY)
    return start_daemon(command, layout.pid_file(LOADGEN), layout.log_file(LOADGEN), env=env)


def stop_loadgen(layout: LabLayout) -> bool:
    return stop_daemon(layout.pid_file(LOADGEN), timeout_s=5, name="load generator")
