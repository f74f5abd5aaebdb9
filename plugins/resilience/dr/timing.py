"""RTO/RPO accounting: pure functions over timestamps, ``now`` always passed in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from resilience.checks import Check


@dataclass(frozen=True)
class PhaseSpan:
    """One phase of a drill as recorded: when it ran and how it ended."""

    name: str
    started_at: datetime
    ended_at: datetime | None
    status: str  # running | success | failed

    def duration_s(self, now: datetime) -> float:
        return ((self.ended_at or now) - self.started_at).total_seconds()


def rto_seconds(drill_started_at: datetime, app_healthy_at: datetime) -> float:
    """Recovery time: from the drill's start until the app answered healthy on the restore."""
    if app_healthy_at < drill_started_at:
        raise ValueError(f"app_healthy_at {app_healthy_at} is before drill start {drill_started_at}")
    return (app_healthy_at - drill_started_at).total_seconds()


def rpo_seconds(reference_at: datetime, restored_last_write_at: datetime | None) -> float | None:
    """Data-loss window the restore implies.

    ``reference_at`` is what the restore should have reached: the PITR target, or the
    source's newest write when the restore began. The window is how far the newest write
    found in the restored database lags behind it (0 when it is not behind). None when the
    restored database holds no timestamped row at all: an unknown RPO, never a pass.
    """
    if restored_last_write_at is None:
        return None
    return max(0.0, (reference_at - restored_last_write_at).total_seconds())


def target_check(name: str, measured_s: float | None, target_min: float) -> Check:
    """``measured_s`` against a target in minutes; an unknown measure fails."""
    if measured_s is None:
        return Check(name, False, f"not measured (target {target_min:g} min)")
    return Check(
        name,
        measured_s <= target_min * 60,
        f"{measured_s / 60:.2f} min ({measured_s:.1f} s) vs target {target_min:g} min",
    )


def phase_breakdown(phases: list[PhaseSpan], drill_started_at: datetime, now: datetime) -> list[dict]:
    """Per-phase offset from the drill start, duration and share of the whole, for timelines."""
    total = max((p.ended_at or now) for p in phases) - drill_started_at if phases else None
    total_s = total.total_seconds() if total else 0.0
    rows = []
    for p in sorted(phases, key=lambda p: p.started_at):
        duration = p.duration_s(now)
        rows.append(
            {
                "phase": p.name,
                "status": p.status,
                "offset_s": round((p.started_at - drill_started_at).total_seconds(), 3),
                "duration_s": round(duration, 3),
                "share_pct": round(100 * duration / total_s, 1) if total_s > 0 else 0.0,
            }
        )
    return rows
