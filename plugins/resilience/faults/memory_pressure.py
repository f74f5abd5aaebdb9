"""memory-pressure: a memory hog in a memory-limited cgroup; revert kills it and removes the cgroup.

Whether only the hog was OOM-killed is read from the cgroup's counters (stress-ng reports
success even when its workers die), and the replicas' health is checked beside it.
"""

from __future__ import annotations

from typing import Any, ClassVar

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
        return platform.start_memory_hog(plan["name"], plan["limit_mb"], plan["hog_mb"])

    def revert(self, platform: Any, plan: dict[str, Any], revert_info: dict[str, Any]) -> dict[str, Any]:
        """Read the cgroup's OOM counters before removing it, and whether every replica survived."""
        counters = platform.memory_hog_counters(plan["name"])
        platform.stop_memory_hog(plan["name"])
        replicas = platform.replicas()
        return {"cgroup": counters, "replicas_healthy": sum(r["healthy"] for r in replicas),
                "replicas_total": len(replicas),
                "only_hog_killed": bool(counters and counters.get("oom_kill", 0) > 0)
                and all(r["healthy"] for r in replicas)}
