"""redis-unavailable: stop the cache server; revert starts it and waits for PING."""

from __future__ import annotations

from typing import Any, ClassVar


class RedisUnavailable:
    scenario: ClassVar[str] = "redis-unavailable"

    def plan(self, platform: Any, options: dict[str, Any]) -> dict[str, Any]:
        if options:
            raise ValueError(f"options: redis-unavailable takes none, got {sorted(options)}")
        if not platform.cache_alive():
            raise ValueError("redis-unavailable: the cache is already down; refusing to start from a broken state")
        return {}

    def inject(self, platform: Any, plan: dict[str, Any]) -> dict[str, Any]:
        platform.stop_cache()
        return {}

    def revert(self, platform: Any, plan: dict[str, Any], revert_info: dict[str, Any]) -> dict[str, Any]:
        platform.start_cache()
        return {"cache_alive": platform.cache_alive()}
