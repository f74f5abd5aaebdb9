"""SLO guard and recovery triggers: serialize contract, bad input, and one event from run()."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest

from resilience.slo import Reading
from resilience.triggers import SloGuardTrigger, SloRecoveryTrigger

UNTIL = datetime(2030, 1, 1, tzinfo=UTC)
ARGS = {"prometheus_conn_id": "resilience_lab_prometheus", "queries": {"error_rate_pct": "sum(x[{window}])"},
        "window": "5s", "baseline": {"availability_pct": 100.0, "error_rate_pct": 0.0, "p95_ms": 20.0},
        "policy": {"max_recovery_s": 120.0}, "until": UNTIL, "poll_interval_s": 1.0, "query_timeout_s": 0.8}
GREEN = Reading(100.0, 0.0, 20.0)
RED = Reading(100.0, 25.0, 20.0)


def test_guard_serializes_to_its_classpath_with_plain_values():
    trigger = SloGuardTrigger(**ARGS, revert_ledger_id=7, control_conn_id="resilience_control_db", apply_fault=True,
                              duration_s=60, latest_start_epoch_s=1900000000.0)
    assert trigger.serialize() == ("resilience.triggers.SloGuardTrigger", {
        **ARGS, "until": "2030-01-01T00:00:00+00:00", "revert_ledger_id": 7,
        "control_conn_id": "resilience_control_db", "apply_fault": True, "duration_s": 60.0,
        "latest_start_epoch_s": 1900000000.0})
    classpath, kwargs = trigger.serialize()
    assert SloGuardTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_recovery_serializes():
    trigger = SloRecoveryTrigger(**ARGS, reverted_at=1000.5)
    assert trigger.serialize() == ("resilience.triggers.SloRecoveryTrigger",
                                   {**ARGS, "until": "2030-01-01T00:00:00+00:00", "reverted_at": 1000.5})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"until": datetime(2030, 1, 1)}, "until: naive datetimes are refused"),
        ({"poll_interval_s": 0}, r"poll_interval_s: 0 must be > 0 seconds"),
        ({"queries": {}}, "queries: at least one SLO query is required"),
        ({"baseline": {"p95_ms": 1}}, "missing 2 required"),
        ({"policy": {"max_p95_ratio": 0.1}}, r"slo\.max_p95_ratio: 0\.1 is out of range"),
        ({"apply_fault": True, "revert_ledger_id": 7, "control_conn_id": "c"}, "apply_fault: needs"),
        ({"apply_fault": True, "revert_ledger_id": 7, "control_conn_id": "c", "duration_s": 0,
          "latest_start_epoch_s": 1.0}, "duration_s: 0 must be > 0"),
    ],
)
def test_bad_arguments_are_refused_by_name(changes, message):
    with pytest.raises((ValueError, TypeError), match=message):
        SloGuardTrigger(**{**ARGS, **changes})


def test_guard_needs_the_control_connection_to_revert():
    with pytest.raises(ValueError, match="control_conn_id: required"):
        SloGuardTrigger(**ARGS, revert_ledger_id=3)


@pytest.fixture(autouse=True)
def open_ledger_entry():
    """The guarded fault stays open in the ledger unless a test says otherwise."""
    with mock.patch("resilience.triggers.ledger_watch", return_value=(None, 1.0)) as watch:
        yield watch


async def first_event(trigger):
    async for event in trigger.run():
        return event.payload


def scripted(readings):
    """read_slo_async returning ``readings`` in turn; sleeping is instant."""
    it = iter(readings)

    async def fake_read(*args, **kwargs):
        return next(it)

    return mock.patch("resilience.prometheus.read_slo_async", fake_read)


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_guard_reverts_on_the_first_breach_and_reports_it():
    trigger = SloGuardTrigger(**ARGS, revert_ledger_id=7, control_conn_id="ctl")
    with scripted([GREEN, GREEN, RED, GREEN]), \
         mock.patch("resilience.faults.revert.revert_entry", return_value=True) as revert:
        event = asyncio.run(first_event(trigger))
    revert.assert_called_once_with("ctl", 7, "guard_slo", "error rate 25.00 % > 1.00 % (baseline 0.00 % + 1 point)")
    assert event["status"] == "breach" and event["readings"] == 3
    assert event["verdict"]["reason"] == "error rate 25.00 % > 1.00 % (baseline 0.00 % + 1 point)"
    assert event["reverted"]["ledger_id"] == 7 and event["reverted"]["closed_here"] is True
    assert event["worst"]["error_rate_pct"] == 25.0


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_guard_reports_a_failed_revert_instead_of_crashing():
    trigger = SloGuardTrigger(**ARGS, revert_ledger_id=7, control_conn_id="ctl")
    with scripted([RED]), mock.patch("resilience.faults.revert.revert_entry", side_effect=RuntimeError("boom")):
        event = asyncio.run(first_event(trigger))
    assert event["reverted"] == {"ledger_id": 7, "error": "RuntimeError: boom"}


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_missing_data_is_a_breach():
    missing = Reading.from_values({"availability_pct": 100.0, "p95_ms": 3.0},
                                  {"error_rate_pct": "timeout after 0.8 s"})
    with scripted([missing]):
        event = asyncio.run(first_event(SloGuardTrigger(**ARGS)))
    assert event["status"] == "breach" and event["reverted"] is None
    assert event["verdict"]["reason"] == "error_rate_pct missing: timeout after 0.8 s"


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_guard_passes_when_the_window_ends_green():
    past = {**ARGS, "until": datetime.now(UTC) - timedelta(seconds=1)}
    with scripted([GREEN]):
        event = asyncio.run(first_event(SloGuardTrigger(**past)))
    assert (event["status"], event["readings"]) == ("ok", 1)


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_recovery_reports_seconds_to_the_first_green_reading():
    # the first time() is the watch's start: 1 s after the revert, not late, so the live readings decide
    with scripted([RED, RED, GREEN]), mock.patch("time.time", side_effect=[1001.0, 1001.0, 1002.0, 1003.5]):
        event = asyncio.run(first_event(SloRecoveryTrigger(**ARGS, reverted_at=1000.0)))
    assert (event["status"], event["recovery_s"], event["readings"]) == ("ok", 3.5, 3)


def recorded(history):
    """read_slo_history_async answering ``history`` ([(epoch s, reading)]); the arguments it was called with."""
    calls = []

    async def fake_history(*args):
        calls.append(args)
        return history

    return mock.patch("resilience.prometheus.read_slo_history_async", fake_history), calls


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_a_late_recovery_watch_takes_the_recovery_from_prometheus_record():
    """Started 100 s after the revert (a busy scheduler): recovered when the record first went green, not now."""
    history, calls = recorded([(1001.0, RED), (1002.0, RED), (1003.0, GREEN), (1004.0, GREEN)])
    with history, scripted([]), mock.patch("time.time", return_value=1100.0):
        event = asyncio.run(first_event(SloRecoveryTrigger(**ARGS, reverted_at=1000.0)))
    assert (event["status"], event["recovery_s"], event["from_record"]) == ("ok", 3.0, True)
    [(_, _, _, _, start, end, step, _)] = calls
    assert (start, end, step) == (1001.0, 1100.0, 1.0)


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_a_late_recovery_watch_with_no_green_on_record_reads_live():
    history, _ = recorded([(1001.0, RED), (1002.0, RED)])
    with history, scripted([RED, GREEN]), mock.patch("time.time", side_effect=[1100.0, 1101.0, 1102.5]):
        event = asyncio.run(first_event(SloRecoveryTrigger(**ARGS, reverted_at=1000.0)))
    assert (event["status"], event["recovery_s"], event["readings"], "from_record" in event) == ("ok", 102.5, 2, False)


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_recovery_times_out_red():
    past = {**ARGS, "until": datetime.now(UTC) - timedelta(seconds=1)}
    with scripted([RED]), recorded([])[0]:
        event = asyncio.run(first_event(SloRecoveryTrigger(**past, reverted_at=1000.0)))
    assert event["status"] == "timeout" and event["verdict"]["passed"] is False


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_guard_stops_when_the_ledger_says_someone_else_reverted(open_ledger_entry):
    """A restarted triggerer's fresh trigger must not report "ok" for a fault its guard already reverted."""
    trigger = SloGuardTrigger(**ARGS, revert_ledger_id=7, control_conn_id="ctl")
    open_ledger_entry.side_effect = [(None, 1.0), ({"reverted_by": "guard_slo", "revert_reason": "error rate 9 % > 1 %",
                                                    "reverted_at": 1000.0}, 1.0)]
    with scripted([GREEN, GREEN, GREEN]), mock.patch("resilience.faults.revert.revert_entry") as revert:
        event = asyncio.run(first_event(trigger))
    assert revert.call_count == 0
    assert (event["status"], event["readings"], event["reverted_by"]) == ("reverted", 2, "guard_slo")


