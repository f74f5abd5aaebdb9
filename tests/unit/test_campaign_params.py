"""Chaos campaign Params: each bad input names its field; the form validates its defaults."""

from __future__ import annotations

import pytest

from resilience.chaos.params import campaign_params, parse_campaign_params
from resilience.config import load_config

GOOD = {"environment": "lab", "scenarios": ["pod-kill", "s3-5xx"], "duration": 30, "allow_production": False,
        "dry_run": False, "scenario_options": {"s3-5xx": {"error_rate": 0.5}}, "max_p95_ratio": 3}


def parse(**changes):
    return parse_campaign_params({**GOOD, **changes}, load_config())


def test_good_params():
    p = parse()
    assert (p.environment, p.scenarios, p.duration_s, dict(p.slo_overrides)) == (
        "lab", ("pod-kill", "s3-5xx"), 30, {"max_p95_ratio": 3.0})
    assert p.scenario_options["s3-5xx"] == {"error_rate": 0.5}
    assert parse_campaign_params(p.to_dict(), load_config()) == p


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"environment": "qa"}, r"params\.environment: 'qa' is not one of"),
        ({"environment": "production"}, r"params\.environment: environments\.production\.chaos\.enabled is false: chaos refused"),
        ({"scenarios": []}, r"params\.scenarios: \[\] must be a non-empty list"),
        ({"scenarios": ["pod-kill", "dns"]}, r"params\.scenarios: \['pod-kill', 'dns'\] must name each of"),
        ({"scenarios": ["pod-kill", "pod-kill"]}, r"must name each of .* at most once"),
        ({"duration": 5}, r"params\.duration: 5 must be an integer number of seconds in 10\.\.1800"),
        ({"duration": 30.5}, r"params\.duration: 30\.5 must be an integer"),
        ({"max_recovery_s": "2m"}, r"params\.max_recovery_s: '2m' must be a number or empty"),
        ({"scenario_options": {"dns": {}}}, r"params\.scenario_options: .* must map scenario names"),
        ({"dry_run": "no"}, r"params\.dry_run: 'no' must be true or false"),
    ],
)
def test_bad_params_name_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        parse(**changes)


def test_form_defaults_validate_and_every_param_is_described():
    from airflow.sdk.definitions.param import ParamsDict

    form = campaign_params()
    ParamsDict(form).validate()
    assert all(p.description for p in form.values())
    assert parse_campaign_params({k: p.value for k, p in form.items()}, load_config()).scenarios == (
        "pod-kill", "redis-unavailable", "s3-5xx", "postgres-failover", "memory-pressure")


# -- SLO override floors: environments.<name>.slo.loosest (lab: 95 %, +5 points, 10x p95, 600 s) -----------

@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"min_availability_pct": 95}, None),  # exactly at the loosest: allowed
        ({"min_availability_pct": 99.9}, None),  # stricter: always allowed
        ({"min_availability_pct": 94.9}, r"params\.min_availability_pct: 94\.9 is looser than "
                                         r"environments\.lab\.slo\.loosest\.min_availability_pct allows \(>= 95\)"),
        ({"min_availability_pct": 0}, r"params\.min_availability_pct: 0 is looser than .* \(>= 95\): a run may not "
                                      r"loosen its own guard past it"),
        ({"max_error_rate_increase_pct": 5}, None),
        ({"max_error_rate_increase_pct": 5.5}, r"params\.max_error_rate_increase_pct: 5\.5 is looser than "
                                               r"environments\.lab\.slo\.loosest\.max_error_rate_increase_pct "
                                               r"allows \(<= 5\)"),
        ({"max_p95_ratio": 10}, None),  # what tests/integration/test_chaos_campaign.py passes
        ({"max_p95_ratio": 1000}, r"params\.max_p95_ratio: 1000 is looser than .*max_p95_ratio allows \(<= 10\)"),
        ({"max_p95_ratio": 0.5}, r"params\.max_p95_ratio: 0\.5 must be a ratio >= 1"),
        ({"max_recovery_s": 600}, None),
        ({"max_recovery_s": 601}, r"params\.max_recovery_s: 601 is looser than .*max_recovery_s allows \(<= 600\)"),
        ({"max_breach_s": 31}, r"params\.max_breach_s: 31 is looser than .*max_breach_s allows \(<= 30\)"),
        ({"max_breach_s": 30, "duration": 30},
         r"params\.duration: 30 s must be longer than pod-kill's max_breach_s \(30 s\): the guard could never halt"),
    ],
)
def test_slo_overrides_are_bounded_by_the_environments_loosest(overrides, message):
    changes = {"max_p95_ratio": None, **overrides}
    if message is None:
        assert parse(**changes).slo_overrides == {k: float(v) for k, v in overrides.items()}
    else:
        with pytest.raises(ValueError, match=message):
            parse(**changes)


def config_with_loosest(**loosest):
    import yaml

    from resilience.config import DEFAULT_CONFIG_PATH, parse_config

    doc = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    doc["environments"]["lab"]["slo"]["loosest"] = loosest
    return parse_config(doc)


def test_a_scenarios_own_slo_looser_than_the_environment_allows_is_refused():
    strict = config_with_loosest(min_availability_pct=99.0, max_breach_s=30)  # postgres-failover's own: 95 %
    run = {**GOOD, "scenarios": ["pod-kill", "postgres-failover"], "max_p95_ratio": None, "duration": 60}
    with pytest.raises(ValueError, match=r"scenarios\.postgres-failover\.slo\.min_availability_pct: 95 "
                                         r"\(scenarios\.yaml\) is looser than environments\.lab\.slo\.loosest\."
                                         r"min_availability_pct allows \(>= 99\)"):
        parse_campaign_params(run, strict)
    tightened = parse_campaign_params({**run, "min_availability_pct": 99.0}, strict)  # the run may tighten it
    assert tightened.slo_overrides == {"min_availability_pct": 99.0}
    assert parse_campaign_params({**run, "scenarios": ["pod-kill"]}, strict).scenarios == ("pod-kill",)
    # a tolerated breach only where the environment allows one (slo.loosest.max_breach_s, default 0)
    with pytest.raises(ValueError, match=r"scenarios\.postgres-failover\.slo\.max_breach_s: 30 \(scenarios\.yaml\) is "
                                         r"looser than environments\.lab\.slo\.loosest\.max_breach_s allows \(<= 0\)"):
        parse_campaign_params(run, config_with_loosest())
