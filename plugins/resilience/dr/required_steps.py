"""Which steps a DR run's path needs, and whether each of them reported a success (pure).

A DR run passes only when every step its path requires recorded a success. A step with no
record is a failure named in the report: its task was killed (a SIGKILL skips the record's
``finally``) or never ran because an upstream task died. The record is the source of truth;
Airflow's task states, read by the closing task, are a second witness: a required task that
ended failed, upstream_failed or skipped fails the run even if its record says success.

Step names are the DAGs' task ids, except the drill's phases (``integrity``, ``app_connectivity``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from resilience.checks import Check

RESTORE_METHODS = ("fast", "latest", "pitr")  # dr_activation's restore_* tasks (decision.*_RESTORE)
ROLLBACK_PARTS = ("application", "database", "traffic")  # emergency_rollback's rollback_* tasks, in DAG order
NOT_REPORTED = "did not report (its task was killed or did not run)"


@dataclass(frozen=True)
class Required:
    """A step the run's path needs: its task id and the name its record is kept under."""

    task_id: str
    step: str


@dataclass(frozen=True)
class Recorded:
    """What the record says of a step: success | failed | skipped | running (started, never ended)."""

    status: str
    error: str | None = None


def _same(*task_ids: str) -> tuple[Required, ...]:
    return tuple(Required(t, t) for t in task_ids)


DRILL_STEPS = (
    *_same("verify_backups", "create_sandbox", "restore"),
    Required("check_integrity", "integrity"),
    Required("check_app", "app_connectivity"),
    *_same("measure_rto_rpo", "cleanup_sandbox"),
)
FAILBACK_STEPS = _same("wait_primary_stable", "sync_dr_writes", "canary_ramp", "dns_cutover", "final_sync",
                       "final_validation", "decommission_dr")


def drill_steps(no_cleanup: bool) -> tuple[Required, ...]:
    """The monthly drill: every step; the sandbox's cleanup unless the run keeps it."""
    return tuple(r for r in DRILL_STEPS if not (no_cleanup and r.task_id == "cleanup_sandbox"))


def activation_steps(kind: str, restore: str | None) -> tuple[Required, ...]:
    """dr_activation by the branch taken: regional failover, or a restore_* then the DR region's steps."""
    if kind == "regional_failover":
        return _same("declare_incident", "regional_failover", "final_validation")
    if kind != "full_dr":
        raise ValueError(f"path.kind: {kind!r} is not one of ['full_dr', 'regional_failover']")
    if restore not in RESTORE_METHODS:
        raise ValueError(f"path.restore: {restore!r} is not one of {list(RESTORE_METHODS)}")
    return _same("declare_incident", f"restore_{restore}", "deploy_app", "verify_dr", "dns_cutover",
                 "final_validation")


def failback_steps(decommission_dr: bool) -> tuple[Required, ...]:
    """dr_failback: every step; decommission_dr only when the run was asked to decommission."""
    return tuple(r for r in FAILBACK_STEPS if decommission_dr or r.task_id != "decommission_dr")


def rollback_steps(parts: Iterable[str]) -> tuple[Required, ...]:
    """emergency_rollback: the rollback_* task of each part chosen."""
    chosen = set(parts)
    unknown = chosen - set(ROLLBACK_PARTS)
    if unknown:
        raise ValueError(f"plan: {sorted(unknown)} not among {list(ROLLBACK_PARTS)}")
    if not chosen:
        raise ValueError("plan: no part chosen, so nothing was rolled back")
    return _same(*(f"rollback_{p}" for p in ROLLBACK_PARTS if p in chosen))


def operation_steps(dag_id: str, params: Mapping[str, Any], details: Mapping[str, Any]) -> tuple[Required, ...]:
    """The steps a DR operation's record says its path needs (its Params and details)."""
    if dag_id == "dr_activation":
        path = details.get("path")
        if not path:
            raise ValueError("details.path: absent: start_activation did not record the path it chose")
        return activation_steps(path["kind"], path.get("restore"))
    if dag_id == "dr_failback":
        if "decommission_dr" not in params:
            raise ValueError("params.decommission_dr: absent from the record")
        return failback_steps(bool(params["decommission_dr"]))
    if dag_id == "emergency_rollback":
        if "plan" not in details:
            raise ValueError("details.plan: absent: start_rollback did not record its plan")
        return rollback_steps(details["plan"])
    raise ValueError(f"dag_id: {dag_id!r} is not one of ['dr_activation', 'dr_failback', 'emergency_rollback']")


def step_check(required: Required, recorded: Recorded | None, task_state: str | None) -> Check:
    """One required step: passed only when its record says success and Airflow (when known) agrees.

    ``task_state``: the task instance's state as Airflow reports it; None when it was not read.
    """
    task = required.task_id
    name = f"step {task}"
    seen = f"; Airflow: {task_state}" if task_state not in (None, "success") else ""
    if recorded is None:
        return Check(name, False, f"{task} {NOT_REPORTED}{seen}")
    if recorded.status == "running":
        return Check(name, False, f"{task} started but never reported its end (its task was killed){seen}")
    if recorded.status == "failed":
        return Check(name, False, f"{task} failed: {recorded.error or 'no error recorded'}{seen}")
    if recorded.status == "skipped":
        why = f" ({recorded.error})" if recorded.error else ""
        return Check(name, False, f"{task} was skipped{why}, but this run's path needs it{seen}")
    if recorded.status != "success":
        return Check(name, False, f"{task} recorded {recorded.status!r}, not success{seen}")
    if task_state is not None and task_state != "success":
        return Check(name, False, f"{task} recorded success, but its task ended {task_state}")
    return Check(name, True, f"{task} succeeded")


def step_checks(required: Iterable[Required], recorded: Mapping[str, Recorded],
                task_states: Mapping[str, str | None] | None) -> list[Check]:
    """A check per required step, in path order. ``task_states`` None: Airflow's states were not read
    (the record alone decides); a required task missing from them is ``absent``, one without a state ``none``."""
    return [step_check(r, recorded.get(r.step), _state(task_states, r.task_id)) for r in required]


def _state(task_states: Mapping[str, str | None] | None, task_id: str) -> str | None:
    if task_states is None:
        return None
    if task_id not in task_states:
        return "absent"
    return task_states[task_id] or "none"  # a task instance that never got a state never ran