APPLY = {"revert_ledger_id": 7, "control_conn_id": "ctl", "apply_fault": True, "duration_s": 30.0}


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_guard_applies_the_fault_only_after_a_healthy_first_reading_then_reverts_at_the_window_end():
    trigger = SloGuardTrigger(**ARGS, **APPLY, latest_start_epoch_s=4000000000.0)
    calls = []
    with scripted([GREEN, GREEN, RED]), \
         mock.patch("resilience.triggers.SloGuardTrigger._injected_at", new=mock.AsyncMock(return_value=None)), \
         mock.patch("resilience.triggers._apply", side_effect=lambda *a: calls.append("apply") or
                    {"injected_at": 1000.0, "revert_info": {}}), \
         mock.patch("resilience.faults.revert.revert_entry", side_effect=lambda *a: calls.append(a[2:]) or True):
        event = asyncio.run(first_event(trigger))
    # the window (30 s from 1000.0) has long passed when the second reading comes: reverted by the guard itself
    assert calls == ["apply", ("guard_window_end", "the fault window ended")]
    assert (event["status"], event["readings"], event["injected_at"]) == ("ok", 2, 1000.0)
    assert event["first_reading_at"] <= time.time()


@pytest.mark.parametrize(("first", "latest_start", "reason"), [
    (RED, 4000000000.0, "steady state not met before the fault: error rate 25.00 % > 1.00 %"),
    (GREEN, 1000.0, "the guard started "),
])
@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_guard_never_applies_on_an_unhealthy_first_reading_or_too_late(first, latest_start, reason):
    trigger = SloGuardTrigger(**ARGS, **APPLY, latest_start_epoch_s=latest_start)
    with scripted([first]), \
         mock.patch("resilience.triggers.SloGuardTrigger._injected_at", new=mock.AsyncMock(return_value=None)), \
         mock.patch("resilience.triggers._apply") as apply, \
         mock.patch("resilience.faults.revert.revert_entry", return_value=True) as revert:
        event = asyncio.run(first_event(trigger))
    assert apply.call_count == 0
    assert event["status"] == "not_injected" and event["reason"].startswith(reason)
    assert revert.call_args.args[2] == "guard_steady_state"


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_a_restarted_guard_does_not_apply_twice():
    trigger = SloGuardTrigger(**ARGS, **APPLY, latest_start_epoch_s=4000000000.0)
    with scripted([GREEN]), \
         mock.patch("resilience.triggers.SloGuardTrigger._injected_at", new=mock.AsyncMock(return_value=1000.0)), \
         mock.patch("resilience.triggers._apply") as apply, \
         mock.patch("resilience.faults.revert.revert_entry", return_value=True):
        event = asyncio.run(first_event(trigger))
    assert apply.call_count == 0 and event["status"] == "ok" and event["resumed"] is True


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_a_resumed_guard_reports_how_long_the_fault_ran_unwatched(open_ledger_entry):
    """The triggerer died mid-fault: its replacement's first reading comes 40 s after the last one."""
    trigger = SloGuardTrigger(**ARGS, **APPLY, latest_start_epoch_s=4000000000.0)
    open_ledger_entry.side_effect = [(None, 40.0), (None, 1.0)]
    with scripted([GREEN, GREEN]), \
         mock.patch("resilience.triggers.SloGuardTrigger._injected_at", new=mock.AsyncMock(return_value=1000.0)), \
         mock.patch("resilience.faults.revert.revert_entry", return_value=True):
        event = asyncio.run(first_event(trigger))
    assert (event["status"], event["resumed"], event["unguarded_s"]) == ("ok", True, 40.0)


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_a_short_pause_between_readings_is_still_watched(open_ledger_entry):
    trigger = SloGuardTrigger(**ARGS, **APPLY, latest_start_epoch_s=4000000000.0)
    open_ledger_entry.side_effect = [(None, 3.0)]
    with scripted([GREEN]), \
         mock.patch("resilience.triggers.SloGuardTrigger._injected_at", new=mock.AsyncMock(return_value=1000.0)), \
         mock.patch("resilience.faults.revert.revert_entry", return_value=True):
        event = asyncio.run(first_event(trigger))
    assert event["status"] == "ok" and "unguarded_s" not in event


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_breaches_are_tolerated_up_to_max_breach_s_in_all_then_the_guard_halts():
    """postgres-failover's crash leaves no leader for Patroni's TTL: the guard tolerates the breach it expects
    (max_breach_s), counts breached time over the whole window (green readings in between do not reset it),
    and halts once the total reaches the bound."""
    tolerant = {**ARGS, "policy": {"max_recovery_s": 120.0, "max_breach_s": 10.0}}
    trigger = SloGuardTrigger(**tolerant, revert_ledger_id=7, control_conn_id="ctl")
    readings = [GREEN, RED, RED, GREEN, RED, RED, RED, GREEN]
    times = [1000.0, 1001.0, 1003.0, 1004.0, 1005.0, 1008.0, 1011.5, 1012.0]
    with scripted(readings), mock.patch("time.time", side_effect=times), \
         mock.patch("resilience.faults.revert.revert_entry", return_value=True) as revert:
        event = asyncio.run(first_event(trigger))
    # broken: 1 + 2 (green) 1 + 3 + 3 (3.5 s since the previous reading, counted as the guard's longest watched
    # gap, 3 s) = 10 s at the 7th reading
    assert event["status"] == "breach" and event["readings"] == 7 and event["breached_s"] == 10.0, event
    assert event["max_breach_s"] == 10.0
    assert revert.call_args.args[3] == ("error rate 25.00 % > 1.00 % (baseline 0.00 % + 1 point) "
                                        "(SLOs broken 10 s of the 10 s tolerated)")


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_a_resumed_guard_tolerates_nothing():
    """After a triggerer restart the guard cannot know what it tolerated before: the first breach halts."""
    tolerant = {**ARGS, "policy": {"max_recovery_s": 120.0, "max_breach_s": 30.0}}
    trigger = SloGuardTrigger(**tolerant, revert_ledger_id=7, control_conn_id="ctl", apply_fault=True,
                              duration_s=600, latest_start_epoch_s=time.time() + 600)
    with scripted([RED]), mock.patch.object(SloGuardTrigger, "_injected_at", mock.AsyncMock(return_value=time.time())), \
         mock.patch("resilience.faults.revert.revert_entry", return_value=True):
        event = asyncio.run(first_event(trigger))
    assert event["status"] == "breach" and event["resumed"] is True and event["readings"] == 1


