"""One scenario's steps: baseline -> inject (setup) -> [guard] -> revert (teardown) -> [recovery] -> judge.

The guard and recovery are sensors (``resilience.sensors``); these are the rest. Each step
records its outcome in the campaign record under the scenario's name.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from resilience.chaos.campaign import Campaign
from resilience.chaos.scenarios import load_catalogue
from resilience.chaos.timeline import fault_timeline
from resilience.chaos.verdict import ScenarioVerdict, scenario_verdict
from resilience.faults.base import get_fault
from resilience.faults.revert import SERVICE_SELECTOR_KEY
from resilience.journal import Journal
from resilience.plan import PlannedCall, log_plan, plan_document
from resilience.slo import Baseline, Reading, baseline_from, unsettled

if TYPE_CHECKING:
    from resilience.chaos.expectations import CheckResult
    from resilience.ledger import LedgerEntry

log = logging.getLogger(__name__)

BASELINE_READINGS = 5
STEADY_READINGS = 3   # readings in a row back within the first baseline before a later scenario's baseline
STEADY_WAIT_S = 120   # at most this long; the runbook's recovery bound is 2 min
BASELINE_QUERY_TIMEOUT_S = 5.0  # a baseline query waits this long (the guard waits its own query_timeout_s)


def _skip(reason: str) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    raise AirflowSkipException(reason)


def _selected(campaign: Campaign, scenario: str) -> None:
    if scenario not in campaign.params.scenarios:
        _skip(f"{scenario} was not selected for this run")


def baseline(params: dict[str, Any], run_id: str, scenario: str, service: str | None = None) -> dict[str, Any]:
    """Steady state before the fault, and the guard's spec (queries, baseline, policy) for this scenario
    (of ``service``, in a campaign across services)."""
    from resilience.prometheus import PrometheusHook, read_slo

    campaign = Campaign.from_xcom(params, run_id, service)
    _selected(campaign, scenario)
    spec = campaign.slo_spec()
    # the guard's query timeout bounds its reaction; a baseline reacts to nothing, and a slow Prometheus (a loaded
    # machine) must not leave it without one complete reading
    hook = PrometheusHook(spec["prometheus_conn_id"], timeout_s=max(spec["query_timeout_s"], BASELINE_QUERY_TIMEOUT_S))
    settling = _wait_for_steady_state(campaign, scenario, lambda: read_slo(hook, spec["queries"], spec["window"]),
                                      spec["poll_interval_s"])
    started = time.time()
    readings = []
    for _ in range(BASELINE_READINGS):
        readings.append(read_slo(hook, spec["queries"], spec["window"]))
        time.sleep(spec["poll_interval_s"])
    steady = baseline_from(readings)
    policy = load_catalogue()[scenario].policy(campaign.params.slo_overrides)
    log.info("Baseline before %s: availability %.2f %%, error rate %.2f %%, p95 %.1f ms (%d readings)", scenario,
             steady.availability_pct, steady.error_rate_pct, steady.p95_ms, len(readings))
    spec.update(baseline=steady.to_dict(), policy=policy.to_dict())
    campaign.record.put(campaign.scope(scenario), "baseline", {"baseline": steady.to_dict(), "policy": policy.to_dict(),
                                                "readings": [r.to_dict() for r in readings],
                                                "window": [started, time.time()], **settling})
    return spec


def _first_baseline(campaign: Campaign, scenario: str) -> Baseline | None:
    """The campaign's first baseline (taken before any fault), or None when ``scenario`` is the first (of its
    service, in a campaign across services: the other services' faults run meanwhile)."""
    taken = [(s["baseline"]["window"][0], s["baseline"]["baseline"]) for s in campaign.record.load()["scenarios"]
             if s["scenario"] != scenario and s.get("service") == campaign.service
             and (s.get("baseline") or {}).get("window")]
    return Baseline(**min(taken, key=lambda t: t[0])[1]) if taken else None


