"""`pgbackrest info --output=json` parsing and the backup checks, on output captured from pgBackRest 2.45."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from resilience.checks import Check
from resilience.dr.pgbackrest import ArchiverStatus, parse_info, restore_args
from resilience.platforms.types import RestoreRequest

DATA = Path(__file__).parent / "data"


def info(name: str, stanza: str = "app"):
    return parse_info((DATA / name).read_text(), stanza)


def test_parse_one_full_backup():
    s = info("pgbackrest_info_one_full.json")
    assert (s.status_code, s.status_message) == (0, "ok")
    assert (s.archive_min, s.archive_max) == ("000000010000000000000001", "000000010000000000000005")
    assert len(s.backups) == 1
    b = s.latest
    assert (b.label, b.type, b.error) == ("20261128-060702F", "full", False)
    assert (b.archive_start, b.archive_stop) == ("000000010000000000000003", "000000010000000000000004")
    assert b.start == datetime.fromtimestamp(1795846022, UTC) and (b.stop - b.start) == timedelta(seconds=3)
    assert (b.size_bytes, b.repo_size_bytes) == (30730442, 6039829)


def test_backups_are_ordered_oldest_first_and_latest_is_the_incremental():
    s = info("pgbackrest_info_full_and_incr.json")
    assert [b.type for b in s.backups] == ["full", "incr"]
    assert s.latest.label.endswith("I")


def test_missing_stanza_parses_with_its_status():
    s = info("pgbackrest_info_missing_stanza.json", "nosuch")
    assert (s.status_code, s.status_message, s.backups, s.latest) == (1, "missing stanza path", (), None)


@pytest.mark.parametrize(
    ("text", "message"),
    [("not json", "pgbackrest info did not return JSON"), ("[]", r"pgbackrest info has no stanza 'app' \(stanzas: \[\]\)")],
)
def test_bad_output_is_a_clear_error(text, message):
    with pytest.raises(ValueError, match=message):
        parse_info(text, "app")


def archiver(age_s: float | None, failed_after_s: float | None = None, now=None) -> ArchiverStatus:
    now = now or NOW
    return ArchiverStatus(
        "000000010000000000000005",
        None if age_s is None else now - timedelta(seconds=age_s),
        "000000010000000000000006" if failed_after_s is not None else None,
        None if failed_after_s is None else now - timedelta(seconds=failed_after_s),
    )


NOW = datetime.fromtimestamp(1795846025 + 600, UTC)


def test_healthy_stanza_passes_every_check():
    from resilience.dr.pgbackrest import backup_checks

    checks = backup_checks(info("pgbackrest_info_one_full.json"), archiver(60), NOW, rpo_target_min=15)
    assert all(c.passed for c in checks), checks
    assert [c.name for c in checks] == ["stanza ok", "a backup exists", "latest backup has no errors",
                                        "archive continuous", "archiving not failing",
                                        "newest archived WAL within rpo_target"]


@pytest.mark.parametrize(
    ("age_s", "failed_after_s", "rpo_min", "failing"),
    [
        (15 * 60, None, 15, None),  # exactly at the target passes
        (15 * 60 + 1, None, 15, Check("newest archived WAL within rpo_target", False,
                                      "000000010000000000000005 archived 15.0 min ago (target 15 min)")),
        (None, None, 15, Check("newest archived WAL within rpo_target", False, "no WAL archived yet")),
        (60, 30, 15, Check("archiving not failing", False,
                           "last failed WAL 000000010000000000000006 at 2026-11-28 06:16:35+00:00")),
        (30, 60, 15, None),  # an old failure followed by a success is fine
    ],
)
def test_archive_age_and_failures(age_s, failed_after_s, rpo_min, failing):
    from resilience.dr.pgbackrest import backup_checks

    checks = backup_checks(info("pgbackrest_info_one_full.json"), archiver(age_s, failed_after_s), NOW, rpo_min)
    bad = [c for c in checks if not c.passed]
    assert bad == ([failing] if failing else [])


def test_missing_stanza_fails_with_the_reason():
    from resilience.dr.pgbackrest import backup_checks

    checks = backup_checks(info("pgbackrest_info_missing_stanza.json", "nosuch"), archiver(None), NOW, 15)
    bad = {c.name: c.detail for c in checks if not c.passed}
    assert bad["stanza ok"] == "status 1: missing stanza path"
    assert bad["a backup exists"] == "no backup in stanza nosuch"


def test_restore_args_latest_and_pitr():
    assert restore_args(RestoreRequest("app"), "/sb/pgdata") == [
        "restore", "--stanza=app", "--pg1-path=/sb/pgdata", "--archive-mode=off", "--process-max=2",
        "--log-level-console=info", "--type=default"]
    target = datetime(2026, 11, 28, 10, 30, 0, 500000, tzinfo=UTC)
    pitr = restore_args(RestoreRequest("app", "pitr", target), "/sb/pgdata")
    assert pitr[-3:] == ["--type=time", "--target=2026-11-28 10:30:00.500000+00", "--target-action=promote"]
    # without a target a PITR replays the whole archive: a target past its end would stop recovery
    assert restore_args(RestoreRequest("app", "pitr"), "/sb/pgdata")[-1] == "--type=default"
    fast = restore_args(RestoreRequest("app", "fast", repo=2), "/sb/pgdata")
    assert "--repo=2" in fast and fast[-2:] == ["--type=immediate", "--target-action=promote"]


def test_a_restore_request_refuses_what_pgbackrest_would_misread():
    with pytest.raises(ValueError, match=r"restore method: 'newest' is not one of \['fast', 'latest', 'pitr'\]"):
        RestoreRequest("app", "newest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="restore method 'latest' takes no target time"):
        RestoreRequest("app", "latest", datetime(2026, 11, 28, tzinfo=UTC))
    with pytest.raises(ValueError, match="must carry a time zone"):
        RestoreRequest("app", "pitr", datetime(2026, 11, 28))
    assert RestoreRequest("app", "pitr", datetime(2026, 11, 28, 10, tzinfo=UTC), repo=2).describe() == (
        "PITR to 2026-11-28T10:00:00+00:00 from repo2")


def test_verify_clean_repository_passes():
    from resilience.dr.pgbackrest import verify_check

    check = verify_check((DATA / "pgbackrest_verify_ok.txt").read_text(), 0.49)
    assert check == Check("pgbackrest verify", True, "repository verified in 0.5 s, no invalid file")


def test_verify_invalid_checksum_fails_although_pgbackrest_exits_0():
    from resilience.dr.pgbackrest import verify_check

    check = verify_check((DATA / "pgbackrest_verify_checksum_invalid.txt").read_text(), 0.44)
    assert check == Check(
        "pgbackrest verify", False,
        "status: error; backup: 20261128-060755F, status: invalid, total files checked: 1289, total valid files: 1288; "
        "checksum invalid: 1",
    )


def test_async_restore_command_uses_a_private_spool():
    from resilience.dr.pgbackrest import async_restore_command

    assert async_restore_command("/lab/pgbackrest.conf", "app", "/sb/pgdata", "/sb/spool") == (
        "pgbackrest --config=/lab/pgbackrest.conf --stanza=app --pg1-path=/sb/pgdata --spool-path=/sb/spool"
        ' --archive-async --archive-get-queue-max=1073741824 --process-max=2 archive-get %f "%p"')
