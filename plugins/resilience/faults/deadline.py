"""The dead-man deadline a fault carries in its plan: when it must end by itself if nobody reverts it.

The campaign puts ``deadline_epoch_s`` (UTC epoch seconds, covering the guard's start delay, the
duration and the revert) into the plan before the ledger row is written. A plan without it (an
old ledger row) has no dead-man switch. Pure: ``now_s`` is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

DEADLINE_KEY = "deadline_epoch_s"


def plan_deadline(plan: Mapping[str, Any], now_s: float) -> float | None:
    """The plan's deadline (epoch s), None when it has none; ValueError when it is bad or already past.

    Exactly ``now_s`` counts as past: a fault that would end the moment it starts is refused.
    """
    value = plan.get(DEADLINE_KEY)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"plan.{DEADLINE_KEY}: {value!r} must be UTC epoch seconds (a finite number)")
    if value <= now_s:
        raise ValueError(f"plan.{DEADLINE_KEY}: {value:.3f} is {now_s - value:.1f} s in the past (now {now_s:.3f}): "
                         "refusing to inject a fault whose dead-man switch has already expired")
    return float(value)
