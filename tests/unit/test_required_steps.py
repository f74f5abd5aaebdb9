"""Which steps each DR DAG's path needs, and the verdict on them (pure, table-driven)."""

from __future__ import annotations

import pytest

from resilience.checks import Check
from resilience.dr.required_steps import (
    Recorded,
    Required,
    activation_steps,
    drill_steps,
    failback_steps,
    operation_steps,
    rollback_steps,
    step_check,
    step_checks,
)


def ids(required):
    return [r.task_id for r in required]


@pytest.mark.parametrize(
    ("dag_id", "params", "details", "expected"),
    [
        ("dr_activation", {}, {"path": {"kind": "regional_failover", "restore": None}},
         ["declare_incident", "regional_failover", "final_validation"]),
        ("dr_activation", {}, {"path": {"kind": "full_dr", "restore": "fast"}},
         ["declare_incident", "restore_fast", "deploy_app", "verify_dr", "dns_cutover", "final_validation"]),
        ("dr_activation", {}, {"path": {"kind": "full_dr", "restore": "latest"}},
         ["declare_incident", "restore_latest", "deploy_app", "verify_dr", "dns_cutover", "final_validation"]),
        ("dr_activation", {}, {"path": {"kind": "full_dr", "restore": "pitr"}},
         ["declare_incident", "restore_pitr", "deploy_app", "verify_dr", "dns_cutover", "final_validation"]),
        ("dr_failback", {"decommission_dr": True}, {},
         ["wait_primary_stable", "sync_dr_writes", "canary_ramp", "dns_cutover", "final_sync", "final_validation",
          "decommission_dr"]),
        ("dr_failback", {"decommission_dr": False}, {},
         ["wait_primary_stable", "sync_dr_writes", "canary_ramp", "dns_cutover", "final_sync", "final_validation"]),
        ("emergency_rollback", {}, {"plan": {"application": {}}}, ["rollback_application"]),
        ("emergency_rollback", {}, {"plan": {"traffic": {}, "database": {}}}, ["rollback_database", "rollback_traffic"]),
        ("emergency_rollback", {}, {"plan": {"traffic": {}, "database": {}, "application": {}}},
         ["rollback_application", "rollback_database", "rollback_traffic"]),
    ],
)
def test_every_dag_path_requires_its_steps(dag_id, params, details, expected):
    assert ids(operation_steps(dag_id, params, details)) == expected


@pytest.mark.parametrize(
    ("dag_id", "params", "details", "message"),
    [
        ("dr_activation", {}, {}, r"details.path: absent"),
        ("dr_activation", {}, {"path": {"kind": "sideways", "restore": None}}, r"path.kind: 'sideways' is not one of"),
        ("dr_activation", {}, {"path": {"kind": "full_dr", "restore": "slow"}}, r"path.restore: 'slow' is not one of"),
        ("dr_activation", {}, {"path": {"kind": "full_dr", "restore": None}}, r"path.restore: None is not one of"),
        ("dr_failback", {}, {}, r"params.decommission_dr: absent"),
        ("emergency_rollback", {}, {}, r"details.plan: absent"),
        ("emergency_rollback", {}, {"plan": {}}, r"plan: no part chosen"),
        ("emergency_rollback", {}, {"plan": {"dns": {}}}, r"plan: \['dns'\] not among"),
        ("dr_monthly_drill", {}, {}, r"dag_id: 'dr_monthly_drill' is not one of"),
    ],
)
def test_a_record_that_cannot_say_its_path_is_refused_by_field(dag_id, params, details, message):
    with pytest.raises(ValueError, match=message):
        operation_steps(dag_id, params, details)


def test_the_drill_requires_every_step_and_the_cleanup_unless_kept():
    full = ["verify_backups", "create_sandbox", "restore", "check_integrity", "check_app", "measure_rto_rpo",
            "cleanup_sandbox"]
    assert ids(drill_steps(no_cleanup=False)) == full
    assert ids(drill_steps(no_cleanup=True)) == full[:-1]
    assert {r.task_id: r.step for r in drill_steps(False)}["check_integrity"] == "integrity"
    assert {r.task_id: r.step for r in drill_steps(False)}["check_app"] == "app_connectivity"


