"""Preflight safety checks (runbook "Safety Checks"): pure, over facts gathered beforehand."""

from __future__ import annotations

from dataclasses import dataclass, field

from resilience.checks import Check

MIN_READY_PCT = 80.0


@dataclass(frozen=True)
class PreflightFacts:
    """What preflight needs to know, read from the platform, Prometheus and the ledger."""

    environment: str
    is_production: bool
    chaos_enabled: bool
    allow_production: bool
    pods_ready: int
    pods_total: int
    pods_scope: str  # what was counted: "namespace ofm-staging", "the lab's app replicas"
    deployment_in_progress: str | None = None  # what is deploying, or None
    firing_alerts: tuple[str, ...] = ()
    lock_holder: tuple[str, str] | None = None  # (run_id, dag_id) of another run holding the lock
    open_faults: tuple[str, ...] = field(default_factory=tuple)  # "#12 pod-kill (run x)" of other runs


def preflight_checks(facts: PreflightFacts) -> list[Check]:
    """Every safety rule as a check; chaos may start only when all pass."""
    env = facts.environment
    if not facts.chaos_enabled:
        allowed = Check("environment allows chaos", False, f"environments.{env}.chaos.enabled is false: chaos refused")
    elif facts.is_production and not facts.allow_production:
        allowed = Check("environment allows chaos", False,
                        f"{env} is production: the run must set allow_production to true")
    else:
        note = " (production, allowed by this run)" if facts.is_production else ""
        allowed = Check("environment allows chaos", True, f"chaos enabled in {env}{note}")
    holder = f"{facts.lock_holder[1]} run {facts.lock_holder[0]} holds the lock" if facts.lock_holder else "lock free"
    ready_pct = 100.0 * facts.pods_ready / facts.pods_total if facts.pods_total else 0.0
    return [
        allowed,
        Check(f">= {MIN_READY_PCT:g} % pods ready", facts.pods_total > 0 and ready_pct >= MIN_READY_PCT,
              f"{facts.pods_ready} of {facts.pods_total} Running and Ready in {facts.pods_scope} ({ready_pct:.0f} %)"),
        Check("no deployment in progress", facts.deployment_in_progress is None,
              facts.deployment_in_progress or "none"),
        Check("no alert firing", not facts.firing_alerts,
              ", ".join(facts.firing_alerts) if facts.firing_alerts else "none firing"),
        Check("no other chaos or DR run active", facts.lock_holder is None,
              holder),
        Check("no fault left active", not facts.open_faults,
              "; ".join(facts.open_faults) if facts.open_faults else "ledger clean"),
    ]
