"""Campaign report: JSON with Chaos Toolkit's journal keys, HTML with per-scenario charts."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from resilience import charts
from resilience.journal import report_header
from resilience.reporting import CSS
from resilience.units import fmt


def _key(item: dict[str, Any]) -> tuple[str | None, str]:
    return item.get("service"), item["scenario"]


def build_report(record: dict[str, Any], verdicts: list[dict[str, Any]], status: str, score: float | None,
                 series: dict[tuple[str | None, str], dict[str, list[tuple[float, float]]]], now: datetime,
                 services: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The report document; ``series`` holds per (service, scenario) the error-rate and p95 series over its
    window; ``services``, in a campaign across services, each service's status and resilience score."""
    start = record["started_at"]
    end = now
    return {
        **report_header(record, "chaos_campaign"),
        "status": status,
        "deviated": any(v["status"] == "failed" for v in verdicts),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "duration": round((end - start).total_seconds(), 3),
        "resilience_score": score,
        "scenarios": [{**s, "verdict": next((v for v in verdicts if _key(v) == _key(s)), None),
                       "series": series.get(_key(s), {})} for s in record["scenarios"]],
        **({"services": services} if services else {}),
    }


def _title(s: dict[str, Any]) -> str:
    return f"{s['service']} / {s['scenario']}" if s.get("service") else s["scenario"]


def _index_range(times: list[float], start: float, end: float) -> tuple[int, int] | None:
    inside = [i for i, t in enumerate(times) if start <= t <= end]
    return (inside[0], inside[-1]) if inside else None


