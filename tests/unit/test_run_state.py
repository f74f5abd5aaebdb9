"""Run liveness and lock staleness: pure decisions, every state and the lease bound."""

from __future__ import annotations

import pytest
from airflow.sdk.api.datamodels._generated import DagRunState

from resilience.run_state import LockStaleness, liveness, lock_staleness


@pytest.mark.parametrize(("state", "expected"), [
    (DagRunState.QUEUED, "live"), (DagRunState.RUNNING, "live"), ("running", "live"),
    (DagRunState.SUCCESS, "ended"), (DagRunState.FAILED, "ended"), ("failed", "ended"),
    (None, "unknown"), ("DagRunState.RUNNING", "unknown"), ("", "unknown"), ("paused", "unknown"),
])
def test_liveness(state, expected):
    assert liveness(state) == expected


@pytest.mark.parametrize(("holder", "state", "age_s", "expected"), [
    ("ended", DagRunState.FAILED, 0, LockStaleness(True, "its run is failed")),
    ("ended", "success", 0, LockStaleness(True, "its run is success")),
    ("live", DagRunState.RUNNING, 99999, LockStaleness(False, "its run is running")),
    ("unknown", None, 600, LockStaleness(False, "its run's state is unknown; lease has 0 s left")),
    ("unknown", None, 600.5, LockStaleness(True, "its run's state is unknown and its last heartbeat is 600 s old "
                                                 "(lease 600 s)")),
])
def test_lock_staleness(holder, state, age_s, expected):
    assert lock_staleness(holder, state, age_s, lease_s=600) == expected
