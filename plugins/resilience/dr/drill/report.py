"""Drill report: JSON (machine-readable, Chaos Toolkit-style top-level keys) and HTML."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from resilience import charts
from resilience.dr.drill.outcome import required_datetime
from resilience.dr.plan import PLAN_KEY, plan_html
from resilience.journal import report_header
from resilience.reporting import CSS


def build_report(record: dict[str, Any], outcome: dict[str, Any], history: list[dict[str, Any]],
                 sandbox: dict[str, Any] | None, kept: bool) -> dict[str, Any]:
    """The report document: outcome + what was run + the sandbox when it is kept (+ the plan of a plan run)."""
    planned = next(((p["details"] or {}).get(PLAN_KEY) for p in record["phases"] if p["phase"] == "plan"), None)
    return {
        **report_header(record, "dr_drill"),
        "dr_environment": record["dr_environment"],
        **outcome,
        "phase_details": {p["phase"]: {"status": p["status"], "error": p["error"], **p["details"]}
                          for p in record["phases"]},
        "sandbox": {**(sandbox or {}), "kept": kept} if sandbox else None,
        **({PLAN_KEY: planned} if planned is not None else {}),
        "history": [
            {"run_id": h["run_id"],
             "started_at": required_datetime(h["started_at"], f"drill {h['run_id']}'s started_at").isoformat(),
             "status": h["status"], "rto_s": h["rto_s"], "rpo_s": h["rpo_s"]}
            for h in history
        ],
    }


def _check_rows(checks: list[dict[str, Any]]) -> str:
    return "".join(
        f'<tr><td class="{"pass" if c["passed"] else "fail"}">{"PASS" if c["passed"] else "FAIL"}</td>'
        f'<td>{escape(c["name"])}</td><td>{escape(str(c["detail"]))}</td></tr>'
        for c in checks
    )


def _fmt_s(value: float | None) -> str:
    return "not measured" if value is None else f"{value / 60:.2f} min ({value:.1f} s)"


def render_html(report: dict[str, Any]) -> str:
    status = report["status"]
    rto, rpo = report["rto"], report["rpo"]
    trend = report["history"] + [{"started_at": report["start"], "rto_s": rto["measured_s"],
                                  "rpo_s": rpo["measured_s"], "run_id": report["run_id"]}]
    labels = [datetime.fromisoformat(h["started_at"]).strftime("%m-%d %H:%M") for h in trend]
    trend_svg = charts.line_chart(
        labels,
        {"RTO (min)": [h["rto_s"] / 60 if h["rto_s"] is not None else None for h in trend],
         "RPO (min)": [h["rpo_s"] / 60 if h["rpo_s"] is not None else None for h in trend]},
        unit="min",
        thresholds={f"RTO target {rto['target_min']:g} min": rto["target_min"],
                    f"RPO target {rpo['target_min']:g} min": rpo["target_min"]},
    )
    phase_sections = "".join(
        f"<h3>{escape(name)} — {escape(d['status'])}</h3>"
        + (f"<p class='fail'>{escape(d['error'])}</p>" if d.get("error") else "")
        + (f"<table>{_check_rows(d['checks'])}</table>" if d.get("checks") else "")
        for name, d in report["phase_details"].items()
    )
    sandbox = report.get("sandbox")
    sandbox_html = ""
    if sandbox:
        state = "kept (no_cleanup): drop it when done" if sandbox["kept"] else "dropped by cleanup_sandbox"
        sandbox_html = (f"<h2>Sandbox</h2><p><code>{escape(sandbox['name'])}</code>, {state}. "
                        f"DSN <code>{escape(sandbox.get('dsn', ''))}</code>"
                        + (f", app <code>{escape(sandbox['app_url'])}</code>" if sandbox.get("app_url") else "")
                        + "</p>")
    params = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in report["params"].items())
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>DR drill {escape(report['run_id'])}: {status}</title><style>{CSS}</style></head><body>
<h1>DR drill <span class="{status}">{status.upper()}</span></h1>
<p>{escape(report['environment'])} restored into a sandbox in {escape(report['dr_environment'])};
run <code>{escape(report['run_id'])}</code>, {escape(report['start'])} to {escape(report['end'])}
({report['duration']:.1f} s).</p>
<table>
<tr><th>RTO</th><td class="{'pass' if rto['passed'] else 'fail'}">{_fmt_s(rto['measured_s'])}</td>
<td>target {rto['target_min']:g} min; drill start to app healthy on the sandbox</td></tr>
<tr><th>RPO</th><td class="{'pass' if rpo['passed'] else 'fail'}">{_fmt_s(rpo['measured_s'])}</td>
<td>target {rpo['target_min']:g} min; newest restored write {escape(str(rpo['restored_latest_write']))}
vs {escape(str(rpo['reference']))}</td></tr>
</table>
{plan_html(report.get(PLAN_KEY))}
<h2>Verdict</h2><table>{_check_rows(report['checks'])}</table>
<h2>Timeline</h2>{charts.timeline(report['phases'])}
<h2>RTO/RPO trend</h2>{trend_svg}
{sandbox_html}
<h2>Phases</h2>{phase_sections}
<h2>Parameters</h2><table>{params}</table>
</body></html>"""
