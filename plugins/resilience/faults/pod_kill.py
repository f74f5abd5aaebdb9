"""pod-kill: SIGKILL app replicas; the platform restarts them (kubelet / lab supervisor)."""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

log = logging.getLogger(__name__)

RESTART_TIMEOUT_S = 60


class PodKill:
    scenario: ClassVar[str] = "pod-kill"

    def plan(self, platform: Any, options: dict[str, Any]) -> dict[str, Any]:
        """Pick ``count`` replicas (or ``percent`` of them, at least one) among the healthy ones."""
        healthy = sorted(r["name"] for r in platform.replicas() if r["healthy"])
        if not healthy:
            raise ValueError("pod-kill: no healthy replica to kill")
        if "percent" in options:
            percent = options["percent"]
            if not 0 < percent <= 100:
                raise ValueError(f"options.percent: {percent!r} must be > 0 and <= 100")
            count = max(1, math.floor(len(healthy) * percent / 100))
        else:
            count = options.get("count", 1)
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(healthy):
                raise ValueError(f"options.count: {count!r} must be an integer in 1..{len(healthy)} (healthy replicas)")
        return {"replicas": healthy[:count], "restart_timeout_s": RESTART_TIMEOUT_S}

    def inject(self, platform: Any, plan: dict[str, Any]) -> dict[str, Any]:
        killed = platform.kill_replicas(plan["replicas"])
        log.info("Injected pod-kill: SIGKILL %s", ", ".join(f"{n} (pid {p})" for n, p in killed.items()))
        return {"killed": killed}

    def revert(self, platform: Any, plan: dict[str, Any], revert_info: dict[str, Any]) -> dict[str, Any]:
        """Nothing to undo by hand: wait until each killed replica runs again under a new PID."""
        killed = revert_info.get("killed") or {name: None for name in plan["replicas"]}
        return {"restarted": platform.wait_replicas_restarted(killed, timeout_s=plan["restart_timeout_s"])}
