"""The end of every DR operation: final validation, the DNS safety net and the report (the lock and the
verdict are the journal's; ``closing_tasks`` wires them)."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from resilience.config import load_config
from resilience.dr.plan import skip_in_plan_mode
from resilience.dr.regions import Regions

log = logging.getLogger(__name__)


def regions_of(run: dict[str, Any], run_id: str) -> Regions:
    config = load_config()
    return Regions(config, config.environment(run["params"]["environment"]), run_id, run.get("dag_id", ""))


def final_validation(run: dict[str, Any], run_id: str, region: str, database: dict[str, Any] | None,
                     expected_replicas: int | None, recovery_point: str | None) -> list[dict[str, Any]]:
    """The runbook's Recovery Validation Checklist against the serving region; fails on any failed check."""
    from resilience.checks import summary
    from resilience.dr.validation import checklist
    from resilience.errors import ChecksFailedError

    skip_in_plan_mode(run, "nothing was done to validate")
    regions = regions_of(run, run_id)
    with regions.record.step("final_validation", "traffic_cutover") as details:
        checks = checklist(regions, region, database, expected_replicas, recovery_point)
        details["checks"] = [c.to_dict() for c in checks]
        regions.record.note(checks=details["checks"], validated_region=region)
        if not all(c.passed for c in checks):
            raise ChecksFailedError(summary(checks))
        log.info("Recovery validation: %s (%s region)", summary(checks), region)
        return details["checks"]


def ensure_traffic(run: dict[str, Any] | None, run_id: str, home: str | None = None) -> dict[str, Any] | None:
    """Whatever failed, DNS must point at a healthy region (moves traffic only when it does not).

    ``home``: the region an unfinished operation returns all traffic to when it is healthy (a
    failback that stopped mid-ramp goes back to DR, as Flagger rolls a failed canary back).
    """
    if not run:
        log.info("The run stopped before it validated anything: DNS was not touched")
        return None
    skip_in_plan_mode(run, "DNS is not touched")
    regions = regions_of(run, run_id)
    from resilience.dr.validation import ensure_healthy_traffic, return_home

    outcome = return_home(regions, home) if home else None
    if not outcome or not outcome["moved"]:
        outcome = ensure_healthy_traffic(regions)
    if outcome["moved"]:
        regions.record.note(safety_move=outcome["change"])
    return outcome


def write_report(run: dict[str, Any] | None, run_id: str, task_states: dict[str, str | None] | None = None
                 ) -> dict[str, Any] | None:
    """Close the record and write the JSON + HTML report (runs whatever failed before).

    ``task_states``: Airflow's state of each task of the run, kept in the record as the second
    witness of the required steps (the record's own step entries come first).
    """
    if not run:
        log.warning("No report: the run was refused before it opened its record (the start task says why)")
        return None
    from resilience.dr.operation_report import build_report, render_html, utcnow
    from resilience.reporting import write_report as write_files

    regions = regions_of(run, run_id)
    if task_states is not None:
        regions.record.note(task_states=task_states)
    now = utcnow()
    record = regions.record.load()
    report = build_report(record, regions.dns_log.for_run(run_id), now)
    directory = regions.config.report_dir / report["dag_id"]
    if any(s["step"] == "declare_incident" for s in record["steps"]):
        report["incident_report"] = write_incident_report({**record, "status": report["status"]}, directory,
                                                          regions.config.control_db_conn_id, now)
    json_path, html_path = write_files(report, directory, render_html)
    regions.record.close(report["status"], {"report_html": str(html_path)}, at=now)
    for check in report["required_steps"]:
        if not check["passed"]:
            log.error("Required step: %s", check["detail"])
    log.info("%s %s: report %s", report["kind"], report["status"].upper(), html_path)
    return {"status": report["status"], "report_json": str(json_path), "report_html": str(html_path)}


def write_incident_report(record: dict[str, Any], directory: Path, control_conn_id: str, now: datetime
                          ) -> dict[str, str]:
    """The runbook's Incident Report drafted from the run's record, beside its JSON/HTML report
    (``<run>.incident.md``), and linked from the incident's row (the Resilience page, the reminders)."""
    from resilience.incidents.report import incident_report_markdown
    from resilience.incidents.store import IncidentStore, incident_id
    from resilience.reporting import report_stem

    declared = incident_id(record["run_id"], record["started_at"])
    path = directory / f"{report_stem(record['run_id'])}.incident.md"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(incident_report_markdown(record, declared, now))
    IncidentStore.for_conn(control_conn_id).set_report(record["run_id"], str(path))
    log.info("Incident report draft of %s: %s", declared, path)
    return {"id": declared, "markdown": str(path), "name": path.name}

