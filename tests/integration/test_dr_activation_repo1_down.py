"""DR activation when the primary region is lost with its backup repository: the restore comes from the DR
region's repository (repo2) alone, and the report names it.

The primary region's S3 endpoint (stunnel on 127.0.0.1, in front of moto) is taken away, so
repo1 cannot answer: every pgBackRest call that touched it would wait its io-timeout several
times. Its entry point is isolated too (the decision tree sees the region as lost). After the
activation, both come back and a real failback returns traffic to the primary, so the modules
after this one find DR inactive, as they expect.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import psycopg
import pytest

from tests.integration.dagkit import DR_ACTIVATE as ACTIVATE
from tests.integration.dagkit import DR_FAILBACK as FAILBACK
from tests.integration.dagkit import dr_report_of as report_of
from tests.integration.dagkit import lab_state, load_dag, notification_fakes

pytestmark = pytest.mark.integration





def layout_and_ca(lab):
    from resilience.lab import lab_ca
    from resilience.lab.state import layout_of

    state = lab_state(lab)
    return layout_of(state), lab_ca.ca_files(Path(state["pgbackrest"]["ca_file"]).parent)


def html_of(dagrun) -> str:
    for path in (Path(os.environ["RESILIENCE_REPORT_DIR"]) / dagrun.dag_id).glob("*.json"):
        if json.loads(path.read_text())["run_id"] == dagrun.run_id:
            return path.with_suffix(".html").read_text()
    raise AssertionError(f"no report for {dagrun.run_id}")


def dr_active(lab) -> bool:
    with psycopg.connect(lab["connections"]["resilience_control_db"], autocommit=True) as conn:
        if not conn.execute("SELECT to_regclass('dr_regions') IS NOT NULL").fetchone()[0]:
            return False
        row = conn.execute("SELECT dr_active FROM dr_regions WHERE environment = 'lab'").fetchone()
        return bool(row and row[0])


@pytest.fixture
def primary_region_lost(airflow_db, lab):
    """The primary region's entry point and its S3 endpoint (repo1) gone; both back afterwards."""
    from resilience.lab import control, pgbackrest_setup, s3_tls

    layout, ca = layout_and_ca(lab)
    # a backup in repo2 from now: "data loss acceptable" is detected from the DR repository's newest backup
    pgbackrest_setup.wait_backup(pgbackrest_setup.start_full_backup(Path(lab["pgbackrest"]["config"]), repos=[2]))
    s3_tls.serve_regions(layout, ca, ["dr"])
    primary, dr = s3_tls.region_endpoints(layout)
    assert not s3_tls.tls_ready(primary, ca.ca_cert) and s3_tls.tls_ready(dr, ca.ca_cert)
    control.isolate_region(lab_state(lab), "primary")
    try:
        yield layout
    finally:
        s3_tls.serve_regions(layout, ca)
        control.restore_region(lab_state(lab), "primary")


def test_activation_restores_from_the_dr_repository_with_repo1_unreachable(lab, primary_region_lost):
    assert not dr_active(lab), "DR already active: this module needs the region state of a fresh lab"
    with notification_fakes():
        started = time.monotonic()
        dagrun = load_dag("dr_activation").test(run_conf=ACTIVATE)
        activation_s = time.monotonic() - started
        states = {ti.task_id: ti.state for ti in dagrun.get_task_instances()}
        restore_task = next((t for t in ("restore_fast", "restore_latest", "restore_pitr") if states[t] == "success"),
                            None)
        assert restore_task is not None and states["verdict"] == "success", states
        report = report_of(dagrun)
        assert report["status"] == "passed" and report["answers"]["primary_accessible"]["answer"] is False
        # the report names the repository that served the restore: the DR region's
        assert report["restored_from"]["name"] == "repo2" and report["restored_from"]["region"] == "dr"
        step = next(s for s in report["steps"] if s["step"] == restore_task)
        assert step["details"]["repository"]["bucket"] == "resilience-backups-us-west-2"
        assert "Database restored from <b>repo2 (s3://resilience-backups-us-west-2, us-west-2, dr region)" in html_of(
            dagrun)
        # the restored database fetches WAL from repo2 only: recovery never waits on the lost region
        data_dir = Path(step["details"]["database"]["data_dir"])
        auto_conf = (data_dir / "postgresql.auto.conf").read_text()
        assert "--repo=2 " in auto_conf and "archive-get" in auto_conf
        # nothing waited on repo1: one call to it costs io-timeout (10 s) several times
        assert step["duration_s"] < 60, step
        print(f"\nactivation with repo1 unreachable: {activation_s:.1f} s, {restore_task} {step['duration_s']:.1f} s "
              f"(restore {step['details']['restore_s']:.1f} s)")


def test_failback_returns_to_the_primary_once_its_region_is_back(lab):
    """Not part of the claim above: it leaves the lab as the next modules expect (DR inactive)."""
    if not dr_active(lab):
        pytest.skip("the activation above did not leave DR active")
    time.sleep(12)  # the stability window (0.003 h) must see the primary up
    with notification_fakes():
        dagrun = load_dag("dr_failback").test(run_conf=FAILBACK)
    states = {ti.task_id: ti.state for ti in dagrun.get_task_instances()}
    assert states["verdict"] == "success", states
    assert not dr_active(lab)
