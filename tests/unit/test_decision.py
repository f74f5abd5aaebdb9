"""The DR activation decision tree on every combination of answers."""

from __future__ import annotations

import itertools

import pytest

from resilience.dr.decision import COMPLETE_PITR, FAST_RESTORE, LATEST_RESTORE, dr_path, resolve_answer

EXPECTED = {
    # (primary accessible, data loss acceptable, time critical): (kind, restore)
    (True, True, True): ("regional_failover", None),
    (True, True, False): ("regional_failover", None),
    (True, False, True): ("regional_failover", None),
    (True, False, False): ("regional_failover", None),
    (False, True, True): ("full_dr", FAST_RESTORE),
    (False, True, False): ("full_dr", LATEST_RESTORE),
    (False, False, True): ("full_dr", LATEST_RESTORE),
    (False, False, False): ("full_dr", COMPLETE_PITR),
}


def test_the_table_covers_every_combination():
    assert set(EXPECTED) == set(itertools.product([True, False], repeat=3))


@pytest.mark.parametrize(("answers", "expected"), EXPECTED.items(), ids=[str(k) for k in EXPECTED])
def test_dr_path(answers, expected):
    path = dr_path(*answers)
    assert (path.kind, path.restore) == expected
    assert path.reason  # every branch says why, in the runbook's words


def test_reasons_name_the_branch():
    assert dr_path(True, False, False).reason.startswith("primary region accessible: continue with regional failover")
    assert "fast restore" in dr_path(False, True, True).reason
    assert "complete PITR restoration" in dr_path(False, False, False).reason


@pytest.mark.parametrize(
    ("param", "detected", "expected"),
    [("yes", None, True), ("no", True, False), ("auto", True, True), ("auto", False, False)],
)
def test_resolve_answer(param, detected, expected):
    assert resolve_answer(param, detected, "primary_accessible") is expected


@pytest.mark.parametrize(
    ("param", "detected", "message"),
    [("auto", None, r"params\.time_critical: auto, but it could not be detected; answer yes or no"),
     ("maybe", True, r"params\.time_critical: 'maybe' is not one of \['auto', 'no', 'yes'\]")],
)
def test_resolve_answer_refuses(param, detected, message):
    with pytest.raises(ValueError, match=message):
        resolve_answer(param, detected, "time_critical")
