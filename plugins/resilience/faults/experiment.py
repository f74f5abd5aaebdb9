"""Which experiment a fault belongs to: its ledger entry's id, handed to inject and revert in the plan.

Everything a platform creates for a fault carries it (Kubernetes: the ``chaos-experiment`` label), so a
revert, an Immediate Abort or a sweep finds exactly that fault's objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EXPERIMENT_KEY = "experiment"


def with_experiment(plan: Mapping[str, Any], ledger_id: int) -> dict[str, Any]:
    return {**plan, EXPERIMENT_KEY: str(ledger_id)}


def experiment_of(plan: Mapping[str, Any]) -> str | None:
    value = plan.get(EXPERIMENT_KEY)
    return None if value is None else str(value)
