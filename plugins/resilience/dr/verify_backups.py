"""Runbook step 1: the backups exist, are sound, and the WAL archive is fresh enough."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from resilience.checks import Check, summary
from resilience.dr import pgbackrest
from resilience.dr.drill import RESTORE_TIMEOUT_S, Drill
from resilience.errors import ChecksFailedError

log = logging.getLogger(__name__)


def _archiver_status(drill: Drill) -> pgbackrest.ArchiverStatus:
    conn = drill.source_conn()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT last_archived_wal, last_archived_time, last_failed_wal, last_failed_time"
                        " FROM pg_stat_archiver")
            return pgbackrest.ArchiverStatus(*cur.fetchone())
    finally:
        conn.close()


def verify_backups(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Runbook step 1: the backups exist, are sound, and the WAL archive is fresh enough."""
    drill = Drill.from_xcom(params, run_id)
    stanza = drill.source.pgbackrest_stanza
    with drill.record.phase("verify_backups") as details:
        info = pgbackrest.parse_info(drill.platform.pgbackrest(["info", "--output=json", f"--stanza={stanza}"],
                                                               timeout_s=120), stanza)
        archiver = _archiver_status(drill)
        now = datetime.now(UTC)
        checks = pgbackrest.backup_checks(info, archiver, now, drill.params.rpo_target_min)
        if drill.params.pitr_target:
            checks += _pitr_window_checks(drill.params.pitr_target, info, archiver)
        if drill.params.full_drill:
            checks.append(_verify_repository(drill, stanza))
        for check in checks:
            log.info("%s", check)
        details["checks"] = [c.to_dict() for c in checks]
        if info.latest:
            details["latest_backup"] = {"label": info.latest.label, "type": info.latest.type,
                                        "stop": info.latest.stop.isoformat(), "size_bytes": info.latest.size_bytes,
                                        "repo_size_bytes": info.latest.repo_size_bytes}
        details["backups"] = len(info.backups)
        if not all(c.passed for c in checks):
            raise ChecksFailedError(f"backup verification failed for stanza {stanza}: {summary(checks)}")
        log.info("Backups verified for stanza %s: %s", stanza, summary(checks))
        return {"latest_backup": details.get("latest_backup")}


def _pitr_window_checks(target: datetime, info: pgbackrest.StanzaInfo, archiver: pgbackrest.ArchiverStatus
                        ) -> list[Check]:
    oldest = info.backups[0].stop if info.backups else None
    return [
        Check("a backup precedes pitr_target", oldest is not None and oldest <= target,
              f"oldest backup finished {oldest.isoformat() if oldest else 'never'}, target {target.isoformat()}"),
        Check("WAL archived past pitr_target",
              archiver.last_archived_at is not None and archiver.last_archived_at > target,
              f"newest WAL archived at {archiver.last_archived_at}, target {target.isoformat()}"),
    ]


def _verify_repository(drill: Drill, stanza: str) -> Check:
    started = time.monotonic()
    try:
        output = drill.platform.pgbackrest(["verify", f"--stanza={stanza}", "--log-level-console=info"],
                                           timeout_s=RESTORE_TIMEOUT_S)
    except Exception as exc:
        return Check("pgbackrest verify", False, str(exc))
    return pgbackrest.verify_check(output, time.monotonic() - started)
