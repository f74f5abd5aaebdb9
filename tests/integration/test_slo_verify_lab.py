"""slo_verify through dag.test() against the lab's real Prometheus.

One run (the suite is over its time budget) on the lab with two business metrics added to its
environments.yaml: production's webhook mapping, whose counters the lab's app does not export (no data),
and publishing success with an impossible bound (> 100 %). The lab's healthy traffic passes availability
and the other key metrics are measured with their units; the two business checks fail, so the run fails
at its verdict and Slack gets the failed SLOs.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.fakes.slack import SlackWebhookServer
from tests.integration.dagkit import load_dag
from tests.lab.labkit import eventually

pytestmark = pytest.mark.integration
WINDOW_H = 0.01  # 36 s, the shortest window: a clean one comes soon after the chaos tests before it
WEBHOOKS = ("100 * sum(increase(webhooks_processed_total{outcome=\"success\"}[{window}])) "
            "/ sum(increase(webhooks_received_total[{window}]))")


def prometheus_value(lab, query: str) -> float | None:
    url = f"{lab['prometheus']['url']}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as response:
        result = json.load(response)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def healthy_window(lab) -> bool:
    """In the window (and a little more) the load generator got no 5xx and no failed request, and Prometheus has
    seen the load balancer answer posts and uploads (a young lab's series need two scrapes after their first
    request)."""
    bad = prometheus_value(lab, 'sum(increase(loadgen_requests_total{outcome=~"5xx|error"}[45s]))')
    served = [prometheus_value(lab, f'sum(increase(http_requests_total{{job="lb",method="POST",path="{path}"}}[45s]))')
              for path in ("/api/posts", "/api/uploads")]
    earlier = prometheus_value(lab, 'sum(increase(http_requests_total{job="lb"}[36s] offset 40s))')  # throughput's
    return bad == 0 and all(n is not None and n > 0 for n in served) and earlier is not None and earlier > 0


@pytest.fixture(scope="module")
def failing_run(airflow_db, lab, tmp_path_factory):
    """(dagrun, states, report, slack messages) of one slo_verify run with the two added business metrics."""
    from resilience.config import CONFIG_ENV_VAR, DEFAULT_CONFIG_PATH

    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    business = config["environments"]["lab"]["slo_verify"]["business"]
    business["publishing_success_pct"]["min_pct"] = 100
    business["webhook_success_pct"] = {"title": "webhook success rate", "min_pct": 99.9, "query": WEBHOOKS}
    path = tmp_path_factory.mktemp("slo-verify") / "environments.yaml"
    path.write_text(yaml.safe_dump(config))
    # a chaos test just before may have left 5xx in the window: wait (bounded) for a clean one
    assert eventually(lambda: healthy_window(lab), timeout_s=200, interval_s=2), "the lab's traffic is not healthy"
    dag = load_dag("slo_verify")
    with SlackWebhookServer() as slack:
        os.environ["AIRFLOW_CONN_RESILIENCE_SLACK"] = slack.connection_json()
        os.environ[CONFIG_ENV_VAR] = str(path)
        try:
            dagrun = dag.test(run_conf={"environment": "lab", "window_h": WINDOW_H})
        finally:
            del os.environ["AIRFLOW_CONN_RESILIENCE_SLACK"], os.environ[CONFIG_ENV_VAR]
    states = {ti.task_id: ti.state for ti in dagrun.get_task_instances()}
    [report_path] = [p for p in (Path(os.environ["RESILIENCE_REPORT_DIR"]) / "slo_verify").glob("*.json")
                     if json.loads(p.read_text())["run_id"] == dagrun.run_id]
    return dagrun, states, json.loads(report_path.read_text()), report_path.with_suffix(".html").read_text(), \
        slack.messages


def test_healthy_lab_passes_availability_with_measured_numbers(failing_run):
    _, _, report, html, _ = failing_run
    checks = {c["metric"]: c for c in report["checks"]}
    availability = checks["availability_pct"]
    assert availability["passed"], availability["reason"]
    assert availability["measured"] > 99.9 and availability["measured_text"].endswith(" %")
    assert checks["error_rate_pct"]["passed"] and checks["error_rate_pct"]["measured_text"].endswith(" %")
    for metric in ("p95_ms", "p99_ms"):  # the lab answers in milliseconds: far below 10 s / 15 s
        assert checks[metric]["passed"] and checks[metric]["measured_text"].endswith((" ms", " s")), checks[metric]
    assert checks["throughput_rps"]["measured"] > 0 and checks["throughput_rps"]["unit"] == "req/s"
    assert checks["upload_success_pct"]["passed"], checks["upload_success_pct"]["reason"]
    budget = report["error_budget"]
    assert budget["budget_min"] == pytest.approx(0.001 * 36 / 60)  # (100 % - 99.9 %) x 36 s
    assert budget["left_min"] >= 0 and 0 <= budget["left_pct"] <= 100
    assert " min " in budget["text"] and "%" in budget["text"]
    assert report["window"]["text"] == "0.6 min"
    assert set(report["series"]) >= {"availability_pct", "error_rate_pct", "p95_ms", "throughput_rps"}
    assert html.count("<svg") >= 4 and "Error budget" in html


def test_no_data_and_an_impossible_bound_fail_the_run(failing_run):
    dagrun, states, report, _, messages = failing_run
    checks = {c["metric"]: c for c in report["checks"]}
    webhooks = checks["webhook_success_pct"]
    assert (webhooks["passed"], webhooks["measured"], webhooks["reason"]) == (
        False, None, "webhook success rate: no data (empty result)")
    publishing = checks["publishing_success_pct"]
    assert not publishing["passed"] and publishing["reason"].endswith("<= 100 %"), publishing
    assert report["status"] == "failed" and "webhook_success_pct" not in report["unmapped_business_metrics"]
    assert dagrun.state == "failed"
    assert states == {"start_verification": "success", "measure_slos": "success", "write_report": "success",
                      "notify_slack": "success", "verdict": "failed"}
    [message] = messages
    assert "SLO verification *FAILED* in lab" in message["text"]
    assert "• webhook success rate: no data (empty result) (SLO > 99.9 %)" in message["text"]
    assert "publishing success rate" in message["text"] and "Error budget:" in message["text"]
