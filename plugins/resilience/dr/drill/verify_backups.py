"""Runbook step 1: the backups exist, are sound, and the WAL archive is fresh enough, in every repository.

Each repository of the source environment (``environments.<name>.pgbackrest.repos``: one per region)
is judged on its own: stanza status, newest backup, archive continuity, and the age of the newest WAL
segment that reached *that* repository against ``rpo_target``. Checks are named ``repoN: ...``; the
drill fails when any repository fails (a DR-region repository that falls behind is what a real
disaster would find too late).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from resilience.checks import Check, summary
from resilience.dr import pgbackrest
from resilience.dr.backup_repos import BackupRepo, environment_repos, repo_arg
from resilience.dr.drill.run import RESTORE_TIMEOUT_S, Drill
from resilience.errors import ChecksFailedError

log = logging.getLogger(__name__)

INFO_TIMEOUT_S = 120


def _archiver_status(drill: Drill) -> pgbackrest.ArchiverStatus:
    conn = drill.source_conn()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT last_archived_wal, last_archived_time, last_failed_wal, last_failed_time"
                        " FROM pg_stat_archiver")
            return pgbackrest.ArchiverStatus(*cur.fetchone())
    finally:
        conn.close()


def _name(repo: BackupRepo | None) -> str:
    return f"repo{repo.repo}" if repo else "repo"


def _newest_wal_at(drill: Drill, repo: BackupRepo | None, stanza: str, info: pgbackrest.StanzaInfo,
                   archiver: pgbackrest.ArchiverStatus) -> datetime | None:
    """When the repository's newest WAL segment arrived there (``repo-ls``); if listing fails, the source
    archiver's time when the repository holds its last archived segment."""
    path = pgbackrest.wal_listing_path(stanza, info)
    if path is not None and info.archive_max:
        try:
            listing = drill.platform.backups.pgbackrest(
                [f"--stanza={stanza}", *repo_arg(repo), "repo-ls", "--output=json", path], timeout_s=INFO_TIMEOUT_S)
            found = pgbackrest.newest_wal_time(listing, info.archive_max)
            if found is not None:
                return found
        except Exception as exc:
            log.warning("%s: listing %s failed (%s): judging by the source's archiver", _name(repo), path, exc)
    if archiver.last_archived_wal and info.archive_max and info.archive_max >= archiver.last_archived_wal:
        return archiver.last_archived_at
    return None


def _verify_one(drill: Drill, repo: BackupRepo | None, stanza: str, archiver: pgbackrest.ArchiverStatus,
                now: datetime) -> tuple[list[Check], dict[str, Any], pgbackrest.StanzaInfo | None]:
    """One repository's checks (named ``repoN: ...``), its details for the record, and its info."""
    name = _name(repo)
    details: dict[str, Any] = repo.to_dict() if repo else {"name": name}
    try:
        info = pgbackrest.parse_info(drill.platform.backups.pgbackrest(
            ["info", "--output=json", f"--stanza={stanza}", *repo_arg(repo)], timeout_s=INFO_TIMEOUT_S), stanza)
    except Exception as exc:
        check = Check(f"{name}: reachable, stanza readable", False, f"{type(exc).__name__}: {exc}")
        details["checks"] = [check.to_dict()]
        return [check], details, None
    newest = _newest_wal_at(drill, repo, stanza, info, archiver)
    checks = pgbackrest.repository_checks(info, newest, now, drill.params.rpo_target_min)
    if drill.params.full_drill:
        checks.append(_verify_repository(drill, repo, stanza))
    named = [Check(f"{name}: {c.name}", c.passed, c.detail) for c in checks]
    details.update(checks=[c.to_dict() for c in named], backups=len(info.backups), archive_max=info.archive_max,
                   newest_wal_at=newest.isoformat() if newest else None)
    if info.latest:
        details["latest_backup"] = _backup_dict(info.latest)
    return named, details, info


def _backup_dict(backup: pgbackrest.Backup) -> dict[str, Any]:
    return {"label": backup.label, "type": backup.type, "stop": backup.stop.isoformat(),
            "size_bytes": backup.size_bytes, "repo_size_bytes": backup.repo_size_bytes}


def verify_backups(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Runbook step 1: the backups exist, are sound, and the WAL archive is fresh enough, per repository."""
    drill = Drill.from_xcom(params, run_id)
    stanza = drill.source.pgbackrest_stanza
    repos: list[BackupRepo | None] = list(environment_repos(drill.source)) or [None]
    restore_from = next((r for r in repos if r is not None and r.repo == drill.params.repo), repos[0])
    with drill.record.step("verify_backups") as details:
        archiver = _archiver_status(drill)
        now = datetime.now(UTC)
        checks = [pgbackrest.archiver_check(archiver)]
        per_repo: dict[str, Any] = {}
        restore_info: pgbackrest.StanzaInfo | None = None
        # repositories are independent (own region, own bucket): judged in parallel, since `pgbackrest
        # verify` reads every archived WAL segment of a repository (~15 s per lab repository on S3)
        assert drill.platform is not None  # built once here (a cached property), before the threads share it
        with ThreadPoolExecutor(max_workers=len(repos)) as pool:
            results = list(pool.map(lambda r: _verify_one(drill, r, stanza, archiver, now), repos))
        for repo, (repo_checks, repo_details, info) in zip(repos, results, strict=True):
            checks += repo_checks
            per_repo[_name(repo)] = repo_details
            if repo is restore_from:
                restore_info = info
        if drill.params.pitr_target and restore_info is not None:
            newest = per_repo[_name(restore_from)].get("newest_wal_at")
            checks += _pitr_window_checks(drill.params.pitr_target, restore_info,
                                          datetime.fromisoformat(newest) if newest else None, _name(restore_from))
        for check in checks:
            log.info("%s", check)
        details["checks"] = [c.to_dict() for c in checks]
        details["repositories"] = per_repo
        details["restore_repo"] = _name(restore_from)
        if restore_info is not None and restore_info.latest:
            details["latest_backup"] = _backup_dict(restore_info.latest)
            details["backups"] = len(restore_info.backups)
        if not all(c.passed for c in checks):
            raise ChecksFailedError(f"backup verification failed for stanza {stanza}: {summary(checks)}")
        log.info("Backups verified for stanza %s in %s: %s", stanza, ", ".join(per_repo), summary(checks))
        return {"latest_backup": details.get("latest_backup"), "restore_repo": details["restore_repo"]}


def _pitr_window_checks(target: datetime, info: pgbackrest.StanzaInfo, newest_wal_at: datetime | None,
                        name: str) -> list[Check]:
    oldest = info.backups[0].stop if info.backups else None
    return [
        Check(f"{name}: a backup precedes pitr_target", oldest is not None and oldest <= target,
              f"oldest backup finished {oldest.isoformat() if oldest else 'never'}, target {target.isoformat()}"),
        Check(f"{name}: WAL archived past pitr_target", newest_wal_at is not None and newest_wal_at > target,
              f"newest WAL reached the repository at {newest_wal_at}, target {target.isoformat()}"),
    ]


def _verify_repository(drill: Drill, repo: BackupRepo | None, stanza: str) -> Check:
    started = time.monotonic()
    try:
        output = drill.platform.backups.pgbackrest(["verify", f"--stanza={stanza}", *repo_arg(repo),
                                            "--log-level-console=info"], timeout_s=RESTORE_TIMEOUT_S)
    except Exception as exc:
        return Check("pgbackrest verify", False, str(exc))
    return pgbackrest.verify_check(output, time.monotonic() - started)
