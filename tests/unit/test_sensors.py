"""SLO sensors: execute_complete once per event status; execute defers with an absolute deadline."""

from __future__ import annotations

from datetime import UTC, datetime
from unittest import mock

import pytest

from resilience.errors import ChecksFailedError
from resilience.sensors import SloGuardSensor, SloRecoverySensor

SPEC = {"prometheus_conn_id": "p", "queries": {"error_rate_pct": "x"}, "window": "5s",
        "baseline": {"availability_pct": 100.0, "error_rate_pct": 0.0, "p95_ms": 20.0},
        "policy": {"max_recovery_s": 120.0}, "poll_interval_s": 1.0, "query_timeout_s": 0.8,
        "control_conn_id": "ctl"}


def context():
    return {"ti": mock.Mock()}


def test_guard_ok_returns_the_event():
    ctx = context()
    event = {"status": "ok", "readings": 30, "worst": {"error_rate_pct": 0.2}}
    sensor = SloGuardSensor(task_id="guard_slo", spec=SPEC, fault={"ledger_id": 4}, duration_s=30)
    assert sensor.execute_complete(ctx, event) == event
    ctx["ti"].xcom_push.assert_called_once_with(key="event", value=event)


def test_guard_breach_fails_after_saying_the_fault_was_reverted():
    ctx = context()
    event = {"status": "breach", "verdict": {"reason": "error rate 30.00 % > 1.00 %"},
             "reverted": {"ledger_id": 4, "reverted_at": 1.0, "closed_here": True}}
    sensor = SloGuardSensor(task_id="guard_slo", spec=SPEC, fault={"ledger_id": 4}, duration_s=30)
    with pytest.raises(ChecksFailedError, match=r"SLO breached: error rate 30\.00 % > 1\.00 %; fault reverted \(ledger #4\)"):
        sensor.execute_complete(ctx, event)
    ctx["ti"].xcom_push.assert_called_once_with(key="event", value=event)


def test_guard_breach_with_failed_revert_says_the_teardown_retries():
    event = {"status": "breach", "verdict": {"reason": "r"}, "reverted": {"ledger_id": 4, "error": "boom"}}
    sensor = SloGuardSensor(task_id="guard_slo", spec=SPEC, fault={"ledger_id": 4}, duration_s=30)
    with pytest.raises(ChecksFailedError, match="revert in the guard failed: boom; the revert teardown retries"):
        sensor.execute_complete(context(), event)


def test_guard_defers_to_a_trigger_that_applies_the_fault_within_an_absolute_deadline():
    latest_start = datetime.now(UTC).timestamp() + 20
    fault = {"ledger_id": 4, "latest_start_epoch_s": latest_start, "scenario": "s3-5xx", "plan": {}}
    sensor = SloGuardSensor(task_id="guard_slo", spec=SPEC, fault=fault, duration_s=30)
    with mock.patch.object(sensor, "defer") as defer:
        sensor.execute(context())
    trigger = defer.call_args.kwargs["trigger"]
    kwargs = trigger.serialize()[1]
    assert (kwargs["revert_ledger_id"], kwargs["control_conn_id"], kwargs["apply_fault"]) == (4, "ctl", True)
    assert (kwargs["duration_s"], kwargs["latest_start_epoch_s"]) == (30.0, latest_start)
    assert datetime.fromisoformat(kwargs["until"]).timestamp() == pytest.approx(latest_start + 30)
    assert defer.call_args.kwargs["method_name"] == "execute_complete"


@pytest.mark.parametrize(("event", "message"), [
    ({"status": "not_injected", "reason": "steady state not met before the fault: p95 90 ms > 40 ms"},
     "fault not injected: steady state not met before the fault: p95 90 ms > 40 ms"),
    ({"status": "inject_failed", "error": "LabError: proxy down"}, r"inject failed \(reverted\): LabError: proxy down"),
    ({"status": "reverted", "reverted_by": "chaos_abort:abort_all", "revert_reason": "Immediate Abort"},
     "reverted early by chaos_abort:abort_all: Immediate Abort; the experiment did not complete"),
    ({"status": "reverted", "reverted_by": "guard_slo", "revert_reason": "error rate 9 % > 1 %"},
     r"SLO breached: error rate 9 % > 1 % \(reverted by this guard before the triggerer restarted\)"),
])
def test_guard_fails_when_the_fault_did_not_run_its_window(event, message):
    sensor = SloGuardSensor(task_id="guard_slo", spec=SPEC, fault={"ledger_id": 4}, duration_s=30)
    with pytest.raises(ChecksFailedError, match=message):
        sensor.execute_complete(context(), event)


def test_recovery_ok_and_timeout():
    sensor = SloRecoverySensor(task_id="recovery", spec=SPEC, reverted={"reverted_at": 1000.0})
    assert sensor.execute_complete(context(), {"status": "ok", "recovery_s": 4.0})["recovery_s"] == 4.0
    with pytest.raises(ChecksFailedError, match=r"not recovered within 120 s: p95 900 ms > 40 ms"):
        sensor.execute_complete(context(), {"status": "timeout", "verdict": {"reason": "p95 900 ms > 40 ms"}})
