"""The campaign report: Chaos Toolkit's journal keys, per-scenario charts with the fault window shaded."""

from __future__ import annotations

from datetime import UTC, datetime

from resilience.chaos.conclude import slack_message
from resilience.chaos.report import build_report, render_html

T0 = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
RECORD = {
    "run_id": "manual__1", "dag_id": "chaos_campaign", "environment": "lab", "params": {"duration": 10},
    "started_at": T0,
    "scenarios": [
        {"scenario": "s3-5xx", "fault": {"injected_at": T0.timestamp() + 10, "plan": {"error_rate": 1.0}},
         "revert": {"reverted_at": T0.timestamp() + 12, "observed": {}},
         "guard": {"verdict": {"bounds": {"error_rate_pct": 1.0, "p95_ms": 50.0}}},
         "baseline": {"baseline": {"availability_pct": 100.0, "error_rate_pct": 0.0, "p95_ms": 32.94},
                      "window": [T0.timestamp() + 2, T0.timestamp() + 7], "readings": [{}] * 5, "steady": False,
                      "settle_s": 120.0, "unsettled": ["p95 32.9 ms > 9.9 ms"]},
         "checks": [{"measure": "upload_success_pct", "text": "Upload success rate > 98 %", "unit": "%", "op": "min",
                     "bound": 98.0, "measured": 91.234, "passed": False, "detail": ""},
                    {"measure": "db_cpu_pct", "text": "Database CPU within limits", "unit": "%", "op": "max",
                     "bound": 80.0, "measured": None, "passed": None,
                     "detail": "environments.lab.slo.window_queries.db_cpu_pct is not set"}]},
        {"scenario": "pod-kill"},
    ],
}
VERDICTS = [{"scenario": "s3-5xx", "status": "failed", "reason": "SLO breached: error rate 40.00 % > 1.00 % (by 39.00)",
             "recovery_s": 3.0}]
SERIES = {(None, "s3-5xx"): {"error_rate_pct": [(T0.timestamp() + i, 40.0 if 10 <= i <= 12 else 0.0) for i in range(0, 20)],
                     "p95_ms": [(T0.timestamp() + i, 12.0) for i in range(0, 20)]}}


def report():
    return build_report(RECORD, VERDICTS, "failed", 0.0, SERIES, now=datetime(2026, 11, 28, 7, 1, tzinfo=UTC))


def test_journal_keys_and_verdicts():
    r = report()
    assert {k: r[k] for k in ("status", "deviated", "start", "end", "duration")} == {
        "status": "failed", "deviated": True, "start": "2026-11-28T07:00:00+00:00",
        "end": "2026-11-28T07:01:00+00:00", "duration": 60.0}
    assert r["scenarios"][0]["verdict"]["status"] == "failed" and r["scenarios"][1]["verdict"] is None


def test_html_shades_the_fault_window_and_draws_the_bound():
    html = render_html(report())
    assert html.count("<svg") == 2  # error rate and p95 of the scenario that ran
    assert 'fill="#ffcdd2"' in html and "SLO bound 1.000 %" in html
    assert 'fill="#c8e6c9"' in html  # the baseline's window, green
    assert "No error_rate_pct data for this window." in html  # pod-kill never ran


def test_html_reads_as_numbers_with_units_and_says_when_the_baseline_was_not_steady_state():
    html = render_html(report())
    assert "availability 100.000 %, error rate 0.000 %, p95 32.9 ms; 5 readings 07:00:02-07:00:07 UTC" in html
    assert "never came back within the campaign's first baseline</b> in 120 s (p95 32.9 ms &gt; 9.9 ms)" in html
    assert "SLO bounds</th><td>error rate &le; 1.000 %, p95 &le; 50.0 ms" in html
    assert "<td>Upload success rate &gt; 98 %</td><td>91.234 %</td><td>&ge; 98.000 %</td><td><span class='fail'>FAIL" in html
    assert "<td>not measured</td><td>environments.lab.slo.window_queries.db_cpu_pct is not set</td>" in html
    assert "error_rate: 1" in html and "{" not in html.split("<body>")[1].split("<svg")[0]  # no Python dicts


def test_slack_message_lists_each_scenario():
    text = slack_message(report(), "/r/x.html")
    assert text.splitlines()[0] == ":rotating_light: Chaos campaign *FAILED* in lab — resilience score 0.0"
    assert "• s3-5xx: failed — SLO breached: error rate 40.00 % > 1.00 % (by 39.00)" in text
    assert "• pod-kill: not run — " in text
