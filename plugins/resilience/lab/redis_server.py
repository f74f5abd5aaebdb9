"""The lab's Redis: one ``redis-server`` on 127.0.0.1, its own data dir, AOF every second.

Configured by a file (``<lab>/redis/redis.conf``) rather than argv, and with
``set-proc-title no``, so ``/proc/<pid>/cmdline`` keeps the argv the pid file records.
Start and stop hold a lock file (``run/redis.lock``): a revert and the fault's dead-man switch
(:mod:`resilience.lab.deadman`) may start Redis at the same moment, and only one may.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import shutil
import socket
import time
from collections.abc import Iterator

from resilience.lab.daemons import is_alive, log_tail, running_pid, start_daemon, stop_daemon, wait_for
from resilience.lab.errors import LabError
from resilience.lab.layout import HOST, LabLayout

log = logging.getLogger(__name__)

NAME = "redis"


def render_config(layout: LabLayout) -> str:
    return "\n".join([
        "# Written by resilience.lab on every `resilience lab up`.",
        f"bind {HOST}",
        f"port {layout.port('redis')}",
        "protected-mode yes",
        f"dir {layout.redis_dir}",
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        "daemonize no",
        "set-proc-title no",
        'logfile ""',
        "maxmemory 64mb",
        "maxmemory-policy allkeys-lru",
        "",
    ])


def argv(layout: LabLayout) -> list[str]:
    binary = shutil.which("redis-server")
    if not binary:
        raise LabError("redis-server not found: apt-get install redis-server")
    return [binary, str(layout.redis_dir / "redis.conf")]


def ping(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """True if a Redis server answers ``PING`` on ``host:port`` within ``timeout_s``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def is_running(layout: LabLayout) -> int | None:
    return running_pid(layout.pid_file(NAME))


@contextlib.contextmanager
def _locked(layout: LabLayout, timeout_s: float = 30.0) -> Iterator[None]:
    """Hold ``run/redis.lock`` (bounded wait: LabError after ``timeout_s``); released if the holder dies."""
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    with open(layout.run_dir / "redis.lock", "a") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LabError(f"Redis: another process held {layout.run_dir / 'redis.lock'} for "
                                   f"{timeout_s:.0f} s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def start(layout: LabLayout, timeout_s: float = 10.0) -> int:
    """Start Redis (idempotent) and wait until it answers PING; return its PID."""
    with _locked(layout):
        return _start(layout, timeout_s)


def _start(layout: LabLayout, timeout_s: float) -> int:
    existing = is_running(layout)
    if existing is not None:
        log.info("Redis already up on %s:%d (pid %d)", HOST, layout.port("redis"), existing)
        return existing
    layout.redis_dir.mkdir(parents=True, exist_ok=True)
    conf = layout.redis_dir / "redis.conf"
    conf.write_text(render_config(layout))
    log_file = layout.log_file(NAME)
    log.info("Starting Redis on %s:%d (AOF everysec in %s)", HOST, layout.port("redis"), layout.redis_dir)
    pid = start_daemon(argv(layout), layout.pid_file(NAME), log_file)
    if not wait_for(lambda: ping(HOST, layout.port("redis")) or not is_alive(pid), timeout_s) or not is_alive(pid):
        stop_daemon(layout.pid_file(NAME), timeout_s=5, name="Redis")
        raise LabError(f"Redis on {HOST}:{layout.port('redis')} did not answer PING within {timeout_s:.0f} s\n"
                       f"--- {log_file}:\n{log_tail(log_file)}")
    return pid


def stop(layout: LabLayout) -> bool:
    """SIGTERM Redis (it flushes the AOF first); True if it was running."""
    with _locked(layout):
        return stop_daemon(layout.pid_file(NAME), timeout_s=10, name="Redis")
