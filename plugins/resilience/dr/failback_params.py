"""dr_failback's inputs: the stability window, the canary analysis (after Flagger) and the sync policy."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from resilience.canary import DEFAULT_STEPS, FailbackPolicy, ramp_plan
from resilience.config import Config
from resilience.dr.activation_params import dr_environment_of, dry_run_flag, dry_run_param

MAX_STABLE_HOURS = 7 * 24
POLICIES = ("primary_wins", "dr_wins")  # who wins a row both regions changed while DR served
MAX_INTERVAL_S = 3600


@dataclass(frozen=True)
class FailbackParams:
    environment: str
    stable_hours: float
    stability_timeout_hours: float
    steps: tuple[int, ...]
    interval_s: float
    threshold: int
    max_error_rate_delta_pct: float
    max_p95_ratio: float
    conflict_policy: str
    decommission_dr: bool
    dry_run: bool = False  # plan mode: validate, list the calls; make none

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["steps"] = list(self.steps)
        return doc

    @property
    def policy(self) -> FailbackPolicy:
        return FailbackPolicy(max_error_rate_delta_pct=self.max_error_rate_delta_pct, max_p95_ratio=self.max_p95_ratio)


def _number(params: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"params.{name}: {value!r} is not a number")
    if not low < value <= high:
        raise ValueError(f"params.{name}: {value!r} must be > {low:g} and <= {high:g}")
    return float(value)


def parse_failback_params(params: Mapping[str, Any], config: Config) -> FailbackParams:
    environment = dr_environment_of(config, str(params.get("environment", "")))
    threshold = params.get("threshold", 2)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= 20:
        raise ValueError(f"params.threshold: {threshold!r} must be an integer in 1..20")
    policy = params.get("conflict_policy", "primary_wins")
    if policy not in POLICIES:
        raise ValueError(f"params.conflict_policy: {policy!r} is not one of {list(POLICIES)}")
    decommission = params.get("decommission_dr", True)
    if not isinstance(decommission, bool):
        raise ValueError(f"params.decommission_dr: {decommission!r} must be true or false")
    return FailbackParams(
        environment=environment.name,
        stable_hours=_number(params, "stable_hours", 2, 0, MAX_STABLE_HOURS),
        stability_timeout_hours=_number(params, "stability_timeout_hours", 24, 0, MAX_STABLE_HOURS),
        steps=ramp_plan(params.get("steps", list(DEFAULT_STEPS))),
        interval_s=_number(params, "interval_s", 300, 0, MAX_INTERVAL_S),
        threshold=threshold,
        max_error_rate_delta_pct=_number(params, "max_error_rate_delta_pct", 1.0, 0, 100),
        max_p95_ratio=_number(params, "max_p95_ratio", 2.0, 1, 100),
        conflict_policy=policy,
        decommission_dr=decommission,
        dry_run=dry_run_flag(params),
    )


def failback_params() -> dict[str, Any]:
    from airflow.sdk import Param

    from resilience.config import DR_ENVIRONMENT_NAMES

    return {
        "environment": Param("lab", type="string", enum=list(DR_ENVIRONMENT_NAMES), title="Environment",
                             description="The environment whose traffic is served from DR and returns to primary."),
        "stable_hours": Param(2, type="number", exclusiveMinimum=0, maximum=MAX_STABLE_HOURS,
                              title="Primary stable for (hours)", section="Stability",
                              description="Runbook: verify primary region stability (> 2 hours). Read from "
                                          "Prometheus: up the whole window, metrics covering it, low error rate."),
        "stability_timeout_hours": Param(24, type="number", exclusiveMinimum=0, maximum=MAX_STABLE_HOURS,
                                         title="Give up waiting after (hours)", section="Stability",
                                         description="How long the deferred sensor waits for stability."),
        "steps": Param(list(DEFAULT_STEPS), type="array", items={"type": "integer", "minimum": 1, "maximum": 100},
                       minItems=1, title="Canary steps (% to primary)", section="Canary analysis",
                       description="Primary's share of traffic per step; must rise strictly and end at 100."),
        "interval_s": Param(300, type="number", exclusiveMinimum=0, maximum=MAX_INTERVAL_S,
                            title="Analysis interval (seconds)", section="Canary analysis",
                            description="How long each step is analysed before the next one (at least one "
                                        "rate window plus two scrapes)."),
        "threshold": Param(2, type="integer", minimum=1, maximum=20, title="Failed checks before rollback",
                           section="Canary analysis",
                           description="As in Flagger: this many failed metric checks roll all traffic back to "
                                       "DR. A metric with no data is a failed check."),
        "max_error_rate_delta_pct": Param(1.0, type="number", exclusiveMinimum=0, maximum=100,
                                          title="Max error rate over DR (points)", section="Canary analysis",
                                          description="The primary's error rate may exceed DR's by this much."),
        "max_p95_ratio": Param(2.0, type="number", exclusiveMinimum=1, maximum=100, title="Max p95 vs DR (x)",
                               section="Canary analysis",
                               description="The primary's p95 may be this many times DR's (never tighter than "
                                           "50 ms)."),
        "conflict_policy": Param("primary_wins", type="string", enum=list(POLICIES), title="Sync conflicts",
                                 section="Data sync",
                                 description="A row changed on both sides since DR started: keep the primary's "
                                             "(primary_wins) or take DR's (dr_wins). Every conflict is reported."),
        "decommission_dr": Param(True, type="boolean", title="Decommission DR after cutover", section="Data sync",
                                 description="Stop the DR app and drop the DR database once all traffic is back "
                                             "and the final sync is done."),
        "dry_run": dry_run_param(" (DR serves, the canary's weights are valid)", "Plan"),
    }
