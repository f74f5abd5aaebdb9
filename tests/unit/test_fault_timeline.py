"""A fault's planned life covers guard start, duration and revert; the dead-man fires before expiry."""

from __future__ import annotations

import pytest

from resilience.chaos.timeline import DEADMAN_MARGIN_S, GUARD_START_BUDGET_S, REVERT_BUDGET_S, fault_timeline


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
