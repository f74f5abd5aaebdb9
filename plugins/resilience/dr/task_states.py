"""The states of this run's task instances, read through the task SDK (the verdict's second witness)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def run_task_states() -> dict[str, str | None] | None:
    """``{task_id: state}`` of the running task's DAG run; None when Airflow cannot say (the record decides)."""
    from airflow.sdk import get_current_context

    ti = get_current_context()["ti"]
    try:
        by_run = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id])
    except Exception as exc:  # the record stays the source of truth: a lost witness is logged, not fatal
        log.warning("Could not read the task states of run %s (%s: %s): the verdict rests on the record alone",
                    ti.run_id, type(exc).__name__, exc)
        return None
    # states arrive as TaskInstanceState (a str enum) or plain strings: keep the value, never str() of the enum
    return {task: getattr(state, "value", state) for task, state in (by_run.get(ti.run_id) or {}).items()}
