"""The scenario catalogue (include/config/scenarios.yaml), validated against the fault registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from resilience.chaos.expectations import Expectation, parse_expectations
from resilience.config import PROJECT_ROOT
from resilience.faults.base import SCENARIOS
from resilience.slo import SloPolicy

CATALOGUE_PATH = PROJECT_ROOT / "include" / "config" / "scenarios.yaml"


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    expect: str
    weight: float
    options: Mapping[str, Any]
    slo: Mapping[str, Any]
    checks: tuple[Expectation, ...] = ()

    def policy(self, run_overrides: Mapping[str, Any] | None = None) -> SloPolicy:
        """Runbook defaults <- this scenario's overrides <- the run's overrides."""
        return SloPolicy().with_overrides(self.slo).with_overrides(run_overrides)


def parse_catalogue(raw: Mapping[str, Any]) -> dict[str, Scenario]:
    entries = raw.get("scenarios") or {}
    unknown = set(entries) - set(SCENARIOS)
    missing = set(SCENARIOS) - set(entries)
    if unknown or missing:
        raise ValueError(f"scenarios.yaml: unknown {sorted(unknown)}, missing {sorted(missing)} "
                         f"(the fault registry has {sorted(SCENARIOS)})")
    catalogue = {}
    for name, entry in entries.items():
        weight = entry.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
            raise ValueError(f"scenarios.{name}.weight: {weight!r} must be a number > 0")
        scenario = Scenario(name, str(entry.get("title", name)), str(entry.get("expect", "")), float(weight),
                            dict(entry.get("options") or {}), dict(entry.get("slo") or {}),
                            parse_expectations(f"scenarios.{name}.checks", entry.get("checks")))
        scenario.policy()  # SLO overrides validated here, named by key
        catalogue[name] = scenario
    return catalogue


@cache
def load_catalogue(path: Path = CATALOGUE_PATH) -> dict[str, Scenario]:
    import yaml

    return parse_catalogue(yaml.safe_load(path.read_text()) or {})
