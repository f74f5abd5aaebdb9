"""The runbook's checks of each scenario: parsed from scenarios.yaml, judged with no data failing, read by people."""

from __future__ import annotations

import pytest

from resilience.chaos.expectations import (
    Expectation,
    Measurement,
    check_expectation,
    failures,
    parse_expectations,
)
from resilience.chaos.scenarios import load_catalogue
from resilience.faults.pod_kill import replacements_ready_s
from resilience.platforms.types import Replica
from resilience.units import fmt


def test_every_scenario_declares_the_runbooks_expectations():
    declared = {name: [(c.measure, c.op, c.bound) for c in s.checks] for name, s in load_catalogue().items()}
    assert declared == {
        "pod-kill": [("replacements_ready_s", "max", 30), ("error_rate_pct", "max", 1), ("p95_ms", "max", 10000)],
        "redis-unavailable": [("http_5xx", "max", 0), ("p95_ms", "max_x_baseline", 2),
                              ("db_connections_pct", "max", 80), ("db_cpu_pct", "max", 80)],
        "s3-5xx": [("upload_success_pct", "min", 98), ("s3_retries", "min", 1), ("uploads_corrupt", "max", 0)],
        "postgres-failover": [("failover_s", "max", 30), ("writes_after_failover", "min", 1),
                              ("acked_writes_lost", "max", 0)],
        "memory-pressure": [("hog_oom_kills", "min", 1), ("app_replicas_disturbed", "max", 0)],
    }


