"""pgBackRest: parse ``info --output=json``, judge backups, build restore arguments.

Pure: the platform runs the commands; this module only reads and writes their text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from resilience.checks import Check


@dataclass(frozen=True)
class Backup:
    label: str
    type: str
    start: datetime
    stop: datetime
    archive_start: str | None
    archive_stop: str | None
    size_bytes: int
    repo_size_bytes: int
    error: bool


@dataclass(frozen=True)
class StanzaInfo:
    name: str
    status_code: int
    status_message: str
    backups: tuple[Backup, ...]
    archive_min: str | None
    archive_max: str | None

    @property
    def latest(self) -> Backup | None:
        return self.backups[-1] if self.backups else None


@dataclass(frozen=True)
class ArchiverStatus:
    """The source's ``pg_stat_archiver`` row: the newest WAL that reached the repository."""

    last_archived_wal: str | None
    last_archived_at: datetime | None
    last_failed_wal: str | None
    last_failed_at: datetime | None


def _epoch(value: int | float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def parse_info(text: str, stanza: str) -> StanzaInfo:
    """The entry for ``stanza`` in ``pgbackrest info --output=json``.

    Raises ValueError when the output is not JSON or does not mention the stanza.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"pgbackrest info did not return JSON: {exc}") from None
    entry = next((s for s in doc if s.get("name") == stanza), None)
    if entry is None:
        names = [s.get("name") for s in doc]
        raise ValueError(f"pgbackrest info has no stanza {stanza!r} (stanzas: {names})")
    backups = tuple(
        Backup(
            label=b["label"],
            type=b["type"],
            start=_epoch(b["timestamp"]["start"]),
            stop=_epoch(b["timestamp"]["stop"]),
            archive_start=(b.get("archive") or {}).get("start"),
            archive_stop=(b.get("archive") or {}).get("stop"),
            size_bytes=int(b.get("info", {}).get("size", 0)),
            repo_size_bytes=int(b.get("info", {}).get("repository", {}).get("size", 0)),
            error=bool(b.get("error", False)),
        )
        for b in sorted(entry.get("backup", []), key=lambda b: b["timestamp"]["stop"])
    )
    archives = entry.get("archive") or []
    return StanzaInfo(
        name=stanza,
        status_code=int(entry.get("status", {}).get("code", -1)),
        status_message=str(entry.get("status", {}).get("message", "")),
        backups=backups,
        archive_min=min((a["min"] for a in archives if a.get("min")), default=None),
        archive_max=max((a["max"] for a in archives if a.get("max")), default=None),
    )


def backup_checks(
    info: StanzaInfo, archiver: ArchiverStatus, now: datetime, rpo_target_min: float
) -> list[Check]:
    """The runbook's "verify backup availability", one check per condition."""
    latest = info.latest
    checks = [
        Check("stanza ok", info.status_code == 0, f"status {info.status_code}: {info.status_message}"),
        Check(
            "a backup exists",
            latest is not None,
            f"latest {latest.type} backup {latest.label} finished {latest.stop.isoformat()}"
            if latest
            else f"no backup in stanza {info.name}",
        ),
    ]
    if latest is not None:
        checks.append(
            Check("latest backup has no errors", not latest.error,
                  f"backup {latest.label} {'is flagged with errors' if latest.error else 'has no error flag'}")
        )
        continuous = (
            info.archive_min is not None
            and info.archive_max is not None
            and latest.archive_start is not None
            and info.archive_min <= latest.archive_start
            and latest.archive_stop is not None
            and info.archive_max >= latest.archive_stop
        )
        checks.append(
            Check(
                "archive continuous",
                continuous,
                f"archive {info.archive_min}..{info.archive_max} covers backup WAL "
                f"{latest.archive_start}..{latest.archive_stop}",
            )
        )
    failing = (
        archiver.last_failed_at is not None
        and (archiver.last_archived_at is None or archiver.last_failed_at > archiver.last_archived_at)
    )
    checks.append(
        Check(
            "archiving not failing",
            not failing,
            f"last failed WAL {archiver.last_failed_wal} at {archiver.last_failed_at}"
            if failing
            else "no archive failure since the last success",
        )
    )
    if archiver.last_archived_at is None:
        checks.append(Check("newest archived WAL within rpo_target", False, "no WAL archived yet"))
    else:
        age_min = (now - archiver.last_archived_at).total_seconds() / 60
        checks.append(
            Check(
                "newest archived WAL within rpo_target",
                age_min <= rpo_target_min,
                f"{archiver.last_archived_wal} archived {age_min:.1f} min ago (target {rpo_target_min:g} min)",
            )
        )
    return checks


def verify_check(output: str, elapsed_s: float) -> Check:
    """Judge ``pgbackrest verify`` output (2.45 exits 0 even when it finds invalid files).

    A clean repository prints no summary; problems come as an indented summary with
    ``status: error`` and a line per kind of damage (``checksum invalid: 1``).
    """
    if not re.search(r"status: (error|invalid)", output):
        return Check("pgbackrest verify", True, f"repository verified in {elapsed_s:.1f} s, no invalid file")
    summary_lines = [ln.split("INFO:", 1)[-1].strip() for ln in output.splitlines()
                     if re.search(r"status: (error|invalid)|invalid|missing", ln)]
    return Check("pgbackrest verify", False, "; ".join(summary_lines))


def async_restore_command(config: str, stanza: str, pg_path: str, spool_path: str,
                          queue_bytes: int = 1 << 30, process_max: int = 2) -> str:
    """A ``restore_command`` whose ``archive-get`` prefetches WAL in parallel into a private spool.

    Replay of a long WAL stream is bound by one ``archive-get`` process per segment; async
    prefetch cut recovery of 2.6 GB of WAL from 11.1 s to 9.3 s in the lab. The spool is the
    sandbox's own, so two restores of one stanza never share queued segments.
    """
    return (
        f"pgbackrest --config={config} --stanza={stanza} --pg1-path={pg_path} --spool-path={spool_path}"
        f" --archive-async --archive-get-queue-max={queue_bytes} --process-max={process_max}"
        ' archive-get %f "%p"'
    )


def restore_args(
    stanza: str,
    pg_path: str,
    target_time: datetime | None,
    process_max: int = 2,
) -> list[str]:
    """Arguments of ``pgbackrest restore`` into a sandbox data directory.

    ``--archive-mode=off`` keeps the sandbox from pushing WAL into the source's repository
    (the restore copies the source's ``archive_command``).
    """
    args = [
        f"--stanza={stanza}",
        f"--pg1-path={pg_path}",
        "--archive-mode=off",
        f"--process-max={process_max}",
        "--log-level-console=info",
    ]
    if target_time is None:
        args += ["--type=default"]
    else:
        target = target_time.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        args += ["--type=time", f"--target={target}", "--target-action=promote"]
    return ["restore", *args]


def dr_restore_args(stanza: str, pg_path: str, method: str, target_time: datetime | None = None,
                    process_max: int = 2) -> list[str]:
    """``pgbackrest restore`` for the DR region by the decision tree's method.

    ``fast``: the latest backup to its consistent point only (``--type=immediate``, no WAL beyond
    it); ``latest``: the backup plus every archived WAL segment; ``pitr``: up to ``target_time``
    (without one, to the end of the archive: a target past the archive's end would stop recovery).
    """
    if method == "fast":
        base = restore_args(stanza, pg_path, None, process_max)
        return [a for a in base if a != "--type=default"] + ["--type=immediate", "--target-action=promote"]
    if method == "latest":
        return restore_args(stanza, pg_path, None, process_max)
    if method == "pitr":
        return restore_args(stanza, pg_path, target_time, process_max)
    raise ValueError(f"method: {method!r} is not one of ['fast', 'latest', 'pitr']")
