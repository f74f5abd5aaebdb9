"""The fault ledger and the run lock against the lab's real control-plane PostgreSQL."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from resilience.ledger import Ledger

pytestmark = pytest.mark.integration


@pytest.fixture
def ledger(lab):
    dsn = lab["connections"]["resilience_control_db"]
    return Ledger(lambda: psycopg.connect(dsn))


def test_intent_is_written_before_and_survives_a_crash(ledger):
    run = f"run-{uuid.uuid4().hex[:8]}"
    entry_id = ledger.record_intent(run, "chaos_campaign", "lab", "pod-kill", {"replica": "app-2"}, 60)
    # a worker dying here leaves the row open for chaos_abort
    [entry] = ledger.open_entries(run)
    assert (entry.id, entry.state, entry.plan) == (entry_id, "injecting", {"replica": "app-2"})
    ledger.mark_active(entry_id, {"pid": 4242})
    assert ledger.get(entry_id).state == "active" and ledger.get(entry_id).revert_info == {"pid": 4242}


def test_revert_closes_once(ledger):
    run = f"run-{uuid.uuid4().hex[:8]}"
    entry_id = ledger.record_intent(run, "chaos_campaign", "lab", "redis-unavailable", {}, 60)
    ledger.mark_active(entry_id, {})
    assert ledger.mark_reverted(entry_id, by="guard_slo") is True
    assert ledger.mark_reverted(entry_id, by="revert_redis_unavailable") is False
    entry = ledger.get(entry_id)
    assert (entry.state, entry.reverted_by) == ("reverted", "guard_slo")
    assert ledger.open_entries(run) == []


def test_failed_revert_stays_open_with_its_error(ledger):
    run = f"run-{uuid.uuid4().hex[:8]}"
    entry_id = ledger.record_intent(run, "chaos_campaign", "lab", "s3-5xx", {}, 60)
    ledger.mark_revert_failed(entry_id, "proxy unreachable")
    [entry] = ledger.open_entries(run)
    assert (entry.state, entry.error) == ("revert_failed", "proxy unreachable")


def test_lock_is_exclusive_and_reentrant(ledger):
    name = f"lab-{uuid.uuid4().hex[:6]}"
    assert ledger.acquire_lock(name, "run-a", "chaos_campaign") == (True, "run-a", "chaos_campaign")
    assert ledger.acquire_lock(name, "run-a", "chaos_campaign")[0] is True
    assert ledger.acquire_lock(name, "run-b", "dr_monthly_drill") == (False, "run-a", "chaos_campaign")
    assert ledger.release_lock(name, "run-b") is False
    assert ledger.release_lock(name, "run-a") is True
    assert ledger.acquire_lock(name, "run-b", "dr_monthly_drill")[0] is True
    ledger.release_lock(name, "run-b")


def test_an_open_fault_past_its_planned_life_is_an_orphan(ledger):
    run = f"run-{uuid.uuid4().hex[:8]}"
    fresh = ledger.record_intent(run, "chaos_campaign", "lab", "pod-kill", {}, 60)
    stale = ledger.record_intent(run, "chaos_campaign", "lab", "s3-5xx", {}, -1)
    expired = {e.id for e in ledger.expired_entries()}
    assert stale in expired and fresh not in expired
    ledger.mark_reverted(stale, "test")
    ledger.mark_reverted(fresh, "test")


def _hold_lock(ledger, run):
    from resilience.ledger import RUN_LOCK

    for held in ledger.held_locks():  # earlier tests' campaigns are over: this test owns the lab's lock
        ledger.break_lock(held.name, held.run_id, by="test", reason="test set-up")
    assert ledger.acquire_lock(RUN_LOCK, run, "chaos_campaign")[0]


def _close_open(ledger):
    for entry in ledger.open_entries():
        ledger.mark_reverted(entry.id, "test")


def test_admission_needs_the_lock_and_no_open_fault(ledger):
    from resilience.ledger import RUN_LOCK, InjectRefused

    _close_open(ledger)
    run = f"run-{uuid.uuid4().hex[:8]}"
    with pytest.raises(InjectRefused, match="does not hold the chaos-dr lock"):
        ledger.admit(run, "chaos_campaign", "lab", "s3-5xx", {}, 60, owner="inject")
    _hold_lock(ledger, run)
    try:
        first = ledger.admit(run, "chaos_campaign", "lab", "s3-5xx", {}, 60, owner="inject")
        first.release()
        ledger.mark_revert_failed(first.entry_id, "proxy unreachable")
        with pytest.raises(InjectRefused, match=rf"ledger #{first.entry_id} \(s3-5xx, run {run}\) is still "
                                                r"revert_failed: no fault is injected on top of an open one"):
            ledger.admit(run, "chaos_campaign", "lab", "pod-kill", {}, 60, owner="inject")
        ledger.mark_reverted(first.entry_id, "test")
        # an Immediate Abort takes the lock away: the same run is refused, with who and why
        ledger.break_lock(RUN_LOCK, run, by="chaos_abort:abort_all", reason="Immediate Abort: checkout down")
        with pytest.raises(InjectRefused, match="taken from this run .* by chaos_abort:abort_all "
                                                r"\(Immediate Abort: checkout down\)"):
            ledger.admit(run, "chaos_campaign", "lab", "pod-kill", {}, 60, owner="inject")
        assert ledger.open_entries(run) == []
    finally:
        ledger.release_lock(RUN_LOCK, run)


def test_a_revert_waits_for_the_inject_claim_and_gives_up_after_its_bound(ledger):
    import threading
    import time

    from resilience.ledger import RUN_LOCK, ClaimTimeout

    _close_open(ledger)
    run = f"run-{uuid.uuid4().hex[:8]}"
    _hold_lock(ledger, run)
    try:
        claim = ledger.admit(run, "chaos_campaign", "lab", "redis-unavailable", {}, 60, owner="inject")
        with pytest.raises(ClaimTimeout, match=rf"ledger #{claim.entry_id} is held by inject"):
            ledger.claim(claim.entry_id, "chaos_abort:abort_all", wait_s=0.5)
        order = []

        def revert():
            with ledger.revert_lock(claim.entry_id, owner="chaos_abort:abort_all", wait_s=30):
                order.append(("revert starts", ledger.get(claim.entry_id).state))

        reverter = threading.Thread(target=revert)
        reverter.start()
        deadline = time.monotonic() + 10
        while not order and time.monotonic() < deadline and reverter.is_alive():
            if ledger.get(claim.entry_id).state == "injecting":
                ledger.mark_active(claim.entry_id, {"pid": 1})
                order.append(("inject done", "active"))
                claim.release()
            time.sleep(0.05)
        reverter.join(timeout=30)
        # the revert ran only after the inject finished and saw what it did
        assert order == [("inject done", "active"), ("revert starts", "active")]
    finally:
        _close_open(ledger)
        ledger.release_lock(RUN_LOCK, run)


def test_a_dead_holders_claim_lapses_but_a_live_one_is_renewed(ledger, monkeypatch):
    import time

    from resilience import ledger as ledger_module

    monkeypatch.setattr(ledger_module, "CLAIM_LEASE_S", 1.5)
    run = f"run-{uuid.uuid4().hex[:8]}"
    entry_id = ledger.record_intent(run, "chaos_campaign", "lab", "s3-5xx", {}, 60)
    live = ledger.claim(entry_id, "reverter-1")
    time.sleep(2.0)  # longer than the lease: only the renewal keeps it
    with pytest.raises(ledger_module.ClaimTimeout):
        ledger.claim(entry_id, "reverter-2", wait_s=0.3)
    live._stop.set()  # the holder "dies": no more renewals, no release
    live._thread.join()
    second = ledger.claim(entry_id, "reverter-2", wait_s=5)
    second.release()
    ledger.mark_reverted(entry_id, "test")


def test_mark_active_refuses_a_row_closed_under_the_inject(ledger):
    from resilience.ledger import LedgerConflict

    run = f"run-{uuid.uuid4().hex[:8]}"
    entry_id = ledger.record_intent(run, "chaos_campaign", "lab", "s3-5xx", {}, 60)
    ledger.mark_reverted(entry_id, "chaos_abort:sweep")
    with pytest.raises(LedgerConflict, match="no longer 'injecting'"):
        ledger.mark_active(entry_id, {})


def test_dr_takes_over_a_stale_lock_and_breaks_a_live_one_only_on_purpose(ledger):
    """A run that died holding the lock must not block DR activation mid-incident; a live holder only
    loses it to an explicit, audited break_lock."""
    from resilience.errors import RefusedError
    from resilience.journal import take_run_lock
    from resilience.ledger import RUN_LOCK

    _close_open(ledger)
    dead, live, dr = (f"{k}-{uuid.uuid4().hex[:6]}" for k in ("dead", "live", "dr"))
    states = {dead: "failed", live: "running"}

    def run_state(dag_id, run_id):
        return states.get(run_id)

    _hold_lock(ledger, dead)
    take_run_lock("resilience_control_db", dr, "dr_activation", "DR activation", run_state=run_state)
    assert ledger.acquire_lock(RUN_LOCK, dr, "dr_activation")[0]
    [event] = [e for e in ledger.lock_events(dead) if e["action"] == "broken"]
    assert (event["by"], event["reason"]) == (f"dr_activation run {dr}", "stale: its run is failed")
    ledger.release_lock(RUN_LOCK, dr)

    _hold_lock(ledger, live)
    with pytest.raises(RefusedError, match=rf"chaos_campaign run {live} holds the chaos-dr lock \(its run is "
                                           r"running\).*set break_lock with a reason"):
        take_run_lock("resilience_control_db", dr, "dr_activation", "DR activation", run_state=run_state)
    take_run_lock("resilience_control_db", dr, "dr_activation", "DR activation", run_state=run_state,
                  break_reason="primary region down, incident INC-42")
    assert ledger.acquire_lock(RUN_LOCK, dr, "dr_activation")[0]
    [event] = [e for e in ledger.lock_events(live) if e["action"] == "broken"]
    assert event["reason"] == f"break_lock by dr_activation run {dr}: primary region down, incident INC-42"
    ledger.release_lock(RUN_LOCK, dr)
