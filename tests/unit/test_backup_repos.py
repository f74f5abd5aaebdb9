"""pgBackRest repositories per region: environments.yaml's ``pgbackrest.repos``, the drill's ``repo`` Param,
per-repository backup checks, and restore arguments pinned to one repository."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from resilience.config import DEFAULT_CONFIG_PATH, load_config, parse_config
from resilience.dr import pgbackrest
from resilience.dr.backup_repos import dr_repo, environment_repos, parse_repos, repo_arg, repo_by_index
from resilience.dr.drill.params import parse_drill_params
from resilience.platforms.types import RestoreRequest

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
S3 = {"region": "primary", "type": "s3", "bucket": "b1", "s3_region": "us-east-1"}


def test_the_lab_has_one_s3_repository_per_region_and_restores_dr_from_repo2():
    lab = load_config().environment("lab")
    repos = environment_repos(lab)
    assert [(r.repo, r.region, r.bucket, r.s3_region) for r in repos] == [
        (1, "primary", "resilience-backups-us-east-1", "us-east-1"),
        (2, "dr", "resilience-backups-us-west-2", "us-west-2")]
    assert all(r.endpoint == "lab" and r.ca_file == "lab" for r in repos)
    found = dr_repo(lab)
    assert found is not None and found.repo == 2
    assert found.label == "repo2 (s3://resilience-backups-us-west-2, us-west-2, dr region)"


def test_the_lab_buckets_are_the_ones_the_lab_creates(tmp_path):
    from resilience.lab.layout import LabLayout
    from resilience.lab.s3_tls import region_endpoints

    lab = load_config().environment("lab")
    made = [(e.bucket, e.aws_region) for e in region_endpoints(LabLayout(tmp_path, 55320))]
    assert made == [(r.bucket, r.s3_region) for r in environment_repos(lab)]


def without_repos():
    """An environment whose pgbackrest section declares no repositories (pgbackrest.conf's repo1 only)."""
    from dataclasses import replace

    staging = load_config().environment("staging")
    return replace(staging, settings={**staging.settings, "pgbackrest": {"stanza": staging.pgbackrest_stanza}})


def test_production_names_its_aws_connections_and_no_endpoint():
    production = load_config().environment("production")
    assert [(r.repo, r.region, r.aws_conn_id, r.endpoint) for r in environment_repos(production)] == [
        (1, "primary", "aws_production", None), (2, "dr", "aws_dr", None)]
    assert environment_repos(without_repos()) == ()
    assert dr_repo(without_repos()) is None


@pytest.mark.parametrize(("repos", "message"), [
    ([{**S3, "repo": 0}], r"x\.repos\[0\]\.repo: 0 must be an integer from 1 to 4"),
    ([{**S3, "repo": True}], r"x\.repos\[0\]\.repo: True must be an integer"),
    ([{**S3, "repo": 1, "region": "eu"}], r"x\.repos\[0\]\.region: 'eu' is not one of \['primary', 'dr'\]"),
    ([{**S3, "repo": 1, "type": "gcs"}], r"x\.repos\[0\]\.type: 'gcs' is not one of"),
    ([{**S3, "repo": 1, "bucket": None}], r"x\.repos\[0\]\.bucket is required"),
    ([{**S3, "repo": 1, "secret": "x"}], r"x\.repos\[0\]: unknown key\(s\) \['secret'\]"),
    ([{**S3, "repo": 1}, {**S3, "repo": 1, "region": "dr"}], r"x\.repos: repo indexes \[1, 1\] must be unique"),
    ([{**S3, "repo": 1}, {**S3, "repo": 2}], r"x\.repos: regions \['primary', 'primary'\] must be unique"),
    ([], r"x\.repos must be a non-empty list"),
])
def test_bad_repos_are_refused_naming_the_field(repos, message):
    with pytest.raises(ValueError, match=message):
        parse_repos({"repos": repos}, "x")


def test_a_bad_repos_list_fails_the_whole_config_at_load():
    doc = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    doc["environments"]["lab"]["pgbackrest"]["repos"][1]["region"] = "primary"
    with pytest.raises(ValueError, match=r"environments\.lab\.pgbackrest\.repos: regions"):
        parse_config(doc)


def test_repo_by_index_and_repo_arg():
    lab = load_config().environment("lab")
    assert repo_by_index(lab, None) is None and repo_arg(None) == []
    assert repo_arg(repo_by_index(lab, 2)) == ["--repo=2"]
    with pytest.raises(ValueError, match=r"repo: 3 is not one of environments\.lab\.pgbackrest\.repos \[1, 2\]"):
        repo_by_index(lab, 3)
    bare = without_repos()
    assert repo_by_index(bare, 1) is None
    with pytest.raises(ValueError, match="only repository 1"):
        repo_by_index(bare, 2)


GOOD = {"environment": "lab", "dr_environment": "lab", "full_drill": False, "rto_target": 30, "rpo_target": 15,
        "pitr_target": None, "no_cleanup": False}


def test_drill_repo_param_defaults_to_1_and_round_trips():
    assert parse_drill_params(GOOD, load_config(), NOW).repo == 1
    params = parse_drill_params({**GOOD, "repo": 2}, load_config(), NOW)
    assert params.repo == 2 and params.to_dict()["repo"] == 2
    assert parse_drill_params(params.to_dict(), load_config(), NOW) == params


@pytest.mark.parametrize(("value", "message"), [
    (3, r"params\.repo: 3 is not one of \[1, 2\]"), ("2", r"params\.repo: '2' is not one of"),
    (True, r"params\.repo: True is not one of")])
def test_drill_repo_param_refused(value, message):
    with pytest.raises(ValueError, match=message):
        parse_drill_params({**GOOD, "repo": value}, load_config(), NOW)


def test_drill_form_has_the_repo_param_with_a_schema():
    from resilience.dr.drill.params import drill_params

    param = drill_params()["repo"]
    assert param.value == 1 and param.schema["enum"] == [1, 2] and param.schema["type"] == "integer"
    assert "DR region" in param.description


def _info(archive_max: str | None = "000000010000000000000008", backups: int = 1, code: int = 0) -> pgbackrest.StanzaInfo:
    doc = [{"name": "app", "status": {"code": code, "message": "ok" if code == 0 else "missing stanza path"},
            "archive": [{"id": "15-1", "min": "000000010000000000000001", "max": archive_max}] if archive_max else [],
            "backup": [{"label": f"2026112{i}-000000F", "type": "full",
                        "timestamp": {"start": 1796178160 + i, "stop": 1796178165 + i},
                        "archive": {"start": "000000010000000000000003", "stop": "000000010000000000000004"},
                        "info": {"size": 10, "repository": {"size": 5}}} for i in range(backups)]}]
    return pgbackrest.parse_info(json.dumps(doc), "app")


def test_repository_checks_judge_the_repositorys_own_newest_wal():
    info = _info()
    assert info.archive_id == "15-1"
    assert pgbackrest.wal_listing_path("app", info) == "archive/app/15-1/0000000100000000"
    fresh = pgbackrest.repository_checks(info, NOW - timedelta(minutes=2), NOW, 15)
    assert [c.name for c in fresh] == ["stanza ok", "a backup exists", "latest backup has no errors",
                                       "archive continuous", "newest archived WAL within rpo_target"]
    assert all(c.passed for c in fresh)
    stale = pgbackrest.repository_checks(info, NOW - timedelta(minutes=16), NOW, 15)[-1]
    assert not stale.passed and "archived 16.0 min ago (target 15 min)" in stale.detail
    assert not pgbackrest.repository_checks(info, None, NOW, 15)[-1].passed
    missing = pgbackrest.repository_checks(_info(None, 0, 1), None, NOW, 15)
    assert [c.passed for c in missing] == [False, False, False]


def test_newest_wal_time_reads_repo_ls_json():
    listing = json.dumps({
        ".": {"type": "path"},
        "000000010000000000000007-aa.lz4": {"type": "file", "size": 1, "time": 1796178100},
        "000000010000000000000008-bb.lz4": {"type": "file", "size": 1, "time": 1796178162},
        "000000010000000000000008.00000028.backup": {"type": "file", "size": 1, "time": 1796178199}})
    assert pgbackrest.newest_wal_time(listing, "000000010000000000000008") == datetime.fromtimestamp(1796178162, UTC)
    assert pgbackrest.newest_wal_time(listing, "000000010000000000000009") is None
    assert pgbackrest.newest_wal_time("not json", "x") is None


def test_restores_pinned_to_a_repository_fetch_wal_from_it_too():
    args = pgbackrest.restore_args(RestoreRequest("app", "fast", repo=2), "/sb/pgdata")
    assert "--repo=2" in args
    assert not [a for a in pgbackrest.restore_args(RestoreRequest("app"), "/sb/pgdata") if a.startswith("--repo")]
    command = pgbackrest.async_restore_command("/lab/pgbackrest.conf", "app", "/sb/pgdata", "/sb/spool", repo=2)
    assert command.startswith("pgbackrest --config=/lab/pgbackrest.conf --stanza=app --repo=2 --pg1-path=/sb/pgdata")


def test_archiver_check():
    ok = pgbackrest.ArchiverStatus("000000010000000000000008", NOW, None, None)
    assert pgbackrest.archiver_check(ok).passed
    failing = pgbackrest.ArchiverStatus("000000010000000000000008", NOW, "000000010000000000000009",
                                        NOW + timedelta(seconds=1))
    assert not pgbackrest.archiver_check(failing).passed
