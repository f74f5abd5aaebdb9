"""Revert a fault from its ledger row alone: used by the revert teardown, the guard, the inject's
own undo and chaos_abort. Needs nothing but the control Connection: no Params, no kill switch
(turning chaos off must never block a revert)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resilience.ledger import Claim, Ledger

log = logging.getLogger(__name__)

# a fault on one of an environment's services records the service's pod selector in its plan: its revert
# finds the pods even after the service left environments.yaml
SERVICE_SELECTOR_KEY = "service_selector"


def revert_entry(control_conn_id: str, ledger_id: int, by: str, reason: str | None = None,
                 held: Claim | None = None) -> bool:
    """Revert ledger entry ``ledger_id`` unless already reverted; True when this call closed it.

    The entry's claim serialises this with its inject and with other reverters (bounded wait);
    ``held`` is a claim the caller already holds (the inject undoing itself). A failed revert is
    recorded (``revert_failed``, with the error) and raised, so the entry stays open for the next
    sweep and no later fault is admitted on top of it.
    """
    from resilience.ledger import ledger_for

    ledger = ledger_for(control_conn_id)
    if held is not None:
        return _revert_claimed(held.ledger, ledger_id, by, reason)
    with ledger.revert_lock(ledger_id, owner=by):
        return _revert_claimed(ledger, ledger_id, by, reason)


def _revert_claimed(ledger: Ledger, ledger_id: int, by: str, reason: str | None) -> bool:
    from resilience.config import load_config
    from resilience.faults.base import get_fault
    from resilience.faults.experiment import with_experiment
    from resilience.platforms.base import get_platform

    entry = ledger.get(ledger_id)
    if entry.state == "reverted":
        log.warning("Not reverting: ledger #%d (%s) already reverted by %s", ledger_id, entry.scenario,
                    entry.reverted_by)
        return False
    log.info("Reverting %s in %s (ledger #%d, %s, by %s%s)", entry.scenario, entry.environment, ledger_id,
             entry.state, by, f": {reason}" if reason else "")
    environment = load_config().environment(entry.environment)
    if all(s.name != entry.service for s in environment.services) and entry.plan.get(SERVICE_SELECTOR_KEY):
        log.warning("Service %r is no longer in environments.%s.services: reverting ledger #%d with the selector "
                    "it recorded (%s)", entry.service, entry.environment, ledger_id, entry.plan[SERVICE_SELECTOR_KEY])
    platform = get_platform(environment.for_revert(entry.service, entry.plan.get(SERVICE_SELECTOR_KEY)))
    try:
        plan = with_experiment(entry.plan, ledger_id)  # what inject was handed: its objects carry the id
        observed = get_fault(entry.scenario).revert(platform, plan, entry.revert_info) or {}
    except Exception as exc:
        ledger.mark_revert_failed(ledger_id, f"{type(exc).__name__}: {exc}")
        raise
    closed = ledger.mark_reverted(ledger_id, by, observed, reason)
    log.info("Reverted %s (ledger #%d)", entry.scenario, ledger_id)
    return closed
