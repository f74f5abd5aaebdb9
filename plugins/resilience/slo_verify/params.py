"""slo_verify's inputs: the trigger form and its validation (before any query)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resilience.config import Config, Environment
from resilience.slo_verify.settings import SloVerifySettings

MIN_WINDOW_H, MAX_WINDOW_H, DEFAULT_WINDOW_H = 0.01, 168.0, 24.0  # 36 s (a demo) .. 7 days (the previous: 14 days)


@dataclass(frozen=True)
class VerifyParams:
    environment: str
    window_h: float

    @property
    def window_s(self) -> float:
        return self.window_h * 3600

    def to_dict(self) -> dict[str, Any]:
        return {"environment": self.environment, "window_h": self.window_h}


def parse_verify_params(params: Mapping[str, Any], config: Config) -> tuple[VerifyParams, Environment,
                                                                             SloVerifySettings]:
    """Validate against environments.yaml; raises ValueError naming the field and what is allowed."""
    environment = config.environment(str(params.get("environment", "")), "params.environment")
    if environment.slo_verify is None:
        with_section = sorted(n for n, e in config.environments.items() if e.slo_verify)
        raise ValueError(f"params.environment: {environment.name!r} has no slo_verify section in environments.yaml "
                         f"(environments with one: {with_section})")
    window = params.get("window_h", DEFAULT_WINDOW_H)
    if isinstance(window, bool) or not isinstance(window, int | float) or not math.isfinite(window) \
            or not MIN_WINDOW_H <= window <= MAX_WINDOW_H:
        raise ValueError(f"params.window_h: {window!r} must be a number of hours in {MIN_WINDOW_H:g}..{MAX_WINDOW_H:g}")
    return VerifyParams(environment.name, float(window)), environment, environment.slo_verify


def verify_params() -> dict[str, Any]:
    """The trigger form (JSON schema per Param); validation above covers what a schema cannot."""
    from airflow.sdk import Param

    from resilience.config import SLO_VERIFY_ENVIRONMENT_NAMES

    return {
        "environment": Param("lab", type="string", enum=list(SLO_VERIFY_ENVIRONMENT_NAMES), title="Environment",
                             description="Whose SLOs to verify: its slo_verify section in environments.yaml says "
                                         "which Prometheus and queries (and which business metrics) to read."),
        "window_h": Param(DEFAULT_WINDOW_H, type="number", minimum=MIN_WINDOW_H, maximum=MAX_WINDOW_H,
                          title="Window (hours)",
                          description="The window the SLOs are evaluated over, ending when the run starts "
                                      f"({MIN_WINDOW_H:g} = 3 min to {MAX_WINDOW_H:g} = 7 days; fractions allowed, "
                                      "0.25 = 15 min). Throughput is compared with the window of the same length "
                                      "just before; the error budget is the availability SLO's over this window."),
    }
