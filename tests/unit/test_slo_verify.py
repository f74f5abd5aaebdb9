"""verify-slo's pure decisions, its config section, Params and report (resilience/slo_verify)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
import yaml

from resilience.config import DEFAULT_CONFIG_PATH, SLO_VERIFY_ENVIRONMENT_NAMES, load_config, parse_config
from resilience.slo_verify.decision import (
    ErrorBudget,
    Measured,
    SloCheck,
    above,
    below,
    budget_left_series,
    error_budget,
    fmt,
    fmt_window,
    throughput_check,
    verify,
)
from resilience.slo_verify.params import parse_verify_params
from resilience.slo_verify.settings import BusinessMetric, parse_slo_verify

DAY_S = 86400.0
OK = Measured(1.0)


@pytest.mark.parametrize(
    ("value", "error", "expected"),
    [
        (12.5, None, Measured(12.5)),
        (0.0, None, Measured(0.0)),
        (None, None, Measured(None, "empty result")),
        (math.nan, None, Measured(None, "NaN (no traffic in the window)")),
        (math.inf, None, Measured(None, "infinite (histogram without samples)")),
        (12.5, "timeout after 30 s", Measured(None, "timeout after 30 s")),
    ],
)
def test_measured_of(value, error, expected):
    assert Measured.of(value, error) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (9_999.9, SloCheck("p95_ms", "p95 latency", True, 9_999.9, "ms", "< 10 s", "p95 latency 10.00 s < 10 s")),
        (12.34, SloCheck("p95_ms", "p95 latency", True, 12.34, "ms", "< 10 s", "p95 latency 12.3 ms < 10 s")),
        (10_000.0, SloCheck("p95_ms", "p95 latency", False, 10_000.0, "ms", "< 10 s",
                            "p95 latency 10.00 s >= 10 s")),
        (12_500.0, SloCheck("p95_ms", "p95 latency", False, 12_500.0, "ms", "< 10 s",
                            "p95 latency 12.50 s >= 10 s")),
        (None, SloCheck("p95_ms", "p95 latency", False, None, "ms", "< 10 s",
                        "p95 latency: no data (empty result)")),
    ],
)
def test_below_is_strict_and_missing_fails(value, expected):
    assert below("p95_ms", "p95 latency", Measured.of(value), 10_000.0, "ms") == expected


@pytest.mark.parametrize(
    ("value", "passed", "reason"),
    [
        (99.95, True, "availability 99.950 % > 99.9 %"),
        (99.9, False, "availability 99.900 % <= 99.9 %"),
        (99.0, False, "availability 99.000 % <= 99.9 %"),
        (math.nan, False, "availability: no data (NaN (no traffic in the window))"),
    ],
)
def test_above_is_strict_and_missing_fails(value, passed, reason):
    check = above("availability_pct", "availability", Measured.of(value), 99.9, "%")
    assert (check.passed, check.reason, check.bound) == (passed, reason, "> 99.9 %")
    assert check.measured == (None if math.isnan(value) else value)


@pytest.mark.parametrize(
    ("current", "previous", "passed", "reason"),
    [
        (10.0, 10.0, True, "throughput 10.00 req/s, +0.0 % vs 10.00 req/s in the previous window (within ±20 %)"),
        (12.0, 10.0, True, "throughput 12.00 req/s, +20.0 % vs 10.00 req/s in the previous window (within ±20 %)"),
        (8.0, 10.0, True, "throughput 8.00 req/s, -20.0 % vs 10.00 req/s in the previous window (within ±20 %)"),
        (12.01, 10.0, False,
         "throughput 12.01 req/s, +20.1 % vs 10.00 req/s in the previous window (outside ±20 %)"),
        (7.99, 10.0, False, "throughput 7.99 req/s, -20.1 % vs 10.00 req/s in the previous window (outside ±20 %)"),
        (0.0, 10.0, False, "throughput 0.00 req/s, -100.0 % vs 10.00 req/s in the previous window (outside ±20 %)"),
        (10.0, 0.0, False, "throughput: no traffic in the previous window (0 req/s): nothing to compare with"),
        (10.0, None, False, "throughput: no data in the previous window (empty result): nothing to compare with"),
        (None, 10.0, False, "throughput: no data (empty result)"),
    ],
)
def test_throughput_against_the_previous_window(current, previous, passed, reason):
    check = throughput_check(Measured.of(current), Measured.of(previous), 20.0)
    assert (check.passed, check.reason, check.metric, check.unit) == (passed, reason, "throughput_rps", "req/s")


@pytest.mark.parametrize(
    ("availability", "consumed_min", "left_min", "left_pct", "reason"),
    [
        (100.0, 0.0, 1.44, 100.0,
         "1.44 min of 1.44 min left (100.0 %): 0.000 min (0.0 s) consumed over 24 h at availability 100.000 % "
         "(target 99.9 %)"),
        (99.95, 0.72, 0.72, 50.0,
         "0.720 min (43.2 s) of 1.44 min left (50.0 %): 0.720 min (43.2 s) consumed over 24 h at availability "
         "99.950 % (target 99.9 %)"),
        (99.9, 1.44, 0.0, 0.0,  # exactly at the target: all of it spent
         "0.000 min (0.0 s) of 1.44 min left (0.0 %): 1.44 min consumed over 24 h at availability 99.900 % "
         "(target 99.9 %)"),
        (99.8, 2.88, -1.44, -100.0,
         "1.44 min of 1.44 min overspent (-100.0 %): 2.88 min consumed over 24 h at availability 99.800 % "
         "(target 99.9 %)"),
        (100.0000001, 0.0, 1.44, 100.0,  # float noise past 100 % is no credit
         "1.44 min of 1.44 min left (100.0 %): 0.000 min (0.0 s) consumed over 24 h at availability 100.000 % "
         "(target 99.9 %)"),
    ],
)
def test_error_budget(availability, consumed_min, left_min, left_pct, reason):
    budget = error_budget(99.9, DAY_S, Measured(availability))
    assert budget.budget_min == pytest.approx(1.44)
    assert (budget.consumed_min, budget.left_min, budget.left_pct) == (
        pytest.approx(consumed_min, abs=1e-6), pytest.approx(left_min, abs=1e-6), pytest.approx(left_pct, abs=1e-4))
    assert budget.reason == reason


def test_error_budget_without_availability_is_unknown():
    budget = error_budget(99.9, 3600.0, Measured(None, "empty result"))
    assert budget == ErrorBudget(99.9, 3600.0, pytest.approx(0.06), None, None, None,
                                 "error budget unknown: availability has no data (empty result)")


@pytest.mark.parametrize(("target", "window_s", "message"),
                         [(100.0, DAY_S, r"target_pct: 100\.0 must be in \[0, 100\)"),
                          (99.9, 0.0, r"window_s: 0\.0 must be > 0")])
def test_error_budget_refuses_bad_input(target, window_s, message):
    with pytest.raises(ValueError, match=message):
        error_budget(target, window_s, Measured(99.9))


def test_budget_burn_down_skips_points_without_data():
    # 4 points of 15 min over 1 h at 99.9 %: budget 0.06 min; 99.8 % for 15 min consumes 0.03 min
    points = budget_left_series([(0.0, 100.0), (900.0, 99.8), (1800.0, None), (2700.0, math.nan)], 99.9, 3600.0,
                                900.0)
    assert points == [(0.0, pytest.approx(0.06)), (900.0, pytest.approx(0.03)), (1800.0, None), (2700.0, None)]


BUSINESS = (BusinessMetric("upload_success_pct", "upload success rate", "q", 98.0),)
HEALTHY = {"availability_pct": Measured(99.99), "error_rate_pct": Measured(0.01), "p95_ms": Measured(25.0),
           "p99_ms": Measured(80.0), "throughput_rps": Measured(20.0)}


def test_verify_passes_when_every_slo_holds():
    result = verify(HEALTHY, Measured(19.0), [(BUSINESS[0], Measured(99.5))], 3600.0)
    assert result.passed
    assert result.reason == "all 6 SLOs held over 1 h"
    assert [c.metric for c in result.checks] == ["p95_ms", "p99_ms", "error_rate_pct", "throughput_rps",
                                                 "availability_pct", "upload_success_pct"]
    assert result.unmapped == ("publishing_success_pct", "webhook_success_pct")
    assert result.budget.left_pct == pytest.approx(90.0)


def test_verify_fails_a_business_metric_without_data_and_a_missing_key_metric():
    key = {k: v for k, v in HEALTHY.items() if k != "p99_ms"}
    result = verify(key, Measured(19.0), [(BUSINESS[0], Measured.of(math.nan))], 3600.0)
    assert not result.passed
    assert result.reason == ("2 of 6 SLOs failed: p99 latency: no data (not measured); "
                             "upload success rate: no data (NaN (no traffic in the window))")


def test_verify_with_nothing_measured_fails_every_check():
    nothing = Measured(None, "measure_slos did not complete (see its log)")
    result = verify({}, nothing, [], DAY_S)
    assert not result.passed and not any(c.passed for c in result.checks) and len(result.checks) == 5
    assert result.budget.left_min is None


@pytest.mark.parametrize(("value", "unit", "text"),
                         [(12.345, "ms", "12.3 ms"), (1234.0, "ms", "1.23 s"), (99.98765, "%", "99.988 %"),
                          (20.0, "req/s", "20.00 req/s"), (1.44, "min", "1.44 min"), (0.18, "min", "0.180 min (10.8 s)")])
def test_numbers_read_with_their_unit(value, unit, text):
    assert fmt(value, unit) == text


@pytest.mark.parametrize(("window_s", "text"), [(DAY_S, "24 h"), (5400.0, "1.5 h"), (180.0, "3 min")])
def test_window_in_words(window_s, text):
    assert fmt_window(window_s) == text


# -- the config section ------------------------------------------------------------------------------------------

QUERIES = {m: "vector(1)" for m in ("availability_pct", "error_rate_pct", "p95_ms", "p99_ms", "throughput_rps")}


def test_section_parses_with_defaults_and_titles():
    settings = parse_slo_verify({"prometheus_conn_id": "prom", "queries": QUERIES,
                                 "business": {"webhook_success_pct": {"query": "vector(100)", "min_pct": 99.9}}},
                                "environments.x.slo_verify")
    assert settings is not None
    assert (settings.prometheus_conn_id, settings.query_timeout_s) == ("prom", 30.0)
    assert settings.business == (BusinessMetric("webhook_success_pct", "webhook success rate", "vector(100)", 99.9),)
    assert parse_slo_verify(None, "w") is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"queries": QUERIES}, r"environments\.x\.slo_verify\.prometheus_conn_id: None must be a non-empty string"),
        ({"prometheus_conn_id": "p", "queries": {**QUERIES, "p99_ms": ""}},
         r"environments\.x\.slo_verify\.queries: missing \['p99_ms'\]"),
        ({"prometheus_conn_id": "p", "queries": {**QUERIES, "cpu_pct": "x"}},
         r"environments\.x\.slo_verify\.queries: unknown metric\(s\) \['cpu_pct'\]"),
        ({"prometheus_conn_id": "p", "queries": QUERIES, "slack": "x"},
         r"environments\.x\.slo_verify: unknown key\(s\) \['slack'\]"),
        ({"prometheus_conn_id": "p", "queries": QUERIES, "query_timeout_s": 0},
         r"environments\.x\.slo_verify\.query_timeout_s: 0 must be a number of seconds in \(0, 600\]"),
        ({"prometheus_conn_id": "p", "queries": QUERIES, "business": {"uploads": {"query": "q", "min_pct": 98}}},
         r"environments\.x\.slo_verify\.business\.uploads: a business metric's name must end in _pct"),
        ({"prometheus_conn_id": "p", "queries": QUERIES, "business": {"upload_pct": {"query": "q", "min_pct": 101}}},
         r"environments\.x\.slo_verify\.business\.upload_pct\.min_pct: 101 must be a percentage in \(0, 100\]"),
        ({"prometheus_conn_id": "p", "queries": QUERIES, "business": {"upload_pct": {"min_pct": 98}}},
         r"environments\.x\.slo_verify\.business\.upload_pct\.query: None must be a non-empty string"),
    ],
)
def test_bad_section_names_the_field(section, message):
    with pytest.raises(ValueError, match=message):
        parse_slo_verify(section, "environments.x.slo_verify")


def test_a_bad_section_fails_the_whole_file_at_load():
    doc = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    doc["environments"]["lab"]["slo_verify"]["queries"].pop("p95_ms")
    with pytest.raises(ValueError, match=r"environments\.lab\.slo_verify\.queries: missing \['p95_ms'\]"):
        parse_config(doc)


def test_dropdown_matches_the_file():
    config = load_config()
    assert tuple(n for n, e in config.environments.items() if e.slo_verify) == SLO_VERIFY_ENVIRONMENT_NAMES


def test_lab_maps_what_its_app_exports():
    settings = load_config().environment("lab").slo_verify
    assert settings is not None
    assert [(b.name, b.min_pct) for b in settings.business] == [("publishing_success_pct", 95.0),
                                                                ("upload_success_pct", 98.0)]


# -- Params ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"environment": "staging", "window_h": 24}, r"params\.environment: 'staging' has no slo_verify section"),
        ({"environment": "qa", "window_h": 24}, r"params\.environment: 'qa' is not one of"),
        ({"environment": "lab", "window_h": 0.005}, r"params\.window_h: 0\.005 must be a number of hours in 0\.01\.\.168"),
        ({"environment": "lab", "window_h": 169}, r"params\.window_h: 169 must be a number of hours in 0\.01\.\.168"),
        ({"environment": "lab", "window_h": True}, r"params\.window_h: True must be a number of hours"),
        ({"environment": "lab", "window_h": "24"}, r"params\.window_h: '24' must be a number of hours"),
    ],
)
def test_bad_params_name_the_field(params, message):
    with pytest.raises(ValueError, match=message):
        parse_verify_params(params, load_config())


def test_params_at_the_window_bounds():
    for window_h in (0.01, 168):
        chosen, environment, settings = parse_verify_params({"environment": "lab", "window_h": window_h},
                                                            load_config())
        assert (chosen.environment, chosen.window_h, environment.name) == ("lab", float(window_h), "lab")
        assert settings is environment.slo_verify


# -- report and Slack message -----------------------------------------------------------------------------------

def test_report_shows_numbers_with_units_and_no_data():
    from resilience.slo_verify.measure import WindowReadings
    from resilience.slo_verify.report import build_report, render_html
    from resilience.slo_verify.steps import slack_message

    settings = load_config().environment("lab").slo_verify
    assert settings is not None
    end = datetime(2026, 12, 2, 6, 30, tzinfo=UTC).timestamp()
    readings = WindowReadings(end, DAY_S, HEALTHY, Measured(19.0),
                              {"publishing_success_pct": Measured(99.0), "upload_success_pct": Measured(None, "empty result")})
    verification = verify(readings.key, readings.previous_throughput,
                          [(b, readings.business[b.name]) for b in settings.business], DAY_S)
    series = {"availability_pct": [(end - 1800, 99.99), (end - 900, math.nan)], "p95_ms": [(end - 900, 25.0)]}
    run = {"run_id": "manual__2026-12-02", "dag_id": "slo_verify", "params": {"environment": "lab", "window_h": 24},
           "end": end}
    report = build_report(run, readings, verification, settings, {k: [(t, None if math.isnan(v) else v)
                                                                     for t, v in s] for k, s in series.items()},
                          720.0, datetime(2026, 12, 2, 6, 31, tzinfo=UTC))
    assert report["status"] == "failed"
    assert report["window"] == {"start": "2026-12-01T06:30:00+00:00", "end": "2026-12-02T06:30:00+00:00",
                                "window_s": DAY_S, "previous_start": "2026-11-30T06:30:00+00:00", "text": "24 h"}
    by_metric = {c["metric"]: c for c in report["checks"]}
    assert by_metric["p95_ms"]["measured_text"] == "25.0 ms"
    assert by_metric["upload_success_pct"]["measured_text"] is None
    assert by_metric["upload_success_pct"]["reason"] == "upload success rate: no data (empty result)"
    assert report["error_budget"]["text"] == ("1.30 min of 1.44 min left (90.0 %): 0.144 min (8.6 s) consumed over "
                                              "24 h at availability 99.990 % (target 99.9 %)")
    html = render_html(report)
    for text in ("FAILED", "25.0 ms", "&lt; 10 s", "99.990 %", "1.30 min (90.0 %)", "no data",
                 "webhook_success_pct", "<svg"):
        assert text in html, text
    message = slack_message(report, "/reports/x.html")
    assert message.splitlines()[1] == "• upload success rate: no data (empty result) (SLO > 98 %)"
    assert "Error budget: 1.30 min of 1.44 min left (90.0 %)" in message


# -- Slack and the verdict ---------------------------------------------------------------------------------------

def _written(tmp_path, status):
    report = {"status": status, "environment": "lab", "run_id": "manual__1",
              "window": {"text": "24 h", "end": "2026-12-02T06:30:00+00:00"},
              "checks": [{"passed": False, "reason": "error rate 2.000 % >= 1 %", "bound": "< 1 %"}],
              "error_budget": {"text": "1.44 min of 1.44 min left (100.0 %)"}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    return {"status": status, "environment": "lab", "report_json": str(path), "report_html": str(tmp_path / "r.html")}


def test_a_pass_posts_nothing_and_a_failure_goes_to_the_environments_slack(tmp_path, monkeypatch):
    from resilience import notify
    from resilience.slo_verify import steps

    posted = []
    monkeypatch.setattr(notify, "post_slack", lambda conn_id, text: posted.append((conn_id, text)) or True)
    assert steps.notify_slack(_written(tmp_path, "passed")) is False
    assert steps.notify_slack(None) is False
    assert posted == []
    assert steps.notify_slack(_written(tmp_path, "failed")) is True
    [(conn_id, text)] = posted
    assert conn_id == load_config().slack_conn_id_for("lab")
    assert text.splitlines()[1] == "• error rate 2.000 % >= 1 % (SLO < 1 %)"


def test_an_absent_slack_connection_is_logged_not_fatal(tmp_path, caplog):
    from resilience.slo_verify import steps

    assert steps.notify_slack(_written(tmp_path, "failed")) is False
    assert "Not posting to Slack: Connection 'resilience_slack' is not defined" in caplog.text


def test_verdict_fails_the_run_unless_every_slo_held(tmp_path):
    from resilience.errors import ChecksFailedError
    from resilience.journal import final_verdict

    assert final_verdict(_written(tmp_path, "passed"), "SLO verification") == "passed"
    with pytest.raises(ChecksFailedError, match=r"SLO verification in lab failed; see r\.html"):
        final_verdict(_written(tmp_path, "failed"), "SLO verification")
    with pytest.raises(ChecksFailedError, match="no report was written"):
        final_verdict(None, "SLO verification")


@pytest.mark.parametrize(("points", "expected"),
                         [([(0.0, 1.0), (1.0, 1.0), (2.0, 1.0), (3.0, 1.0)], 100.0),
                          ([(0.0, 1.0), (1.0, None), (2.0, math.nan)], 25.0),
                          ([], 0.0),
                          ([(float(t), 1.0) for t in range(6)], 100.0)])  # an extra edge point is no bonus
def test_coverage_of_the_window(points, expected):
    from resilience.slo_verify.decision import coverage_pct

    assert coverage_pct(points, 3600.0, 900.0) == expected


class StubPrometheus:
    """What PrometheusHook.query answers (or raises), and the PromQL and instant it was asked."""

    timeout_s = 30.0

    def __init__(self, answer):
        self.answer, self.asked = answer, []

    def query(self, promql, at=None):
        self.asked.append((promql, at))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ([({}, 99.5)], Measured(99.5)),
        ([], Measured(None, "empty result")),
        ([({}, math.nan)], Measured(None, "NaN (no traffic in the window)")),
        ([({"job": "lb"}, 1.0), ({"job": "dr_lb"}, 2.0)],
         Measured(None, "prometheus error: bad_data:expected one series, got 2 (aggregate with sum())")),
        (TimeoutError("read timed out"), Measured(None, "timeout after 30 s")),
    ],
)
def test_read_value_fills_the_window_and_never_raises(answer, expected):
    from resilience.slo_verify.measure import read_value

    hook = StubPrometheus(answer)
    assert read_value(hook, "sum(rate(x[{window}]))", 86400.0, 1_800_000_000.0) == expected
    assert hook.asked == [("sum(rate(x[86400s]))", 1_800_000_000.0)]


def test_float_noise_does_not_pass_a_bound():
    """PromQL computes a rate of 100 % as 100.00000000000001: that does not pass "> 100 %" (seen in CI)."""
    from resilience.slo_verify.decision import Measured, above, below

    assert not above("publishing_success_pct", "publishing success rate", Measured(100.00000000000001), 100.0,
                     "%").passed
    assert not below("error_rate_pct", "error rate", Measured(0.9999999999999999), 1.0, "%").passed  # 1 % is not < 1 %
    assert above("availability_pct", "availability", Measured(99.95), 99.9, "%").passed
