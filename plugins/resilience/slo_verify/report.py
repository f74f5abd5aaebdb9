"""verify-slo's report: JSON (numbers with their unit) and HTML (checks, error budget, charts)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from resilience import charts
from resilience.reporting import CSS
from resilience.slo_verify.decision import (
    KeyMetricsPolicy,
    Verification,
    budget_left_series,
    coverage_pct,
    fmt,
    fmt_window,
)
from resilience.slo_verify.measure import WindowReadings
from resilience.slo_verify.settings import SloVerifySettings

OFF_SCALE = 5.0  # a bound more than this times the highest point is named, not drawn (it would flatten the data)


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")


def build_report(run: dict[str, Any], readings: WindowReadings, verification: Verification,
                 settings: SloVerifySettings, series: dict[str, list[tuple[float, float | None]]], step_s: float,
                 now: datetime) -> dict[str, Any]:
    """The report document: every check with its value and unit, the error budget, the queries and the series."""
    end, window_s = float(run["end"]), verification.window_s
    budget = verification.budget
    return {
        "kind": "slo_verify",
        "run_id": run["run_id"],
        "dag_id": run["dag_id"],
        "environment": run["params"]["environment"],
        "params": run["params"],
        "status": "passed" if verification.passed else "failed",
        "reason": verification.reason,
        "window": {"start": _iso(end - window_s), "end": _iso(end), "window_s": window_s,
                   "previous_start": _iso(end - 2 * window_s), "text": fmt_window(window_s)},
        "checks": [{**c.to_dict(), "measured_text": None if c.measured is None else fmt(c.measured, c.unit)}
                   for c in verification.checks],
        "error_budget": {**budget.to_dict(), "text": budget.reason},
        "unmapped_business_metrics": list(verification.unmapped),
        "readings": readings.to_dict(),
        "queries": {**settings.queries, **{b.name: b.query for b in settings.business}},
        "chart_step_s": step_s,
        # how much of the window the availability series has values for (informational: each check judges
        # what Prometheus holds; a window older than the data shows here, and in the throughput check)
        "coverage_pct": coverage_pct(series.get("availability_pct") or [], window_s, step_s),
        "series": {name: [[t, v] for t, v in points] for name, points in series.items()},
        "generated_at": now.isoformat(timespec="seconds"),
    }


def _labels(times: Sequence[float], window_s: float) -> list[str]:
    form = "%H:%M" if window_s <= 86400 else "%m-%d %H:%M"
    return [datetime.fromtimestamp(t, UTC).strftime(form) for t in times]


def _chart(report: dict[str, Any], names: dict[str, str], unit: str, bounds: dict[str, float]) -> str:
    """The series ``names`` (series key -> legend) on one chart, with the ``bounds`` that fit its scale."""
    shown = {legend: report["series"].get(key) or [] for key, legend in names.items()}
    first = next((points for points in shown.values() if points), None)
    if first is None:
        return "<p>No data for this chart (see the task log for why).</p>"
    values = [v for points in shown.values() for _, v in points if v is not None]
    top = max(values, default=0.0)
    drawn = {name: b for name, b in bounds.items() if not top or b <= OFF_SCALE * top}
    off = [name for name in bounds if name not in drawn]
    note = (f"<p class='small'>{escape(', '.join(off))}: off this chart's scale (the highest point is "
            f"{fmt(top, unit)}).</p>") if off else ""
    svg = charts.line_chart(_labels([t for t, _ in first], report["window"]["window_s"]),
                            {legend: [v for _, v in points] for legend, points in shown.items()},
                            unit=unit, thresholds=drawn or None)
    return svg + note


def _budget_chart(report: dict[str, Any]) -> str:
    budget = report["error_budget"]
    points = budget_left_series([(t, v) for t, v in report["series"].get("availability_pct") or []],
                                budget["target_pct"], budget["window_s"], report["chart_step_s"])
    if not points:
        return "<p>No availability series: no burn-down.</p>"
    left = [None if v is None else max(v, 0.0) for _, v in points]  # an overspent budget shows as 0 here
    return charts.line_chart(_labels([t for t, _ in points], report["window"]["window_s"]),
                             {"error budget left (min)": left}, unit="min",
                             thresholds={f"budget {fmt(budget['budget_min'], 'min')}": budget["budget_min"]})


def _check_rows(checks: list[dict[str, Any]]) -> str:
    return "".join(
        f'<tr><td class="{"pass" if c["passed"] else "fail"}">{"PASS" if c["passed"] else "FAIL"}</td>'
        f'<td>{escape(c["title"])}</td><td>{escape(c["measured_text"] or "no data")}</td>'
        f'<td>{escape(c["bound"])}</td><td>{escape(c["reason"])}</td></tr>'
        for c in checks)


def _coverage_html(report: dict[str, Any]) -> str:
    coverage = report["coverage_pct"]
    if coverage >= 100:
        return ""
    return (f"<p class='fail'>Prometheus has availability data for {coverage:.0f} % of the window only (chart steps "
            f"of {report['chart_step_s']:g} s): the numbers stand on that part.</p>")


def _budget_html(budget: dict[str, Any]) -> str:
    if budget["left_min"] is None:
        return f"<p class='fail'>{escape(budget['text'])}</p>"
    css = "pass" if budget["left_min"] >= 0 else "fail"
    return (f"<table><tr><th>target</th><td>{budget['target_pct']:g} % availability</td></tr>"
            f"<tr><th>budget</th><td>{fmt(budget['budget_min'], 'min')} over {fmt_window(budget['window_s'])}</td></tr>"
            f"<tr><th>consumed</th><td>{fmt(budget['consumed_min'], 'min')}</td></tr>"
            f"<tr><th>left</th><td class='{css}'>{fmt(budget['left_min'], 'min')} ({budget['left_pct']:.1f} %)</td>"
            f"</tr></table><p>{escape(budget['text'])}</p>")


def render_html(report: dict[str, Any]) -> str:
    status, window = report["status"], report["window"]
    policy = KeyMetricsPolicy()
    unmapped = report["unmapped_business_metrics"]
    unmapped_html = (f"<p>Not measured (no query in environments.yaml slo_verify.business): "
                     f"{escape(', '.join(unmapped))}.</p>") if unmapped else ""
    queries = "".join(f"<tr><th>{escape(k)}</th><td><code>{escape(q)}</code></td></tr>"
                      for k, q in report["queries"].items())
    throughput_bounds = {}
    prev_value = report["readings"]["previous_throughput"]["value"]
    if prev_value:
        change = policy.max_throughput_change_pct / 100
        throughput_bounds = {f"previous -{change:.0%}": prev_value * (1 - change),
                             f"previous +{change:.0%}": prev_value * (1 + change)}
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>SLO verification {escape(report['run_id'])}: {escape(status)}</title><style>{CSS}</style></head><body>
<h1>SLO verification <span class="{status}">{escape(status.upper())}</span></h1>
<p>{escape(report['environment'])}, {escape(window['text'])} from {escape(window['start'])} to {escape(window['end'])}
(throughput compared with {escape(window['previous_start'])} to {escape(window['start'])}); run
<code>{escape(report['run_id'])}</code>.</p>
<p>{escape(report['reason'])}</p>
{_coverage_html(report)}
<table><tr><th></th><th>SLO</th><th>measured</th><th>bound</th><th>why</th></tr>{_check_rows(report['checks'])}</table>
{unmapped_html}
<h2>Error budget</h2>{_budget_html(report['error_budget'])}
<h3>Error budget left over the window</h3>{_budget_chart(report)}
<h2>Error rate</h2>{_chart(report, {"error_rate_pct": "error rate (%)"}, "%",
                             {f"SLO < {policy.max_error_rate_pct:g} %": policy.max_error_rate_pct})}
<h2>Latency</h2>{_chart(report, {"p95_ms": "p95 (ms)", "p99_ms": "p99 (ms)"}, "ms",
                          {f"p95 SLO < {policy.max_p95_ms / 1000:g} s": policy.max_p95_ms,
                           f"p99 SLO < {policy.max_p99_ms / 1000:g} s": policy.max_p99_ms})}
<h2>Throughput, this window and the one before</h2>{_chart(
        report, {"throughput_rps": "this window (req/s)", "throughput_previous_rps": "previous window (req/s)"},
        "req/s", throughput_bounds)}
<h2>Queries</h2><table>{queries}</table>
</body></html>"""
