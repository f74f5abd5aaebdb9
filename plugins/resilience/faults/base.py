"""What every fault is: a plan (decided before the ledger row), an inject, an idempotent revert.

The plan is everything revert needs that is known before the side effect; ``inject`` returns
what it learnt while acting (a killed PID, a previous value), stored in the ledger as
``revert_info``. Both are plain JSON so any process (a teardown task, the guard in the
triggerer, ``chaos_abort``) can revert from the ledger row alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from resilience.chaos.expectations import Measurement
    from resilience.plan import PlannedCall
    from resilience.platforms.base import Capability, Platform

# scenario -> "module:Class"; imported only when used (DAG files list the names, not the code)
SCENARIOS: dict[str, str] = {
    "pod-kill": "resilience.faults.pod_kill:PodKill",
    "redis-unavailable": "resilience.faults.redis_unavailable:RedisUnavailable",
    "s3-5xx": "resilience.faults.s3_5xx:S35xx",
    "postgres-failover": "resilience.faults.postgres_failover:PostgresFailover",
    "memory-pressure": "resilience.faults.memory_pressure:MemoryPressure",
}


# scenario -> what it needs from the platform, checked when the run starts (before any side effect)
_CAPABILITIES: dict[str, tuple[Capability, ...]] = {
    "pod-kill": ("workloads",),
    "redis-unavailable": ("cache",),
    "s3-5xx": ("object_store",),
    "postgres-failover": ("database", "write_probe"),  # its verdict counts acknowledged writes lost
    "memory-pressure": ("memory", "workloads"),  # app replicas' restarts prove only the hog was killed
}


def needed_capabilities(scenario: str, options: Mapping[str, Any]) -> tuple[Capability, ...]:
    """What ``scenario`` run with ``options`` needs from the platform."""
    needed = _CAPABILITIES[scenario]
    if scenario == "postgres-failover" and options.get("mode") == "crash":
        needed += ("database_hosts",)  # the crash variant loses a host: only where the platform can
    return needed


class Fault(Protocol):
    scenario: ClassVar[str]

    def plan(self, platform: Platform, options: dict[str, Any]) -> dict[str, Any]:
        """Validate ``options`` against the platform and decide the targets; no side effect."""

    def planned_calls(self, plan: dict[str, Any]) -> list[PlannedCall]:
        """The platform calls inject and revert would make for ``plan`` (plan mode lists them, makes none)."""

    def inject(self, platform: Platform, plan: dict[str, Any]) -> dict[str, Any]:
        """Cause the fault; return what revert needs to know about what was done."""

    def revert(self, platform: Platform, plan: dict[str, Any], revert_info: dict[str, Any]) -> dict[str, Any]:
        """Undo the fault and wait until the system is whole again; safe to call twice.

        Returns what was observed while undoing it (new PIDs, OOM counters), kept in the ledger."""

    def measurements(self, observed: dict[str, Any]) -> dict[str, Measurement]:
        """The runbook expectations' measures (``chaos.expectations.MEASURES``, source ``fault``) read from what
        revert observed; pure."""


def get_fault(scenario: str) -> Fault:
    try:
        module, cls = SCENARIOS[scenario].split(":")
    except KeyError:
        raise ValueError(f"scenario: {scenario!r} is not one of {sorted(SCENARIOS)}") from None
    return getattr(import_module(module), cls)()