def test_the_shapes_agree():
    assert activation_steps("regional_failover", None) == operation_steps(
        "dr_activation", {}, {"path": {"kind": "regional_failover"}})
    assert failback_steps(True)[-1] == Required("decommission_dr", "decommission_dr")
    assert rollback_steps(["traffic"]) == (Required("rollback_traffic", "rollback_traffic"),)


RESTORE = Required("restore", "restore")
KILLED = "restore did not report (its task was killed or did not run)"


@pytest.mark.parametrize(
    ("recorded", "state", "passed", "detail"),
    [
        # the record says success; Airflow agrees, or was not asked
        (Recorded("success"), "success", True, "restore succeeded"),
        (Recorded("success"), None, True, "restore succeeded"),
        # no record: killed before its finally, or never ran
        (None, None, False, KILLED),
        (None, "failed", False, f"{KILLED}; Airflow: failed"),
        (None, "upstream_failed", False, f"{KILLED}; Airflow: upstream_failed"),
        (None, "success", False, KILLED),  # Airflow green, no record: the record wins
        (None, "none", False, f"{KILLED}; Airflow: none"),
        # started, never ended (the drill inserts a running phase first)
        (Recorded("running"), "failed", False,
         "restore started but never reported its end (its task was killed); Airflow: failed"),
        # recorded failures and skips
        (Recorded("failed", "TimeoutError: not writable"), "failed", False,
         "restore failed: TimeoutError: not writable; Airflow: failed"),
        (Recorded("failed"), None, False, "restore failed: no error recorded"),
        (Recorded("skipped", "no_cleanup is set"), "skipped", False,
         "restore was skipped (no_cleanup is set), but this run's path needs it; Airflow: skipped"),
        (Recorded("skipped"), None, False, "restore was skipped, but this run's path needs it"),
        (Recorded("exploded"), None, False, "restore recorded 'exploded', not success"),
        # the record says success; Airflow says otherwise: the second witness fails it
        (Recorded("success"), "failed", False, "restore recorded success, but its task ended failed"),
        (Recorded("success"), "upstream_failed", False, "restore recorded success, but its task ended upstream_failed"),
        (Recorded("success"), "skipped", False, "restore recorded success, but its task ended skipped"),
        (Recorded("success"), "absent", False, "restore recorded success, but its task ended absent"),
    ],
)
def test_a_required_step_passes_only_on_a_recorded_success(recorded, state, passed, detail):
    assert step_check(RESTORE, recorded, state) == Check("step restore", passed, detail)


def test_step_checks_follow_the_path_and_read_each_record_and_state():
    required = activation_steps("full_dr", "fast")
    recorded = {"declare_incident": Recorded("success")}  # restore_fast was SIGKILLed: nothing after it ran
    states = {"declare_incident": "success", "restore_fast": "failed", "deploy_app": "upstream_failed",
              "verify_dr": "upstream_failed", "dns_cutover": "upstream_failed"}  # final_validation: no state row
    checks = step_checks(required, recorded, states)
    assert [(c.name, c.passed) for c in checks] == [
        ("step declare_incident", True), ("step restore_fast", False), ("step deploy_app", False),
        ("step verify_dr", False), ("step dns_cutover", False), ("step final_validation", False)]
    assert checks[1].detail == "restore_fast did not report (its task was killed or did not run); Airflow: failed"
    assert checks[-1].detail == ("final_validation did not report (its task was killed or did not run); "
                                 "Airflow: absent")


def test_all_present_passes_with_or_without_the_witness():
    required = failback_steps(decommission_dr=False)
    recorded = {r.step: Recorded("success") for r in required}
    assert all(c.passed for c in step_checks(required, recorded, None))
    states = {r.task_id: "success" for r in required} | {"decommission_dr": "skipped"}  # not required: ignored
    assert all(c.passed for c in step_checks(required, recorded, states))
