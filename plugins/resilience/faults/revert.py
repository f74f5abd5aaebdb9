"""Revert a fault from its ledger row alone: used by the revert teardown, the guard and chaos_abort."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def revert_entry(control_conn_id: str, ledger_id: int, by: str) -> bool:
    """Revert ledger entry ``ledger_id`` unless already reverted; True when this call closed it.

    A failed revert is recorded (``revert_failed``, with the error) and raised, so the entry
    stays open for the next sweep.
    """
    from resilience.ledger import ledger_for

    ledger = ledger_for(control_conn_id)
    with ledger.revert_lock(ledger_id):  # the teardown, the guard and chaos_abort never revert at once
        return _revert_locked(ledger, ledger_id, by)


def _revert_locked(ledger, ledger_id: int, by: str) -> bool:
    from resilience.config import load_config
    from resilience.faults.base import get_fault
    from resilience.platforms.base import get_platform

    entry = ledger.get(ledger_id)
    if entry.state == "reverted":
        log.warning("Not reverting: ledger #%d (%s) already reverted by %s", ledger_id, entry.scenario,
                    entry.reverted_by)
        return False
    log.info("Reverting %s in %s (ledger #%d, %s, by %s)", entry.scenario, entry.environment, ledger_id,
             entry.state, by)
    platform = get_platform(load_config().environment(entry.environment))
    try:
        observed = get_fault(entry.scenario).revert(platform, entry.plan, entry.revert_info) or {}
    except Exception as exc:
        ledger.mark_revert_failed(ledger_id, f"{type(exc).__name__}: {exc}")
        raise
    closed = ledger.mark_reverted(ledger_id, by, observed)
    log.info("Reverted %s (ledger #%d)", entry.scenario, ledger_id)
    return closed
