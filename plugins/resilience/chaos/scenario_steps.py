"""One scenario's steps: baseline -> inject (setup) -> [guard] -> revert (teardown) -> [recovery] -> judge.

The guard and recovery are sensors (``resilience.sensors``); these are the rest. Each step
records its outcome in the campaign record under the scenario's name.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from resilience.chaos.campaign import Campaign
from resilience.chaos.scenarios import load_catalogue
from resilience.chaos.verdict import scenario_verdict
from resilience.faults.base import get_fault
from resilience.slo import baseline_from

log = logging.getLogger(__name__)

BASELINE_READINGS = 5


def _skip(reason: str) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    raise AirflowSkipException(reason)


def _selected(campaign: Campaign, scenario: str) -> None:
    if scenario not in campaign.params.scenarios:
        _skip(f"{scenario} was not selected for this run")


def baseline(params: dict[str, Any], run_id: str, scenario: str) -> dict[str, Any]:
    """Steady state before the fault, and the guard's spec (queries, baseline, policy) for this scenario."""
    from resilience.prometheus import PrometheusHook, read_slo

    campaign = Campaign.from_xcom(params, run_id)
    _selected(campaign, scenario)
    spec = campaign.slo_spec()
    hook = PrometheusHook(spec["prometheus_conn_id"], timeout_s=spec["query_timeout_s"])
    readings = []
    for _ in range(BASELINE_READINGS):
        readings.append(read_slo(hook, spec["queries"], spec["window"]))
        time.sleep(spec["poll_interval_s"])
    steady = baseline_from(readings)
    policy = load_catalogue()[scenario].policy(campaign.params.slo_overrides)
    log.info("Baseline before %s: availability %.2f %%, error rate %.2f %%, p95 %.0f ms (%d readings)", scenario,
             steady.availability_pct, steady.error_rate_pct, steady.p95_ms, len(readings))
    spec.update(baseline=steady.to_dict(), policy=policy.to_dict())
    campaign.record.step(scenario, "baseline", {"baseline": steady.to_dict(), "policy": policy.to_dict(),
                                                "readings": [r.to_dict() for r in readings]})
    return spec


def inject(params: dict[str, Any], run_id: str, dag_id: str, scenario: str) -> dict[str, Any]:
    """Plan, write the ledger row, then cause the fault. A failed inject reverts what it may have done."""
    from resilience.faults.revert import revert_entry

    campaign = Campaign.from_xcom(params, run_id)
    if campaign.params.dry_run:
        _skip(f"dry run: {scenario} not injected")
    fault = get_fault(scenario)
    options = {**load_catalogue()[scenario].options, **campaign.params.scenario_options.get(scenario, {})}
    plan = fault.plan(campaign.platform, options)
    expires_in_s = campaign.params.duration_s + campaign.environment.orphan_grace_s
    ledger_id = campaign.ledger.record_intent(run_id, dag_id, campaign.environment.name, scenario, plan, expires_in_s)
    log.info("Injecting %s in %s: %s (ledger #%d)", scenario, campaign.environment.name, plan, ledger_id)
    started = time.time()
    try:
        revert_info = fault.inject(campaign.platform, plan)
    except Exception:
        log.exception("Inject of %s failed; reverting whatever it did (ledger #%d)", scenario, ledger_id)
        revert_entry(campaign.config.control_db_conn_id, ledger_id, "inject_failed")
        raise
    campaign.ledger.mark_active(ledger_id, revert_info)
    result = {"ledger_id": ledger_id, "injected_at": started, "plan": plan, "revert_info": revert_info}
    campaign.record.step(scenario, "fault", result)
    return result


def revert(params: dict[str, Any], run_id: str, scenario: str, fault: dict[str, Any], by: str) -> dict[str, Any]:
    """Teardown: revert from the ledger (a no-op when the guard already did) and report when it happened."""
    from resilience.faults.revert import revert_entry

    campaign = Campaign.from_xcom(params, run_id)
    ledger_id = int(fault["ledger_id"])
    revert_entry(campaign.config.control_db_conn_id, ledger_id, by)
    entry = campaign.ledger.get(ledger_id)
    result = {"ledger_id": ledger_id, "reverted_at": entry.reverted_at.timestamp(), "reverted_by": entry.reverted_by,
              "observed": entry.observed, "fault_s": entry.reverted_at.timestamp() - float(fault["injected_at"])}
    campaign.record.step(scenario, "revert", result)
    return result


def judge(params: dict[str, Any], run_id: str, scenario: str, *, fault: dict | None, guard: dict | None,
          reverted: dict | None, recovery: dict | None) -> dict[str, Any]:
    """The scenario's verdict from what its steps reported (runs whatever happened before)."""
    campaign = Campaign.from_xcom(params, run_id)
    _selected(campaign, scenario)
    if campaign.params.dry_run:
        campaign.record.step(scenario, "verdict", {"scenario": scenario, "status": "skipped", "reason": "dry run"})
        _skip("dry run: baseline measured, nothing injected")
    policy = load_catalogue()[scenario].policy(campaign.params.slo_overrides)
    verdict = scenario_verdict(
        scenario, injected=fault is not None, inject_error=None if fault else "inject failed (see its log)",
        guard=guard, reverted=reverted is not None, revert_error=None if reverted else "revert failed (see its log)",
        recovery=recovery, max_recovery_s=policy.max_recovery_s)
    for step, value in (("guard", guard), ("recovery", recovery)):
        if value is not None:
            campaign.record.step(scenario, step, value)
    campaign.record.step(scenario, "verdict", verdict.to_dict())
    (log.info if verdict.status == "passed" else log.warning)("%s %s: %s", scenario, verdict.status.upper(),
                                                              verdict.reason)
    return verdict.to_dict()