@pytest.mark.parametrize(("raw", "message"), [
    ({"measure": "p95_ms"}, r"checks\[0\]: exactly one of \['max', 'min', 'max_x_baseline'\] is needed, got \[\]"),
    ({"measure": "latency", "max": 1}, r"checks\[0\]\.measure: 'latency' is not one of"),
    ({"measure": "p95_ms", "max": -1}, r"checks\[0\]\.max: -1 must be a number >= 0"),
    ({"measure": "p95_ms", "max": 1, "min": 0}, r"exactly one of .* got \['max', 'min'\]"),
    ({"measure": "http_5xx", "max_x_baseline": 2}, r"max_x_baseline: only p95_ms has a baseline"),
    ({"measure": "http_5xx", "max": 0, "optional": "yes"}, r"optional: 'yes' must be true or false"),
    ({"measure": "http_5xx", "maximum": 0}, r"unknown keys \['maximum'\]"),
])
def test_a_bad_check_is_refused_naming_the_entry(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_expectations("checks", [raw])


P95_2X = Expectation("p95_ms", "max_x_baseline", 2.0, "p95 < 2x baseline")
NO_5XX = Expectation("http_5xx", "max", 0.0, "no 5xx")
RETRIES = Expectation("s3_retries", "min", 1.0, "retries observed")
DB_CPU = Expectation("db_cpu_pct", "max", 80.0, "DB CPU within limits", optional=True)


def test_bounds_hold_at_the_limit_and_fail_past_it():
    assert check_expectation(NO_5XX, Measurement(0.0), {}).passed is True
    assert check_expectation(NO_5XX, Measurement(1.0), {}).passed is False
    assert check_expectation(RETRIES, Measurement(1.0), {}).passed is True
    assert check_expectation(RETRIES, Measurement(0.0), {}).passed is False


def test_no_data_fails_and_says_so():
    result = check_expectation(NO_5XX, None, {})
    assert (result.passed, result.measured, result.detail) == (False, None, "no data")
    assert failures([result]) == ["5xx answers to clients during the fault no data (at most 0)"]
    assert check_expectation(NO_5XX, Measurement(None, "query failed: timeout"), {}).detail == "query failed: timeout"


def test_a_required_check_the_platform_cannot_measure_fails_an_optional_one_is_left_undecided():
    why = "environments.staging.slo.window_queries.db_cpu_pct is not set"
    optional = check_expectation(DB_CPU, None, {}, not_provided=why)
    assert (optional.passed, optional.summary) == (None, f"database CPU (peak): not measured ({why})")
    assert failures([optional]) == []
    required = check_expectation(NO_5XX, None, {}, not_provided=why)
    assert (required.passed, required.detail) == (False, why)
    assert failures([required]) == [f"5xx answers to clients during the fault no data ({why}; at most 0)"]


def test_a_baseline_relative_bound_doubles_the_baseline_with_a_floor_for_noise():
    assert check_expectation(P95_2X, Measurement(90.0), {"p95_ms": 40.0}).bound == 80.0
    assert check_expectation(P95_2X, Measurement(90.0), {"p95_ms": 40.0}).passed is False
    tiny = check_expectation(P95_2X, Measurement(30.0), {"p95_ms": 4.9})  # 2 x 4.9 ms is noise: the floor is 50 ms
    assert (tiny.bound, tiny.passed) == (50.0, True)
    no_base = check_expectation(P95_2X, Measurement(30.0), {})
    assert (no_base.passed, no_base.detail) == (False, "no baseline to compare with")


@pytest.mark.parametrize(("value", "unit", "shown"), [
    (4.912, "ms", "4.9 ms"), (1520.0, "ms", "1.52 s"), (0.3148, "%", "0.315 %"), (99.9614, "%", "99.961 %"),
    (0.0, "%", "0.000 %"), (12.44, "s", "12.4 s"), (3.0, "", "3"), (2.4, "", "2.4"), (342.7, "s", "343 s"),
])
def test_values_read_with_their_units(value, unit, shown):
    assert fmt(value, unit) == shown


def ready(name, instance, since):
    return Replica(name, True, instance, ready_since=since)


def test_the_replacements_time_is_from_the_deletion_to_the_last_replacement_ready():
    replacements = (ready("api-2", "22", 1012.5), ready("api-3", "33", 1009.0))
    assert replacements_ready_s(1000.0, replacements) == 12.5
    assert replacements_ready_s(None, replacements) is None
    assert replacements_ready_s(1000.0, ()) is None  # no replacement seen: not measured
    assert replacements_ready_s(1000.0, (ready("api-2", "22", None),)) is None  # not measured is not 0


UPLOADS = Expectation("upload_success_pct", "min", 98.0, "Upload success rate > 98 %")


def test_a_rate_over_a_handful_of_events_fails_only_when_the_bound_is_out_of_reach():
    one_of_20 = check_expectation(UPLOADS, Measurement(95.0, samples=20), {})  # one failed upload of 20
    assert one_of_20.passed is True
    assert one_of_20.detail == "over 20 events: the true rate may be up to 99.112 % (95 % confidence)"
    assert check_expectation(UPLOADS, Measurement(90.0, samples=20), {}).passed is False  # 2 of 20: too many
    assert check_expectation(UPLOADS, Measurement(95.0, samples=1000), {}).passed is False  # 50 of 1000
    assert check_expectation(UPLOADS, Measurement(0.0, samples=12), {}).passed is False  # every upload failed
    assert check_expectation(UPLOADS, Measurement(95.0), {}).passed is False  # no sample size: the plain bound
    held = check_expectation(UPLOADS, Measurement(99.5, samples=200), {})
    assert (held.passed, held.detail) == (True, "over 200 events")


class FakeAudit:
    def __init__(self, audit):
        self.audit, self.windows = audit, []

    def audit_uploads(self, since_epoch_s, until_epoch_s):
        self.windows.append((since_epoch_s, until_epoch_s))
        if isinstance(self.audit, Exception):
            raise self.audit
        return self.audit


def measured_checks(audit, window_queries=None):
    """s3-5xx's checks measured on staging with no Prometheus: its window measures not configured."""
    from dataclasses import replace
    from types import SimpleNamespace

    from resilience.chaos.measure import measure_checks
    from resilience.config import load_config

    staging = load_config().environment("staging")
    environment = replace(staging, slo=replace(staging.slo, window_queries=window_queries or {}))
    platform = SimpleNamespace(environment=environment, upload_audit=FakeAudit(audit))
    results = measure_checks(platform, "s3-5xx", load_catalogue()["s3-5xx"].checks, {}, (100.0, 130.0), {})
    return {r.measure: r for r in results}, platform.upload_audit.windows


def test_a_required_window_check_the_environment_does_not_configure_fails_naming_the_setting():
    from resilience.platforms.types import UploadAudit

    results, _ = measured_checks(UploadAudit(12))
    assert (results["s3_retries"].passed, results["s3_retries"].detail) == (
        False, "environments.staging.slo.window_queries.s3_retries is not set")


def test_the_upload_audit_reads_the_fault_window_and_names_what_is_missing_or_corrupt():
    from resilience.platforms.types import UploadAudit

    results, windows = measured_checks(UploadAudit(12))
    assert windows == [(100.0, 130.0)]
    assert (results["uploads_corrupt"].passed, results["uploads_corrupt"].measured) == (True, 0)
    assert results["uploads_corrupt"].detail == "12 acknowledged upload(s) read back"
    bad, _ = measured_checks(UploadAudit(12, missing=("uploads/a",), corrupt=("uploads/b",), sized_only=3))
    assert (bad["uploads_corrupt"].passed, bad["uploads_corrupt"].measured) == (False, 2)
    assert bad["uploads_corrupt"].detail == ("12 acknowledged upload(s) read back, 3 of them by size only (past the "
                                             "audit's byte budget): uploads/a missing, uploads/b corrupt")
    none, _ = measured_checks(UploadAudit(0))  # nothing acknowledged: nothing was proven intact
    assert (none["uploads_corrupt"].passed, none["uploads_corrupt"].measured) == (False, None)
    failed, _ = measured_checks(ConnectionError("bucket unreachable"))
    assert failed["uploads_corrupt"].passed is False
    assert failed["uploads_corrupt"].detail == "audit failed: ConnectionError: bucket unreachable"