def test_trigger_events_carry_no_nan_the_metadata_db_would_refuse():
    """Prometheus answers NaN for 0/0 (no traffic); PostgreSQL's JSONB refuses NaN, and the triggerer died on
    the write (make demo: dr_failback's stability event), leaving the deferred task waiting for good."""
    import json

    from resilience.triggers import json_safe

    event = {"status": "stable", "values": {"up_min": 1.0, "error_rate_max": float("nan")},
             "checks": [{"value": float("inf")}, (float("-inf"), 2)], "reading": None}
    safe = json_safe(event)
    assert safe == {"status": "stable", "values": {"up_min": 1.0, "error_rate_max": None},
                    "checks": [{"value": None}, [None, 2]], "reading": None}
    json.dumps(safe, allow_nan=False)  # what a strict JSON column accepts


def blast_radius_wait():
    from resilience.triggers import BlastRadiusTrigger

    return BlastRadiusTrigger("ctl", "run-1", "staging", "search", [], 2, poll_interval_s=1.0, scenario="pod-kill",
                              queue=[{"service": "checkout", "scenario": "pod-kill", "depends_on": []},
                                     {"service": "search", "scenario": "pod-kill", "depends_on": []}])


def clock(*readings):
    """The triggers' time.monotonic answering ``readings`` in turn, then the last one again (the event loop
    keeps its own clock)."""
    it = iter(readings)
    last = [readings[-1]]

    def monotonic():
        last[0] = next(it, last[0])
        return last[0]

    fake = mock.Mock(wraps=time)
    fake.monotonic.side_effect = monotonic
    return mock.patch("resilience.triggers.time", fake)


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_a_waiter_behind_others_of_its_run_waits_out_the_queue_grace_then_fires():
    """A slot free for this waiter but going to a target ahead of it in the run's queue: it keeps waiting, and
    fires after QUEUE_GRACE_S of that (the one ahead may never ask: its inject failed before its row)."""
    from resilience.triggers import QUEUE_GRACE_S

    behind = {"status": "behind", "reason": "2 of 2 free"}
    polls = [None, behind, behind, behind]
    # monotonic: start 0; behind since 1; 1 s behind; 30 s behind; past the grace; the settle check; waited_s
    with clock(0.0, 1.0, 2.0, 31.0, 1.0 + QUEUE_GRACE_S + 0.5, 70.0, 70.0), \
         mock.patch("resilience.triggers._slot_now", side_effect=polls) as poll:
        event = asyncio.run(first_event(blast_radius_wait()))
    assert poll.call_count == 4
    assert (event["status"], event["reason"], event["waited_s"]) == ("free", "2 of 2 free", 70.0)


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_a_waiter_no_longer_behind_forgets_how_long_it_was():
    """Behind, then nothing free (someone took the slot), then behind again: the grace starts over."""
    behind = {"status": "behind", "reason": "r"}
    polls = [behind, None, behind, {"status": "free", "reason": "first in line"}]
    with clock(0.0, 10.0, 11.0, 50.0, 55.0, 70.0, 70.0, 71.0), \
         mock.patch("resilience.triggers._slot_now", side_effect=polls) as poll:
        event = asyncio.run(first_event(blast_radius_wait()))
    assert poll.call_count == 4 and (event["status"], event["reason"]) == ("free", "first in line")


