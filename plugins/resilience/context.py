"""Small reads of the running task's Airflow context, shared by the DAG files' tasks."""

from __future__ import annotations

from typing import Any


def run_id() -> str:
    from airflow.sdk import get_current_context

    return get_current_context()["run_id"]


def pulled(task_id: str, key: str = "return_value", *, same_map_index: bool = False) -> Any:
    """What ``task_id`` pushed in this run (None when it did not run or failed); ``same_map_index``: the
    instance of the running task's map index (a task of the same mapped task group)."""
    from airflow.sdk import get_current_context

    ti = get_current_context()["ti"]
    if same_map_index:
        return ti.xcom_pull(task_ids=task_id, key=key, map_indexes=ti.map_index)
    return ti.xcom_pull(task_ids=task_id, key=key)
