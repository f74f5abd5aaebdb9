"""chaos_abort: the runbook's "Immediate Abort" without pkill, and the sweep for orphaned faults.

A fault is an orphan when its run is known to have ended, or when it is still open past its
planned life (``expires_at``): a runner killed with SIGKILL cannot even mark its run failed.
A run whose state cannot be read is left alone ("unknown" means "do not touch"); only its
fault's expiry ends it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from resilience.ledger import RUN_LOCK, Ledger, LedgerEntry
from resilience.run_state import RunStateReader, liveness, lock_staleness, state_name

if TYPE_CHECKING:
    from resilience.platforms.base import Capability

log = logging.getLogger(__name__)


def orphans(ledger: Ledger, run_state: RunStateReader) -> list[tuple[LedgerEntry, str]]:
    """Open entries to revert now, each with the reason; live and unknown runs keep theirs until expiry."""
    expired = {e.id: e.expires_at for e in ledger.expired_entries() if e.expires_at is not None}
    found = []
    for entry in ledger.open_entries():
        state = run_state(entry.dag_id, entry.run_id)
        run = liveness(state)
        if entry.id in expired:
            found.append((entry, f"open past its planned end ({expired[entry.id].isoformat(timespec='seconds')})"))
        elif run == "ended":
            found.append((entry, f"its run is {state_name(state)}"))
        elif entry.state == "revert_failed" and run != "unknown":
            found.append((entry, f"an earlier revert failed: {entry.error}"))
        elif run == "unknown":
            log.warning("Not reverting ledger #%d (%s, run %s): its run's state is unknown; it expires at %s",
                        entry.id, entry.scenario, entry.run_id, entry.expires_at)
    return found


def revert_all(control_conn_id: str, entries: list[tuple[LedgerEntry, str]], by: str) -> dict[str, list[Any]]:
    """Revert each entry; one failure does not stop the others. Returns what was reverted and what failed."""
    from resilience.faults.revert import revert_entry

    done: dict[str, list[Any]] = {"reverted": [], "failed": []}
    for entry, reason in entries:
        log.warning("Reverting %s in %s (ledger #%d, run %s): %s", entry.scenario, entry.environment, entry.id,
                    entry.run_id, reason)
        try:
            revert_entry(control_conn_id, entry.id, by, reason=reason)
            done["reverted"].append(entry.id)
        except Exception as exc:
            log.error("Revert of ledger #%d failed: %s", entry.id, exc)
            done["failed"].append({"ledger_id": entry.id, "error": f"{type(exc).__name__}: {exc}"})
    return done


def release_stale_lock(ledger: Ledger, run_state: RunStateReader, by: str) -> str | None:
    """Free the chaos/DR lock when it is stale (its holder ended, or unknown past its lease);
    a live holder's lock gets a heartbeat instead."""
    for lock in ledger.held_locks():
        if lock.name != RUN_LOCK:
            continue
        state = run_state(lock.dag_id, lock.run_id)
        holder = liveness(state)
        verdict = lock_staleness(holder, state, lock.heartbeat_age_s, lock.lease_s)
        if not verdict.stale:
            if holder == "live":
                ledger.heartbeat(lock.name, lock.run_id)
            log.info("Keeping %s held by %s run %s: %s", lock.name, lock.dag_id, lock.run_id, verdict.reason)
            return None
        log.warning("Releasing %s held by %s run %s: %s", lock.name, lock.dag_id, lock.run_id, verdict.reason)
        ledger.break_lock(lock.name, lock.run_id, by=by, reason=verdict.reason)
        return lock.run_id
    return None


def abort_everything(control_conn_id: str, ledger: Ledger, by: str, reason: str) -> dict[str, Any]:
    """Immediate Abort: take the lock away first (no campaign admits another fault after this), then
    revert every open fault, whatever its run."""
    released = None
    for lock in ledger.held_locks():
        if lock.name == RUN_LOCK and ledger.break_lock(lock.name, lock.run_id, by=by, reason=reason):
            log.warning("Immediate Abort: %s taken from %s run %s; it injects nothing more", lock.name,
                        lock.dag_id, lock.run_id)
            released = lock.run_id
    open_entries = ledger.open_entries()
    done = revert_all(control_conn_id, [(e, reason) for e in open_entries], by)
    leftovers = [removed for environment in sorted({e.environment for e in open_entries})
                 for removed in remove_leftovers(environment, done["failed"])]
    return {**done, "leftovers_removed": leftovers, "lock_released_from": released}


def remove_leftovers(environment: str, failed: list[Any]) -> list[str]:
    """Past the ledger, as the runbook's Immediate Abort deletes everything labelled ``chaos-experiment``:
    every object-store fault this product set in ``environment`` and its memory hog, whatever experiment
    they belong to (a revert of one experiment removes only its own). Failures go to ``failed``."""
    from resilience.config import load_config
    from resilience.faults.memory_pressure import HOG_NAME
    from resilience.platforms.base import get_platform

    platform = get_platform(load_config().environment(environment))
    removed = []
    removals: tuple[tuple[Capability, Callable[[], object]], ...] = (
        ("object_store", lambda: platform.object_store.clear_object_store_fault(None)),
        ("memory", lambda: platform.memory.stop_memory_hog(HOG_NAME)))
    for capability, remove in removals:
        if platform.missing([capability]):
            continue
        try:
            remove()
            removed.append(f"{environment}: every {capability} leftover")
        except Exception as exc:
            log.error("Immediate Abort: removing %s leftovers in %s failed: %s", capability, environment, exc)
            failed.append({"environment": environment, "capability": capability,
                           "error": f"{type(exc).__name__}: {exc}"})
    return removed


def abort_or_sweep(mode: str, reason: str, by_run_id: str) -> dict[str, Any]:
    """chaos_abort's task: ``abort_all`` (Immediate Abort) or ``sweep``; fails when a revert failed."""
    from resilience.config import load_config
    from resilience.errors import ChecksFailedError
    from resilience.ledger import ledger_for
    from resilience.run_state import airflow_run_state

    control = load_config().control_db_conn_id
    ledger = ledger_for(control)
    by = f"chaos_abort:{mode}"
    if mode == "abort_all":
        done = abort_everything(control, ledger, by, f"Immediate Abort (chaos_abort run {by_run_id})"
                                + (f": {reason}" if reason else ""))
    else:
        run_state = airflow_run_state()
        done = {**revert_all(control, orphans(ledger, run_state), by),
                "lock_released_from": release_stale_lock(ledger, run_state, by)}
    if done["failed"]:
        raise ChecksFailedError(f"{len(done['failed'])} revert(s) failed: {done['failed']}")
    return done
