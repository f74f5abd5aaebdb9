"""The runbook's "DR Activation Decision Tree" as a pure function.

    Is primary region accessible?
    ├─ YES → Continue with regional failover
    └─ NO → Full DR activation required
        ├─ Data loss acceptable?  YES → Restore from latest backup / NO → Attempt PITR recovery
        └─ Time critical?         YES → Fast restore (may lose recent data) / NO → Complete PITR restoration

The two questions under "NO" are read together: accepting data loss means no WAL has to be
replayed to a chosen moment, and time pressure decides how much WAL to wait for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# how the DR database is restored (pgBackRest --type)
REGIONAL_FAILOVER = "regional_failover"  # promote the replica; no restore
FAST_RESTORE = "fast"  # latest backup to its consistent point only (--type=immediate): minutes, loses WAL since
LATEST_RESTORE = "latest"  # latest backup + every archived WAL segment (--type=default)
COMPLETE_PITR = "pitr"  # latest backup + WAL up to a chosen moment (--type=time): the incident's eve


@dataclass(frozen=True)
class DrPath:
    """The branch taken and why, in the runbook's words."""

    kind: str
    restore: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dr_path(primary_accessible: bool, data_loss_acceptable: bool, time_critical: bool) -> DrPath:
    """Which way the decision tree goes for three yes/no answers."""
    if primary_accessible:
        return DrPath("regional_failover", None,
                      "primary region accessible: continue with regional failover (promote the replica)")
    if data_loss_acceptable and time_critical:
        return DrPath("full_dr", FAST_RESTORE,
                      "primary region lost, data loss acceptable, time critical: fast restore of the latest "
                      "backup (may lose the data written since it)")
    if data_loss_acceptable:
        return DrPath("full_dr", LATEST_RESTORE,
                      "primary region lost, data loss acceptable: restore from the latest backup and its archived WAL")
    if time_critical:
        return DrPath("full_dr", LATEST_RESTORE,
                      "primary region lost, data loss not acceptable but time critical: latest backup and every "
                      "archived WAL segment, without searching for a recovery point")
    return DrPath("full_dr", COMPLETE_PITR,
                  "primary region lost, data loss not acceptable, time allows: complete PITR restoration to the "
                  "chosen recovery point")


def resolve_answer(param: str, detected: bool | None, name: str) -> bool:
    """A decision Param is "yes", "no" or "auto" (use what was detected; refuse when nothing was)."""
    if param == "yes":
        return True
    if param == "no":
        return False
    if param != "auto":
        raise ValueError(f"params.{name}: {param!r} is not one of ['auto', 'no', 'yes']")
    if detected is None:
        raise ValueError(f"params.{name}: auto, but it could not be detected; answer yes or no")
    return detected
