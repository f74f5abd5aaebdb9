"""A campaign across services, without I/O: which services a run targets (Params), what one fault on a service
sees of its environment, and its verdicts grouped per service in the report and the Slack summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from resilience.chaos.conclude import slack_message
from resilience.chaos.params import parse_campaign_params
from resilience.chaos.report import build_report, render_html
from resilience.chaos.verdict import ScenarioVerdict, scores_by_service, with_missing
from resilience.config import parse_config
from resilience.journal import shaped
from tests.unit.test_blast_radius import SERVICES, raw

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def config():
    doc = raw()
    doc["environments"]["staging"]["services"] = SERVICES
    doc["environments"]["staging"]["chaos"]["blast_radius"] = 2
    return parse_config(doc)


def params(**extra):
    return {"environment": "staging", "scenarios": ["pod-kill", "s3-5xx"], "duration": 30, **extra}


def test_an_empty_services_list_is_every_service_across_services_and_none_otherwise(config):
    across = parse_campaign_params(params(), config, every_service=True)
    assert across.services == ("checkout", "search")
    assert across.targets() == [("checkout", "pod-kill"), ("checkout", "s3-5xx"), ("search", "pod-kill"),
                                ("search", "s3-5xx")]
    assert across.to_dict()["services"] == ["checkout", "search"]
    single = parse_campaign_params(params(), config)
    assert single.services == () and "services" not in single.to_dict()
    assert single.targets() == [(None, "pod-kill"), (None, "s3-5xx")]
    # what start_campaign returns is parsed again by every task: the list stays as chosen
    assert parse_campaign_params(across.to_dict(), config).services == ("checkout", "search")


@pytest.mark.parametrize(("services", "message"), [
    (["checkout", "cart"], r"params\.services: \['checkout', 'cart'\] must name each of environments\.staging\."
                           r"services \['checkout', 'search'\] at most once"),
    (["search", "search"], r"must name each of environments\.staging\.services"),
    ("checkout", r"params\.services: 'checkout' must be a list of service names"),
])
def test_a_service_the_environment_does_not_list_is_refused_by_name(config, services, message):
    with pytest.raises(ValueError, match=message):
        parse_campaign_params(params(services=services), config, every_service=True)


def test_a_campaign_across_services_needs_an_environment_that_lists_them():
    with pytest.raises(ValueError, match=r"environments\.staging lists no services"):
        parse_campaign_params(params(), parse_config(raw()), every_service=True)


def test_a_fault_on_a_service_sees_its_selector_and_its_slo_queries(config):
    staging = config.environment("staging")
    checkout = staging.for_service("checkout")
    assert checkout.kubernetes.app_selector == "app=checkout,tier=api"
    assert dict(checkout.slo_source().queries) == {"availability_pct": "checkout_avail",
                                                   "error_rate_pct": "checkout_err", "p95_ms": "checkout_p95"}
    search = staging.for_service("search")  # no queries of its own: the environment's
    assert search.kubernetes.app_selector == "app=search"
    assert search.slo_source().queries == staging.slo_source().queries
    assert staging.for_service("app") is staging  # the default service: the environment as it is
    with pytest.raises(ValueError, match=r"service: 'cart' is not one of environments\.staging\.services"):
        staging.for_service("cart")


def test_verdicts_are_grouped_per_service_with_a_score_each():
    decided = with_missing([("checkout", "pod-kill"), ("checkout", "s3-5xx"), ("search", "pod-kill")], [
        ScenarioVerdict("pod-kill", "passed", "SLOs held", 2.0, service="checkout"),
        ScenarioVerdict("s3-5xx", "failed", "SLO breached", 4.0, service="checkout"),
        ScenarioVerdict("pod-kill", "passed", "SLOs held", 1.0, service="search")])
    assert [v.service for v in decided] == ["checkout", "checkout", "search"]
    scores = scores_by_service(decided, {"pod-kill": 1.0, "s3-5xx": 3.0})
    assert scores == {"checkout": {"status": "failed", "resilience_score": 25.0, "passed": 1, "scenarios": 2},
                      "search": {"status": "completed", "resilience_score": 100.0, "passed": 1, "scenarios": 1}}
    missing = with_missing([("search", "s3-5xx")], decided)
    assert missing[0].status == "aborted" and missing[0].service == "search"
    assert "service" not in ScenarioVerdict("pod-kill", "passed", "ok").to_dict()  # the one-app campaign's shape


def test_the_report_and_slack_name_each_service():
    run = {"kind": "chaos_campaign", "run_id": "manual__1", "dag_id": "chaos_services", "environment": "staging",
           "params": {"scenarios": ["pod-kill"], "services": ["checkout", "search"]}, "started_at": T0}
    steps = [{"scope": "checkout/pod-kill", "step": "verdict",
              "details": {"scenario": "pod-kill", "status": "failed", "reason": "p95 doubled", "service": "checkout"}},
             {"scope": "search/pod-kill", "step": "verdict",
              "details": {"scenario": "pod-kill", "status": "passed", "reason": "SLOs held", "service": "search"}}]
    record = {**run, **shaped(run, steps)}
    assert [(s["service"], s["scenario"]) for s in record["scenarios"]] == [("checkout", "pod-kill"),
                                                                           ("search", "pod-kill")]
    verdicts = [s["verdict"] for s in record["scenarios"]]
    services = scores_by_service([ScenarioVerdict(**v) for v in verdicts], {})
    report = build_report(record, verdicts, "failed", 50.0, {}, T0 + timedelta(minutes=5), services)
    assert [s["verdict"]["status"] for s in report["scenarios"]] == ["failed", "passed"]
    html = render_html(report)
    assert "<h2>Services</h2>" in html and "checkout / pod-kill" in html and "0 / 100" in html
    message = slack_message(report, "/reports/x.html")
    assert "• checkout: failed, score 0.0 (0 of 1 passed)" in message
    assert "• checkout / pod-kill: failed — p95 doubled" in message
    assert "search / pod-kill" not in message  # a passed fault is counted in its service's line only


def test_a_revert_finds_the_pods_of_a_service_that_has_left_the_config_by_the_selector_its_row_recorded(config):
    staging = config.environment("staging")
    assert staging.for_revert("search", "app=old-search").kubernetes.app_selector == \
        staging.for_service("search").kubernetes.app_selector  # still listed: the config's own
    gone = staging.for_revert("payments", "app=payments,tier=api")
    assert gone.kubernetes.app_selector == "app=payments,tier=api"
    with pytest.raises(ValueError, match=r"service: 'payments' is not one of environments\.staging\.services"):
        staging.for_revert("payments", None)  # a row from before selectors were recorded: said, not guessed
