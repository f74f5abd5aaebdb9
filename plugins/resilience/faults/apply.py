"""Apply a fault from its ledger row alone: the guard's trigger does it once its first SLO reading
is in, so no fault is ever on while nothing watches it.

The row was written (and admitted) by the campaign's inject task. Here, under the entry's claim:
the row must still be ``injecting`` and its run must still hold the chaos/DR lock, the side
effect happens, the row becomes ``active``; anything failing after the side effect reverts it
under the same claim before raising.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from resilience.chaos.timeline import applied_deadline
from resilience.faults.deadline import DEADLINE_KEY
from resilience.faults.experiment import with_experiment

log = logging.getLogger(__name__)


def applied_plan(plan: dict[str, Any], now_s: float) -> dict[str, Any]:
    """The plan with its dead-man deadline tightened to the real window (see ``applied_deadline``)."""
    if DEADLINE_KEY not in plan or "duration_s" not in plan:
        return plan
    return {**plan, DEADLINE_KEY: applied_deadline(float(plan[DEADLINE_KEY]), now_s, float(plan["duration_s"]))}


class NotApplied(RuntimeError):
    """The fault was not applied (closed meanwhile, lock taken away); nothing was changed."""


def apply_entry(control_conn_id: str, ledger_id: int, by: str) -> dict[str, Any]:
    """Cause ledger entry ``ledger_id``'s fault; returns ``{"injected_at", "revert_info"}``."""
    from resilience.config import load_config
    from resilience.faults.base import get_fault
    from resilience.faults.revert import revert_entry
    from resilience.ledger import ledger_for
    from resilience.platforms.base import get_platform

    ledger = ledger_for(control_conn_id)
    claim = ledger.claim(ledger_id, by)
    try:
        entry = ledger.get(ledger_id)
        if entry.state != "injecting":
            raise NotApplied(f"ledger #{ledger_id} is {entry.state} (by {entry.reverted_by}): not applying it")
        stop = ledger.still_admitted(entry.run_id)
        if stop:
            ledger.mark_reverted(ledger_id, "not_applied", {}, stop)
            raise NotApplied(f"not applying ledger #{ledger_id}: {stop}")
        fault = get_fault(entry.scenario)
        platform = get_platform(load_config().environment(entry.environment).for_service(entry.service))
        injected_at = time.time()
        plan = with_experiment(applied_plan(entry.plan, injected_at), ledger_id)
        log.info("Injecting %s in %s (ledger #%d): %s", entry.scenario, entry.environment, ledger_id, plan)
        try:
            revert_info = fault.inject(platform, plan)
        except Exception as exc:
            log.exception("Inject of %s failed; reverting whatever it did (ledger #%d)", entry.scenario, ledger_id)
            revert_entry(control_conn_id, ledger_id, "inject_failed", reason=f"{type(exc).__name__}: {exc}",
                         held=claim)
            raise
        if DEADLINE_KEY in plan:
            revert_info = {**revert_info, DEADLINE_KEY: plan[DEADLINE_KEY]}  # the switch actually set
        try:
            ledger.mark_active(ledger_id, revert_info)
            stop = ledger.still_admitted(entry.run_id)
            if stop:  # an Immediate Abort came while the fault went on: undo it now
                raise NotApplied(stop)
        except Exception as exc:
            log.error("%s is on but %s; reverting it now (ledger #%d)", entry.scenario, exc, ledger_id)
            revert_entry(control_conn_id, ledger_id, "inject_undo", reason=f"{type(exc).__name__}: {exc}", held=claim)
            raise
        return {"injected_at": injected_at, "revert_info": revert_info}
    finally:
        claim.release()
