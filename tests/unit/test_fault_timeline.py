"""A fault's planned life covers guard start, duration and revert; the dead-man fires before expiry."""

from __future__ import annotations

import pytest

from resilience.chaos.timeline import (
    DEADMAN_MARGIN_S,
    GUARD_START_BUDGET_S,
    REVERT_BUDGET_S,
    applied_deadline,
    fault_timeline,
)
from resilience.faults.apply import applied_plan


def test_timeline_covers_guard_start_duration_and_revert():
    t = fault_timeline(1000.0, duration_s=60, orphan_grace_s=15)
    assert t.planned_end_epoch_s == 1000 + GUARD_START_BUDGET_S + 60
    assert t.deadline_epoch_s == t.planned_end_epoch_s + DEADMAN_MARGIN_S
    assert t.expires_in_s == GUARD_START_BUDGET_S + 60 + DEADMAN_MARGIN_S + REVERT_BUDGET_S + 15
    assert 1000 + t.expires_in_s > t.deadline_epoch_s  # the sweeper is the second line, after the dead-man


@pytest.mark.parametrize(("duration_s", "grace_s", "field"), [(0, 15, "duration_s"), (10, -1, "orphan_grace_s")])
def test_bad_input_is_named(duration_s, grace_s, field):
    with pytest.raises(ValueError, match=field):
        fault_timeline(0.0, duration_s, grace_s)


@pytest.mark.parametrize(("applied_at", "expected"), [
    (1005.0, 1005 + 60 + DEADMAN_MARGIN_S),  # applied 5 s after planning: the switch follows the real window
    (1000.0 + GUARD_START_BUDGET_S, 1000 + GUARD_START_BUDGET_S + 60 + DEADMAN_MARGIN_S),  # at the budget: equal
    (1000.0 + GUARD_START_BUDGET_S + 9, 1000 + GUARD_START_BUDGET_S + 60 + DEADMAN_MARGIN_S),  # never later
])
def test_the_dead_man_deadline_follows_the_applied_window(applied_at, expected):
    planned = fault_timeline(1000.0, duration_s=60, orphan_grace_s=15).deadline_epoch_s
    assert applied_deadline(planned, applied_at, 60) == expected


def test_applied_plan_tightens_only_plans_that_carry_a_deadline_and_a_duration():
    plan = {"error_rate": 0.5, "deadline_epoch_s": 2000.0, "duration_s": 60}
    assert applied_plan(plan, 1000.0) == {**plan, "deadline_epoch_s": 1000 + 60 + DEADMAN_MARGIN_S}
    assert applied_plan({"error_rate": 0.5, "deadline_epoch_s": 2000.0}, 1000.0)["deadline_epoch_s"] == 2000.0
    assert applied_plan({"error_rate": 0.5}, 1000.0) == {"error_rate": 0.5}
