"""Scenario verdicts (passed / failed with the SLO and overshoot / aborted) and the weighted score."""

from __future__ import annotations

import pytest

from resilience.chaos.verdict import ScenarioVerdict, campaign_status, resilience_score, scenario_verdict, with_missing

OK_GUARD = {"status": "ok", "readings": 30}
BREACH = {"status": "breach", "verdict": {"breaches": [
    {"metric": "error_rate_pct", "measured": 12.5, "bound": 1.0, "reason": "error rate 12.50 % > 1.00 %"}]}}
MISSING = {"status": "breach", "verdict": {"breaches": [
    {"metric": "p95_ms", "measured": None, "bound": 80.0, "reason": "p95_ms missing: empty result"}]}}


def verdict(**kw):
    args = {"injected": True, "inject_error": None, "guard": OK_GUARD, "reverted": True, "revert_error": None,
            "recovery": {"status": "ok", "recovery_s": 4.0}, "max_recovery_s": 120.0, **kw}
    return scenario_verdict("pod-kill", **args)


@pytest.mark.parametrize(
    ("kw", "status", "reason"),
    [
        ({}, "passed", "SLOs held; recovered in 4.0 s"),
        # the disruption the scenario expects (a failover's seconds without a leader): said, not hidden
        ({"guard": {**OK_GUARD, "breached_s": 14.2, "max_breach_s": 30.0}}, "passed",
         "SLOs broken for 14 s, within the 30 s the scenario tolerates; recovered in 4.0 s"),
        # a single breached reading is said too
        ({"guard": {**OK_GUARD, "breached_s": 1.0, "max_breach_s": 30.0}}, "passed",
         "SLOs broken for 1 s, within the 30 s the scenario tolerates; recovered in 4.0 s"),
        # still broken when the window ended: the breach lasted until the SLOs were green again
        ({"guard": {**OK_GUARD, "breached_s": 28.0, "max_breach_s": 30.0, "breached_at_end": True}}, "failed",
         "SLOs broken for 32 s (4 s of it after the fault window), more than the 30 s the scenario tolerates"),
        ({"guard": BREACH}, "failed", "SLO breached: error rate 12.50 % > 1.00 % (by 11.50)"),
        ({"guard": MISSING}, "failed", "SLO breached: p95_ms missing: empty result"),
        ({"recovery": {"status": "ok", "recovery_s": 120.0}}, "passed", "SLOs held; recovered in 120.0 s"),
        ({"recovery": {"status": "ok", "recovery_s": 120.5}}, "failed", "recovery 120.5 s > 120 s"),
        ({"recovery": {"status": "timeout"}}, "failed", "not recovered within 120 s"),
        ({"injected": False, "inject_error": "no replica running"}, "aborted", "fault not injected: no replica running"),
        ({"reverted": False, "revert_error": "redis did not answer PING"}, "aborted",
         "revert failed: redis did not answer PING; the fault may still be active (chaos_abort sweeps it)"),
        ({"guard": None}, "aborted", "the SLO guard did not report"),
        # the ledger outranks the events: a breach reverted by the guard whose event was lost
        ({"reverted_by": "guard_slo", "revert_reason": "error rate 9.00 % > 1.00 %"}, "failed",
         "SLO breached: error rate 9.00 % > 1.00 % (the guard reverted the fault; its event was lost)"),
        ({"guard": None, "reverted_by": "guard_slo"}, "failed",
         "SLO breached: reason not recorded (the guard reverted the fault; its event was lost)"),
        ({"guard": BREACH, "reverted_by": "guard_slo"}, "failed", "SLO breached: error rate 12.50 % > 1.00 % (by 11.50)"),
        ({"reverted_by": "chaos_abort:abort_all", "revert_reason": "Immediate Abort"}, "aborted",
         "reverted early by chaos_abort:abort_all: Immediate Abort"),
        ({"reverted_by": "inject_undo", "revert_reason": "InjectRefused: lock taken"}, "aborted",
         "reverted early by inject_undo: InjectRefused: lock taken"),
        ({"reverted_by": "pod_kill.revert_pod_kill"}, "passed", "SLOs held; recovered in 4.0 s"),
        ({"guard": {**OK_GUARD, "resumed": True, "unguarded_s": 41.6}}, "aborted",
         "the SLOs were not watched for 42 s while the fault was on (the triggerer restarted or stalled): "
         "cannot be judged"),
        ({"guard": {**BREACH, "unguarded_s": 41.6}}, "failed", "SLO breached: error rate 12.50 % > 1.00 % (by 11.50)"),
    ],
)
def test_scenario_verdict(kw, status, reason):
    v = verdict(**kw)
    assert (v.status, v.reason) == (status, reason)


def test_score_is_weighted_and_ignores_skipped():
    vs = [ScenarioVerdict("pod-kill", "passed", ""), ScenarioVerdict("postgres-failover", "failed", ""),
          ScenarioVerdict("s3-5xx", "skipped", "")]
    assert resilience_score(vs, {"pod-kill": 1, "postgres-failover": 3}) == 25.0
    assert resilience_score([ScenarioVerdict("s3-5xx", "skipped", "")], {}) is None


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [(["passed", "passed"], "completed"), (["passed", "failed"], "failed"), (["failed", "aborted"], "aborted"),
     (["skipped"], "completed"), ([], "aborted")],
)
def test_campaign_status(statuses, expected):
    assert campaign_status([ScenarioVerdict("x", s, "") for s in statuses]) == expected


def test_a_selected_scenario_without_a_verdict_is_aborted_not_dropped():
    decided = with_missing([(None, "pod-kill"), (None, "s3-5xx")], [ScenarioVerdict("s3-5xx", "passed", "ok")])
    assert [(v.scenario, v.status) for v in decided] == [("pod-kill", "aborted"), ("s3-5xx", "passed")]
    assert decided[0].reason.startswith("no verdict recorded")
    assert campaign_status(decided) == "aborted"
