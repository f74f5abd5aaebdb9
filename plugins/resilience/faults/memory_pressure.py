"""memory-pressure: a memory hog in a memory-limited cgroup; revert kills it and removes the cgroup.

Whether only the hog was OOM-killed is read from the cgroup's counters (stress-ng reports
success even when its workers die), and the replicas' health is checked beside it.
Dead-man switch: with the plan's ``deadline_epoch_s`` the hog ends by itself then (stress-ng
``--timeout``); revert still removes its cgroup. The hog is found by its name (from the plan), so a
hog whose record was never written is still stopped.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

from resilience.faults.deadline import plan_deadline

log = logging.getLogger(__name__)

HOG_NAME = "chaos-memory-hog"


class MemoryPressure:
    scenario: ClassVar[str] = "memory-pressure"

    def plan(self, platform: Any, options: dict[str, Any]) -> dict[str, Any]:
        limit_mb, hog_mb = options.get("limit_mb", 128), options.get("hog_mb", 256)
        for name, value in (("limit_mb", limit_mb), ("hog_mb", hog_mb)):
            if isinstance(value, bool) or not isinstance(value, int) or not 16 <= value <= 4096:
                raise ValueError(f"options.{name}: {value!r} must be an integer in 16..4096 (MB)")
        return {"name": HOG_NAME, "limit_mb": limit_mb, "hog_mb": hog_mb}

    def inject(self, platform: Any, plan: dict[str, Any]) -> dict[str, Any]:
        deadline = plan_deadline(plan, time.time())
        if deadline is None:
            log.warning("memory-pressure: the plan has no deadline_epoch_s: the hog runs until reverted")
        return platform.start_memory_hog(plan["name"], plan["limit_mb"], plan["hog_mb"], deadline)

    def revert(self, platform: Any, plan: dict[str, Any], revert_info: dict[str, Any]) -> dict[str, Any]:
        """Read the cgroup's OOM counters before removing it, and whether every replica survived."""
        counters = platform.memory_hog_counters(plan["name"])
        platform.stop_memory_hog(plan["name"])
        replicas = platform.replicas()
        return {"cgroup": counters, "replicas_healthy": sum(r.ready for r in replicas),
                "replicas_total": len(replicas),
                "only_hog_killed": bool(counters and counters.get("oom_kill", 0) > 0)
                and all(r.ready for r in replicas)}
