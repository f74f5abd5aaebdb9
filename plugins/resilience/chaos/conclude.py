"""The end of a campaign: its report (JSON + HTML with charts) and its Slack summary."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from resilience.chaos.campaign import Campaign
from resilience.chaos.scenarios import load_catalogue
from resilience.chaos.verdict import ScenarioVerdict, campaign_status, resilience_score, scores_by_service, with_missing

log = logging.getLogger(__name__)
CHART_MARGIN_S = 15


def _series(campaign: Campaign, scenario: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """Error rate and p95 from Prometheus over the scenario's window (from its baseline to its recovery)."""
    from resilience.prometheus import PrometheusHook, render

    fault = scenario.get("fault") or {}
    if not fault.get("injected_at"):
        return {}
    slo = Campaign(campaign.params, campaign.run_id, campaign.config, scenario.get("service")).environment.slo_source()
    end = max((scenario.get("recovery") or {}).get("at", 0), (scenario.get("revert") or {}).get("reverted_at", 0),
              fault["injected_at"]) + CHART_MARGIN_S
    baseline_window = (scenario.get("baseline") or {}).get("window") or [fault["injected_at"]]
    start = min(baseline_window[0], fault["injected_at"]) - CHART_MARGIN_S
    hook = PrometheusHook(slo.prometheus_conn_id)
    series = {}
    for metric in ("error_rate_pct", "p95_ms"):
        try:
            series[metric] = hook.query_range(render(slo.queries[metric], slo.window), start, end,
                                              slo.poll_interval_s)
        except Exception as exc:  # a chart is not worth failing the report for; say why it is missing
            log.warning("No %s chart for %s: %s", metric, scenario["scenario"], exc)
    return series


def write_campaign_report(params: dict[str, Any] | None, run_id: str) -> dict[str, Any]:
    """Complete the record and write the report, whatever happened before."""
    from airflow.sdk.exceptions import AirflowSkipException

    from resilience.chaos.report import build_report, render_html
    from resilience.reporting import write_report

    if params is None:
        raise AirflowSkipException("No report: the campaign did not start (its parameters were refused)")
    campaign = Campaign.from_xcom(params, run_id)
    record = campaign.record.load()
    if record["status"] == "refused":
        raise AirflowSkipException(f"No report: preflight refused the campaign ({record['summary']})")
    decided = with_missing(campaign.params.targets(),
                           [ScenarioVerdict(**s["verdict"]) for s in record["scenarios"] if s.get("verdict")])
    verdicts = [v.to_dict() for v in decided]
    weights = {name: s.weight for name, s in load_catalogue().items()}
    status, score = campaign_status(decided), resilience_score(decided, weights)
    series = {(s.get("service"), s["scenario"]): _series(campaign, s) for s in record["scenarios"]}
    services = scores_by_service(decided, weights)
    report = build_report(record, verdicts, status, score, series, datetime.now(UTC), services)
    json_path, html_path = write_report(report, campaign.config.report_dir / "chaos_campaign", render_html)
    campaign.record.close(status, {"verdicts": verdicts, "report_html": str(html_path)}, score=score)
    log.info("Chaos campaign %s: %s, resilience score %s. Report: %s", run_id, status.upper(), score, html_path)
    return {"status": status, "score": score, "report_json": str(json_path), "report_html": str(html_path)}


def slack_message(report: dict[str, Any], html_path: str) -> str:
    icon = ":white_check_mark:" if report["status"] == "completed" else ":rotating_light:"
    lines = [f"{icon} Chaos campaign *{report['status'].upper()}* in {report['environment']} — "
             f"resilience score {report['resilience_score']}"]
    if report.get("services"):  # a campaign across services: a line per service, then only what did not pass
        lines += [f"• {name}: {s['status']}, score {s['resilience_score']} ({s['passed']} of {s['scenarios']} "
                  "passed)" for name, s in report["services"].items()]
    for s in report["scenarios"]:
        verdict = s.get("verdict") or {"status": "not run", "reason": ""}
        if report.get("services") and verdict["status"] == "passed":
            continue
        where = f"{s['service']} / {s['scenario']}" if s.get("service") else s["scenario"]
        lines.append(f"• {where}: {verdict['status']} — {verdict['reason']}")
    lines.append(f"Run {report['run_id']} · report {html_path}")
    return "\n".join(lines)

