"""Runbook steps 2-3 and 9: the sandbox's life: create it, restore into it, drop it."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from resilience.config import load_config
from resilience.dr import integrity
from resilience.dr.backup_repos import repo_by_index
from resilience.dr.drill.run import RESTORE_TIMEOUT_S, WRITABLE_TIMEOUT_S, Drill
from resilience.dr.sandbox import open_sandbox, sandbox_name
from resilience.platforms.base import get_platform
from resilience.platforms.types import RestoreRequest, Sandbox

log = logging.getLogger(__name__)


def create_sandbox(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Runbook step 2: an empty sandbox that is provably not the source."""
    drill = Drill.from_xcom(params, run_id)
    with drill.record.step("create_sandbox") as details:
        source_platform = get_platform(drill.source)
        sources = source_platform.backups.database_endpoints()
        name = sandbox_name("drill", run_id, datetime.now(UTC))
        sandbox = open_sandbox(drill.platform, name, drill.source.dbname, sources)
        details.update(sandbox.to_dict())
        return sandbox.to_dict()


def restore(params: dict[str, Any], run_id: str, sandbox: dict[str, Any]) -> dict[str, Any]:
    """Runbook step 3: restore latest or point-in-time into the sandbox; wait until it takes writes."""
    drill = Drill.from_xcom(params, run_id)
    box = Sandbox.from_dict(sandbox)
    target = drill.params.pitr_target
    with drill.record.step("restore") as details:
        conn = drill.source_conn()
        try:
            tables = integrity.timestamped_tables(conn)
            details["source_latest_write"] = integrity.latest_write(conn, tables)
        finally:
            conn.close()
        repo = repo_by_index(drill.source, drill.params.repo)
        request = RestoreRequest(drill.source.pgbackrest_stanza, "pitr" if target else "latest", target,
                                 repo.repo if repo else None)
        details["repository"] = repo.to_dict() if repo else {"name": "repo1"}
        log.info("Restoring %s into sandbox %s (%s) from %s", request.stanza, box.name, request.describe(),
                 repo.label if repo else "repo1")
        started = time.monotonic()
        size = drill.platform.sandboxes.restore_sandbox(box, request, timeout_s=RESTORE_TIMEOUT_S)
        details["restore_s"] = round(time.monotonic() - started, 3)
        details["restored_bytes"] = size
        details["restore_mb_per_s"] = round(size / 1e6 / max(details["restore_s"], 1e-6), 1)
        _wait_writable(drill, box, details)
        details["total_s"] = round(time.monotonic() - started, 3)
        log.info("Sandbox %s writable after %.1f s (%d MB restored, %.1f MB/s copy)", box.name,
                 details["total_s"], size / 1e6, details["restore_mb_per_s"])
        point = details.get("recovery_point")
        return {"restore_s": details["restore_s"], "total_s": details["total_s"],
                "recovery_point": point.isoformat() if point else None,
                "repository": details["repository"]["name"]}


def _wait_writable(drill: Drill, box: Sandbox, details: dict[str, Any]) -> None:
    """Until recovery has ended and the sandbox takes a write; its last replayed commit is the recovery point."""
    def recovery_point(_conn: Any, replay_at: datetime | None) -> None:
        details["recovery_point"] = replay_at

    integrity.wait_writable(lambda: drill.sandbox_conn(box), box.name, WRITABLE_TIMEOUT_S, details, recovery_point)

def cleanup_sandbox(params: dict[str, Any] | None, run_id: str, sandbox: dict[str, Any]) -> None:
    """Runbook step 9 (teardown): drop the sandbox, unless the run asked to keep it."""
    from airflow.sdk.exceptions import AirflowSkipException

    drill = Drill.from_xcom(params, run_id) if params else None
    box = Sandbox.from_dict(sandbox)
    if drill and drill.params.no_cleanup:
        reason = f"no_cleanup is set: sandbox {box.name} kept at {box.dsn('postgres')}"
        drill.record.skip("cleanup_sandbox", "", reason)
        raise AirflowSkipException(reason)
    if drill is None:  # the drill never opened its record: nothing to report the cleanup to
        get_platform(load_config().environment(box.environment)).sandboxes.drop_sandbox(box)
        return
    with drill.record.step("cleanup_sandbox") as details:  # a required step: a sandbox left behind fails the drill
        get_platform(load_config().environment(box.environment)).sandboxes.drop_sandbox(box)
        details["dropped"] = box.name
