"""Preflight: every refusal of the runbook's safety checks, with its reason."""

from __future__ import annotations

from dataclasses import replace

import pytest

from resilience.chaos.preflight import PreflightFacts, preflight_checks

OK = PreflightFacts(environment="lab", is_production=False, chaos_enabled=True, allow_production=False,
                    pods_ready=3, pods_total=3, pods_scope="namespace ofm-staging")


def failing(facts):
    return {c.name: c.detail for c in preflight_checks(facts) if not c.passed}


def test_healthy_lab_passes():
    assert failing(OK) == {}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"chaos_enabled": False}, {"environment allows chaos": "environments.lab.chaos.enabled is false: chaos refused"}),
        ({"environment": "production", "is_production": True},
         {"environment allows chaos": "production is production: the run must set allow_production to true"}),
        ({"pods_ready": 2}, {">= 80 % pods ready": "2 of 3 Running and Ready in namespace ofm-staging (67 %)"}),
        ({"pods_ready": 0, "pods_total": 0}, {">= 80 % pods ready": "0 of 0 Running and Ready in namespace ofm-staging (0 %)"}),
        ({"deployment_in_progress": "app rollout 2 of 3"}, {"no deployment in progress": "app rollout 2 of 3"}),
        ({"firing_alerts": ("error_rate_high", "api_down")}, {"no alert firing": "error_rate_high, api_down"}),
        ({"lock_holder": ("manual__1", "dr_monthly_drill")},
         {"no other chaos or DR run active": "dr_monthly_drill run manual__1 holds the lock"}),
        ({"open_faults": ("#12 pod-kill (run x)",)}, {"no fault left active": "#12 pod-kill (run x)"}),
    ],
)
def test_refusals(changes, expected):
    assert failing(replace(OK, **changes)) == expected


def test_exactly_80_percent_ready_passes():
    assert failing(replace(OK, pods_ready=4, pods_total=5)) == {}


def test_production_with_both_switches_passes():
    facts = replace(OK, environment="production", is_production=True, allow_production=True)
    assert failing(facts) == {}
