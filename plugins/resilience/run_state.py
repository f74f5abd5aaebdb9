"""Is a DAG run still alive? What the sweeper, the lock and DR activation decide from it.

Pure decisions (no I/O): the task SDK's ``ti.get_dagrun_state()`` returns a ``DagRunState``
enum, a ``str`` subclass whose ``str()`` is ``"DagRunState.RUNNING"``; it is compared by value
here, never through ``str()``. Anything that is not a known state is ``unknown``, and
``unknown`` means "do not touch": a live campaign must never be reverted because the API
hiccuped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Liveness = Literal["live", "ended", "unknown"]

LIVE_STATES = frozenset({"queued", "running"})
ENDED_STATES = frozenset({"success", "failed"})


def liveness(state: str | None) -> Liveness:
    """``live`` (queued, running), ``ended`` (success, failed) or ``unknown`` (anything else, None)."""
    if state in LIVE_STATES:  # DagRunState is a str enum: `in` compares values
        return "live"
    if state in ENDED_STATES:
        return "ended"
    return "unknown"


@dataclass(frozen=True)
class LockStaleness:
    stale: bool
    reason: str


def lock_staleness(holder: Liveness, holder_state: str | None, heartbeat_age_s: float,
                   lease_s: float) -> LockStaleness:
    """Whether a held chaos/DR lock may be taken from its holder.

    A holder known to have ended left it behind: stale. A live holder keeps it. A holder whose
    state is unknown keeps it until its lease runs out (no heartbeat for ``lease_s``): a run
    that died where Airflow cannot see must not block DR activation forever.
    """
    if holder == "ended":
        return LockStaleness(True, f"its run is {state_name(holder_state)}")
    if holder == "live":
        return LockStaleness(False, f"its run is {state_name(holder_state)}")
    if heartbeat_age_s > lease_s:
        return LockStaleness(True, f"its run's state is unknown and its last heartbeat is {heartbeat_age_s:.0f} s old "
                                   f"(lease {lease_s:.0f} s)")
    return LockStaleness(False, f"its run's state is unknown; lease has {lease_s - heartbeat_age_s:.0f} s left")


def state_name(state: str | None) -> str:
    return "unknown" if state is None else getattr(state, "value", state)


RunStateReader = Callable[[str, str], str | None]


def airflow_run_state() -> RunStateReader:
    """Read run states through the running task's SDK client; an API error reads as None (unknown)."""
    import logging

    from airflow.sdk import get_current_context

    ti = get_current_context()["ti"]
    log = logging.getLogger(__name__)

    def read(dag_id: str, run_id: str) -> str | None:
        try:
            state = ti.get_dagrun_state(dag_id=dag_id, run_id=run_id)
        except Exception as exc:  # not found, API down, ...: unknown, so nothing is touched
            log.warning("State of %s run %s unknown (%s: %s): not touching it", dag_id, run_id,
                        type(exc).__name__, exc)
            return None
        return getattr(state, "value", state)

    return read
