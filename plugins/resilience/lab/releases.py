"""App releases per region: ``run/releases-<region>.json``, the history the supervisor deploys from.

A release is a name and a fail rate: the share of ``/api/*`` requests the demo app answers 500
(a broken release that still passes ``/health``, as a bad deploy that passes readiness does).
The history is a list of ``{"release", "fail_rate", "deployed_at"}``; its last entry is what the
region's supervisor passes to a replica each time it (re)starts one. A rollback marks the entry
it undoes ``rolled_back`` and appends the release it returns to with ``rollback_of``, so a
rolled-back release is never offered as "previous" again.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

from resilience.lab.jsonfile import write_json
from resilience.lab.layout import LabLayout

ENV_RELEASE = "RESILIENCE_APP_RELEASE"
ENV_FAIL_RATE = "RESILIENCE_APP_FAIL_RATE"
DEFAULT_RELEASE = "v1"
RELEASE_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")

Entry = dict[str, Any]


def validate_release(release: object) -> str:
    """Return ``release`` or raise ValueError naming the argument (1..64 of ``[A-Za-z0-9._-]``)."""
    if not isinstance(release, str) or not RELEASE_PATTERN.fullmatch(release):
        raise ValueError(f"release: {release!r} is not 1..64 characters of [A-Za-z0-9._-]")
    return release


def validate_fail_rate(fail_rate: object, setting: str = "fail_rate") -> float:
    """Return ``fail_rate`` as a float or raise ValueError naming ``setting`` (0 <= fail_rate <= 1)."""
    if isinstance(fail_rate, bool) or not isinstance(fail_rate, int | float) or math.isnan(fail_rate) \
            or not 0.0 <= fail_rate <= 1.0:
        raise ValueError(f"{setting}: {fail_rate!r} is not a number in 0..1")
    return float(fail_rate)


def entry(release: str, fail_rate: float, **extra: Any) -> Entry:
    return {"release": release, "fail_rate": fail_rate, "deployed_at": time.time(), **extra}


def same_release(a: Entry, b: Entry) -> bool:
    """Two entries deploy the same thing (name and fail rate)."""
    return a["release"] == b["release"] and float(a["fail_rate"]) == float(b["fail_rate"])


def previous_of(history: list[Entry]) -> Entry | None:
    """The release a rollback returns to: the newest earlier entry neither rolled back nor equal to
    the current one (None when there is none)."""
    if not history:
        return None
    current = history[-1]
    for candidate in reversed(history[:-1]):
        if not candidate.get("rolled_back") and not same_release(candidate, current):
            return candidate
    return None


def document(history: list[Entry]) -> dict[str, Any]:
    """``{"current", "previous", "history"}`` of a history (pure)."""
    return {"current": history[-1], "previous": previous_of(history), "history": history}


def read_history(layout: LabLayout, region: str) -> list[Entry]:
    """The region's history; a region never deployed to runs the initial release (v1, fail rate 0)."""
    try:
        history = json.loads(layout.releases_file(region).read_text())
    except (FileNotFoundError, ValueError):
        history = []
    return history if isinstance(history, list) and history else [entry(DEFAULT_RELEASE, 0.0)]


def write_history(layout: LabLayout, region: str, history: list[Entry]) -> None:
    write_json(layout.releases_file(region), history, indent=1)


def ensure_history(layout: LabLayout, region: str) -> list[Entry]:
    """Write the initial history (v1, fail rate 0) unless the region has one; return the history."""
    history = read_history(layout, region)
    if not layout.releases_file(region).exists():
        write_history(layout, region, history)
    return history


def release_env(layout: LabLayout, region: str) -> dict[str, str]:
    """Environment of a replica (re)started now: the region's current release and fail rate."""
    current = read_history(layout, region)[-1]
    return {ENV_RELEASE: str(current["release"]), ENV_FAIL_RATE: repr(float(current["fail_rate"]))}
