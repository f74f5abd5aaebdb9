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
from datetime import datetime
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


# -- detection (the "auto" answers), pure: the caller measures, these decide ---------------------

WAL_SEGMENT_BYTES = 16 * 1024 * 1024
RESTORE_BYTES_PER_S = 100e6  # conservative: the lab measured 238 MB/s (bench/drill.py); S3 repos are slower
REPLAY_BYTES_PER_S = 200e6  # WAL replay on 2 cores measured ~280 MB/s (2.6 GB in 9.3 s)


@dataclass(frozen=True)
class Detected:
    answer: bool | None  # None: could not be detected
    evidence: str


def detect_primary_accessible(entry_point_up: bool, healthy_replicas: int, replicas: int) -> Detected:
    """Accessible when its entry point answers and at least one replica is healthy."""
    answer = entry_point_up and healthy_replicas > 0
    return Detected(answer, f"entry point {'answers' if entry_point_up else 'does not answer'} /health, "
                            f"{healthy_replicas}/{replicas} replicas healthy")


def detect_data_loss_acceptable(latest_backup_stop: datetime | None, now: datetime, rpo_target_s: float) -> Detected:
    """Restoring the latest backup alone loses what was written since it: acceptable within the RPO target."""
    if latest_backup_stop is None:
        return Detected(None, "no backup in the repository")
    age_s = (now - latest_backup_stop).total_seconds()
    return Detected(age_s <= rpo_target_s, f"newest backup ended {age_s / 60:.1f} min ago "
                                           f"(RPO target {rpo_target_s / 60:g} min)")


def wal_segments_between(first: str | None, last: str | None) -> int:
    """How many 16 MiB WAL segments from ``first`` to ``last`` (names like 000000010000000000000003)."""
    if not first or not last:
        return 0

    def number(name: str) -> int:
        return int(name[8:16], 16) * 0x100 + int(name[16:24], 16)

    return max(0, number(last) - number(first) + 1)


def estimate_restore_s(backup_bytes: int, wal_bytes: int) -> float:
    return backup_bytes / RESTORE_BYTES_PER_S + wal_bytes / REPLAY_BYTES_PER_S


def detect_time_critical(backup_bytes: int | None, wal_bytes: int, budget_s: float) -> Detected:
    """Critical when restoring the backup and replaying its WAL would not fit the DR phase's budget."""
    if backup_bytes is None:
        return Detected(None, "no backup in the repository")
    estimate = estimate_restore_s(backup_bytes, wal_bytes)
    return Detected(estimate > budget_s, f"estimated restore {estimate:.0f} s ({backup_bytes / 1e6:.0f} MB backup, "
                                         f"{wal_bytes / 1e6:.0f} MB WAL) vs DR-environment budget {budget_s:.0f} s")


# -- the runbook's phase budgets -----------------------------------------------------------------

PHASES = (  # (phase, runbook minutes it must end by, of a 30-minute RTO)
    ("assessment", 5),
    ("dr_environment", 15),
    ("application", 25),
    ("traffic_cutover", 30),
)
RUNBOOK_RTO_MIN = 30


def phase_budgets(rto_target_min: float) -> dict[str, float]:
    """Seconds from the start by which each phase must end, scaled from the runbook's 30 minutes."""
    return {phase: ends_min / RUNBOOK_RTO_MIN * rto_target_min * 60 for phase, ends_min in PHASES}


def phase_report(steps: list[dict[str, Any]], started_at: datetime, rto_target_min: float) -> list[dict[str, Any]]:
    """Each phase that ran: when it ended (s from the start) against its budget."""
    budgets = phase_budgets(rto_target_min)
    rows = []
    for phase, _ in PHASES:
        mine = [s for s in steps if s["phase"] == phase and s["status"] != "skipped"]
        if not mine:
            rows.append({"phase": phase, "status": "skipped", "budget_end_s": budgets[phase], "start_s": None,
                         "end_s": None, "within_budget": None})
            continue
        start = min(_moment(s["start"]) for s in mine)
        end = max(_moment(s["end"]) for s in mine)
        end_s = (end - started_at).total_seconds()
        failed = any(s["status"] == "failed" for s in mine)
        rows.append({"phase": phase, "status": "failed" if failed else "success",
                     "start_s": round((start - started_at).total_seconds(), 3), "end_s": round(end_s, 3),
                     "budget_end_s": budgets[phase], "within_budget": end_s <= budgets[phase]})
    return rows


def _moment(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
