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
