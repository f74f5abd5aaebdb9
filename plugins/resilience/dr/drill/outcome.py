"""A drill's outcome, computed from its record alone (pure: no I/O, ``now`` passed in)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from resilience.dr.required_steps import Recorded, drill_steps, step_checks
from resilience.dr.timing import PhaseSpan, phase_breakdown, rpo_seconds, rto_seconds, target_check

AFTER_RTO = ("measure_rto_rpo", "cleanup_sandbox")  # recorded steps that come after the app is back


def as_datetime(value: Any) -> datetime | None:
    """Timestamps come back from JSONB as strings and from columns as datetimes."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def required_datetime(value: Any, what: str) -> datetime:
    """:func:`as_datetime` of a timestamp the record must have (a NOT NULL column): a clear error if absent."""
    moment = as_datetime(value)
    if moment is None:
        raise ValueError(f"{what} is missing from the record")
    return moment


def _phase(record: dict[str, Any], name: str) -> dict[str, Any]:
    return next((p for p in record["phases"] if p["phase"] == name), {})


def drill_outcome(record: dict[str, Any], now: datetime, task_states: dict[str, str | None] | None = None
                  ) -> dict[str, Any]:
    """Status, RTO/RPO against targets, per-phase timeline and every check, from the record.

    Every step the drill needs must have recorded a success (``required_steps``); ``task_states``
    (Airflow's, None when not read) is the second witness.
    """
    params = record["params"]
    started = required_datetime(record["started_at"], "the drill's started_at")
    spans = [  # the timeline of the restoration; the bookkeeping after it is required but not part of the RTO
        PhaseSpan(p["phase"], required_datetime(p["started_at"], f"phase {p['phase']}'s started_at"),
                  as_datetime(p["ended_at"]), p["status"])
        for p in record["phases"] if p["phase"] not in AFTER_RTO
    ]
    app = _phase(record, "app_connectivity")
    healthy_at = as_datetime(app.get("details", {}).get("app_healthy_at")) if app.get("status") == "success" else None
    rto_s = rto_seconds(started, healthy_at) if healthy_at else None

    pitr_target = as_datetime(params.get("pitr_target"))
    reference = pitr_target or as_datetime(_phase(record, "restore").get("details", {}).get("source_latest_write"))
    restored_latest = as_datetime(_phase(record, "integrity").get("details", {}).get("restored_latest_write"))
    rpo_s = rpo_seconds(reference, restored_latest) if reference else None

    recorded = {p["phase"]: Recorded(p["status"], p.get("error") or (p.get("details") or {}).get("reason"))
                for p in record["phases"]}
    # a record without no_cleanup is held to the stricter rule: the sandbox must have been dropped
    checks = step_checks(drill_steps(bool(params.get("no_cleanup", False))), recorded, task_states)
    rto_check = target_check("RTO within target", rto_s, float(params["rto_target"]))
    rpo_check = target_check("RPO within target", rpo_s, float(params["rpo_target"]))
    checks += [rto_check, rpo_check]
    passed = all(c.passed for c in checks)
    status = "passed" if passed else "failed"
    if params.get("dry_run"):  # plan mode: only the plan phase ran, and that is the whole outcome
        checks = []
        status = "planned" if recorded.get("plan", Recorded("absent")).status == "success" else "failed"
    ends = [s.ended_at for s in spans if s.ended_at] or [now]
    return {
        "status": status,
        "deviated": status not in ("passed", "planned"),
        "start": started.isoformat(),
        "end": max(ends).isoformat(),
        "duration": round((max(ends) - started).total_seconds(), 3),
        "rto": {"measured_s": rto_s, "target_min": float(params["rto_target"]),
                "passed": rto_check.passed, "app_healthy_at": healthy_at.isoformat() if healthy_at else None},
        "rpo": {"measured_s": rpo_s, "target_min": float(params["rpo_target"]), "passed": rpo_check.passed,
                "reference": reference.isoformat() if reference else None,
                "restored_latest_write": restored_latest.isoformat() if restored_latest else None},
        "phases": phase_breakdown(spans, started, now),
        "checks": [c.to_dict() for c in checks],
    }
