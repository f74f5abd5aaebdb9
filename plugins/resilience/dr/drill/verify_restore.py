"""Runbook steps 4-5: prove the restored data is sound and the application runs on it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from resilience.checks import Check, summary
from resilience.dr import integrity
from resilience.dr.drill.run import APP_TIMEOUT_S, RESTORE_TIMEOUT_S, Drill
from resilience.errors import ChecksFailedError
from resilience.platforms.types import Sandbox

log = logging.getLogger(__name__)


def check_integrity(params: dict[str, Any], run_id: str, sandbox: dict[str, Any], restored: dict[str, Any]
                    ) -> dict[str, Any]:
    """Runbook step 4: pg_amcheck, the SQL checks, and row counts against the source."""
    drill = Drill.from_xcom(params, run_id)
    box = Sandbox.from_dict(sandbox)
    with drill.record.step("integrity") as details:
        user, password = drill.source_credentials
        clean, amcheck_summary = drill.platform.sandboxes.amcheck(box, user, password, timeout_s=RESTORE_TIMEOUT_S)
        checks = [Check("pg_amcheck (heap and B-tree indexes)", clean, amcheck_summary)]
        with drill.sandbox_conn(box) as conn:
            checks += integrity.run_sql_checks(conn)
            tables = integrity.timestamped_tables(conn)
            latest = integrity.latest_write(conn, tables)
            checks += _row_count_checks(drill, conn, tables, restored, latest)
        details["restored_latest_write"] = latest
        details["tables"] = [str(t) for t in tables]
        for check in checks:
            log.info("%s", check)
        details["checks"] = [c.to_dict() for c in checks]
        if not all(c.passed for c in checks):
            raise ChecksFailedError(f"integrity of sandbox {box.name}: {summary(checks)}")
        log.info("Integrity of sandbox %s: %s", box.name, summary(checks))
        return {"restored_latest_write": latest.isoformat() if latest else None}


def _row_count_checks(drill: Drill, conn: Any, tables: list[integrity.Table], restored: dict[str, Any],
                      latest: datetime | None) -> list[Check]:
    """Counts up to the recovery point equal the source's; after PITR, nothing newer than the target."""
    target = drill.params.pitr_target
    point = restored.get("recovery_point")
    upto = target or (datetime.fromisoformat(point) if point else latest)
    if upto is None:
        return [Check("recovery point known", False, "the restore replayed no transaction and holds no rows")]
    upto -= integrity.IN_FLIGHT_ALLOWANCE
    checks = []
    if target is not None:
        checks += integrity.pitr_checks(integrity.count_rows(conn, tables, target, None), target)
    restored_counts = integrity.count_rows(conn, tables, None, upto)
    source = drill.source_conn()
    try:
        source_counts = integrity.count_rows(source, tables, None, upto)
    finally:
        source.close()
    return checks + integrity.row_count_checks(source_counts, restored_counts, upto)


def check_app(params: dict[str, Any], run_id: str, sandbox: dict[str, Any]) -> dict[str, Any]:
    """Runbook step 5: start the application on the sandbox; its health endpoints must answer."""
    drill = Drill.from_xcom(params, run_id)
    box = Sandbox.from_dict(sandbox)
    with drill.record.step("app_connectivity") as details:
        user, password = drill.source_credentials
        from psycopg.conninfo import make_conninfo

        dsn = make_conninfo(host=box.host, port=box.port, dbname=box.dbname, user=user, password=password or "",
                            connect_timeout=2)
        url = drill.platform.sandboxes.start_app(box, dsn)
        details["app_url"] = url
        checks = [_http_check(url, path) for path in ("/health", "/api/health/database")]
        for check in checks:
            log.info("%s", check)
        details["checks"] = [c.to_dict() for c in checks]
        if not all(c.passed for c in checks):
            raise ChecksFailedError(f"application on sandbox {box.name}: {summary(checks)}")
        details["app_healthy_at"] = datetime.now(UTC)
        log.info("Application healthy on sandbox %s at %s", box.name, url)
        return {"app_url": url}


def _http_check(base_url: str, path: str, timeout_s: float = APP_TIMEOUT_S) -> Check:
    """GET until a 200 or the timeout; the check carries the last answer and its latency."""
    from resilience.http_probe import wait_http_ok

    waited = wait_http_ok(base_url + path, timeout_s)
    return Check(f"GET {path}", waited.ok, waited.last if waited.ok else
                 f"{waited.last} (gave up after {timeout_s:g} s)")
