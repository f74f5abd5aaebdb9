"""A fault's planned life, decided before its ledger row is written (pure; ``now`` passed in).

The real timeline is: inject -> the guard starts (the scheduler, the task, the trigger) ->
``duration_s`` of guarded fault -> revert. ``deadline_epoch_s`` is when the platform ends the
fault by itself if nobody reverted it (the dead-man switch: Airflow may be dead); the ledger's
``expires_in_s`` adds the revert and the environment's grace, after which chaos_abort's sweep
reverts it whatever its run's state says.
"""

from __future__ import annotations

from dataclasses import dataclass

GUARD_START_BUDGET_S = 30.0  # inject -> guard polling, on a loaded scheduler and triggerer
DEADMAN_MARGIN_S = 15.0  # lets the revert teardown act before the platform's own switch does
REVERT_BUDGET_S = 90.0  # the slowest revert waits (replicas back, replica rebuilt)


@dataclass(frozen=True)
class FaultTimeline:
    planned_end_epoch_s: float
    deadline_epoch_s: float
    expires_in_s: float


def fault_timeline(now_epoch_s: float, duration_s: float, orphan_grace_s: float) -> FaultTimeline:
    """When the fault should end, when the platform ends it by itself, and when it is an orphan."""
    if duration_s <= 0:
        raise ValueError(f"duration_s: {duration_s!r} must be > 0")
    if orphan_grace_s < 0:
        raise ValueError(f"orphan_grace_s: {orphan_grace_s!r} must be >= 0")
    planned_end = now_epoch_s + GUARD_START_BUDGET_S + duration_s
    deadline = planned_end + DEADMAN_MARGIN_S
    return FaultTimeline(planned_end, deadline, deadline - now_epoch_s + REVERT_BUDGET_S + orphan_grace_s)


def applied_deadline(planned_deadline_epoch_s: float, applied_at_epoch_s: float, duration_s: float) -> float:
    """The dead-man deadline once the fault is really applied: its window plus the margin, never later
    than the planned one. The guard applies the fault seconds after planning; the platform's switch
    must not wait out the whole guard start budget when all of Airflow is dead."""
    return min(planned_deadline_epoch_s, applied_at_epoch_s + duration_s + DEADMAN_MARGIN_S)
