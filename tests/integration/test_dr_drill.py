"""The monthly DR drill through ``dag.test()`` against the real lab (PostgreSQL + pgBackRest).

Outcomes are asserted from outside the code under test: rows read from the sandbox and the
source with psycopg, sandbox directories on disk, the control DB's history, Slack posts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from tests.fakes.slack import SlackWebhookServer
from tests.integration.restorekit import insert_marker, wait_archived_after

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def drill_dag(airflow_db, lab):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / "dr_monthly_drill.py")).get_dag("dr_monthly_drill")
    # Work around apache/airflow#73428: with `deadline=` set, dag.test() exits with
    # "'dict' object has no attribute 'hex'" after a successful run. Deadlines never fire
    # under dag.test() anyway (queued_at is None), so the test copy runs without one.
    dag.deadline = None
    return dag


def run_drill(dag, **conf):
    base = {"environment": "lab", "dr_environment": "lab", "full_drill": False, "rto_target": 30,
            "rpo_target": 15, "pitr_target": None, "no_cleanup": False, "repo": 1}
    dagrun = dag.test(run_conf={**base, **conf})
    states = {ti.task_id: ti.state for ti in dagrun.get_task_instances()}
    return dagrun, states


def report_path(dagrun) -> Path:
    for path in (Path(os.environ["RESILIENCE_REPORT_DIR"]) / "dr_monthly_drill").glob("*.json"):
        if json.loads(path.read_text())["run_id"] == dagrun.run_id:
            return path
    raise AssertionError(f"no report for {dagrun.run_id}")


def report_of(dagrun) -> dict:
    return json.loads(report_path(dagrun).read_text())


def source_conn(lab):
    # the app DB's Airflow Connection is JSON (every Patroni node); the read-write DSN reaches the leader
    return psycopg.connect(lab["app_db"]["read_write_dsn"], autocommit=True)


def control_rows(lab, run_id: str):
    with psycopg.connect(lab["connections"]["resilience_control_db"]) as conn:
        exists = conn.execute("SELECT to_regclass('runs') IS NOT NULL").fetchone()[0]
        if not exists:
            return []
        return conn.execute("SELECT status, rto_s, rpo_s FROM runs WHERE run_id = %s", (run_id,)).fetchall()


def sandboxes(lab) -> list[str]:
    root = Path(lab["sandbox_root"])
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_latest_restore_passes_and_cleans_up(drill_dag, lab):
    before = sandboxes(lab)
    with SlackWebhookServer() as slack:
        os.environ["AIRFLOW_CONN_RESILIENCE_SLACK"] = slack.connection_json()
        try:
            dagrun, states = run_drill(drill_dag, full_drill=True)
        finally:
            del os.environ["AIRFLOW_CONN_RESILIENCE_SLACK"]
    assert dagrun.state == "success", states
    assert states["cleanup_sandbox"] == "success"
    report = report_of(dagrun)
    assert report["status"] == "passed" and report["deviated"] is False
    assert 0 < report["rto"]["measured_s"] < 30 * 60
    assert report["rpo"]["measured_s"] is not None and report["rpo"]["measured_s"] <= 15 * 60
    assert [p["phase"] for p in report["phases"]] == [
        "verify_backups", "create_sandbox", "restore", "integrity", "app_connectivity"]
    integrity = {c["name"] for c in report["phase_details"]["integrity"]["checks"]}
    assert "pg_amcheck (heap and B-tree indexes)" in integrity
    assert any(name.startswith("row count") for name in integrity)
    verified = report["phase_details"]["verify_backups"]
    # every repository (one per region, on S3) is judged on its own
    assert {"repo1: pgbackrest verify", "repo2: pgbackrest verify", "repo1: newest archived WAL within rpo_target",
            "repo2: newest archived WAL within rpo_target", "archiving not failing"} <= {c["name"] for c in verified["checks"]}
    assert set(verified["repositories"]) == {"repo1", "repo2"}
    assert verified["repositories"]["repo2"]["bucket"] == "resilience-backups-us-west-2"
    assert report["phase_details"]["restore"]["repository"]["name"] == "repo1"  # the repo Param's default
    # the sandbox is gone from disk, the history has the run, Slack got the summary
    assert sandboxes(lab) == before
    assert control_rows(lab, dagrun.run_id)[0][0] == "passed"
    assert len(slack.messages) == 1 and "DR drill *PASSED*" in slack.messages[0]["text"]
    html = report_path(dagrun).with_suffix(".html").read_text()
    assert "<svg" in html and "PASSED" in html


def test_pitr_shows_the_first_marker_and_not_the_second(drill_dag, lab):
    from resilience.config import load_config
    from resilience.platforms.base import get_platform
    from resilience.platforms.types import Sandbox

    with source_conn(lab) as conn:
        first = insert_marker(conn, "before")
        time.sleep(1.5)
        target = datetime.now(UTC)
        time.sleep(1.5)
        second = insert_marker(conn, "after")
        wait_archived_after(conn, datetime.now(UTC))
    dagrun, states = run_drill(drill_dag, pitr_target=target.isoformat(), no_cleanup=True)
    report = report_of(dagrun)
    sandbox = Sandbox.from_dict({k: v for k, v in report["sandbox"].items() if k not in ("dsn", "kept", "app_url")})
    try:
        assert dagrun.state == "success", states
        assert states["cleanup_sandbox"] == "skipped"
        assert report["sandbox"]["kept"] is True and report["sandbox"]["dsn"].startswith("postgresql://postgres@")
        password = lab["app_db"]["password"]
        with psycopg.connect(host=sandbox.host, port=sandbox.port, dbname=sandbox.dbname, user="postgres",
                             password=password) as sandbox_db:
            emails = {r[0] for r in sandbox_db.execute(
                "SELECT email FROM accounts WHERE email IN (%s, %s)", (first, second))}
            newest = sandbox_db.execute("SELECT max(created_at) FROM accounts").fetchone()[0]
        assert emails == {first}
        assert newest <= target
        assert report["rpo"]["reference"] == target.isoformat()
        # the kept sandbox is listed for the operator, who drops it with the CLI
        listed = subprocess.run([sys.executable, "-m", "resilience.cli", "sandbox", "list"], capture_output=True,
                                text=True, check=True).stdout
        assert f"{sandbox.name}  created" in listed and sandbox.dsn("postgres") in listed
        subprocess.run([sys.executable, "-m", "resilience.cli", "sandbox", "drop", sandbox.name], check=True)
    finally:
        get_platform(load_config().environment("lab")).sandboxes.drop_sandbox(sandbox)  # no-op once dropped
    assert sandbox.name not in sandboxes(lab)


@pytest.fixture
def environments_with_missing_stanza(tmp_path):
    import yaml

    from resilience.config import DEFAULT_CONFIG_PATH

    doc = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    doc["environments"]["lab"]["pgbackrest"]["stanza"] = "nosuch"
    path = tmp_path / "environments.yaml"
    path.write_text(yaml.safe_dump(doc))
    os.environ["RESILIENCE_ENVIRONMENTS"] = str(path)
    yield path
    del os.environ["RESILIENCE_ENVIRONMENTS"]


def test_missing_backup_fails_at_verify_and_leaves_no_sandbox(drill_dag, lab, environments_with_missing_stanza):
    before = sandboxes(lab)
    dagrun, states = run_drill(drill_dag)
    assert dagrun.state == "failed"
    assert states["start_drill"] == "success" and states["verify_backups"] == "failed"
    assert states["create_sandbox"] == "upstream_failed" and states["restore"] == "upstream_failed"
    assert sandboxes(lab) == before
    report = report_of(dagrun)
    verify = report["phase_details"]["verify_backups"]
    assert verify["status"] == "failed"
    assert "nosuch" in verify["error"]
    assert control_rows(lab, dagrun.run_id)[0][0] == "failed"


def s3_client(lab):
    """boto3 straight to moto (plain HTTP): the test reaches under pgBackRest's TLS endpoints."""
    import boto3

    return boto3.client("s3", endpoint_url=lab["s3"]["moto_endpoint"], region_name="us-east-1",
                        aws_access_key_id=lab["s3"]["access_key"], aws_secret_access_key=lab["s3"]["secret_key"])


