"""Waiting for a workload to be whole again: one loop for every platform's ``wait_ready``."""

from __future__ import annotations

import time
from collections.abc import Callable

from resilience.platforms.types import Replica, WorkloadReady


def wait_ready(replicas: Callable[[], list[Replica]], expected: int, not_instances: set[str], timeout_s: float,
               poll_s: float, what: str) -> WorkloadReady:
    """Poll ``replicas`` until ``expected`` are ready, none of them one of ``not_instances``; raise
    TimeoutError naming the replicas still waited for (``what``: "pods of ofm-social-os-api")."""
    started = time.monotonic()
    while True:
        current = replicas()
        ready = [r for r in current if r.ready and r.instance not in not_instances]
        if len(ready) >= expected:
            return WorkloadReady(round(time.monotonic() - started, 3), tuple(ready))
        if time.monotonic() - started >= timeout_s:
            waiting = ", ".join(f"{r.name} ({r.instance}, {'ready' if r.ready else 'not ready'})"
                                for r in current if r not in ready)
            raise TimeoutError(f"{len(ready)} of {expected} {what} ready and new after {timeout_s:g} s; "
                               f"still waiting for: {waiting or 'replacements that do not exist yet'}")
        time.sleep(poll_s)
