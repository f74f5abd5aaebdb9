"""The scenario catalogue matches the fault registry and layers SLO overrides in order."""

from __future__ import annotations

import pytest

from resilience.chaos.scenarios import load_catalogue, parse_catalogue
from resilience.faults.base import SCENARIOS, get_fault


def test_catalogue_covers_every_registered_fault():
    assert set(load_catalogue()) == set(SCENARIOS) == {
        "pod-kill", "redis-unavailable", "s3-5xx", "postgres-failover", "memory-pressure"}


def test_policy_layers_runbook_scenario_and_run():
    failover = load_catalogue()["postgres-failover"]
    assert failover.policy().min_availability_pct == 95.0
    assert failover.policy().max_p95_ratio == 2.0  # runbook default kept
    assert failover.policy({"min_availability_pct": 99.0}).min_availability_pct == 99.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"scenarios": {"pod-kill": {}}}, r"missing \['memory-pressure', 'postgres-failover'"),
        ({"scenarios": {**{n: {} for n in SCENARIOS}, "dns-chaos": {}}}, r"unknown \['dns-chaos'\]"),
        ({"scenarios": {**{n: {} for n in SCENARIOS}, "pod-kill": {"weight": 0}}},
         r"scenarios\.pod-kill\.weight: 0 must be a number > 0"),
        ({"scenarios": {**{n: {} for n in SCENARIOS}, "pod-kill": {"slo": {"p99": 1}}}},
         r"slo overrides: unknown key\(s\) \['p99'\]"),
    ],
)
def test_bad_catalogue_names_the_field(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_catalogue(raw)


def test_unknown_scenario_is_refused_by_the_registry():
    with pytest.raises(ValueError, match=r"scenario: 'dns-chaos' is not one of \['memory-pressure'"):
        get_fault("dns-chaos")
