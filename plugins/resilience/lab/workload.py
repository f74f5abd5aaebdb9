"""Start/stop the lab's writer daemon (:mod:`resilience.lab.writer`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from resilience.lab.daemons import python_env, running_pid, start_daemon, stop_daemon
from resilience.lab.layout import LabLayout
from resilience.lab.writer import ENV_DSN

log = logging.getLogger(__name__)


def pid_file(layout: LabLayout) -> Path:
    return layout.run_dir / "writer.pid"


def argv(layout: LabLayout, rate_per_s: float = 10.0) -> list[str]:
    return [sys.executable, "-m", "resilience.lab.writer", "--rate", f"{rate_per_s:g}", "--label", str(layout.lab_dir)]


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
