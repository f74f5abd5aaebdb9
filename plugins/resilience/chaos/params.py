"""The chaos campaign's inputs: the trigger form and its validation (before any side effect)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resilience.config import SLO_BOUND_RANGES, Config, Environment
from resilience.faults.base import SCENARIOS
from resilience.param_values import flag
from resilience.slo import OVERRIDABLE_BOUNDS, allowed_side, bounds_looser_than, looser_than

MIN_DURATION_S, MAX_DURATION_S = 10, 1800
SLO_OVERRIDE_PARAMS = OVERRIDABLE_BOUNDS  # each is checked against environments.<name>.slo.loosest


@dataclass(frozen=True)
class CampaignParams:
    environment: str
    scenarios: tuple[str, ...]
    duration_s: int
    slo_overrides: Mapping[str, float]
    scenario_options: Mapping[str, Mapping[str, Any]]
    allow_production: bool
    dry_run: bool
    services: tuple[str, ...] = ()  # a campaign across services (chaos_services); none: the environment's app

    def targets(self) -> list[tuple[str | None, str]]:
        """(service, scenario) for each fault the run makes; service None: the environment's one app."""
        services: tuple[str | None, ...] = self.services or (None,)
        return [(service, scenario) for service in services for scenario in self.scenarios]

    def to_dict(self) -> dict[str, Any]:
        """Back to the Params' names (for XCom and the record)."""
        return {"environment": self.environment, "scenarios": list(self.scenarios), "duration": self.duration_s,
                **{k: self.slo_overrides.get(k) for k in SLO_OVERRIDE_PARAMS},
                "scenario_options": {k: dict(v) for k, v in self.scenario_options.items()},
                "allow_production": self.allow_production, "dry_run": self.dry_run,
                **({"services": list(self.services)} if self.services else {})}


def _services(raw: Any, environment: Environment, every: bool) -> tuple[str, ...]:
    """``params.services``: names among the environment's ``services``; empty means all of them when the
    run is a campaign across services (``every``), none (the environment's one app) otherwise."""
    listed = [s.name for s in environment.services]
    if raw in (None, [], ()):
        if every and not listed:
            raise ValueError(f"params.environment: environments.{environment.name} lists no services "
                             "(environments.yaml): a campaign across services needs them")
        return tuple(listed) if every else ()
    if not isinstance(raw, list | tuple) or any(not isinstance(n, str) for n in raw):
        raise ValueError(f"params.services: {raw!r} must be a list of service names")
    unknown = [n for n in raw if n not in listed]
    if unknown or len(set(raw)) != len(raw):
        raise ValueError(f"params.services: {list(raw)!r} must name each of environments.{environment.name}."
                         f"services {listed} at most once")
    return tuple(raw)


def _within_loosest(overrides: Mapping[str, float], scenarios: tuple[str, ...], environment: Environment,
                    duration_s: int) -> None:
    """Refuse a run whose SLO bounds are looser than the environment's ``slo.loosest``: the run's own overrides
    (named by Param) and, for each scenario, what it would really be guarded by (runbook <- scenario <- run).
    A tolerated breach as long as the fault window would leave the guard nothing to halt: refused too."""
    from resilience.chaos.scenarios import load_catalogue

    assert environment.slo is not None
    loosest, where = environment.slo.loosest.as_dict(), f"environments.{environment.name}.slo.loosest"
    for name, value in overrides.items():
        check, words = SLO_BOUND_RANGES[name]
        if not check(value):
            raise ValueError(f"params.{name}: {value:g} must be {words}")
        if looser_than(name, value, loosest[name]):
            raise ValueError(f"params.{name}: {value:g} is looser than {where}.{name} allows "
                             f"({allowed_side(name, loosest[name])}): a run may not loosen its own guard past it")
    catalogue = load_catalogue()
    for scenario in scenarios:
        policy = catalogue[scenario].policy(overrides)
        if looser := bounds_looser_than(policy, loosest):
            name = looser[0]
            raise ValueError(f"scenarios.{scenario}.slo.{name}: {getattr(policy, name):g} (scenarios.yaml) is looser "
                             f"than {where}.{name} allows ({allowed_side(name, loosest[name])})")
        if policy.max_breach_s and policy.max_breach_s >= duration_s:
            raise ValueError(f"params.duration: {duration_s} s must be longer than {scenario}'s max_breach_s "
                             f"({policy.max_breach_s:g} s): the guard could never halt it")


