"""Under real Airflow: a chaos_abort sweep during a live campaign reverts nothing and keeps the lock.

The sweeper reads each fault's run state through the task SDK. It once compared
``str(DagRunState)`` ("DagRunState.RUNNING") with "running", so every live run looked dead and
each sweep reverted a running campaign's fault mid-experiment and freed its lock.
"""

from __future__ import annotations

from typing import Any

import pytest

from resilience.lab import control

pytestmark = [pytest.mark.airflow, pytest.mark.integration]

ERROR_RATE = 0.05  # uploads retry: no 5xx reaches a client, the fault stays on for its whole duration
# a busy 2-core machine's latency noise is not what this test is about: p95 bound 10x baseline
CAMPAIGN = {"environment": "lab", "scenarios": ["s3-5xx"], "duration": 90, "max_p95_ratio": 10,
            "scenario_options": {"s3-5xx": {"error_rate": ERROR_RATE}}}
COLUMNS = "id, state, reverted_by, expires_at"


def _ledger(af, run_id: str) -> list[tuple]:
    if not af.control_db("SELECT to_regclass('fault_ledger') IS NOT NULL")[0][0]:
        return []
    return af.control_db(f"SELECT {COLUMNS} FROM fault_ledger WHERE run_id = %s ORDER BY id", (run_id,))


def _locks(af) -> list[tuple]:
    return af.control_db("SELECT name, run_id, dag_id FROM run_locks ORDER BY name")


def _run_state(af, dag_id: str, run_id: str) -> str:
    return af.api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]


def _return_value(af, dag_id: str, run_id: str, task_id: str) -> Any:
    response = af.api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
    return response.json().get("value") if response.status_code == 200 else None


def test_a_sweep_during_a_live_campaign_reverts_nothing_and_keeps_the_lock(real_airflow):
    af = real_airflow
    campaign = af.trigger("chaos_campaign", CAMPAIGN)

    def fault_active():
        rows = [r for r in _ledger(af, campaign) if r[1] == "active"]
        if not rows and _run_state(af, "chaos_campaign", campaign) in ("success", "failed"):
            raise AssertionError(f"the campaign ended before its fault was active: {_ledger(af, campaign)}\n"
                                 + af.failure_logs("chaos_campaign", campaign))
        return rows

    [(entry_id, _, _, _)] = af.wait_for(fault_active, 300, "the campaign's s3-5xx fault active in the ledger")
    assert control.s3_fault(af.lab)["error_rate"] == ERROR_RATE
    assert campaign in [r[1] for r in _locks(af)], _locks(af)

    sweep = af.trigger("chaos_abort", {"mode": "sweep"})
    done = af.wait_run("chaos_abort", sweep, timeout_s=180)
    assert done["state"] == "success", af.failure_logs("chaos_abort", sweep)
    # the sweep saw the campaign live: it ended while the campaign still ran with its fault on
    assert _run_state(af, "chaos_campaign", campaign) == "running", "inconclusive: the campaign ended first"

    [(_, state, reverted_by, _)] = [r for r in _ledger(af, campaign) if r[0] == entry_id]
    assert (state, reverted_by) == ("active", None), f"the sweep touched a live campaign's fault: {reverted_by}"
    assert control.s3_fault(af.lab)["error_rate"] == ERROR_RATE, "the S3 fault is off mid-campaign"
    assert campaign in [r[1] for r in _locks(af)], f"the sweep freed the live campaign's lock: {_locks(af)}"
    swept = _return_value(af, "chaos_abort", sweep, "abort_faults") or {}
    assert entry_id not in swept.get("reverted", []) and not swept.get("lock_released_from"), swept

    # the campaign ends as planned: its own teardown reverts the fault and frees the lock
    finished = af.wait_run("chaos_campaign", campaign, timeout_s=CAMPAIGN["duration"] + 300)
    [(_, state, reverted_by, _)] = [r for r in _ledger(af, campaign) if r[0] == entry_id]
    assert state == "reverted" and not reverted_by.startswith("chaos_abort"), (state, reverted_by, finished)
    assert control.s3_fault(af.lab)["error_rate"] == 0.0
    assert campaign not in [r[1] for r in _locks(af)]
