"""Sandbox safety: a restore target must never be, contain or sit inside a source database.

Checked here, above the platform seam, once for every platform: a platform only plans and creates.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime
from typing import TYPE_CHECKING

from resilience.errors import RefusedError
from resilience.platforms.types import DatabaseEndpoint, Sandbox

if TYPE_CHECKING:
    from resilience.platforms.base import Platform

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def sandbox_name(prefix: str, run_id: str, now: datetime) -> str:
    """A short DNS/identifier-safe name, unique per run: ``drill-20261128-0605-<hash>``."""
    digest = hashlib.sha1(run_id.encode()).hexdigest()[:6]
    name = f"{prefix}-{now:%Y%m%d-%H%M}-{digest}"
    if not _NAME.match(name):
        raise ValueError(f"sandbox name {name!r} is not [a-z0-9-], at most 63 characters")
    return name


def _same_host(a: str, b: str) -> bool:
    return a == b or (a in LOCAL_HOSTS and b in LOCAL_HOSTS)


def _path_overlaps(a: str, b: str) -> bool:
    ra, rb = os.path.realpath(a), os.path.realpath(b)
    return ra == rb or ra.startswith(rb.rstrip("/") + "/") or rb.startswith(ra.rstrip("/") + "/")


def sandbox_conflicts(candidate: DatabaseEndpoint, sources: list[DatabaseEndpoint]) -> list[str]:
    """Why ``candidate`` may not be used as a sandbox: empty when it is safe."""
    if not sources:
        return ["no source database endpoints known: cannot prove the sandbox is not the source"]
    problems = []
    for src in sources:
        if _same_host(candidate.host, src.host) and candidate.port == src.port:
            problems.append(f"port {candidate.port} on {candidate.host} is the source server {src.host}:{src.port}")
        if _path_overlaps(candidate.data_dir, src.data_dir):
            problems.append(f"data directory {candidate.data_dir} overlaps the source's {src.data_dir}")
    return problems


def open_sandbox(platform: Platform, name: str, dbname: str, sources: list[DatabaseEndpoint]) -> Sandbox:
    """A new empty sandbox on ``platform`` that is provably none of ``sources``: planned, checked, then
    created. Raises RefusedError naming every conflict before anything is created."""
    planned = platform.sandboxes.plan_sandbox(name, dbname)
    problems = sandbox_conflicts(planned.endpoint(), sources)
    if problems:
        raise RefusedError(f"sandbox {name} refused: " + "; ".join(problems))
    return platform.sandboxes.create_sandbox(planned)
