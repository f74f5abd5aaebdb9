"""Which open faults chaos_abort's sweep reverts, and why (the ledger here is an in-memory table)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from resilience.chaos.abort import orphans, release_stale_lock
from resilience.ledger import RUN_LOCK, LedgerEntry

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


def entry(entry_id, run_id, state="active", expires_in_s=60, error=None):
    return LedgerEntry(entry_id, run_id, "chaos_campaign", "lab", "pod-kill", state, {}, {}, error, NOW, NOW,
                       None, None, {}, NOW + timedelta(seconds=expires_in_s))


class Table:
    """The two queries orphans() makes, over a list of entries."""

    def __init__(self, entries, locks=()):
        self.entries, self._locks, self.broken = entries, list(locks), []

    def open_entries(self):
        return self.entries

    def expired_entries(self):
        return [e for e in self.entries if e.expires_at < NOW]

    def locks(self):
        return self._locks

    def break_lock(self, name, run_id):
        self.broken.append((name, run_id))
        return True


def test_sweep_reverts_dead_expired_and_failed_entries_only():
    states = {"live": "running", "done": "failed", "zombie": "running"}
    table = Table([entry(1, "live"), entry(2, "done"), entry(3, "zombie", expires_in_s=-5),
                   entry(4, "gone"), entry(5, "live", state="revert_failed", error="proxy down")])
    found = {e.id: why for e, why in orphans(table, lambda dag_id, run_id: states.get(run_id))}
    assert found == {
        2: "its run is failed",
        3: "open past its planned end (2026-11-28T06:59:55+00:00)",
        4: "its run is gone",
        5: "an earlier revert failed: proxy down",
    }


def test_lock_of_a_finished_run_is_freed_a_running_one_kept_unless_forced():
    table = Table([], locks=[(RUN_LOCK, "r1", "chaos_campaign", NOW)])
    assert release_stale_lock(table, lambda d, r: "running", force=False) is None and table.broken == []
    assert release_stale_lock(table, lambda d, r: "running", force=True) == "r1"
    table = Table([], locks=[(RUN_LOCK, "r2", "dr_monthly_drill", NOW)])
    assert release_stale_lock(table, lambda d, r: "success", force=False) == "r2"
    assert table.broken == [(RUN_LOCK, "r2")]