def _wait_for_steady_state(campaign: Campaign, scenario: str, read: Callable[[], Reading],
                           poll_interval_s: float) -> dict[str, Any]:
    """Before a later scenario's baseline, wait until the metrics are back within the campaign's first one
    (STEADY_READINGS in a row), at most STEADY_WAIT_S: the report says when they never came back."""
    reference = _first_baseline(campaign, scenario)
    if reference is None:
        return {}
    started, streak, why = time.monotonic(), 0, ["not read yet"]
    while time.monotonic() - started < STEADY_WAIT_S:
        why = unsettled(read(), reference)
        streak = 0 if why else streak + 1
        if streak >= STEADY_READINGS:
            waited = round(time.monotonic() - started, 1)
            log.info("%s: metrics back within the campaign's first baseline after %.1f s", scenario, waited)
            return {"steady": True, "settle_s": waited}
        time.sleep(poll_interval_s)
    log.warning("%s: metrics not back within the campaign's first baseline after %d s (%s): taking the baseline "
                "anyway; the report says so", scenario, STEADY_WAIT_S, "; ".join(why))
    return {"steady": False, "settle_s": float(STEADY_WAIT_S), "unsettled": why}


def inject(params: dict[str, Any], run_id: str, dag_id: str, scenario: str,
           service: str | None = None) -> dict[str, Any]:
    """Plan the fault and write its ledger row, admitted only while this run holds the lock and the blast
    radius allows it (``resilience.chaos.blast_radius``). Nothing is touched here: the guard's trigger applies
    the fault once its first SLO reading is in and healthy, so the fault is never on while nothing watches it.

    In a campaign across services (``service`` given) a blast-radius refusal raises
    :class:`~resilience.ledger.BlastRadiusRefused`: the caller waits for a slot and asks again. A campaign on
    the environment's one app skips the scenario instead (something else is open)."""
    from resilience.ledger import BlastRadiusRefused, InjectRefused

    campaign = Campaign.from_xcom(params, run_id, service)
    scope = campaign.scope(scenario)
    fault = get_fault(scenario)
    options = {**load_catalogue()[scenario].options, **campaign.params.scenario_options.get(scenario, {})}
    plan = fault.plan(campaign.platform, options)
    if campaign.params.dry_run:
        _record_plan(campaign, scope, fault.planned_calls(plan))
        _skip(f"dry run: {scope} planned, not injected")
    # across services the slot is taken before the baseline (no other fault starts on the service meanwhile):
    # the guard starts that much later
    now = time.time()
    start = now + (STEADY_WAIT_S + BASELINE_READINGS * 2 * campaign.environment.slo_source().poll_interval_s
                           if service else 0.0)
    timeline = fault_timeline(start, campaign.params.duration_s, campaign.environment.orphan_grace_s)
    plan["deadline_epoch_s"] = timeline.deadline_epoch_s
    plan["duration_s"] = campaign.params.duration_s  # the guard tightens the deadline to it when it applies
    environment = campaign.environment
    target = environment.service(service) if service else None
    if target is not None:
        plan[SERVICE_SELECTOR_KEY] = target.selector
    try:
        claim = campaign.ledger.admit(run_id, dag_id, environment.name, scenario, plan,
                                      timeline.expires_in_s + (start - now),
                                      owner=f"inject_{scope}:{run_id}", service=campaign.ledger_service,
                                      depends_on=target.depends_on if target else (),
                                      blast_radius=environment.blast_radius)
    except BlastRadiusRefused as exc:
        if service is not None:
            raise
        log.warning("Not injecting %s: %s", scope, exc)
        campaign.record.put(scope, "fault", {"refused": str(exc)})
        _skip(f"{scope} not injected: {exc}")
    except InjectRefused as exc:
        log.warning("Not injecting %s: %s", scope, exc)
        campaign.record.put(scope, "fault", {"refused": str(exc)})
        _skip(f"{scope} not injected: {exc}")
    claim.release()
    log.info("Planned %s in %s: %s (ledger #%d). The guard injects it once its first SLO reading is healthy; "
             "it ends by itself at %s if nobody reverts it", scope, environment.name, plan,
             claim.entry_id, _utc(timeline.deadline_epoch_s))
    result = {"ledger_id": claim.entry_id, "scenario": scenario, "plan": plan, "planned_at": time.time(),
              "latest_start_epoch_s": timeline.planned_end_epoch_s - campaign.params.duration_s}
    if service is not None:
        result["service"] = service
    campaign.record.put(scope, "plan", result)
    return result


