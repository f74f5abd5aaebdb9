"""A DR run whose required step never reports must not pass, even when Airflow shows it green.

A SIGKILLed task skips its record's ``finally``, so the step leaves no record. ``dag.test()``
runs tasks in the test's own process (a SIGKILL would end the test), so the step is made to
leave no record the other way the scheduler allows: ``mark_success_pattern`` marks the task
success without running it. The run then has exactly what a killed step leaves in the record
(nothing) while Airflow's state says success: the record must win, and the report must name
the step. Everything else is real: the lab's regions, PostgreSQL, Route53 (moto).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.dagkit import dr_report_of as report_of
from tests.integration.dagkit import load_dag, notification_fakes, weights

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
NOT_REPORTED = "did not report (its task was killed or did not run)"

# the primary answers as lost, data loss acceptable and time critical: the fast-restore branch
ACTIVATE = {"environment": "lab", "primary_accessible": "no", "data_loss_acceptable": "yes", "time_critical": "yes",
            "pitr_target": None, "rto_target": 30, "rpo_target": 15, "dr_replicas": 2,
            "incident_name": "Service Disruption - Investigating"}
DRILL = {"environment": "lab", "dr_environment": "lab", "full_drill": False, "rto_target": 30, "rpo_target": 15,
         "pitr_target": None, "no_cleanup": False}


@pytest.fixture(scope="module")
def fakes(lab):
    with notification_fakes() as servers:
        yield servers




def test_an_activation_whose_restore_never_reported_fails_and_names_it(airflow_db, lab, fakes):
    _, slack = fakes
    dagrun = load_dag("dr_activation").test(run_conf=ACTIVATE, mark_success_pattern="restore_fast")
    states = {ti.task_id: ti.state for ti in dagrun.get_task_instances()}
    assert states["choose_restore"] == "success" and states["restore_fast"] == "success", states
    assert states["deploy_app"] == "skipped" and states["final_validation"] != "success", states
    # before: no step recorded a failure, so the run was "passed" and the verdict green
    assert states["verdict"] == "failed" and dagrun.state == "failed", states
    report = report_of(dagrun)
    assert report["status"] == "failed" and report["path"]["restore"] == "fast"
    failing = {c["name"]: c["detail"] for c in report["required_steps"] if not c["passed"]}
    assert failing["step restore_fast"] == f"restore_fast {NOT_REPORTED}"
    assert failing["step deploy_app"] == f"deploy_app {NOT_REPORTED}; Airflow: skipped"
    assert set(failing) == {"step restore_fast", "step deploy_app", "step verify_dr", "step dns_cutover",
                            "step final_validation"}
    assert report["task_states"]["restore_fast"] == "success"  # Airflow's witness was read, and outvoted
    assert weights(lab) == {"primary": 100, "dr": 0}  # nothing was cut over
    assert f"restore_fast {NOT_REPORTED}" in slack.messages[-1]["text"]


def test_a_drill_whose_restore_never_reported_fails_and_names_it(airflow_db, lab, fakes):
    dagrun = load_dag("dr_monthly_drill").test(run_conf=DRILL, mark_success_pattern="restore")
    states = {ti.task_id: ti.state for ti in dagrun.get_task_instances()}
    assert states["restore"] == "success" and states["verdict"] == "failed", states
    report = report_of(dagrun)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["status"] == "failed"
    assert checks["step restore"]["detail"] == f"restore {NOT_REPORTED}"
    assert checks["step verify_backups"]["passed"] and checks["step cleanup_sandbox"]["passed"]