@mock.patch("asyncio.sleep")
def test_a_slot_free_at_once_still_waits_out_the_deferral_settling_time(sleep):
    from resilience.triggers import DEFERRAL_SETTLE_S

    with clock(100.0, 100.5, 105.0), \
         mock.patch("resilience.triggers._slot_now", return_value={"status": "free", "reason": "free"}):
        event = asyncio.run(first_event(blast_radius_wait()))
    sleep.assert_awaited_once_with(DEFERRAL_SETTLE_S - 0.5)
    assert event["waited_s"] == 5.0


INCOMPLETE = Reading(None, None, None, missing={m: "timeout after 0.8 s" for m in
                                                ("availability_pct", "error_rate_pct", "p95_ms")})


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_an_incomplete_first_reading_is_read_again_before_the_fault_is_refused():
    """A slow Prometheus is no evidence against the steady state: the guard reads again, then applies."""
    trigger = SloGuardTrigger(**ARGS, **APPLY, latest_start_epoch_s=4000000000.0)
    with scripted([INCOMPLETE, INCOMPLETE, GREEN, RED]), \
         mock.patch("resilience.triggers.SloGuardTrigger._injected_at", new=mock.AsyncMock(return_value=None)), \
         mock.patch("resilience.triggers._apply", return_value={"injected_at": time.time(), "revert_info": {}}) \
         as apply, mock.patch("resilience.faults.revert.revert_entry", return_value=True):
        event = asyncio.run(first_event(trigger))
    assert apply.call_count == 1 and event["status"] == "breach" and event["first_reading_at"] is not None


@mock.patch("asyncio.sleep", new=mock.AsyncMock())
def test_a_first_reading_that_stays_incomplete_refuses_the_fault():
    from resilience.triggers import INCOMPLETE_FIRST_READINGS

    trigger = SloGuardTrigger(**ARGS, **APPLY, latest_start_epoch_s=4000000000.0)
    with scripted([INCOMPLETE] * (INCOMPLETE_FIRST_READINGS + 1)), \
         mock.patch("resilience.triggers.SloGuardTrigger._injected_at", new=mock.AsyncMock(return_value=None)), \
         mock.patch("resilience.triggers._apply") as apply, \
         mock.patch("resilience.faults.revert.revert_entry", return_value=True) as revert:
        event = asyncio.run(first_event(trigger))
    assert apply.call_count == 0 and event["readings"] == INCOMPLETE_FIRST_READINGS + 1
    assert event["status"] == "not_injected" and "timeout after 0.8 s" in event["reason"]
    assert revert.call_args.args[2] == "guard_steady_state"
