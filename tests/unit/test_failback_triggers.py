"""The failback triggers with scripted Prometheus readings, a fake clock and an in-memory Route53."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest

from resilience.triggers import CanaryRampTrigger, PrimaryStableTrigger

RECORD = {"zone_id": "Z1", "name": "api.resilience.lab.", "targets": {"primary": "127.0.0.1", "dr": "127.0.0.2"},
          "ttl": 1}
RAMP = {"aws_conn_id": "aws", "record": RECORD, "plan": [50, 100], "interval_s": 3, "warmup_s": 1, "threshold": 2,
        "prometheus_conn_id": "prom", "primary_queries": {"error_rate_pct": "P_ERR", "p95_ms": "P_P95"},
        "dr_queries": {"error_rate_pct": "D_ERR", "p95_ms": "D_P95"},
        "policy": {"max_error_rate_delta_pct": 1.0, "max_p95_ratio": 2.0, "p95_floor_ms": 50.0,
                   "max_error_rate_pct": 1.0, "max_p95_ms": 10000.0}}
GOOD = {"error_rate_pct": 0.0, "p95_ms": 5.0}
BAD = {"error_rate_pct": 40.0, "p95_ms": 5.0}
NONE = {"error_rate_pct": None, "p95_ms": None}


DNS: dict[str, list] = {"history": []}  # every weight change the trigger made, in order


class FakeRoute53:
    """Route53Weights in memory."""

    def __init__(self, aws_conn_id, record):
        pass

    def weights(self):
        return dict(DNS["history"][-1]) if DNS["history"] else {"primary": 0, "dr": 100}

    def set_weights(self, primary, dr):
        DNS["history"].append({"primary": primary, "dr": dr})
        return self.weights()


def run_ramp(primary_readings, args=RAMP, history=(), dns_log=None):
    """One trigger run on fake readings; DNS starts at ``history``; ``dns_log`` stands for dns_changes."""
    DNS["history"] = list(history)
    readings = iter(primary_readings)

    async def fake_read(hook, session, queries, timeout_s):
        return (dict(next(readings)) if queries["error_rate_pct"] == "P_ERR" else dict(GOOD)), {}

    clock = itertools.count(0.0, 1.0)
    with contextlib.ExitStack() as patches:
        patches.enter_context(mock.patch("resilience.prometheus.read_values_async", fake_read))
        patches.enter_context(mock.patch("resilience.dns.Route53Weights", FakeRoute53))
        if dns_log is not None:
            patches.enter_context(mock.patch("resilience.triggers._dns_log", lambda conn_id: dns_log))
        patches.enter_context(mock.patch("resilience.triggers.time.monotonic", side_effect=lambda: next(clock)))
        patches.enter_context(mock.patch("asyncio.sleep", new=mock.AsyncMock()))
        return asyncio.run(first_event(CanaryRampTrigger(**args)))


async def first_event(trigger):
    async for event in trigger.run():
        return event.payload


def test_healthy_ramp_completes_at_100():
    event = run_ramp([GOOD] * 20)
    assert event["status"] == "completed"
    assert [h["primary"] for h in DNS["history"]] == [50, 100]
    assert event["failed_checks"] == 0 and len(event["changes"]) == 2


def test_two_failed_checks_roll_all_traffic_back_to_dr():
    event = run_ramp([GOOD, GOOD, GOOD, BAD, BAD])  # 50 % passes, then the step at 100 % goes bad
    assert event["status"] == "rolled_back" and event["step"] == 100
    assert DNS["history"][-1] == {"primary": 0, "dr": 100}
    assert event["changes"][-1]["reason"].startswith("rollback at step 100 %")
    assert "error_rate_pct 40.00 % > 1 %" in event["reason"]


def test_no_data_during_warmup_is_not_counted_but_after_it_is():
    warm = {**RAMP, "warmup_s": 2}  # the fake clock moves 1 s per reading: the first falls in the warm-up
    event = run_ramp([NONE, GOOD, GOOD, GOOD, GOOD, GOOD], warm)
    assert event["status"] == "completed" and event["failed_checks"] == 0
    late = {**RAMP, "warmup_s": 0}
    event = run_ramp([NONE, NONE], late)
    assert event["status"] == "rolled_back" and "no values found" in event["reason"]


def test_a_bad_value_during_warmup_counts():
    event = run_ramp([BAD, BAD], {**RAMP, "warmup_s": 2})
    assert event["status"] == "rolled_back" and event["step"] == 50


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"warmup_s": 5}, r"warmup_s: 5 must be >= 0 and shorter than interval_s"),
     ({"threshold": 0}, r"threshold: 0 must be >= 1"),
     ({"plan": [50]}, r"params\.steps: \[50\] must end at 100"),
     ({"policy": {"nope": 1}}, r"unexpected keyword argument 'nope'")],
)
def test_bad_ramp_arguments_are_refused(changes, message):
    with pytest.raises((ValueError, TypeError), match=message):
        CanaryRampTrigger(**{**RAMP, **changes})


def test_ramp_serializes_to_its_classpath():
    path, kwargs = CanaryRampTrigger(**RAMP).serialize()
    assert path == "resilience.triggers.CanaryRampTrigger"
    assert CanaryRampTrigger(**kwargs).serialize() == (path, kwargs)


STABLE = {"prometheus_conn_id": "prom", "queries": {"up_min": "U", "samples": "S", "error_rate_max": "E"},
          "window": "60s", "expected_samples": 60, "max_error_rate_pct": 1.0,
          "until": datetime.now(UTC) + timedelta(hours=1), "poll_interval_s": 1, "query_timeout_s": 1}


def run_stable(readings, args=STABLE):
    it = iter(readings)

    async def fake_read(hook, session, queries, timeout_s):
        return next(it), {}

    with mock.patch("resilience.prometheus.read_values_async", fake_read), \
            mock.patch("asyncio.sleep", new=mock.AsyncMock()):
        return asyncio.run(first_event(PrimaryStableTrigger(**args)))


def test_stable_once_the_whole_window_is_up():
    down = {"up_min": 0.0, "samples": 60.0, "error_rate_max": None}
    up = {"up_min": 1.0, "samples": 60.0, "error_rate_max": None}
    event = run_stable([down, down, up])
    assert event["status"] == "stable" and event["polls"] == 3


def test_stability_times_out():
    event = run_stable([{"up_min": 0.0, "samples": 5.0, "error_rate_max": None}],
                       {**STABLE, "until": datetime.now(UTC) - timedelta(seconds=1)})
    assert event["status"] == "timeout" and not event["checks"][0]["passed"]


def test_stability_queries_must_be_complete():
    with pytest.raises(ValueError, match="must be up_min, samples and error_rate_max"):
        PrimaryStableTrigger(**{**STABLE, "queries": {"up_min": "U"}})


@pytest.mark.parametrize(
    ("current", "expected"),
    [(0, [10, 25, 50, 75, 100]), (50, [50, 75, 100]), (60, [75, 100]), (100, [100])],
)
def test_resume_plan_from_the_weights(current, expected):
    from resilience.triggers import resume_plan

    assert resume_plan([10, 25, 50, 75, 100], current) == expected


def test_a_restarted_ramp_resumes_where_the_weights_are():
    DNS["history"] = []
    readings = iter([GOOD] * 10)

    async def fake_read(hook, session, queries, timeout_s):
        return (dict(next(readings)) if queries["error_rate_pct"] == "P_ERR" else dict(GOOD)), {}

    class AtFifty(FakeRoute53):
        def weights(self):
            return dict(DNS["history"][-1]) if DNS["history"] else {"primary": 50, "dr": 50}

    clock = itertools.count(0.0, 1.0)
    with mock.patch("resilience.prometheus.read_values_async", fake_read), \
            mock.patch("resilience.dns.Route53Weights", AtFifty), \
            mock.patch("resilience.triggers.time.monotonic", side_effect=lambda: next(clock)), \
            mock.patch("asyncio.sleep", new=mock.AsyncMock()):
        event = asyncio.run(first_event(CanaryRampTrigger(**{**RAMP, "plan": [25, 50, 100]})))
    assert event["status"] == "completed"
    assert [h["primary"] for h in DNS["history"]] == [50, 100]  # never back down to 25 %


# -- a rolled-back canary stays rolled back across a triggerer restart ---------------------------

AUDIT = {"control_conn_id": "control", "run_id": "manual__1", "dag_id": "dr_failback", "zone": "resilience.lab.",
         "record": "api.resilience.lab."}


class FakeDnsLog:
    """dns_changes in memory: what the trigger audited, per run."""

    rows: list[dict] = []

    def record(self, run_id, dag_id, zone, record, before, after, reason):
        self.rows.append({"run_id": run_id, "at": "t", "before": before, "after": after, "reason": reason,
                          "weights_then": dict(DNS["history"][-1]) if DNS["history"] else None})

    def for_run(self, run_id):
        return [r for r in self.rows if r["run_id"] == run_id]


def run_audited(primary_readings, history, audit_rows):
    """One trigger run with the audit on; DNS starts at ``history`` and dns_changes holds ``audit_rows``."""
    FakeDnsLog.rows = list(audit_rows)
    return run_ramp(primary_readings, {**RAMP, "audit": AUDIT}, history, FakeDnsLog())


def test_a_rollback_is_audited_when_it_happens_and_a_restarted_trigger_stays_rolled_back():
    event = run_audited([GOOD, GOOD, GOOD, BAD, BAD], [], [])
    assert event["status"] == "rolled_back" and event["step"] == 100
    audited = list(FakeDnsLog.rows)
    assert [r["after"]["primary"] for r in audited] == [50, 100, 0]
    assert audited[-1]["weights_then"] == {"primary": 0, "dr": 100}  # written right after Route53 took it
    assert all(c["audited"] for c in event["changes"])
    # the triggerer restarts: the weights say 0, as for a fresh ramp; the audit says this run rolled back
    restarted = run_audited([GOOD] * 20, DNS["history"], audited)
    assert restarted["status"] == "rolled_back" and restarted["resumed"] is True
    assert restarted["step"] == 100 and "error_rate_pct 40.00 % > 1 %" in restarted["reason"]
    assert restarted["changes"] == [] and DNS["history"][-1] == {"primary": 0, "dr": 100}  # no re-ramp
    assert len(DNS["history"]) == 3


def test_a_restart_after_traffic_moved_again_puts_it_back_on_dr():
    rollback = {"run_id": "manual__1", "at": "t", "before": {"primary": 50, "dr": 50},
                "after": {"primary": 0, "dr": 100}, "reason": "rollback at step 50 %: p95_ms 300 > 100"}
    event = run_audited([GOOD] * 20, [{"primary": 25, "dr": 75}], [rollback])
    assert event["status"] == "rolled_back" and event["step"] == 50 and event["reason"] == "p95_ms 300 > 100"
    assert DNS["history"][-1] == {"primary": 0, "dr": 100}
    assert event["changes"][0]["reason"] == "rollback at step 50 %: p95_ms 300 > 100"


def test_another_runs_rollback_does_not_stop_a_fresh_ramp():
    other = {"run_id": "manual__0", "at": "t", "before": {"primary": 50, "dr": 50},
             "after": {"primary": 0, "dr": 100}, "reason": "rollback at step 50 %: p95_ms 300 > 100"}
    event = run_audited([GOOD] * 20, [], [other])
    assert event["status"] == "completed" and [h["primary"] for h in DNS["history"]] == [50, 100]


@pytest.mark.parametrize(
    ("changes", "current", "expected"),
    [([], 0, None),  # a fresh ramp
     ([{"at": "t", "after": {"primary": 50}, "reason": "canary step 50 %"}], 50, None),  # restarted mid-ramp
     ([{"at": "t", "after": {"primary": 50}, "reason": "canary step 50 %"}], 0,  # the rollback's audit row lost
      {"step": 50, "at": "t", "reason": "this run moved traffic (canary step 50 %) and the primary is at 0 again"}),
     ([{"at": "t", "after": {"primary": 50}, "reason": "canary step 50 %"},
       {"at": "u", "after": {"primary": 0}, "reason": "rollback at step 50 %: error_rate_pct 3 % > 1 %"}], 0,
      {"step": 50, "at": "u", "reason": "error_rate_pct 3 % > 1 %"})],
)
def test_rolled_back_before(changes, current, expected):
    from resilience.triggers import _rolled_back_before

    assert _rolled_back_before(changes, current) == expected


def test_audit_must_be_complete():
    with pytest.raises(ValueError, match=r"audit: .* must give \['control_conn_id', 'dag_id', 'record', 'run_id'"):
        CanaryRampTrigger(**{**RAMP, "audit": {"run_id": "r"}})


SLOW = {"error_rate_pct": 0.0, "p95_ms": 500.0}  # DR's p95 is 5 ms: far past the 50 ms floor
LONG = {**RAMP, "interval_s": 9}  # several readings per interval (the fake clock moves 1-2 s per reading)


def test_a_slow_reading_mid_interval_holds_the_step_but_is_not_counted():
    event = run_ramp([SLOW, SLOW] + [GOOD] * 20, LONG)
    assert event["status"] == "completed" and event["failed_checks"] == 0
    assert [a["action"] for a in event["analyses"]][:3] == ["hold", "hold", "advance"]


def test_latency_bad_at_two_interval_checks_rolls_back_after_two_intervals():
    event = run_ramp([SLOW] * 40, LONG)
    assert event["status"] == "rolled_back" and event["step"] == 50 and "p95_ms 500.00 ms > 50 ms" in event["reason"]
    counts = [a["failed_checks"] for a in event["analyses"]]
    # counted once per interval: uncounted holds before the first interval's end and between the two checks
    assert counts[:2] == [0, 0] and counts[-1] == 2 and counts.count(1) >= 2


def test_errors_still_count_at_every_reading():
    event = run_ramp([BAD, BAD], LONG)
    assert event["status"] == "rolled_back" and len(event["samples"]) == 2
