"""Start a background daemon with a pid file, and stop it without ever hitting a reused PID.

Pid file format: line 1 is the PID (so ``kill $(head -1 FILE)`` works), line 2 is the JSON
argv the program was started with. A PID is only signalled while ``/proc/<pid>/cmdline``
still equals that argv, so a PID reused by another process is never killed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from resilience.lab.osuser import as_user, user_env

log = logging.getLogger(__name__)


def read_cmdline(pid: int) -> list[str] | None:
    """The argv of a live process, or None if there is no such process (or it is a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not raw:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our own exited child (no zombie left behind)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    _reap(pid)
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return fields[0] not in ("Z", "X")


def pid_matches(pid: int, argv: Sequence[str]) -> bool:
    """True if ``pid`` is alive and still runs exactly ``argv``."""
    return is_alive(pid) and read_cmdline(pid) == list(argv)


def write_pid_file(pid_file: Path, pid: int, argv: Sequence[str]) -> None:
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_file.with_suffix(pid_file.suffix + ".tmp")
    tmp.write_text(f"{pid}\n{json.dumps(list(argv))}\n")
    tmp.replace(pid_file)


def read_pid_file(pid_file: Path) -> tuple[int, list[str]] | None:
    """(pid, argv) from a pid file, or None when there is none or it is unreadable."""
    try:
        first, second = pid_file.read_text().splitlines()[:2]
        return int(first), list(json.loads(second))
    except (FileNotFoundError, ValueError):
        return None


def running_pid(pid_file: Path) -> int | None:
    """The PID recorded in ``pid_file`` if that process still runs its recorded argv."""
    record = read_pid_file(pid_file)
    if record and pid_matches(*record):
        return record[0]
    return None


def current_pid(argv: Sequence[str], pid_file: Path, name: str = "daemon") -> int | None:
    """PID of the daemon in ``pid_file`` if it runs exactly ``argv``; a daemon running other
    arguments (an older ``--replicas``, another backend list) is stopped, and None returned."""
    record = read_pid_file(pid_file)
    if record is None or not pid_matches(*record):
        return None
    pid, old = record
    if old == list(argv):
        return pid
    log.info("%s (pid %d) runs with other arguments than wanted: restarting it", name, pid)
    stop_daemon(pid_file, name=name)
    return None


def start_daemon(
    argv: Sequence[str],
    pid_file: Path,
    log_file: Path,
    *,
    user: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | str = "/",
) -> int:
    """Start ``argv`` in its own session, output appended to ``log_file``; return its PID.

    Idempotent: if ``pid_file`` names a live process running ``argv``, that PID is returned
    and nothing is started. ``user`` drops privileges (setpriv) when we are root. ``env`` is
    added to our environment (pass secrets here, never in argv: argv is visible in ``ps``).
    """
    existing = running_pid(pid_file)
    if existing is not None:
        return existing
    log_file.parent.mkdir(parents=True, exist_ok=True)
    full = as_user(argv, user) if user else list(argv)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(user_env(user) if user else {}), **(env or {})},
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    write_pid_file(pid_file, proc.pid, argv)
    return proc.pid


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes; return the last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def stop_pid(pid: int, argv: Sequence[str], timeout_s: float = 10.0, name: str = "process") -> bool:
    """SIGTERM ``pid`` if it still runs ``argv``, SIGKILL after ``timeout_s``; True if it was stopped."""
    if not pid_matches(pid, argv):
        return False
    log.info("Stopping %s (pid %d) with SIGTERM", name, pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    if wait_for(lambda: not is_alive(pid), timeout_s):
        return True
    if pid_matches(pid, argv):
        log.warning("%s (pid %d) still running %.0f s after SIGTERM: sending SIGKILL", name, pid, timeout_s)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return True
        wait_for(lambda: not is_alive(pid), 5.0)
    return True


def stop_daemon(pid_file: Path, timeout_s: float = 10.0, name: str = "daemon") -> bool:
    """Stop the daemon recorded in ``pid_file`` and remove the file; True if a process was stopped.

    A pid file whose PID no longer runs the recorded argv is stale: it is removed and
    nothing is signalled.
    """
    record = read_pid_file(pid_file)
    if record is None:  # none, or not written by start_daemon: nothing we can verify, leave it
        return False
    pid, argv = record
    stopped = stop_pid(pid, argv, timeout_s, name)
    if not stopped:
        log.info("%s is not running (stale pid file %s, pid %d not signalled)", name, pid_file, pid)
    pid_file.unlink(missing_ok=True)
    return stopped


def python_env(**extra: str) -> dict[str, str]:
    """Environment for a ``python -m resilience...`` child: unbuffered, the package importable."""
    import resilience

    package_parent = str(Path(resilience.__file__).resolve().parent.parent)
    pythonpath = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONUNBUFFERED": "1", "PYTHONPATH": pythonpath, **extra}


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file (for error messages)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"(no log at {path})"
