"""The report of a DR operation (activation, failback, emergency rollback): JSON and HTML.

Top-level keys follow Chaos Toolkit's run record (``status``, ``deviated``, ``start``, ``end``,
``duration``); the rest says what was decided, each step, each check, every DNS change, and
for a failback the canary's weights and gate metrics over time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from resilience import charts
from resilience.checks import Check
from resilience.dr.activation_params import QUESTIONS
from resilience.dr.decision import phase_report
from resilience.dr.plan import PLAN_KEY, PLANNED, plan_html, plan_message
from resilience.dr.required_steps import Recorded, operation_steps, step_checks
from resilience.journal import report_header
from resilience.reporting import CSS

TITLES = {"dr_activation": "DR activation", "dr_failback": "Return to primary", "emergency_rollback":
          "Emergency rollback"}


def _moment(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def build_report(record: dict[str, Any], dns_changes: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """The report document from the run's journal (pure)."""
    details, steps = record["details"], record["steps"]
    started = _moment(record["started_at"])
    ended = _moment(record["finished_at"]) if record.get("finished_at") else now
    failed = [s for s in steps if s["status"] == "failed"]
    checks = [*details.get("checks", []), *deletion_checks(details.get("sync"))]
    planned = details.get(PLAN_KEY) is not None  # plan mode: no step was meant to run
    required = [] if planned else required_step_checks(record)
    canary = details.get("canary")
    rolled_back = bool(canary and canary.get("status") == "rolled_back")
    status = PLANNED if planned and not failed else "rolled_back" if rolled_back else (
        "failed" if failed or any(not c["passed"] for c in [*checks, *required]) else "passed")
    report: dict[str, Any] = {
        **report_header(record, details.get("kind", record["dag_id"])),
        "status": status, "deviated": status not in ("passed", PLANNED),
        "start": started.isoformat(), "end": ended.isoformat(), "duration": (ended - started).total_seconds(),
        "steps": [{**s, "offset_s": (_moment(s["start"]) - started).total_seconds()} for s in steps],
        "checks": checks,
        "required_steps": required,
        "dns_changes": dns_changes,
        **{k: v for k, v in details.items() if k not in ("kind", "checks")},
    }
    if report["kind"] == "dr_activation" and not planned:
        target = float(record["params"].get("rto_target", 30))
        validated = next((s for s in steps if s["step"] == "final_validation" and s["status"] == "success"), None)
        rto_s = (_moment(validated["end"]) - started).total_seconds() if validated and status == "passed" else None
        report["rto"] = {"measured_s": rto_s, "target_min": target,
                         "passed": rto_s is not None and rto_s <= target * 60}
        report["phases"] = phase_report(steps, started, target)
    return report


