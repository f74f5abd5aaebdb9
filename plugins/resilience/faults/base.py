"""What every fault is: a plan (decided before the ledger row), an inject, an idempotent revert.

The plan is everything revert needs that is known before the side effect; ``inject`` returns
what it learnt while acting (a killed PID, a previous value), stored in the ledger as
``revert_info``. Both are plain JSON so any process (a teardown task, the guard in the
triggerer, ``chaos_abort``) can revert from the ledger row alone.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, ClassVar, Protocol

# scenario -> "module:Class"; imported only when used (DAG files list the names, not the code)
SCENARIOS: dict[str, str] = {
    "pod-kill": "resilience.faults.pod_kill:PodKill",
    "redis-unavailable": "resilience.faults.redis_unavailable:RedisUnavailable",
    "s3-5xx": "resilience.faults.s3_5xx:S35xx",
    "postgres-failover": "resilience.faults.postgres_failover:PostgresFailover",
    "memory-pressure": "resilience.faults.memory_pressure:MemoryPressure",
}


class Fault(Protocol):
    scenario: ClassVar[str]

    def plan(self, platform: Any, options: dict[str, Any]) -> dict[str, Any]:
        """Validate ``options`` against the platform and decide the targets; no side effect."""

    def inject(self, platform: Any, plan: dict[str, Any]) -> dict[str, Any]:
        """Cause the fault; return what revert needs to know about what was done."""

    def revert(self, platform: Any, plan: dict[str, Any], revert_info: dict[str, Any]) -> dict[str, Any]:
        """Undo the fault and wait until the system is whole again; safe to call twice.

        Returns what was observed while undoing it (new PIDs, OOM counters), kept in the ledger."""


def get_fault(scenario: str) -> Fault:
    try:
        module, cls = SCENARIOS[scenario].split(":")
    except KeyError:
        raise ValueError(f"scenario: {scenario!r} is not one of {sorted(SCENARIOS)}") from None
    return getattr(import_module(module), cls)()