def blast_radius_wait(params: dict[str, Any], run_id: str, service: str, scenario: str | None = None
                      ) -> dict[str, Any]:
    """What the blast-radius wait of ``service`` (``scenario``) polls (``resilience.triggers.BlastRadiusTrigger``):
    with the run's targets in order, so that a freed slot wakes only the waiter it goes to."""
    campaign = Campaign.from_xcom(params, run_id, service)
    environment = campaign.environment
    slo = environment.slo_source()
    queue = [{"service": s, "scenario": sc, "depends_on": list(environment.service(s).depends_on)}
             for s, sc in campaign.params.targets() if s is not None] if scenario else []
    return {"control_conn_id": campaign.config.control_db_conn_id, "run_id": run_id,
            "environment": environment.name, "service": service,
            "depends_on": list(environment.service(service).depends_on),
            "blast_radius": environment.blast_radius, "poll_interval_s": slo.poll_interval_s,
            "scenario": scenario, "queue": queue}


def _record_plan(campaign: Campaign, scenario: str, calls: list[PlannedCall]) -> None:
    """Plan mode: the calls inject and revert would make, and the requests each would send, in the report."""
    planned = plan_document(campaign.platform, calls, f"environment {campaign.environment.name}")
    log_plan(f"{scenario} in {campaign.environment.name}", planned)
    campaign.record.put(scenario, "planned_calls", planned)


