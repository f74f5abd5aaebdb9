"""Detection of the decision tree's "auto" answers, and the runbook's phase budgets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from resilience.dr.decision import (
    WAL_SEGMENT_BYTES,
    detect_data_loss_acceptable,
    detect_primary_accessible,
    detect_time_critical,
    phase_budgets,
    phase_report,
    wal_segments_between,
)

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(("entry", "healthy", "expected"), [(True, 3, True), (True, 0, False), (False, 3, False)])
def test_primary_accessible_needs_entry_point_and_a_healthy_replica(entry, healthy, expected):
    seen = detect_primary_accessible(entry, healthy, 3)
    assert seen.answer is expected
    assert f"{healthy}/3 replicas healthy" in seen.evidence


def test_data_loss_acceptable_when_the_newest_backup_is_within_the_rpo():
    assert detect_data_loss_acceptable(NOW - timedelta(minutes=14), NOW, 15 * 60).answer is True
    late = detect_data_loss_acceptable(NOW - timedelta(minutes=16), NOW, 15 * 60)
    assert late.answer is False and "16.0 min ago" in late.evidence
    assert detect_data_loss_acceptable(None, NOW, 900).answer is None


def test_wal_segments_between_counts_across_log_files():
    assert wal_segments_between("000000010000000000000003", "000000010000000000000003") == 1
    assert wal_segments_between("0000000100000000000000FE", "000000010000000100000001") == 4
    assert wal_segments_between(None, "000000010000000000000003") == 0
    assert wal_segments_between("000000010000000000000009", "000000010000000000000003") == 0


def test_time_critical_when_the_restore_estimate_exceeds_the_budget():
    assert detect_time_critical(1_000_000_000, 0, 600).answer is False  # 10 s of restore
    huge = detect_time_critical(100_000_000_000, 1000 * WAL_SEGMENT_BYTES, 600)
    assert huge.answer is True and "vs DR-environment budget 600 s" in huge.evidence
    assert detect_time_critical(None, 0, 600).answer is None


def test_phase_budgets_follow_the_runbook_and_scale_with_the_rto():
    assert phase_budgets(30) == {"assessment": 300, "dr_environment": 900, "application": 1500,
                                 "traffic_cutover": 1800}
    assert phase_budgets(60)["dr_environment"] == 1800


def test_phase_report_marks_each_phase_against_its_budget():
    start = NOW

    def step(name, phase, begin_s, end_s, status="success"):
        return {"step": name, "phase": phase, "status": status, "start": (start + timedelta(seconds=begin_s)).isoformat(),
                "end": (start + timedelta(seconds=end_s)).isoformat()}

    steps = [step("declare", "assessment", 0, 10), step("restore", "dr_environment", 10, 1000),
             step("deploy", "application", 1000, 1100), step("cutover", "traffic_cutover", 1100, 1200, "failed")]
    rows = {r["phase"]: r for r in phase_report(steps, start, 30)}
    assert rows["assessment"]["within_budget"] is True
    assert rows["dr_environment"]["within_budget"] is False and rows["dr_environment"]["end_s"] == 1000
    assert rows["traffic_cutover"]["status"] == "failed"
    skipped = {r["phase"]: r for r in phase_report(steps[:1], start, 30)}
    assert skipped["application"]["status"] == "skipped" and skipped["application"]["within_budget"] is None
