"""Scenario verdicts and the campaign's resilience score: pure functions over the events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

STATUSES = ("passed", "failed", "aborted", "skipped")
# reverters that end a fault before its window did: the experiment did not complete
EARLY_REVERTERS = ("chaos_abort", "inject_failed", "inject_undo", "not_applied", "guard_steady_state",
                   "break_lock")


@dataclass(frozen=True)
class ScenarioVerdict:
    """``failed`` names the SLO and by how much; ``aborted`` means the experiment did not complete."""

    scenario: str
    status: str
    reason: str
    recovery_s: float | None = None
    service: str | None = None  # in a campaign across services: the service the fault was on

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        if self.service is None:
            del values["service"]
        return values


def _overshoot(breach: dict[str, Any]) -> str:
    measured, bound = breach.get("measured"), breach.get("bound")
    if measured is None or bound is None:
        return breach["reason"]
    return f"{breach['reason']} (by {abs(measured - bound):.2f})"


def scenario_verdict(scenario: str, *, injected: bool, inject_error: str | None, guard: dict[str, Any] | None,
                     reverted: bool, revert_error: str | None, recovery: dict[str, Any] | None,
                     max_recovery_s: float, reverted_by: str | None = None,
                     revert_reason: str | None = None) -> ScenarioVerdict:
    """Decide one scenario from what each step reported (None: the step did not report) and from who
    reverted it according to the ledger (``reverted_by``, ``revert_reason``).

    The ledger outranks the events: a fault the guard reverted on a breach failed even when the
    guard's event says "ok" (a restarted triggerer starts a fresh trigger that sees green SLOs), and
    a fault an abort or the inject's own undo ended early did not complete."""
    if not injected:
        return ScenarioVerdict(scenario, "aborted", f"fault not injected: {inject_error or 'step did not run'}")
    if not reverted:
        return ScenarioVerdict(scenario, "aborted", f"revert failed: {revert_error or 'step did not run'}; "
                               "the fault may still be active (chaos_abort sweeps it)")
    recovery_s = recovery.get("recovery_s") if recovery else None
    if reverted_by == "guard_slo" and (guard is None or guard.get("status") != "breach"):
        return ScenarioVerdict(scenario, "failed", f"SLO breached: {revert_reason or 'reason not recorded'} "
                               "(the guard reverted the fault; its event was lost)", recovery_s)
    if reverted_by and reverted_by.startswith(EARLY_REVERTERS):
        return ScenarioVerdict(scenario, "aborted", f"reverted early by {reverted_by}: "
                               f"{revert_reason or 'no reason recorded'}", recovery_s)
    if guard is None:
        return ScenarioVerdict(scenario, "aborted", "the SLO guard did not report", recovery_s)
    if guard["status"] != "breach" and guard.get("unguarded_s"):
        return ScenarioVerdict(scenario, "aborted", f"the SLOs were not watched for {guard['unguarded_s']:.0f} s "
                               "while the fault was on (the triggerer restarted or stalled): cannot be judged",
                               recovery_s)
    if guard["status"] == "breach":
        breaches = guard["verdict"]["breaches"]
        return ScenarioVerdict(scenario, "failed", "SLO breached: " + "; ".join(_overshoot(b) for b in breaches),
                               recovery_s)
    if recovery is None or recovery.get("status") != "ok":
        return ScenarioVerdict(scenario, "failed", f"not recovered within {max_recovery_s:g} s", recovery_s)
    if recovery_s is None:
        raise ValueError(f"{scenario}: the recovery watch reported ok without recovery_s: {recovery}")
    if recovery_s > max_recovery_s:
        return ScenarioVerdict(scenario, "failed", f"recovery {recovery_s:.1f} s > {max_recovery_s:g} s", recovery_s)
    if "breached_s" in guard:  # the disruption the scenario expects, up to its max_breach_s in all
        tolerated = float(guard.get("max_breach_s") or 0)
        # still broken when the window ended: the breach went on until the SLOs were green again
        broken = guard["breached_s"] + (recovery_s if guard.get("breached_at_end") else 0.0)
        after = f" ({recovery_s:.0f} s of it after the fault window)" if guard.get("breached_at_end") else ""
        if broken > tolerated:
            return ScenarioVerdict(scenario, "failed", f"SLOs broken for {broken:.0f} s{after}, more than the "
                                   f"{tolerated:g} s the scenario tolerates", recovery_s)
        return ScenarioVerdict(scenario, "passed", f"SLOs broken for {broken:.0f} s{after}, within the "
                               f"{tolerated:g} s the scenario tolerates; recovered in {recovery_s:.1f} s", recovery_s)
    return ScenarioVerdict(scenario, "passed", f"SLOs held; recovered in {recovery_s:.1f} s", recovery_s)


def with_missing(targets: Iterable[tuple[str | None, str]],
                 verdicts: Iterable[ScenarioVerdict]) -> list[ScenarioVerdict]:
    """One verdict per (service, scenario) the run targeted, in order (service None: the environment's app):
    one that recorded none was aborted."""
    decided = {(v.service, v.scenario): v for v in verdicts}
    return [decided.get((service, name)) or ScenarioVerdict(name, "aborted", "no verdict recorded (its verdict task "
                                                            "did not run, or the run was killed)", service=service)
            for service, name in targets]


def scores_by_service(verdicts: Iterable[ScenarioVerdict], weights: dict[str, float]) -> dict[str, dict[str, Any]]:
    """A campaign across services: each service's status and resilience score, in the order first seen."""
    grouped: dict[str, list[ScenarioVerdict]] = {}
    for verdict in verdicts:
        if verdict.service is not None:
            grouped.setdefault(verdict.service, []).append(verdict)
    return {service: {"status": campaign_status(group), "resilience_score": resilience_score(group, weights),
                      "passed": sum(v.status == "passed" for v in group), "scenarios": len(group)}
            for service, group in grouped.items()}


def resilience_score(verdicts: Iterable[ScenarioVerdict], weights: dict[str, float]) -> float | None:
    """Weighted share of passed scenarios, 0-100 (LitmusChaos' resilience score; skipped ones don't count)."""
    counted = [(weights.get(v.scenario, 1.0), v.status == "passed") for v in verdicts if v.status != "skipped"]
    total = sum(w for w, _ in counted)
    if not total:
        return None
    return round(100.0 * sum(w for w, ok in counted if ok) / total, 1)


def campaign_status(verdicts: Iterable[ScenarioVerdict]) -> str:
    """Chaos Toolkit's closed set for the whole run: completed | failed | aborted (nothing decided is
    not a completed run)."""
    statuses = {v.status for v in verdicts}
    if not statuses or "aborted" in statuses:
        return "aborted"
    return "failed" if "failed" in statuses else "completed"
