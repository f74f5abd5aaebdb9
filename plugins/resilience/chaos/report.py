"""Campaign report: JSON with Chaos Toolkit's journal keys, HTML with per-scenario charts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any

from resilience import charts
from resilience.dr.report import CSS


def build_report(record: dict[str, Any], verdicts: list[dict[str, Any]], status: str, score: float | None,
                 series: dict[str, dict[str, list[tuple[float, float]]]], now: datetime) -> dict[str, Any]:
    """The report document; ``series`` holds per scenario the error-rate and p95 series over its window."""
    start = record["started_at"]
    end = now
    return {
        "kind": "chaos_campaign",
        "run_id": record["run_id"],
        "dag_id": record["dag_id"],
        "environment": record["environment"],
        "params": record["params"],
        "status": status,
        "deviated": any(v["status"] == "failed" for v in verdicts),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "duration": round((end - start).total_seconds(), 3),
        "resilience_score": score,
        "scenarios": [{**s, "verdict": next((v for v in verdicts if v["scenario"] == s["scenario"]), None),
                       "series": series.get(s["scenario"], {})} for s in record["scenarios"]],
    }


def _chart(scenario: dict[str, Any], metric: str, unit: str, bound: float | None) -> str:
    points = scenario.get("series", {}).get(metric) or []
    if not points:
        return f"<p>No {escape(metric)} data for this window.</p>"
    fault, revert = scenario.get("fault") or {}, scenario.get("revert") or {}
    times = [t for t, _ in points]
    shade = None
    if fault.get("injected_at"):
        end_at = revert.get("reverted_at", times[-1])
        inside = [i for i, t in enumerate(times) if fault["injected_at"] <= t <= end_at]
        shade = (inside[0], inside[-1]) if inside else None
    labels = [datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S") for t in times]
    return charts.line_chart(labels, {metric: [v for _, v in points]}, unit=unit,
                             thresholds={f"SLO bound {bound:.2f} {unit}": bound} if bound is not None else None,
                             shade=shade)


def _scenario_html(s: dict[str, Any]) -> str:
    verdict = s.get("verdict") or {"status": "not run", "reason": ""}
    bounds = ((s.get("guard") or {}).get("verdict") or {}).get("bounds", {})
    baseline = (s.get("baseline") or {}).get("baseline", {})
    observed = (s.get("revert") or {}).get("observed", {})
    css = {"passed": "pass", "failed": "fail", "aborted": "fail"}.get(verdict["status"], "")
    planned = "".join(f"<tr><td>{escape(c['step'])}</td><td><code>{escape(c['call'])}</code></td><td>"
                      + "<br>".join(escape(r) for r in c["requests"]) + "</td></tr>"
                      for c in s.get("planned_calls") or [])
    plan_table = ("<h3>Plan: the calls this run would make (none was made)</h3><table><tr><th>step</th><th>call</th>"
                  f"<th>requests</th></tr>{planned}</table>") if planned else ""
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(json.dumps(v, default=str))}</td></tr>"
                   for k, v in (("baseline", baseline), ("bounds", bounds),
                                ("plan", (s.get("fault") or {}).get("plan")), ("observed during revert", observed),
                                ("recovery_s", verdict.get("recovery_s"))))
    return (f"<h2>{escape(s['scenario'])} — <span class='{css}'>{escape(verdict['status'].upper())}</span></h2>"
            f"<p>{escape(verdict['reason'])}</p><table>{rows}</table>{plan_table}"
            f"<h3>Error rate (fault window shaded)</h3>{_chart(s, 'error_rate_pct', '%', bounds.get('error_rate_pct'))}"
            f"<h3>p95 latency</h3>{_chart(s, 'p95_ms', 'ms', bounds.get('p95_ms'))}")


def render_html(report: dict[str, Any]) -> str:
    status = report["status"]
    css = "passed" if status == "completed" else "failed"
    score = "n/a" if report["resilience_score"] is None else f"{report['resilience_score']:g} / 100"
    summary = "".join(
        f"<tr><td>{escape(s['scenario'])}</td><td>{escape((s.get('verdict') or {}).get('status', 'not run'))}</td>"
        f"<td>{escape((s.get('verdict') or {}).get('reason', ''))}</td></tr>" for s in report["scenarios"])
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Chaos campaign {escape(report['run_id'])}: {escape(status)}</title><style>{CSS}</style></head><body>
<h1>Chaos campaign <span class="{css}">{escape(status.upper())}</span></h1>
<p>{escape(report['environment'])}, run <code>{escape(report['run_id'])}</code>, {escape(report['start'])} to
{escape(report['end'])} ({report['duration']:.0f} s). Resilience score <b>{score}</b>.</p>
<table><tr><th>scenario</th><th>verdict</th><th>why</th></tr>{summary}</table>
{''.join(_scenario_html(s) for s in report['scenarios'])}
</body></html>"""
