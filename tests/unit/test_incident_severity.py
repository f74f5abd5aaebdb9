"""The declared incident's severity (pure) and the escalation config that routes it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from resilience.config import DEFAULT_ESCALATION, SeverityRoute, load_config, parse_escalation
from resilience.incidents.severity import Severity, incident_severity
from resilience.incidents.store import incident_id


@pytest.mark.parametrize(("param", "kind", "expected"), [
    ("auto", "full_dr", Severity("P0", "auto: primary region lost: complete service outage")),
    ("auto", "regional_failover", Severity("P1", "auto: primary region still accessible: major functionality "
                                                 "impacted, not a full outage")),
    ("P0", "regional_failover", Severity("P0", "param severity P0")),
    ("P3", "full_dr", Severity("P3", "param severity P3")),
])
def test_severity_from_param_or_path(param, kind, expected):
    assert incident_severity(param, kind) == expected


def test_unknown_severity_is_refused_by_name():
    with pytest.raises(ValueError, match=r"params.severity: 'P4' is not one of \['auto', 'P0', 'P1', 'P2', 'P3'\]"):
        incident_severity("P4", "full_dr")


def test_the_packaged_config_routes_the_runbook_ladder():
    escalation = load_config().escalation
    assert escalation.route("P0") == SeverityRoute(("#incident-response", "#ops-alerts"), pagerduty=True)
    assert escalation.route("P2").incident_channel == "#ops-alerts" and not escalation.route("P1").pagerduty
    assert escalation.pagerduty_conn_id == "resilience_pagerduty"
    assert parse_escalation({}, "defaults.escalation") == DEFAULT_ESCALATION


ROUTES = {"P0": {"channels": ["#a"], "pagerduty": True}, "P1": {"channels": ["#a"]}, "P2": {"channels": ["#a"]},
          "P3": {"channels": ["#a"]}}


@pytest.mark.parametrize(("raw", "match"), [
    ({"slack_channels": {"#a": "c"}, "severities": {**ROUTES, "P4": {"channels": ["#a"]}}},
     r"defaults.escalation.severities: .* must be exactly \['P0', 'P1', 'P2', 'P3'\]"),
    ({"slack_channels": {"#a": "c"}, "severities": {**ROUTES, "P2": {"channels": ["#b"]}}},
     r"defaults.escalation.severities.P2.channels: \['#b'\] must be a non-empty list of channels named in"),
    ({"slack_channels": {"a": "c"}, "severities": ROUTES}, r"slack_channels: 'a': 'c' must map a '#channel'"),
    ({"slack_channels": {"#a": "c"}, "severities": ROUTES}, r"defaults.escalation.pagerduty_conn_id is missing"),
    ({"slack_channels": {"#a": "c"}, "severities": ROUTES, "pager": 1}, r"unknown key\(s\) \['pager'\]"),
])
def test_bad_escalation_config_names_the_field(raw, match):
    with pytest.raises(ValueError, match=match):
        parse_escalation(raw, "defaults.escalation")
    with pytest.raises(ValueError, match="severity: 'P9' is not one of"):
        DEFAULT_ESCALATION.route("P9")


def test_incident_id_is_stable_for_a_run_whatever_the_timezone():
    at = datetime(2026, 12, 2, 13, 5, 30, tzinfo=UTC)
    assert incident_id("manual__x", at) == incident_id("manual__x", at.astimezone())
    assert incident_id("manual__x", at).startswith("inc-20261202-1305-") and incident_id("manual__y", at) != \
        incident_id("manual__x", at)
