"""redis-unavailable: stop the cache server; revert starts it and waits for PING.

Dead-man switch: with the plan's ``deadline_epoch_s`` the platform starts the cache by itself at that
moment unless the revert came first (the lab: a detached watchdog, :mod:`resilience.lab.deadman`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

from resilience.faults.deadline import plan_deadline

log = logging.getLogger(__name__)


class RedisUnavailable:
    scenario: ClassVar[str] = "redis-unavailable"

    def plan(self, platform: Any, options: dict[str, Any]) -> dict[str, Any]:
        if options:
            raise ValueError(f"options: redis-unavailable takes none, got {sorted(options)}")
        if not platform.cache_alive():
            raise ValueError("redis-unavailable: the cache is already down; refusing to start from a broken state")
        return {}

    def inject(self, platform: Any, plan: dict[str, Any]) -> dict[str, Any]:
        deadline = plan_deadline(plan, time.time())
        if deadline is None:
            log.warning("redis-unavailable: the plan has no deadline_epoch_s: the cache stays down until reverted")
        platform.stop_cache(deadline)
        return {"restarts_by_itself_at": deadline}

    def revert(self, platform: Any, plan: dict[str, Any], revert_info: dict[str, Any]) -> dict[str, Any]:
        platform.start_cache()
        return {"cache_alive": platform.cache_alive()}
