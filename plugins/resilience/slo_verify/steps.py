"""The slo_verify DAG's task bodies: validate (and open the run's journal), measure, report, Slack on failure."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from resilience.config import load_config
from resilience.journal import Journal
from resilience.slo_verify.decision import Measured, Verification, fmt_window, verify
from resilience.slo_verify.measure import WindowReadings
from resilience.slo_verify.params import parse_verify_params

log = logging.getLogger(__name__)
DAG_ID = "slo_verify"


def start_verification(params: dict[str, Any], run_id: str, run_type: str, started_at: datetime) -> dict[str, Any]:
    """Validate the Params (a scheduled run's environment from environments.yaml ``schedules``), the config and
    the Prometheus Connection; fix the window: it ends when the run started, so a retried task reads the same."""
    from resilience.notify import require_connection
    from resilience.schedules import params_for_run

    config = load_config()
    chosen, environment, settings = parse_verify_params(params_for_run(DAG_ID, run_type, params, config), config)
    require_connection(settings.prometheus_conn_id, f"environments.{environment.name}.slo_verify.prometheus_conn_id")
    end = started_at.astimezone(UTC).replace(microsecond=0).timestamp()
    require_connection(config.control_db_conn_id, "defaults.control_db_conn_id")
    log.info("Verifying the SLOs of %s over %s ending %s (Prometheus Connection %s; business metrics: %s)",
             environment.name, fmt_window(chosen.window_s), datetime.fromtimestamp(end, UTC).isoformat(),
             settings.prometheus_conn_id, ", ".join(b.name for b in settings.business) or "none mapped")
    Journal.for_conn(config.control_db_conn_id, run_id).open(DAG_ID, "slo_verify", environment.name,
                                                              chosen.to_dict(), started_at)
    return {"run_id": run_id, "dag_id": DAG_ID, "params": chosen.to_dict(), "end": end}


def _judge(run: dict[str, Any], readings_raw: dict[str, Any] | None) -> tuple[WindowReadings, Verification]:
    """The readings (None: the measure task did not finish: every check without data) and their verification."""
    chosen, _, settings = parse_verify_params(run["params"], load_config())
    window_s = chosen.window_s
    if readings_raw is None:
        nothing = Measured(None, "measure_slos did not complete (see its log)")
        readings = WindowReadings(float(run["end"]), window_s, {}, nothing,
                                  {b.name: nothing for b in settings.business})
        return readings, verify({}, nothing, [(b, nothing) for b in settings.business], window_s)
    readings = WindowReadings.from_dict(readings_raw)
    business = [(b, readings.business.get(b.name) or Measured(None, "not measured")) for b in settings.business]
    return readings, verify(readings.key, readings.previous_throughput, business, window_s)


def measure_slos(run: dict[str, Any]) -> dict[str, Any]:
    """Read every metric over the window (and throughput over the window before); log each check."""
    from resilience.slo_verify.measure import read_window

    chosen, environment, settings = parse_verify_params(run["params"], load_config())
    readings = read_window(settings, float(run["end"]), chosen.window_s)
    _, verification = _judge(run, readings.to_dict())
    for check in verification.checks:
        (log.info if check.passed else log.error)("[%s] %s", "PASS" if check.passed else "FAIL", check.reason)
    log.info("Error budget of %s: %s", environment.name, verification.budget.reason)
    return readings.to_dict()


def write_report(run: dict[str, Any] | None, readings_raw: dict[str, Any] | None) -> dict[str, Any]:
    """JSON + HTML report with the checks, the error budget and charts (runs whatever happened before)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from resilience.reporting import write_report as write_files
    from resilience.slo_verify.measure import chart_step_s, read_series
    from resilience.slo_verify.report import build_report, render_html

    if run is None:
        raise AirflowSkipException("No report: the verification did not start (its parameters were refused)")
    config = load_config()
    _, _, settings = parse_verify_params(run["params"], config)
    readings, verification = _judge(run, readings_raw)
    series = read_series(settings, readings.end, readings.window_s)
    report = build_report(run, readings, verification, settings, series, chart_step_s(readings.window_s),
                          datetime.now(UTC))
    json_path, html_path = write_files(report, config.report_dir / DAG_ID, render_html)
    Journal.for_conn(config.control_db_conn_id, run["run_id"]).close(
        report["status"], {"reason": report["reason"], "report_html": str(html_path)})
    log.info("SLO verification %s: %s — %s. Report: %s", run["run_id"], report["status"].upper(), report["reason"],
             html_path)
    return {"status": report["status"], "environment": report["environment"], "report_json": str(json_path),
            "report_html": str(html_path)}


def slack_message(report: dict[str, Any], html_path: str) -> str:
    """The Slack summary of a failed verification: each failed SLO with its value and bound, the budget left."""
    lines = [f":rotating_light: SLO verification *{report['status'].upper()}* in {report['environment']} over "
             f"{report['window']['text']} (to {report['window']['end']})"]
    lines += [f"• {c['reason']} (SLO {c['bound']})" for c in report["checks"] if not c["passed"]]
    lines.append(f"Error budget: {report['error_budget']['text']}")
    lines.append(f"Run {report['run_id']} · report {html_path}")
    return "\n".join(lines)


def notify_slack(written: dict[str, Any] | None) -> bool:
    """A failed verification to the environment's Slack Connection (logged when it is absent); a pass posts
    nothing."""
    import json
    from pathlib import Path

    from resilience.notify import post_slack

    if not written:
        log.warning("Not posting to Slack: no report was written")
        return False
    if written["status"] == "passed":
        log.info("Not posting to Slack: every SLO held")
        return False
    report = json.loads(Path(written["report_json"]).read_text())
    return post_slack(load_config().slack_conn_id_for(written["environment"]),
                      slack_message(report, written["report_html"]))

