"""memory-pressure's verdict check (only the hog was OOM-killed) and the Kubernetes hog's reads, without a cluster."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from resilience.faults.memory_pressure import measurements
from resilience.platforms.kubernetes.memory import active_deadline_s, as_memory_hog, oom_kills, stress_pod

HOG = {"name": "chaos-memory-hog", "limit_mb": 64, "hog_mb": 256, "running": True, "oom_kills": 3}
APP = {"api-1": {"instance": "101", "restarts": 0}, "api-2": {"instance": "102", "restarts": 2}}


@pytest.mark.parametrize(
    ("observed", "kills", "disturbed", "detail"),
    [
        ({"hog": HOG, "app_before": APP, "app_after": APP}, 3, 0, "2 replica(s), restart counts unchanged"),
        ({"hog": {**HOG, "oom_kills": 0}, "app_before": APP, "app_after": APP}, 0, 0,
         "2 replica(s), restart counts unchanged"),
        ({"hog": None, "app_before": APP, "app_after": APP}, None, 0, "2 replica(s), restart counts unchanged"),
        ({"hog": HOG, "app_before": APP, "app_after": {**APP, "api-2": {"instance": "102", "restarts": 3}}}, 3, 1,
         "api-2 restarted (2 -> 3)"),
        ({"hog": HOG, "app_before": APP, "app_after": {**APP, "api-1": {"instance": "201", "restarts": 0}}}, 3, 1,
         "api-1 was replaced (101 -> 201)"),
        ({"hog": HOG, "app_before": APP, "app_after": {"api-1": APP["api-1"]}}, 3, 1,
         "api-2 is gone (evicted or replaced)"),
        ({"hog": HOG, "app_after": APP}, 3, None, "restart counts before the fault not recorded"),
        ({"hog": HOG, "app_before": APP}, 3, None, "restart counts after the fault not measured"),
    ],
    ids=["met", "never-killed", "hog-gone", "app-restarted", "app-replaced", "app-gone", "no-before", "no-after"],
)
def test_the_hog_kills_and_the_disturbed_replicas_are_measured(observed, kills, disturbed, detail):
    measured = measurements(observed)
    assert measured["hog_oom_kills"].value == kills
    assert (measured["app_replicas_disturbed"].value, measured["app_replicas_disturbed"].detail) == (disturbed, detail)


def test_the_checks_fail_when_the_limit_did_not_bite_or_a_replica_restarted():
    from resilience.chaos.expectations import check_expectation, failures
    from resilience.chaos.scenarios import load_catalogue

    checks = load_catalogue()["memory-pressure"].checks

    def failed(observed):
        measured = measurements(observed)
        return failures([check_expectation(c, measured.get(c.measure), {}) for c in checks])

    assert failed({"hog": HOG, "app_before": APP, "app_after": APP}) == []
    assert failed({"hog": {**HOG, "oom_kills": 0}, "app_before": APP, "app_after": APP}) == [
        "OOM kills of the test process 0 (256 MiB in a 64 MiB limit; at least 1)"]
    assert failed({}) == ["OOM kills of the test process no data (the hog was gone before the revert read it; at least 1)",
                          "app replicas restarted, replaced or gone no data (restart counts before the fault not "
                          "recorded; at most 0)"]


@pytest.mark.parametrize(("deadline", "now", "seconds"), [(110.9, 100.0, 10), (100.5, 100.0, 1), (101.0, 100.0, 1)])
def test_active_deadline_is_rounded_down_and_at_least_one_second(deadline, now, seconds):
    assert active_deadline_s(deadline, now) == seconds


def test_a_deadline_that_is_not_in_the_future_is_refused():
    with pytest.raises(ValueError, match=r"deadline_epoch_s: 100\.000 is not in the future"):
        stress_pod("chaos-memory-hog", "ofm-staging", 64, 256, 100.0, "7", now_s=100.0)


def container_status(restarts: int, state: str | None = None, last: str | None = None) -> SimpleNamespace:
    def terminated(reason: str | None) -> SimpleNamespace | None:
        return SimpleNamespace(terminated=SimpleNamespace(reason=reason, exit_code=137)) if reason else None

    return SimpleNamespace(restart_count=restarts, state=terminated(state) or SimpleNamespace(terminated=None),
                           last_state=terminated(last))


@pytest.mark.parametrize(
    ("status", "kills"),
    [
        (container_status(0), 0),
        (container_status(0, state="OOMKilled"), 1),  # killed, not restarted yet
        (container_status(3, last="OOMKilled"), 3),  # each restart followed a kill
        (container_status(3, state="OOMKilled", last="OOMKilled"), 4),
        (container_status(2, last="Error"), 0),  # restarted, but not for memory
    ],
    ids=["running", "killed-once", "restarted-3", "killed-again", "other-failure"],
)
def test_oom_kills_from_the_container_status(status, kills):
    assert oom_kills(SimpleNamespace(status=SimpleNamespace(container_statuses=[status]))) == kills


def test_a_deadline_exceeded_pod_is_an_ended_hog_with_its_values():
    pod = stress_pod("chaos-memory-hog", "ofm-staging", 64, 256, 130.0, "7", now_s=100.0)
    meta = SimpleNamespace(name="chaos-memory-hog", namespace="ofm-staging", deletion_timestamp=None,
                           labels=pod["metadata"]["labels"], annotations=pod["metadata"]["annotations"])
    status = SimpleNamespace(phase="Failed", reason="DeadlineExceeded",
                             container_statuses=[container_status(2, state="Error", last="OOMKilled")])
    hog = as_memory_hog(SimpleNamespace(metadata=meta, status=status))
    assert hog.to_dict() == {"name": "chaos-memory-hog", "limit_mb": 64, "hog_mb": 256, "running": False,
                             "oom_kills": 2, "expires_at": 130.0, "experiment": "7", "ended": "DeadlineExceeded",
                             "where": "pod ofm-staging/chaos-memory-hog"}
    assert pod["spec"]["activeDeadlineSeconds"] == 30
