"""redis-unavailable: stop every replica of the cache; revert runs exactly as many as it had and waits for them.

On Kubernetes the cache's Deployment/StatefulSet is scaled to 0 and back to the recorded count (not a
blind number); the lab stops and starts its one redis-server.

Dead-man switch: with the plan's ``deadline_epoch_s`` the platform starts the cache by itself at that
moment unless the revert came first (the lab: a detached watchdog, :mod:`resilience.lab.deadman`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, ClassVar

from resilience.faults.deadline import plan_deadline
from resilience.plan import PlannedCall

if TYPE_CHECKING:
    from resilience.chaos.expectations import Measurement
    from resilience.platforms.base import Platform

log = logging.getLogger(__name__)


class RedisUnavailable:
    scenario: ClassVar[str] = "redis-unavailable"

    def plan(self, platform: Platform, options: dict[str, Any]) -> dict[str, Any]:
        if options:
            raise ValueError(f"options: redis-unavailable takes none, got {sorted(options)}")
        state = platform.cache.cache_state()
        if not state.alive:
            raise ValueError("redis-unavailable: the cache is already down; refusing to start from a broken state")
        return {"replicas": state.replicas}

    def planned_calls(self, plan: dict[str, Any]) -> list[PlannedCall]:
        return [PlannedCall("inject", "cache", "stop_cache", {"deadline_epoch_s": plan.get("deadline_epoch_s")}),
                PlannedCall("revert", "cache", "start_cache", {"replicas": plan["replicas"]})]

    def inject(self, platform: Platform, plan: dict[str, Any]) -> dict[str, Any]:
        deadline = plan_deadline(plan, time.time())
        if deadline is None:
            log.warning("redis-unavailable: the plan has no deadline_epoch_s: the cache stays down until reverted")
        before = platform.cache.stop_cache(deadline)
        return {"restarts_by_itself_at": deadline, "replicas_before": before.replicas}

    def revert(self, platform: Platform, plan: dict[str, Any], revert_info: dict[str, Any]) -> dict[str, Any]:
        """Back to the replica count recorded before the stop (the inject's, else the plan's; a plan from
        before the count was recorded had the lab's one server)."""
        replicas = int(revert_info.get("replicas_before") or plan.get("replicas") or 1)
        state = platform.cache.start_cache(replicas)
        return {"cache_alive": state.alive, "replicas": state.replicas}

    @staticmethod
    def measurements(observed: dict[str, Any]) -> dict[str, Measurement]:
        return {}  # its expectations are measured over the fault window (Prometheus)
