"""The pure decisions of `resilience airflow up|run` (no Airflow started)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from resilience.airflow_local import due_logical_date, pause_report

NOW = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
DUE = {"is_paused": True, "next_dagrun_run_after": "2026-12-01T10:00:00Z",
       "next_dagrun_logical_date": "2026-12-01T10:00:00Z"}


@pytest.mark.parametrize(("dag", "expected"), [
    (DUE, "2026-12-01T10:00:00Z"),  # unpausing would start this interval: our run takes its place
    ({**DUE, "next_dagrun_run_after": "2026-12-01T20:00:00Z"}, "2026-12-01T10:00:00Z"),  # due exactly now
    ({**DUE, "next_dagrun_run_after": "2026-12-08T10:00:00Z"}, None),  # next interval not due yet
    ({**DUE, "is_paused": False}, None),  # already unpaused: the scheduler already ran it
    ({**DUE, "next_dagrun_run_after": None, "next_dagrun_logical_date": None}, None),  # no schedule
])
def test_due_logical_date(dag, expected):
    assert due_logical_date(dag, NOW) == expected


def dags(abort_paused: bool | None) -> dict:
    found = {"chaos_campaign": {"is_paused": True, "timetable_summary": "0 10 * * 2"}}
    if abort_paused is not None:
        found["chaos_abort"] = {"is_paused": abort_paused, "timetable_summary": "*/2 * * * *"}
    return found


@pytest.mark.parametrize(("abort_paused", "schedules", "last_line"), [
    (False, True, "chaos_abort is on: it sweeps every 2 minutes and reverts faults whose run is gone or past its "
                  "planned end."),
    (True, True, "WARNING: chaos_abort is PAUSED: nothing reverts the faults a dead run leaves behind. Unpause it in "
                 "the UI (DAGs > chaos_abort) or with `airflow dags unpause chaos_abort`."),
    (False, False, "WARNING: scheduled runs are off (--no-schedules): chaos_abort does not sweep on its own; trigger "
                   "it by hand after a failed run."),
    (None, True, "WARNING: chaos_abort is not loaded: nothing reverts the faults a dead run leaves behind."),
])
def test_pause_report_says_whether_the_sweeper_runs(abort_paused, schedules, last_line):
    lines = pause_report(dags(abort_paused), schedules)
    assert lines[-1] == last_line
    listed = [line.split()[:2] for line in lines[:-1]]
    sweeper = [] if abort_paused is None else [["chaos_abort", "PAUSED" if abort_paused else "unpaused"]]
    assert listed == [*sweeper, ["chaos_campaign", "PAUSED"]]