def _chart(scenario: dict[str, Any], metric: str, unit: str, bound: float | None) -> str:
    points = scenario.get("series", {}).get(metric) or []
    if not points:
        return f"<p>No {escape(metric)} data for this window.</p>"
    fault, revert = scenario.get("fault") or {}, scenario.get("revert") or {}
    times = [t for t, _ in points]
    shade = _index_range(times, fault["injected_at"], revert.get("reverted_at", times[-1])) \
        if fault.get("injected_at") else None
    window = (scenario.get("baseline") or {}).get("window")
    baseline = _index_range(times, window[0], window[1]) if window else None
    labels = [datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S") for t in times]
    return charts.line_chart(labels, {metric: [v for _, v in points]}, unit=unit,
                             thresholds={f"SLO bound {fmt(bound, unit)}": bound} if bound is not None else None,
                             shade=shade, baseline=baseline)


def _clock(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%H:%M:%S")


def _baseline_text(step: dict[str, Any]) -> str:
    """``availability 100 %, error rate 0 %, p95 4.9 ms; 5 readings 10:02:11-10:02:16 UTC; ...``."""
    base = step.get("baseline")
    if not base:
        return "not measured"
    text = ", ".join(f"{label} {fmt(base[key], unit)}" for key, label, unit in (
        ("availability_pct", "availability", "%"), ("error_rate_pct", "error rate", "%"), ("p95_ms", "p95", "ms"))
        if base.get(key) is not None)
    if window := step.get("window"):
        text += f"; {len(step.get('readings') or [])} readings {_clock(window[0])}-{_clock(window[1])} UTC"
    if step.get("steady") is True:
        text += f"; taken once the metrics were back within the campaign's first baseline ({step['settle_s']:g} s)"
    elif step.get("steady") is False:
        text += ("; <b>the metrics never came back within the campaign's first baseline</b> in "
                 f"{step['settle_s']:g} s ({escape('; '.join(step.get('unsettled') or []))}): this baseline is the "
                 "previous scenario's aftermath")
    return text


def _bounds_text(bounds: dict[str, float]) -> str:
    shown = [f"{label} {op} {fmt(bounds[key], unit)}" for key, label, op, unit in (
        ("availability_pct", "availability", "&ge;", "%"), ("error_rate_pct", "error rate", "&le;", "%"),
        ("p95_ms", "p95", "&le;", "ms")) if bounds.get(key) is not None]
    return ", ".join(shown) or "not computed (the guard did not report)"


def _readable(value: Any) -> str:
    """A step's free-form document as ``key: value`` lines, not a Python dict."""
    if isinstance(value, dict):
        return "<br>".join(f"{escape(str(k))}: {_readable(v)}" for k, v in value.items()) or "&mdash;"
    if isinstance(value, list):
        return ", ".join(_readable(v) for v in value) or "&mdash;"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return escape(str(value))


def _checks_html(checks: list[dict[str, Any]]) -> str:
    if not checks:
        return ""
    result = {True: "<span class='pass'>PASS</span>", False: "<span class='fail'>FAIL</span>", None: "not measured"}

    def measured(c: dict[str, Any]) -> str:
        return "no data" if c["measured"] is None else fmt(c["measured"], c["unit"])

    def bound(c: dict[str, Any]) -> str:
        return "&mdash;" if c["bound"] is None else ("&ge; " if c["op"] == "min" else "&le; ") + fmt(c["bound"],
                                                                                                    c["unit"])

    rows = "".join(f"<tr><td>{escape(c['text'])}</td><td>{measured(c)}</td><td>{bound(c)}</td>"
                   f"<td>{result[c['passed']]}</td><td>{escape(c['detail'])}</td></tr>" for c in checks)
    return ("<h3>Runbook expectations</h3><table><tr><th>expectation</th><th>measured</th><th>bound</th>"
            f"<th>result</th><th>detail</th></tr>{rows}</table>")


def _scenario_html(s: dict[str, Any]) -> str:
    verdict = s.get("verdict") or {"status": "not run", "reason": ""}
    bounds = ((s.get("guard") or {}).get("verdict") or {}).get("bounds", {})
    observed = (s.get("revert") or {}).get("observed", {})
    css = {"passed": "pass", "failed": "fail", "aborted": "fail"}.get(verdict["status"], "")
    planned = "".join(f"<tr><td>{escape(c['step'])}</td><td><code>{escape(c['call'])}</code></td><td>"
                      + "<br>".join(escape(r) for r in c["requests"]) + "</td></tr>"
                      for c in s.get("planned_calls") or [])
    plan_table = ("<h3>Plan: the calls this run would make (none was made)</h3><table><tr><th>step</th><th>call</th>"
                  f"<th>requests</th></tr>{planned}</table>") if planned else ""
    recovery = verdict.get("recovery_s")
    rows = "".join(f"<tr><th>{label}</th><td>{text}</td></tr>" for label, text in (
        ("baseline", _baseline_text(s.get("baseline") or {})), ("SLO bounds", _bounds_text(bounds)),
        ("fault", _readable((s.get("fault") or {}).get("plan"))), ("observed during revert", _readable(observed)),
        ("recovery", "&mdash;" if recovery is None else fmt(recovery, "s"))))
    return (f"<h2>{escape(_title(s))} — <span class='{css}'>{escape(verdict['status'].upper())}</span></h2>"
            f"<p>{escape(verdict['reason'])}</p><table>{rows}</table>{_checks_html(s.get('checks') or [])}"
            f"{plan_table}<h3>Error rate (baseline green, fault window red)</h3>"
            f"{_chart(s, 'error_rate_pct', '%', bounds.get('error_rate_pct'))}"
            f"<h3>p95 latency</h3>{_chart(s, 'p95_ms', 'ms', bounds.get('p95_ms'))}")


def _score_text(score: float | None) -> str:
    return "n/a" if score is None else f"{score:g} / 100"


def _services_html(services: dict[str, dict[str, Any]]) -> str:
    """A campaign across services: one row per service, its score and how many of its faults passed."""
    if not services:
        return ""
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td class='{'pass' if s['status'] == 'completed' else 'fail'}'>"
        f"{escape(s['status'])}</td><td>{_score_text(s['resilience_score'])}</td>"
        f"<td>{s['passed']} of {s['scenarios']}</td></tr>" for name, s in services.items())
    return ("<h2>Services</h2><table><tr><th>service</th><th>status</th><th>resilience score</th>"
            f"<th>faults passed</th></tr>{rows}</table>")


def render_html(report: dict[str, Any]) -> str:
    status = report["status"]
    css = "passed" if status == "completed" else "failed"
    score = _score_text(report["resilience_score"])
    summary = "".join(
        f"<tr><td>{escape(_title(s))}</td><td>{escape((s.get('verdict') or {}).get('status', 'not run'))}</td>"
        f"<td>{escape((s.get('verdict') or {}).get('reason', ''))}</td></tr>" for s in report["scenarios"])
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Chaos campaign {escape(report['run_id'])}: {escape(status)}</title><style>{CSS}</style></head><body>
<h1>Chaos campaign <span class="{css}">{escape(status.upper())}</span></h1>
<p>{escape(report['environment'])}, run <code>{escape(report['run_id'])}</code>, {escape(report['start'])} to
{escape(report['end'])} ({report['duration']:.0f} s). Resilience score <b>{score}</b>.</p>
{_services_html(report.get('services') or {})}
<table><tr><th>scenario</th><th>verdict</th><th>why</th></tr>{summary}</table>
{''.join(_scenario_html(s) for s in report['scenarios'])}
</body></html>"""