def _latest_backup_object(lab, repo: int = 1) -> tuple[str, str]:
    """(bucket, key) of the largest object of the newest backup in repository ``repo``'s bucket."""
    entry = next(r for r in lab["pgbackrest"]["repos"] if r["repo"] == repo)
    prefix = f"{entry['path'].strip('/')}/backup/{lab['pgbackrest']['stanza']}/"
    client = s3_client(lab)
    objects = [o for page in client.get_paginator("list_objects_v2").paginate(Bucket=entry["bucket"], Prefix=prefix)
               for o in page.get("Contents", [])]
    labels = {o["Key"][len(prefix):].split("/", 1)[0] for o in objects if "/" in o["Key"][len(prefix):]}
    latest = max(label for label in labels if label[:8].isdigit())
    in_latest = [o for o in objects if o["Key"].startswith(f"{prefix}{latest}/")]
    return entry["bucket"], max(in_latest, key=lambda o: o["Size"])["Key"]


def test_broken_backup_fails_at_verify_and_leaves_no_sandbox(drill_dag, lab):
    bucket, key = _latest_backup_object(lab, repo=1)
    client = s3_client(lab)
    original = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    before = sandboxes(lab)
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"\0" * len(original))
        dagrun, states = run_drill(drill_dag, full_drill=True)
    finally:
        client.put_object(Bucket=bucket, Key=key, Body=original)
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == original
    assert dagrun.state == "failed"
    assert states["verify_backups"] == "failed" and states["create_sandbox"] == "upstream_failed"
    assert sandboxes(lab) == before
    checks = {c["name"]: c for c in report_of(dagrun)["phase_details"]["verify_backups"]["checks"]}
    assert checks["repo1: pgbackrest verify"]["passed"] is False
    assert checks["repo2: pgbackrest verify"]["passed"] is True  # the other region's copy is sound