def deletion_checks(sync: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A check once a sync ran: it fails while rows DR deleted are still on the primary (pure).

    Conflicts leave the run passed: each one is resolved by the policy the operator chose and listed.
    A deletion is resolved by nobody (the sync reports it and never deletes on the primary), so the
    primary holds data its users deleted: like any failed check, the run fails, naming the count; the
    rows are listed under the data synchronisation to delete them there or confirm they stay.
    """
    if not sync or "deleted_in_dr" not in sync:  # no sync, or one recorded before deletions were looked for
        return []
    count = sync["deleted_in_dr"]
    per_table = ", ".join(f"{t} {s['deleted_in_dr']}" for t, s in sync["tables"].items() if s.get("deleted_in_dr"))
    detail = (f"{count} row(s) DR deleted are still on the primary ({per_table}): not applied, see the data "
              "synchronisation" if count else "no row DR deleted is still on the primary")
    return [Check("rows deleted in DR", not count, detail).to_dict()]


def recorded_steps(record: dict[str, Any]) -> dict[str, Recorded]:
    """Each step's last record (a cleared and re-run task records again); the stability sensor's
    verdict, kept in the details, stands for ``wait_primary_stable``."""
    recorded = {s["step"]: Recorded(s["status"], s.get("error") or (s.get("details") or {}).get("reason"))
                for s in record["steps"]}
    stability = record["details"].get("stability")
    if stability:
        failing = "; ".join(c["detail"] for c in stability.get("checks", []) if not c["passed"])
        recorded["wait_primary_stable"] = Recorded("success" if stability["status"] == "stable" else "failed",
                                                   failing or f"stability {stability['status']}")
    return recorded


def required_step_checks(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A check per step the run's path needs (record first, Airflow's task states as the second witness)."""
    try:
        required = operation_steps(record["dag_id"], record["params"], record["details"])
    except (KeyError, TypeError, ValueError) as exc:
        return [Check("required steps", False, f"cannot tell which steps this run needed: {exc}").to_dict()]
    states = record["details"].get("task_states")
    return [c.to_dict() for c in step_checks(required, recorded_steps(record), states)]


def _rows(items: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in items)


def _checks(checks: list[dict[str, Any]]) -> str:
    return "".join(
        f'<tr><td class="{"pass" if c["passed"] else "fail"}">{"PASS" if c["passed"] else "FAIL"}</td>'
        f'<td>{escape(c["name"])}</td><td>{escape(str(c["detail"]))}</td></tr>' for c in checks)


def _phases(report: dict[str, Any]) -> str:
    if "phases" not in report:
        return ""
    def ended(p: dict[str, Any]) -> str:
        return "" if p["end_s"] is None else f"{p['end_s'] / 60:.2f} min"

    rows = "".join(
        f"<tr><td>{escape(p['phase'])}</td><td>{escape(p['status'])}</td><td>{ended(p)}</td>"
        f"<td>by {p['budget_end_s'] / 60:.1f} min</td>"
        f"<td class=\"{'pass' if p['within_budget'] else 'fail' if p['within_budget'] is False else ''}\">"
        f"{'' if p['within_budget'] is None else 'within' if p['within_budget'] else 'OVER'}</td></tr>"
        for p in report["phases"])
    rto = report["rto"]
    measured = "not reached" if rto["measured_s"] is None else f"{rto['measured_s'] / 60:.2f} min"
    return (f"<h2>RTO and phase budgets</h2><p>RTO achieved: <b class=\"{'pass' if rto['passed'] else 'fail'}\">"
            f"{measured}</b> (target {rto['target_min']:g} min, start to validated service).</p>"
            f"<table><tr><th>phase</th><th>status</th><th>ended at</th><th>budget</th><th></th></tr>{rows}</table>")


def _canary(canary: dict[str, Any] | None) -> str:
    if not canary or not canary.get("samples"):
        return ""
    samples = canary["samples"]
    t0 = samples[0]["at"]
    labels = [f"{s['at'] - t0:.0f}s" for s in samples]

    def series(region: str, metric: str) -> list[float | None]:
        return [s[region].get(metric) for s in samples]

    weights = charts.line_chart(labels, {"primary weight %": [float(s["weight"]) for s in samples],
                                         "DR weight %": [100.0 - s["weight"] for s in samples]}, unit="%")
    errors = charts.line_chart(labels, {"primary error rate %": series("primary", "error_rate_pct"),
                                        "DR error rate %": series("dr", "error_rate_pct")}, unit="%")
    latency = charts.line_chart(labels, {"primary p95 ms": series("primary", "p95_ms"),
                                         "DR p95 ms": series("dr", "p95_ms")}, unit="ms")
    analyses = "".join(
        f"<tr><td>{a['at'] - t0:.0f} s</td><td>{a['weight']} %</td><td>{escape(a['action'])}</td>"
        f"<td>{a['failed_checks']}</td><td>{escape('; '.join(c['detail'] for c in a['checks']))}</td></tr>"
        for a in canary.get("analyses", []) if a["action"] != "advance"
    ) or "<tr><td colspan=5>every check passed</td></tr>"
    return (f"<h2>Canary ramp — {escape(canary['status'])}</h2><p>Steps {canary['plan']} %; "
            f"{canary.get('failed_checks', 0)} failed check(s).</p><h3>Traffic weights</h3>{weights}"
            f"<h3>Error rate</h3>{errors}<h3>p95 latency</h3>{latency}"
            f"<h3>Failed checks</h3><table><tr><th>t</th><th>weight</th><th>action</th><th>failed</th>"
            f"<th>why</th></tr>{analyses}</table>")


def _sync(sync: dict[str, Any] | None) -> str:
    if not sync:
        return ""
    rows = "".join(f"<tr><td>{escape(t)}</td><td>{s['copied']}</td><td>{s['applied']}</td><td>{s['conflicts']}</td>"
                   f"<td>{s.get('deleted_in_dr', '')}</td></tr>" for t, s in sync["tables"].items())
    conflicts = "".join(f"<tr><td>{escape(c['table'])}</td><td>{escape(str(c['key']))}</td>"
                        f"<td>{escape(c['resolution'])}</td></tr>" for c in sync.get("conflict_rows", [])[:50])
    deleted = "".join(f"<tr><td>{escape(d['table'])}</td><td>{escape(str(d['key']))}</td></tr>"
                      for d in sync.get("deleted_rows", [])[:50])
    return (f"<h2>Data synchronisation</h2><p>Rows written in DR since {escape(str(sync['since']))}, "
            f"copied with COPY and applied as upserts (policy {escape(sync['policy'])}).</p>"
            f"<table><tr><th>table</th><th>copied</th><th>applied</th><th>conflicts</th><th>deleted in DR</th></tr>"
            f"{rows}</table>"
            + (f"<h3>Conflicts (first 50)</h3><table><tr><th>table</th><th>key</th><th>resolution</th></tr>"
               f"{conflicts}</table>" if conflicts else "")
            + (f"<h3>Deleted in DR, still on the primary (first 50 of {sync['deleted_in_dr']})</h3><p>Not applied: "
               "delete them on the primary or confirm they stay.</p><table><tr><th>table</th><th>key</th></tr>"
               f"{deleted}</table>" if deleted else ""))


def _incident(report: dict[str, Any]) -> str:
    """The declared incident: severity, escalation, and the link to its drafted Incident Report (same folder)."""
    incident = report.get("incident_report")
    if not incident:
        return ""
    severity = report.get("severity") or {}
    escalated = report.get("escalation") or {}
    reached = [c["channel"] for c in escalated.get("channels") or [] if c["posted"]]
    paged = "; PagerDuty paged" if escalated.get("pagerduty") else ""
    return (f"<h2>Incident</h2><p>Incident <b>{escape(incident['id'])}</b>, severity "
            f"<b>{escape(str(severity.get('level', '?')))}</b> ({escape(str(severity.get('reason', '')))}); "
            f"escalated to {escape(', '.join(reached) or 'no channel')}{paged}. Incident report draft: "
            f'<a href="{escape(incident["name"])}">{escape(incident["name"])}</a></p>')


def render_html(report: dict[str, Any]) -> str:
    title = TITLES.get(report["kind"], report["kind"])
    status = report["status"]
    css_status = "passed" if status in ("passed", PLANNED) else "failed"
    path = report.get("path")
    answers = report.get("answers") or {}
    decision = ""
    if path:
        decision = ("<h2>Decision tree</h2><table>" + _rows(
            [(q.replace("_", " ") + "?", f"{'YES' if a['answer'] else 'NO'} — "
              f"{'detected' if a['param'] == 'auto' else 'param ' + escape(a['param'])}: {escape(a['evidence'])}")
             for q, a in sorted(answers.items(), key=lambda qa: QUESTIONS.index(qa[0]))])
            + f"</table><p>Path: <b>{escape(path['kind'])}</b>"
            + (f", restore <b>{escape(path['restore'])}</b>" if path.get("restore") else "")
            + f" — {escape(path['reason'])}</p>")
    if report.get("restored_from"):
        decision += f"<p>Database restored from <b>{escape(report['restored_from'].get('label', ''))}</b></p>"
    decision = _incident(report) + decision
    dns = "".join(f"<tr><td>{escape(str(c['at']))}</td><td>{c['before']}</td><td>{c['after']}</td>"
                  f"<td>{escape(c['reason'])}</td></tr>" for c in report["dns_changes"])
    timeline = charts.timeline([{"phase": s["step"], "status": s["status"], "offset_s": s["offset_s"],
                                 "duration_s": s["duration_s"]} for s in report["steps"]])
    step_rows = "".join(f"<tr><td>{escape(s['step'])}</td><td>{escape(s['phase'])}</td><td>{escape(s['status'])}</td>"
                        f"<td>{s['duration_s']:.1f} s</td><td>{escape(s['error'] or '')}</td></tr>"
                        for s in report["steps"])
    params = _rows([(k, escape(str(v))) for k, v in report["params"].items()])
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>{title} {escape(report['run_id'])}: {status}</title><style>{CSS}</style></head><body>
<h1>{title} <span class="{css_status}">{status.upper().replace('_', ' ')}</span></h1>
<p>Environment {escape(report['environment'])}; run <code>{escape(report['run_id'])}</code>, {escape(report['start'])}
to {escape(report['end'])} ({report['duration']:.1f} s).</p>
{decision}{plan_html(report.get(PLAN_KEY))}{_phases(report)}
<h2>Required steps</h2><table>{_checks(report.get('required_steps', []))}</table>
<h2>Validation</h2><table>{_checks(report['checks']) or '<tr><td>no checks ran</td></tr>'}</table>
{_canary(report.get('canary'))}{_sync(report.get('sync'))}
<h2>DNS changes</h2><table><tr><th>at</th><th>before</th><th>after</th><th>why</th></tr>{dns}</table>
<h2>Steps</h2>{timeline}<table><tr><th>step</th><th>phase</th><th>status</th><th>duration</th><th>error</th></tr>
{step_rows}</table>
<h2>Parameters</h2><table>{params}</table>
</body></html>"""


def slack_message(report: dict[str, Any], html_path: str) -> str:
    title = TITLES.get(report["kind"], report["kind"])
    if report["status"] == PLANNED:
        return plan_message(title, report, html_path)
    icon = ":white_check_mark:" if report["status"] == "passed" else ":rotating_light:"
    lines = [f"{icon} {title} *{report['status'].upper().replace('_', ' ')}* — {report['environment']}"]
    if report.get("path"):
        lines.append(f"Path: {report['path']['reason']}")
    if report.get("restored_from"):
        lines.append(f"Restored from {report['restored_from'].get('label')}")
    if report.get("rto"):
        rto = report["rto"]
        lines.append("RTO " + ("not reached" if rto["measured_s"] is None else f"{rto['measured_s'] / 60:.1f} min")
                     + f" (target {rto['target_min']:g} min)")
    if report.get("canary"):
        lines.append(f"Canary: {report['canary']['status']} ({report['canary'].get('reason', 'all steps passed')})")
    missing = [c["detail"] for c in report.get("required_steps", []) if not c["passed"]]
    if missing:
        lines.append("Steps: " + "; ".join(missing))
    failed = [c["name"] for c in report["checks"] if not c["passed"]]
    if failed:
        lines.append("Failed checks: " + ", ".join(failed))
    if (report.get("sync") or {}).get("deleted_in_dr"):
        lines.append(f"Sync: {report['sync']['deleted_in_dr']} row(s) deleted in DR are still on the primary "
                     "(not applied)")
    if report.get("incident_report"):
        lines.append(f"Incident {report['incident_report']['id']} ({(report.get('severity') or {}).get('level', '?')})"
                     f" · incident report draft {report['incident_report']['markdown']}")
    lines.append(f"Run {report['run_id']} · report {html_path}")
    return "\n".join(lines)


def utcnow() -> datetime:
    return datetime.now(UTC)