def parse_campaign_params(params: Mapping[str, Any], config: Config, *, every_service: bool = False) -> CampaignParams:
    """Validate against environments.yaml and the fault registry. Raises ValueError naming the field.
    ``every_service``: a campaign across services, whose empty ``services`` means all of them."""
    environment = config.environment(str(params.get("environment", "")), "params.environment")
    allow_production = flag(params, "allow_production")
    if not environment.chaos_enabled:
        raise ValueError(f"params.environment: environments.{environment.name}.chaos.enabled is false: chaos refused")
    if environment.is_production and not allow_production:
        raise ValueError(f"params.allow_production: {environment.name} is production; set allow_production to true")
    if environment.slo is None:
        raise ValueError(f"params.environment: {environment.name!r} has no slo section in environments.yaml: "
                         "the guard would have nothing to watch")
    scenarios = params.get("scenarios")
    if not isinstance(scenarios, list | tuple) or not scenarios:
        raise ValueError(f"params.scenarios: {scenarios!r} must be a non-empty list of {sorted(SCENARIOS)}")
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown or len(set(scenarios)) != len(scenarios):
        raise ValueError(f"params.scenarios: {list(scenarios)!r} must name each of {sorted(SCENARIOS)} at most once")
    duration = params.get("duration", 60)
    if isinstance(duration, bool) or not isinstance(duration, int) or not MIN_DURATION_S <= duration <= MAX_DURATION_S:
        raise ValueError(f"params.duration: {duration!r} must be an integer number of seconds in "
                         f"{MIN_DURATION_S}..{MAX_DURATION_S}")
    overrides = {}
    for name in SLO_OVERRIDE_PARAMS:
        value = params.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"params.{name}: {value!r} must be a number or empty")
        overrides[name] = float(value)
    _within_loosest(overrides, tuple(scenarios), environment, duration)
    options = params.get("scenario_options") or {}
    if not isinstance(options, Mapping) or any(k not in SCENARIOS or not isinstance(v, Mapping)
                                               for k, v in options.items()):
        raise ValueError(f"params.scenario_options: {options!r} must map scenario names to option objects")
    return CampaignParams(environment.name, tuple(scenarios), duration, overrides,
                          {k: dict(v) for k, v in options.items()}, allow_production, flag(params, "dry_run"),
                          _services(params.get("services"), environment, every_service))


def campaign_params(*, across_services: bool = False) -> dict[str, Any]:
    """The trigger form (JSON schema per Param); validation above covers what a schema cannot.
    ``across_services``: chaos_services' form, which also picks the services (each fault on each)."""
    from airflow.sdk import Param

    from resilience.config import ENVIRONMENT_NAMES

    def slo(title: str, description: str, maximum: float) -> Param:
        return Param(None, type=["null", "number"], minimum=0, maximum=maximum, title=title,
                     description=description + " Empty: the runbook's value, or the scenario's own. Refused "
                                               "when looser than the environment's slo.loosest (environments.yaml).",
                     section="SLO overrides")

    form = {
        "environment": Param("staging" if across_services else "lab", type="string", enum=list(ENVIRONMENT_NAMES),
                             title="Environment",
                             description="Where to inject faults (environments.yaml). Production also needs "
                                         "its chaos.enabled and allow_production below."),
        "scenarios": Param(list(SCENARIOS), type="array", examples=list(SCENARIOS), minItems=1, uniqueItems=True,
                           items={"type": "string", "enum": list(SCENARIOS)}, title="Scenarios",
                           description="Faults to run, one at a time, in this order."),
        "duration": Param(60, type="integer", minimum=MIN_DURATION_S, maximum=MAX_DURATION_S,
                          title="Fault duration (seconds)",
                          description="How long each fault stays injected unless an SLO breach ends it first."),
        "min_availability_pct": slo("Min availability (%)",
                                    "Abort when availability drops below this.", 100),
        "max_error_rate_increase_pct": slo("Max error-rate increase (points)",
                                           "Abort when the error rate exceeds baseline + this.", 100),
        "max_p95_ratio": slo("Max p95 ratio", "Abort when p95 exceeds this times baseline.", 100),
        "max_recovery_s": slo("Max recovery (seconds)",
                              "Fail a scenario whose SLOs are not green this long after the revert.", 3600),
        "max_breach_s": slo("Tolerated breach (seconds)",
                            "Halt only when an SLO stays broken longer than this: the disruption the scenario is "
                            "expected to cause (postgres-failover: 30, the runbook's failover target). 0: halt at "
                            "the first breached reading.", 600),
        "scenario_options": Param({}, type="object", title="Scenario options",
                                  description='Per-scenario options as JSON, e.g. {"s3-5xx": {"error_rate": 0.5, '
                                              '"status": 503}, "pod-kill": {"percent": 50, "grace_period_s": 30}}. '
                                              'pod-kill deletes gracefully (leaves the load balancer, drains, '
                                              'SIGKILL after grace_period_s); {"force": true} or grace 0 kills at '
                                              'once. postgres-failover: {"mode": "switchover"} (planned) or '
                                              '{"mode": "crash"} (the leader\'s node is lost; Patroni promotes '
                                              'after its TTL), {"switch_back": true} to hand the role back. '
                                              'Empty: scenarios.yaml defaults.',
                                  section="Advanced"),
        "allow_production": Param(False, type="boolean", title="Allow production",
                                  description="Required (with the environment's chaos.enabled) to touch production.",
                                  section="Advanced"),
        "dry_run": Param(False, type="boolean", title="Dry run (plan)",
                         description="Plan mode: validate, run preflight, measure baselines and list in the report "
                                     "every call (and API request) each fault would make; change nothing. Review a "
                                     "production run this way before allowing it.",
                         section="Advanced"),
    }
    if across_services:
        form["scenarios"] = Param(["pod-kill"], type="array", examples=list(SCENARIOS), minItems=1, uniqueItems=True,
                                  items={"type": "string", "enum": list(SCENARIOS)}, title="Scenarios",
                                  description="Faults to make on each service. Faults run in parallel, at most the "
                                              "environment's chaos.blast_radius at once, never two on services that "
                                              "share a dependency.")
        form["services"] = Param([], type="array", uniqueItems=True, items={"type": "string"}, title="Services",
                                 description="Names from the environment's services list (environments.yaml). "
                                             "Empty: all of them.")
    return form
