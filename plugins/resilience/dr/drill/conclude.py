"""Runbook steps 6-8: RTO/RPO against targets, the report and its Slack summary (the verdict is the journal's)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from resilience.checks import Check
from resilience.dr.drill.run import Drill
from resilience.errors import ChecksFailedError
from resilience.platforms.types import Sandbox

log = logging.getLogger(__name__)


def measure_rto_rpo(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Runbook step 6: RTO (start to app healthy) and RPO (data-loss window) against the targets."""
    from resilience.dr.drill.outcome import drill_outcome

    drill = Drill.from_xcom(params, run_id)
    with drill.record.step("measure_rto_rpo") as details:  # a required step: it records itself like the others
        outcome = drill_outcome(drill.record.load(), datetime.now(UTC))
        for row in outcome["phases"]:
            log.info("Phase %-17s %8.2f s  (%4.1f %%)  %s", row["phase"], row["duration_s"], row["share_pct"],
                     row["status"])
        rto, rpo = outcome["rto"], outcome["rpo"]
        targets = [c for c in outcome["checks"] if c["name"] in ("RTO within target", "RPO within target")]
        details["checks"] = targets
        for check in targets:
            log.info("%s", Check(**check))
        if not all(c["passed"] for c in targets):
            raise ChecksFailedError("; ".join(f"{c['name']}: {c['detail']}" for c in targets if not c["passed"]))
        return {"rto_s": rto["measured_s"], "rpo_s": rpo["measured_s"]}


def write_drill_report(params: dict[str, Any] | None, run_id: str, sandbox: dict[str, Any] | None,
                       task_states: dict[str, str | None] | None = None) -> dict[str, Any]:
    """Runbook step 7: complete the record and write the JSON + HTML report (runs whatever failed).

    ``task_states``: Airflow's state of each task of the run, the second witness of the required steps.
    """
    from resilience.dr.drill.outcome import drill_outcome
    from resilience.dr.drill.report import build_report, render_html
    from resilience.reporting import write_report

    if params is None:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException("No report: the drill did not start (its parameters were refused)")
    drill = Drill.from_xcom(params, run_id)
    record = drill.record.load()
    outcome = drill_outcome(record, datetime.now(UTC), task_states)
    for check in outcome["checks"]:
        if check["name"].startswith("step ") and not check["passed"]:
            log.error("Required step: %s", check["detail"])
    box = dict(sandbox) if sandbox else None
    if box:
        box["dsn"] = Sandbox.from_dict(box).dsn(drill.source_credentials[0])
        box["app_url"] = next((p["details"].get("app_url") for p in record["phases"]
                               if p["phase"] == "app_connectivity"), None)
    report = build_report(record, outcome, drill.record.earlier(record["environment"]), box,
                          kept=drill.params.no_cleanup)
    json_path, html_path = write_report(report, drill.config.report_dir / "dr_monthly_drill", render_html)
    drill.record.close(outcome["status"],
                       {"checks": outcome["checks"], "task_states": task_states, "report_html": str(html_path)},
                       rto_s=outcome["rto"]["measured_s"], rpo_s=outcome["rpo"]["measured_s"])
    log.info("DR drill %s: %s. Report: %s (JSON %s)", run_id, outcome["status"].upper(), html_path, json_path)
    return {"status": outcome["status"], "report_json": str(json_path), "report_html": str(html_path)}


def notify_slack(written: dict[str, Any] | None) -> bool:
    """Runbook step 8: the summary to Slack (logged instead when the Connection is absent)."""
    from resilience.notify import drill_message, post_report

    if written and written["status"] == "planned":
        from resilience.dr.plan import plan_message

        return post_report(written, lambda report, html: plan_message("DR drill", report, html))
    return post_report(written, drill_message)

