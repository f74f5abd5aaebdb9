"""Which of the runbook's severity levels (P0-P3) a DR activation declares (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from resilience.config import SEVERITIES

SEVERITY_CHOICES = ("auto", *SEVERITIES)
# auto: the decision tree's path says how much is down (runbook "Severity Levels")
AUTO_SEVERITY = {
    "full_dr": ("P0", "primary region lost: complete service outage"),
    "regional_failover": ("P1", "primary region still accessible: major functionality impacted, not a full outage"),
}


@dataclass(frozen=True)
class Severity:
    level: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"level": self.level, "reason": self.reason}


def incident_severity(param: str, path_kind: str) -> Severity:
    """The Param when it names a level; for ``auto``, the level the path implies."""
    if param in SEVERITIES:
        return Severity(param, f"param severity {param}")
    if param != "auto":
        raise ValueError(f"params.severity: {param!r} is not one of {list(SEVERITY_CHOICES)}")
    if path_kind not in AUTO_SEVERITY:
        raise ValueError(f"path kind {path_kind!r} has no default severity (known: {sorted(AUTO_SEVERITY)})")
    level, why = AUTO_SEVERITY[path_kind]
    return Severity(level, f"auto: {why}")
