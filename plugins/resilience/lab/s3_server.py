"""The lab's S3 endpoint: a moto server (plain HTTP) behind the fault proxy, bucket ``uploads``.

moto keeps its state in memory: the bucket is (re)created on every ``up`` (a no-op when it
exists), so a restarted moto serves an empty bucket, as a freshly provisioned one would.
"""

from __future__ import annotations

import logging
import sys
import urllib.error
import urllib.request

from resilience.lab.app_process import wait_http_ok
from resilience.lab.daemons import current_pid, is_alive, log_tail, python_env, start_daemon, stop_daemon
from resilience.lab.errors import LabError
from resilience.lab.layout import HOST, S3_BUCKET, LabLayout

log = logging.getLogger(__name__)

MOTO, PROXY = "moto", "s3-proxy"


def moto_argv(layout: LabLayout) -> list[str]:
    return [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(layout.port("moto"))]


def proxy_argv(layout: LabLayout) -> list[str]:
    return [sys.executable, "-m", "resilience.lab.s3_proxy", "--port", str(layout.port("s3_proxy")),
            "--upstream", layout.url("moto")]


def _start(name: str, argv: list[str], layout: LabLayout, health_url: str, title: str) -> int:
    pid_file = layout.pid_file(name)
    existing = current_pid(argv, pid_file, title)
    if existing is not None:
        log.info("%s already up on %s (pid %d)", title, health_url.rsplit("/", 1)[0], existing)
        return existing
    log.info("Starting %s on %s", title, health_url.rsplit("/", 1)[0])
    return start_daemon(argv, pid_file, layout.log_file(name), env=python_env())


def _wait(name: str, pid: int, layout: LabLayout, health_url: str, title: str, timeout_s: float) -> None:
    if not wait_http_ok(health_url, timeout_s, lambda: is_alive(pid)):
        stop_daemon(layout.pid_file(name), timeout_s=5, name=title)
        raise LabError(f"{title} did not answer {health_url} within {timeout_s:.0f} s\n"
                       f"--- {layout.log_file(name)}:\n{log_tail(layout.log_file(name))}")


def start_moto(layout: LabLayout) -> int:
    """Start moto without waiting (its imports take ~1 s): call :func:`finish_start` later."""
    return _start(MOTO, moto_argv(layout), layout, f"{layout.url('moto')}/moto-api/", "moto S3 server")


def create_bucket(layout: LabLayout, bucket: str = S3_BUCKET) -> None:
    """``PUT /<bucket>`` on moto directly (path style); an existing bucket is fine."""
    request = urllib.request.Request(f"{layout.url('moto')}/{bucket}", method="PUT", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=5):
            pass
    except urllib.error.HTTPError as exc:
        if exc.code != 409:  # BucketAlreadyOwnedByYou
            raise LabError(f"creating bucket {bucket} on moto failed: HTTP {exc.code}") from exc
    log.info("S3 bucket %s ready on %s", bucket, layout.url("moto"))


def finish_start(layout: LabLayout, moto_pid: int, timeout_s: float = 20.0) -> int:
    """Wait for moto, create the bucket, start the fault proxy in front of it; return the proxy's PID."""
    _wait(MOTO, moto_pid, layout, f"{layout.url('moto')}/moto-api/", "moto S3 server", timeout_s)
    create_bucket(layout)
    fault_url = f"{layout.url('s3_proxy')}/__fault__"
    pid = _start(PROXY, proxy_argv(layout), layout, fault_url, "S3 fault proxy")
    _wait(PROXY, pid, layout, fault_url, "S3 fault proxy", timeout_s)
    return pid


def stop(layout: LabLayout) -> None:
    stop_daemon(layout.pid_file(PROXY), timeout_s=5, name="S3 fault proxy")
    stop_daemon(layout.pid_file(MOTO), timeout_s=5, name="moto S3 server")
