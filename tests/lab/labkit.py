"""Helpers of the lab's integration tests: a real lab in a temp dir, CLI calls, HTTP and SQL probes.

Each test module brings up its own lab (module scope) in a temporary dir under /tmp (mode 755)
on port base 25320 (override: RESILIENCE_TEST_LAB_PORT_BASE), so a developer's lab on 24320
and other test labs (56320, 57320) are left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

PORT_BASE = int(os.environ.get("RESILIENCE_TEST_LAB_PORT_BASE", "25320"))
TOOLS = ("pgbackrest", "prometheus", "redis-server", "patroni", "etcd")
T = TypeVar("T")

needs_lab_tools = pytest.mark.skipif(
    not all(shutil.which(t) for t in TOOLS) or not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
    reason="needs postgresql, pgbackrest, prometheus and redis-server installed")


def cgroups_v1_memory() -> bool:
    """True when memory hogs can run here (the cgroups v1 memory controller is ours to use)."""
    from resilience.lab.errors import LabError
    from resilience.lab.memhog import own_memory_cgroup

    try:
        own_memory_cgroup()
    except (LabError, OSError):
        return False
    return shutil.which("stress-ng") is not None


@dataclass
class Lab:
    root: Path
    lab_dir: Path
    env: dict[str, str]
    up_s: float
    status: dict[str, Any]

    @property
    def state(self) -> dict[str, Any]:
        """lab.json as it is now, with the database roles as Patroni reports them."""
        from resilience.lab.state import load_lab_state, with_current_roles

        return with_current_roles(load_lab_state(self.lab_dir))


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "resilience.cli", "lab", *args], env=env, text=True,
                          capture_output=True, timeout=180, check=False)


def status_json(env: dict[str, str]) -> dict[str, Any]:
    return json.loads(run_cli("status", "--json", env=env).stdout)


@contextlib.contextmanager
def running_lab(port_base: int = PORT_BASE) -> Iterator[Lab]:
    """``resilience lab up`` in a fresh temp dir; ``down --purge`` afterwards, whatever happened."""
    root = Path(tempfile.mkdtemp(prefix="resilience-lab-test-", dir="/tmp"))
    root.chmod(0o755)
    lab_dir = root / "lab"
    env = {**os.environ, "RESILIENCE_LAB_DIR": str(lab_dir), "RESILIENCE_LAB_PORT_BASE": str(port_base)}
    started = time.monotonic()
    proc = run_cli("up", env=env)
    up_s = time.monotonic() - started
    try:
        assert proc.returncode == 0, f"lab up failed:\n{proc.stderr}"
        yield Lab(root, lab_dir, env, up_s, status_json(env))
    finally:
        run_cli("down", "--purge", env=env)
        shutil.rmtree(root, ignore_errors=True)


def request(url: str, data: bytes | None = None, method: str | None = None,
            timeout_s: float = 5) -> tuple[int, bytes, dict[str, str]]:
    """(status, body, headers) of one HTTP request; HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def get(url: str) -> tuple[int, bytes]:
    status, body, _ = request(url, timeout_s=3)
    return status, body


def eventually(check: Callable[[], T], timeout_s: float, interval_s: float = 0.2) -> T:
    """Poll ``check()`` until it returns a truthy value; return that value (or the last falsy one)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


def pg(state: dict[str, Any], node: str) -> psycopg.Connection:
    """An autocommit connection to the app database on the ``primary`` or ``replica`` role."""
    db = state["app_db"]
    return psycopg.connect(host=db[node]["host"], port=db[node]["port"], user=db["user"],
                           password=db["password"], dbname=db["dbname"], connect_timeout=3, autocommit=True)


def metric_sum(url: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` (with ``labels``) in a Prometheus text exposition at ``url``."""
    _, body = get(url)
    total = 0.0
    for line in body.decode().splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        metric = series.split("{", 1)[0]
        if metric == name and all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


def prom_query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    status, body = get(f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    return json.loads(body)["data"]["result"] if status == 200 else []


def descendants(roots: set[int]) -> set[int]:
    """``roots`` and every live process below them (postgres backends, replicas, stress-ng workers ...)."""
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent_of[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found = set(roots)
    while True:
        more = {pid for pid, ppid in parent_of.items() if ppid in found} - found
        if not more:
            return found
        found |= more


def pgbackrest(state: dict, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "pgbackrest",
                           f"--config={state['pgbackrest']['config']}", "--stanza=app", *args],
                          capture_output=True, text=True, cwd="/", timeout=120, check=False)
