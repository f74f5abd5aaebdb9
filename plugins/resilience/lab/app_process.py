"""Run the demo app as a background process against any DSN (the lab's, or a restored sandbox's).

The DR drill uses :func:`start_app` / :func:`stop_app` to check application connectivity on
a restored database. The DSN travels in the environment, never in argv.
"""

from __future__ import annotations

import logging
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from resilience.lab.app import ENV_DSN, AppConfig
from resilience.lab.daemons import is_alive, log_tail, python_env, running_pid, start_daemon, stop_daemon
from resilience.lab.errors import LabError

log = logging.getLogger(__name__)


def app_argv(port: int, host: str = "127.0.0.1") -> list[str]:
    return [sys.executable, "-m", "resilience.lab.app", "--port", str(port), "--host", host]


def app_pid_file(run_dir: Path, port: int) -> Path:
    return run_dir / f"app-{port}.pid"


def app_log_file(run_dir: Path, port: int) -> Path:
    return run_dir / f"app-{port}.log"


def http_ok(url: str, timeout_s: float = 1.0) -> bool:
    """True if ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def wait_http_ok(url: str, timeout_s: float, still_running: Callable[[], bool] = lambda: True) -> bool:
    """Poll ``url`` until it answers 200; give up early when ``still_running()`` turns false."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if http_ok(url):
            return True
        if not still_running():
            return False
        time.sleep(0.05)
    return False


def app_is_running(port: int, run_dir: Path) -> int | None:
    """PID of the demo app started in ``run_dir`` on ``port``, if it still runs."""
    return running_pid(app_pid_file(run_dir, port))


def start_app(
    dsn: str,
    port: int,
    run_dir: Path | None = None,
    *,
    log_path: Path | None = None,
    host: str = "127.0.0.1",
    timeout_s: float = 15.0,
    extra_env: Mapping[str, str] | None = None,
) -> int:
    """Start the demo app on ``host:port`` against ``dsn`` and wait until ``/health`` answers.

    The pid file is ``<run_dir>/app-<port>.pid``; the log is ``log_path`` if given, else
    ``<run_dir>/app-<port>.log`` (``run_dir`` defaults to ``log_path``'s directory).
    Idempotent: an app already running there is left alone and its PID returned. Raises
    LabError (with the log's tail) if it exits or does not answer within ``timeout_s``.
    """
    if run_dir is None:
        if log_path is None:
            raise TypeError("start_app: give run_dir or log_path")
        run_dir = log_path.parent
    pid_file, log_file = app_pid_file(run_dir, port), log_path or app_log_file(run_dir, port)
    url = f"http://{host}:{port}"
    existing = running_pid(pid_file)
    if existing is not None:
        log.info("Demo app already up on %s (pid %d)", url, existing)
        return existing
    database = AppConfig(dsn=dsn).describe_database()
    log.info("Starting demo app on %s (database %s, log %s)", url, database, log_file)
    env = python_env(**{ENV_DSN: dsn, **(extra_env or {})})
    pid = start_daemon(app_argv(port, host), pid_file, log_file, env=env)
    if not wait_http_ok(f"{url}/health", timeout_s, lambda: is_alive(pid)):
        stop_daemon(pid_file, timeout_s=5, name=f"demo app on port {port}")
        raise LabError(f"demo app on {url} did not answer /health within {timeout_s:.0f} s\n"
                       f"--- {log_file}:\n{log_tail(log_file)}")
    log.info("Demo app up on %s (pid %d)", url, pid)
    return pid


def stop_app(port: int, run_dir: Path, timeout_s: float = 10.0) -> bool:
    """SIGTERM (then SIGKILL) the demo app started by :func:`start_app`; True if one was running."""
    return stop_daemon(app_pid_file(run_dir, port), timeout_s=timeout_s, name=f"demo app on port {port}")
