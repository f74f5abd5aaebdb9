"""Which open faults chaos_abort's sweep reverts, which locks it frees, and why (in-memory ledger).

The run states are what the task SDK really returns: ``DagRunState`` members (a ``str`` enum
whose ``str()`` is ``"DagRunState.RUNNING"``), None for an API error.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk.api.datamodels._generated import DagRunState

from resilience.chaos.abort import orphans, release_stale_lock
from resilience.ledger import RUN_LOCK, HeldLock, LedgerEntry

NOW = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)


def entry(entry_id, run_id, state="active", expires_in_s=60, error=None):
    return LedgerEntry(entry_id, run_id, "chaos_campaign", "lab", "pod-kill", state, {}, {}, error, NOW, NOW,
                       None, None, {}, NOW + timedelta(seconds=expires_in_s))


class Table:
    """The queries orphans() and release_stale_lock() make, over lists."""

    def __init__(self, entries, locks=()):
        self.entries, self._locks, self.broken, self.beats = entries, list(locks), [], []

    def open_entries(self):
        return self.entries

    def expired_entries(self):
        return [e for e in self.entries if e.expires_at < NOW]

    def held_locks(self):
        return self._locks

    def heartbeat(self, name, run_id):
        self.beats.append(run_id)
        return True

    def break_lock(self, name, run_id, by, reason):
        self.broken.append((name, run_id, reason))
        return True


def lock(run_id, heartbeat_age_s=0.0, lease_s=1800.0):
    return HeldLock(RUN_LOCK, run_id, "chaos_campaign", NOW, heartbeat_age_s, lease_s)


STATES = {"live": DagRunState.RUNNING, "queued": DagRunState.QUEUED, "done": DagRunState.FAILED,
          "ok": DagRunState.SUCCESS, "zombie": DagRunState.RUNNING}


def state_of(dag_id, run_id):
    return STATES.get(run_id)  # None: the API could not say (error, not found)


def test_the_sdk_enum_is_not_its_str():
    assert str(DagRunState.RUNNING) != "running"  # the bug: every live run looked dead


def test_sweep_reverts_ended_expired_and_failed_entries_of_known_runs_only():
    table = Table([entry(1, "live"), entry(2, "done"), entry(3, "zombie", expires_in_s=-5),
                   entry(4, "gone"), entry(5, "live", state="revert_failed", error="proxy down"),
                   entry(6, "queued"), entry(7, "ok"), entry(8, "gone", state="revert_failed", error="x"),
                   entry(9, "gone", expires_in_s=-1)])
    found = {e.id: why for e, why in orphans(table, state_of)}
    assert found == {
        2: "its run is failed",
        3: "open past its planned end (2026-11-28T06:59:55+00:00)",
        5: "an earlier revert failed: proxy down",
        7: "its run is success",
        9: "open past its planned end (2026-11-28T06:59:59+00:00)",
    }


def test_a_live_holder_keeps_the_lock_and_gets_a_heartbeat():
    table = Table([], locks=[lock("live")])
    assert release_stale_lock(table, state_of, by="chaos_abort:sweep") is None
    assert table.broken == [] and table.beats == ["live"]


def test_an_ended_holder_loses_the_lock():
    table = Table([], locks=[lock("done")])
    assert release_stale_lock(table, state_of, by="chaos_abort:sweep") == "done"
    assert table.broken == [(RUN_LOCK, "done", "its run is failed")]


def test_an_unknown_holder_keeps_the_lock_until_its_lease_runs_out():
    table = Table([], locks=[lock("gone", heartbeat_age_s=1799)])
    assert release_stale_lock(table, state_of, by="chaos_abort:sweep") is None and table.broken == []
    table = Table([], locks=[lock("gone", heartbeat_age_s=1801)])
    assert release_stale_lock(table, state_of, by="chaos_abort:sweep") == "gone"
    assert table.broken == [(RUN_LOCK, "gone", "its run's state is unknown and its last heartbeat is 1801 s old "
                                               "(lease 1800 s)")]
    assert table.beats == []
