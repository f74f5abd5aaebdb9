"""Loading one DAG file the way the DAG processor does, for dag.test() runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py")).get_dag(dag_id)
    dag.deadline = None  # apache/airflow#73428: dag.test() fails after a run with `deadline=`
    return dag