def _utc(epoch_s: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds")


def revert(params: dict[str, Any], run_id: str, scenario: str, fault: dict[str, Any] | None,
           by: str, service: str | None = None) -> dict[str, Any]:
    """Teardown: revert this run's open entries of ``scenario`` (on ``service``) from the ledger (a no-op when
    the guard already did). Reads no Params and no kill switch: turning chaos off must never block a revert."""
    from resilience.chaos.blast_radius import DEFAULT_SERVICE
    from resilience.config import load_config
    from resilience.faults.revert import revert_entry
    from resilience.journal import target_scope
    from resilience.ledger import ledger_for

    control = load_config().control_db_conn_id
    ledger = ledger_for(control)
    entries = [e for e in ledger.entries(run_id)
               if e.scenario == scenario and e.service == (service or DEFAULT_SERVICE)]
    if not entries:
        _skip(f"nothing to revert: {target_scope(service, scenario)} was not injected by this run")
    for entry in entries:
        if entry.state != "reverted":
            revert_entry(control, entry.id, by, reason="the fault window ended")
    entry = ledger.get(entries[-1].id)
    if entry.reverted_at is None:
        raise RuntimeError(f"ledger #{entry.id} ({scenario}) is {entry.state} after its revert: no reverted_at")
    injected_at = float((fault or {}).get("injected_at") or (entry.injected_at or entry.created_at).timestamp())
    result = {"ledger_id": entry.id, "reverted_at": entry.reverted_at.timestamp(), "reverted_by": entry.reverted_by,
              "revert_reason": entry.revert_reason, "observed": entry.observed,
              "fault_s": entry.reverted_at.timestamp() - injected_at}
    Journal.for_conn(control, run_id).put(target_scope(service, scenario), "revert", result)
    return result


def _why_not_injected(campaign: Campaign, scenario: str, guard: dict | None) -> str:
    refused = (campaign.record.values(campaign.scope(scenario)).get("fault") or {}).get("refused")
    if refused:
        return refused
    if guard and guard.get("status") == "not_injected":
        return guard["reason"]
    if guard and guard.get("status") == "inject_failed":
        return f"inject failed: {guard['error']}"
    if guard and guard.get("status") == "reverted":
        return f"reverted by {guard['reverted_by']} before it was applied: {guard['revert_reason']}"
    return "inject failed or did not run (see the inject and guard_slo logs)"


def _with_expectations(campaign: Campaign, scenario: str, verdict: ScenarioVerdict,
                       entry: LedgerEntry | None) -> tuple[ScenarioVerdict, list[CheckResult]]:
    """The runbook's checks of ``scenario`` (scenarios.yaml) measured over its fault window: a verdict that
    held its SLOs fails when one is not met or has no data. Not measured when the fault never went on."""
    from dataclasses import replace

    from resilience.chaos.expectations import failures, summary
    from resilience.chaos.measure import measure_checks

    checks = load_catalogue()[scenario].checks
    if not checks or entry is None or entry.injected_at is None or entry.reverted_at is None:
        return verdict, []
    baseline = ((campaign.record.values(campaign.scope(scenario)).get("baseline") or {}).get("baseline") or {})
    window = (entry.injected_at.timestamp(), entry.reverted_at.timestamp())
    try:
        results = measure_checks(campaign.platform, scenario, checks, entry.observed, window, baseline)
    except Exception as exc:  # a bug or an outage while measuring: the checks were not made, so no pass
        log.exception("%s: the runbook checks could not be measured", scenario)
        if verdict.status != "passed":
            return verdict, []
        return replace(verdict, status="failed", reason=f"runbook checks could not be measured: "
                                                        f"{type(exc).__name__}: {exc}"), []
    if verdict.status != "passed":
        return verdict, results
    if failed := failures(results):
        return replace(verdict, status="failed", reason="runbook expectation not met: " + "; ".join(failed)), results
    return replace(verdict, reason=f"{verdict.reason}; runbook expectations met: {summary(results)}"), results


def _close_unreverted(campaign: Campaign, run_id: str, scenario: str) -> None:
    """Revert this run's open entries of ``scenario`` now rather than at the next sweep: an inject that failed
    (its worker killed after the ledger row was written) may have applied part of its fault, and no later
    campaign is admitted while the row is open. A failure here is logged: the sweep retries."""
    from resilience.faults.revert import revert_entry

    for entry in _entries(campaign, scenario):
        if entry.state != "reverted":
            log.warning("%s: ledger #%d is %s and its revert teardown did not run: reverting it now", scenario,
                        entry.id, entry.state)
            try:
                revert_entry(campaign.config.control_db_conn_id, entry.id, "chaos_campaign:verdict",
                             reason="its inject failed, so the revert teardown did not run")
            except Exception:
                log.exception("%s: ledger #%d could not be reverted; chaos_abort's sweep retries it", scenario,
                              entry.id)


def _entries(campaign: Campaign, scenario: str) -> list[LedgerEntry]:
    """This run's ledger entries of ``scenario`` on the campaign's service, oldest first."""
    return [e for e in campaign.ledger.entries(campaign.run_id)
            if e.scenario == scenario and e.service == campaign.ledger_service]


def judge(params: dict[str, Any], run_id: str, scenario: str, *, fault: dict | None, guard: dict | None,
          reverted: dict | None, recovery: dict | None, service: str | None = None) -> dict[str, Any]:
    """The scenario's verdict from what its steps reported and from the ledger (runs whatever happened
    before): a breach the guard reverted counts even if its event was lost."""
    from dataclasses import replace

    campaign = Campaign.from_xcom(params, run_id, service)
    scope = campaign.scope(scenario)
    _selected(campaign, scenario)
    if campaign.params.dry_run:
        campaign.record.put(scope, "verdict", {"scenario": scenario, "status": "skipped", "reason": "dry run",
                                               **({"service": service} if service else {})})
        _skip("dry run: baseline measured, nothing injected")
    policy = load_catalogue()[scenario].policy(campaign.params.slo_overrides)
    if reverted is None:  # the revert teardown did not run (a failed inject skips it): close what it left open
        _close_unreverted(campaign, run_id, scenario)
    entries = _entries(campaign, scenario)
    last = entries[-1] if entries else None
    injected = last is not None and last.injected_at is not None  # the ledger says the fault went on
    verdict = scenario_verdict(
        scenario, injected=injected,
        inject_error=None if injected else _why_not_injected(campaign, scenario, guard),
        guard=guard, reverted=reverted is not None and (last is None or last.state == "reverted"),
        revert_error=None if reverted else (last.error if last and last.error else "revert failed (see its log)"),
        recovery=recovery, max_recovery_s=policy.max_recovery_s,
        reverted_by=last.reverted_by if last else None, revert_reason=last.revert_reason if last else None)
    for step, value in (("guard", guard), ("recovery", recovery)):
        if value is not None:
            campaign.record.put(scope, step, value)
    verdict, checks = _with_expectations(campaign, scenario, verdict, last)
    if service:
        verdict = replace(verdict, service=service)
    campaign.record.put(scope, "checks", [c.to_dict() for c in checks])
    campaign.record.put(scope, "verdict", verdict.to_dict())
    (log.info if verdict.status == "passed" else log.warning)("%s %s: %s", scope, verdict.status.upper(),
                                                              verdict.reason)
    return verdict.to_dict()
