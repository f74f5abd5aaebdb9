"""Parsing one Param value of any DAG's form, the error naming the field: the helpers every params module shares."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

MAX_TARGET_MIN = 24 * 60


def flag(params: Mapping[str, Any], name: str) -> bool:
    """A boolean Param (false when absent)."""
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise ValueError(f"params.{name}: {value!r} must be true or false")
    return value


def target_minutes(params: Mapping[str, Any], name: str, default: float) -> float:
    """An RTO/RPO target in minutes: > 0 and at most a day."""
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"params.{name}: {value!r} is not a number of minutes")
    if not 0 < value <= MAX_TARGET_MIN:
        raise ValueError(f"params.{name}: {value!r} must be > 0 and <= {MAX_TARGET_MIN} minutes")
    return float(value)


def parse_pitr_target(value: Any, now: datetime) -> datetime | None:
    """None/empty for "latest"; otherwise an ISO 8601 time strictly in the past.

    A time without an offset is read as UTC (the runbook writes "2025-08-12 10:30:00").
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"params.pitr_target: {value!r} must be an ISO 8601 date-time string or empty")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"params.pitr_target: {value!r} is not an ISO 8601 date-time (e.g. 2026-11-28T10:30:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment >= now:
        raise ValueError(
            f"params.pitr_target: {moment.isoformat()} is not in the past (now {now.isoformat(timespec='seconds')})"
        )
    return moment.astimezone(UTC)
