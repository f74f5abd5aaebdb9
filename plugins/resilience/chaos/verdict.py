"""Scenario verdicts and the campaign's resilience score: pure functions over the events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

STATUSES = ("passed", "failed", "aborted", "skipped")


@dataclass(frozen=True)
class ScenarioVerdict:
    """``failed`` names the SLO and by how much; ``aborted`` means the experiment did not complete."""

    scenario: str
    status: str
    reason: str
    recovery_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _overshoot(breach: dict[str, Any]) -> str:
    measured, bound = breach.get("measured"), breach.get("bound")
    if measured is None or bound is None:
        return breach["reason"]
    return f"{breach['reason']} (by {abs(measured - bound):.2f})"


def scenario_verdict(scenario: str, *, injected: bool, inject_error: str | None, guard: dict[str, Any] | None,
                     reverted: bool, revert_error: str | None, recovery: dict[str, Any] | None,
                     max_recovery_s: float) -> ScenarioVerdict:
    """Decide one scenario from what each step reported (None: the step did not report)."""
    if not injected:
        return ScenarioVerdict(scenario, "aborted", f"fault not injected: {inject_error or 'step did not run'}")
    if not reverted:
        return ScenarioVerdict(scenario, "aborted", f"revert failed: {revert_error or 'step did not run'}; "
                               "the fault may still be active (chaos_abort sweeps it)")
    recovery_s = recovery.get("recovery_s") if recovery else None
    if guard is None:
        return ScenarioVerdict(scenario, "aborted", "the SLO guard did not report", recovery_s)
    if guard["status"] == "breach":
        breaches = guard["verdict"]["breaches"]
        return ScenarioVerdict(scenario, "failed", "SLO breached: " + "; ".join(_overshoot(b) for b in breaches),
                               recovery_s)
    if recovery is None or recovery.get("status") != "ok":
        return ScenarioVerdict(scenario, "failed", f"not recovered within {max_recovery_s:g} s", recovery_s)
    if recovery_s > max_recovery_s:
        return ScenarioVerdict(scenario, "failed", f"recovery {recovery_s:.1f} s > {max_recovery_s:g} s", recovery_s)
    return ScenarioVerdict(scenario, "passed", f"SLOs held; recovered in {recovery_s:.1f} s", recovery_s)


def resilience_score(verdicts: Iterable[ScenarioVerdict], weights: dict[str, float]) -> float | None:
    """Weighted share of passed scenarios, 0-100 (LitmusChaos' resilience score; skipped ones don't count)."""
    counted = [(weights.get(v.scenario, 1.0), v.status == "passed") for v in verdicts if v.status != "skipped"]
    total = sum(w for w, _ in counted)
    if not total:
        return None
    return round(100.0 * sum(w for w, ok in counted if ok) / total, 1)


def campaign_status(verdicts: Iterable[ScenarioVerdict]) -> str:
    """Chaos Toolkit's closed set for the whole run: completed | failed | aborted."""
    statuses = {v.status for v in verdicts}
    if "aborted" in statuses:
        return "aborted"
    return "failed" if "failed" in statuses else "completed"
