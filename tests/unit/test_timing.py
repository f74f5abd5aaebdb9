"""RTO/RPO maths, the target verdicts, and the per-phase breakdown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from resilience.checks import Check
from resilience.dr.timing import PhaseSpan, phase_breakdown, rpo_seconds, rto_seconds, target_check

T0 = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_rto_is_start_to_app_healthy():
    assert rto_seconds(T0, at(754.5)) == 754.5


def test_rto_refuses_time_running_backwards():
    with pytest.raises(ValueError, match="is before drill start"):
        rto_seconds(T0, at(-1))


@pytest.mark.parametrize(
    ("reference", "restored", "expected"),
    [
        (at(100), at(88), 12.0),  # the restore lags the source's newest write by 12 s
        (at(100), at(100), 0.0),  # nothing lost
        (at(100), at(101), 0.0),  # restore is newer than the reference (clock skew): not negative
        (at(100), None, None),  # no timestamped row: unknown, never a pass
    ],
)
def test_rpo_is_the_lag_behind_the_reference(reference, restored, expected):
    assert rpo_seconds(reference, restored) == expected


@pytest.mark.parametrize(
    ("measured", "target_min", "expected"),
    [
        (1800.0, 30, Check("RTO", True, "30.00 min (1800.0 s) vs target 30 min")),  # exactly at the target passes
        (1800.1, 30, Check("RTO", False, "30.00 min (1800.1 s) vs target 30 min")),
        (0.0, 15, Check("RTO", True, "0.00 min (0.0 s) vs target 15 min")),
        (None, 15, Check("RTO", False, "not measured (target 15 min)")),
    ],
)
def test_target_check(measured, target_min, expected):
    assert target_check("RTO", measured, target_min) == expected


def test_phase_breakdown_offsets_durations_and_shares():
    phases = [
        PhaseSpan("restore", at(10), at(70), "success"),
        PhaseSpan("verify_backups", at(0), at(10), "success"),
        PhaseSpan("integrity", at(70), None, "running"),
    ]
    rows = phase_breakdown(phases, T0, now=at(100))
    assert rows == [
        {"phase": "verify_backups", "status": "success", "offset_s": 0.0, "duration_s": 10.0, "share_pct": 10.0},
        {"phase": "restore", "status": "success", "offset_s": 10.0, "duration_s": 60.0, "share_pct": 60.0},
        {"phase": "integrity", "status": "running", "offset_s": 70.0, "duration_s": 30.0, "share_pct": 30.0},
    ]


def test_phase_breakdown_of_nothing():
    assert phase_breakdown([], T0, now=at(5)) == []