def test_restore_from_the_dr_regions_repository(drill_dag, lab):
    from resilience.config import load_config
    from resilience.platforms.base import get_platform
    from resilience.platforms.types import Sandbox

    with source_conn(lab) as conn:
        marker = insert_marker(conn, "repo2")
        wait_archived_after(conn, datetime.now(UTC))
    dagrun, states = run_drill(drill_dag, repo=2, no_cleanup=True)
    report = report_of(dagrun)
    sandbox = Sandbox.from_dict({k: v for k, v in report["sandbox"].items() if k not in ("dsn", "kept", "app_url")})
    try:
        assert dagrun.state == "success", states
        assert report["status"] == "passed"
        restored = report["phase_details"]["restore"]
        assert restored["repository"]["name"] == "repo2" and restored["repository"]["region"] == "dr"
        assert report["phase_details"]["verify_backups"]["restore_repo"] == "repo2"
        # backup and WAL both from repo2: the generated restore_command is pinned to it
        auto_conf = (Path(sandbox.data_dir) / "postgresql.auto.conf").read_text()
        assert "--repo=2 " in auto_conf and "archive-get" in auto_conf
        with psycopg.connect(host=sandbox.host, port=sandbox.port, dbname=sandbox.dbname, user="postgres",
                             password=lab["app_db"]["password"]) as sandbox_db:
            found = sandbox_db.execute("SELECT count(*) FROM accounts WHERE email = %s", (marker,)).fetchone()[0]
        assert found == 1  # written after the backup: replayed from repo2's WAL
    finally:
        get_platform(load_config().environment("lab")).sandboxes.drop_sandbox(sandbox)


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"pitr_target": "2999-01-01T00:00:00Z"}, "params.pitr_target: 2999-01-01T00:00:00+00:00 is not in the past"),
    ],
)
def test_bad_params_fail_in_start_drill_before_any_side_effect(drill_dag, lab, conf, message, capfd):
    before = sandboxes(lab)
    dagrun, states = run_drill(drill_dag, **conf)
    assert dagrun.state == "failed"
    assert states["start_drill"] == "failed"
    assert {states[t] for t in ("verify_backups", "create_sandbox", "restore")} == {"upstream_failed"}
    assert states["write_report"] == "skipped"
    assert sandboxes(lab) == before
    assert control_rows(lab, dagrun.run_id) == []
    out, err = capfd.readouterr()
    assert message in out + err


@pytest.mark.parametrize(
    "conf",
    [{"rto_target": -5}, {"pitr_target": "yesterday"}, {"environment": "qa"}, {"rpo_target": 0}],
    ids=["negative-rto", "malformed-pitr", "unknown-environment", "zero-rpo"],
)
def test_params_outside_the_schema_are_refused_at_trigger(drill_dag, lab, conf):
    from airflow.sdk.definitions.param import ParamValidationError

    before = sandboxes(lab)
    with pytest.raises(ParamValidationError, match=next(iter(conf))):
        drill_dag.test(run_conf=conf)
    assert sandboxes(lab) == before


def test_sandbox_that_would_overlap_the_source_is_refused_and_nothing_is_created(lab):
    from resilience.config import load_config
    from resilience.dr.sandbox import open_sandbox
    from resilience.errors import RefusedError
    from resilience.platforms.base import get_platform
    from resilience.platforms.types import DatabaseEndpoint

    platform = get_platform(load_config().environment("lab"))
    before = sandboxes(lab)
    # a source whose data directory encloses the sandbox root: every sandbox would sit inside it
    source = DatabaseEndpoint("127.0.0.1", lab["app_db"]["primary"]["port"], lab["sandbox_root"])
    with pytest.raises(RefusedError, match=r"sandbox drill-refused refused: data directory .* overlaps the source's"):
        open_sandbox(platform, "drill-refused", "app", [source])
    with pytest.raises(RefusedError, match="cannot prove the sandbox is not the source"):
        open_sandbox(platform, "drill-refused", "app", [])
    assert sandboxes(lab) == before


def test_no_drill_while_chaos_holds_the_lock(drill_dag, lab, capfd):
    from resilience.ledger import RUN_LOCK, Ledger

    ledger = Ledger(lambda: psycopg.connect(lab["connections"]["resilience_control_db"]))
    assert ledger.acquire_lock(RUN_LOCK, "chaos-run-1", "chaos_campaign")[0]
    before = sandboxes(lab)
    try:
        dagrun, states = run_drill(drill_dag)
    finally:
        ledger.release_lock(RUN_LOCK, "chaos-run-1")
    assert dagrun.state == "failed" and states["start_drill"] == "failed"
    assert states["create_sandbox"] == "upstream_failed" and sandboxes(lab) == before
    # a holder whose state cannot be read keeps the lock until its lease runs out
    out = "".join(capfd.readouterr())
    assert "chaos_campaign run chaos-run-1 holds the chaos-dr lock (its run's state is unknown; lease has" in out
    assert "no DR drill while chaos, a drill or another DR operation runs" in out
    assert control_rows(lab, dagrun.run_id) == []
    # the lock is free again for the next drill (release_lock ran and did not free someone else's)
    assert ledger.acquire_lock(RUN_LOCK, "probe", "test")[0] and ledger.release_lock(RUN_LOCK, "probe")
