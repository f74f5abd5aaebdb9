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
