"""chaos_abort: the runbook's "Immediate Abort" without pkill, and the sweep for orphaned faults.

A fault is an orphan when its run is no longer running, or when it is still open past its
planned life (``expires_at``): a runner killed with SIGKILL cannot even mark its run failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from resilience.ledger import RUN_LOCK, Ledger, LedgerEntry

log = logging.getLogger(__name__)

RUNNING_STATES = ("queued", "running")


def orphans(ledger: Ledger, run_state: Callable[[str, str], str | None]) -> list[tuple[LedgerEntry, str]]:
    """Open entries to revert now, each with the reason."""
    expired = {e.id for e in ledger.expired_entries()}
    found = []
    for entry in ledger.open_entries():
        state = run_state(entry.dag_id, entry.run_id)
        if state not in RUNNING_STATES:
            found.append((entry, f"its run is {state or 'gone'}"))
        elif entry.id in expired:
            found.append((entry, f"open past its planned end ({entry.expires_at.isoformat(timespec='seconds')})"))
        elif entry.state == "revert_failed":
            found.append((entry, f"an earlier revert failed: {entry.error}"))
    return found


def revert_all(control_conn_id: str, entries: list[tuple[LedgerEntry, str]], by: str) -> dict[str, list]:
    """Revert each entry; one failure does not stop the others. Returns what was reverted and what failed."""
    from resilience.faults.revert import revert_entry

    done: dict[str, list] = {"reverted": [], "failed": []}
    for entry, reason in entries:
        log.warning("Reverting %s in %s (ledger #%d, run %s): %s", entry.scenario, entry.environment, entry.id,
                    entry.run_id, reason)
        try:
            revert_entry(control_conn_id, entry.id, by)
            done["reverted"].append(entry.id)
        except Exception as exc:
            log.error("Revert of ledger #%d failed: %s", entry.id, exc)
            done["failed"].append({"ledger_id": entry.id, "error": f"{type(exc).__name__}: {exc}"})
    return done


def release_stale_lock(ledger: Ledger, run_state: Callable[[str, str], str | None], force: bool) -> str | None:
    """Free the chaos/DR lock when its holder no longer runs (or always, on an Immediate Abort)."""
    for name, run_id, dag_id, _ in ledger.locks():
        if name != RUN_LOCK:
            continue
        state = run_state(dag_id, run_id)
        if force or state not in RUNNING_STATES:
            log.warning("Releasing %s held by %s run %s (%s)", name, dag_id, run_id,
                        "immediate abort" if force else f"run is {state or 'gone'}")
            ledger.break_lock(name, run_id)
            return run_id
    return None
