"""DAG policies, one test each, with the DAG file as the test id."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))


def _dagbag():
    from airflow.dag_processing.dagbag import DagBag

    def no_parse_time_reads(*args, **kwargs):
        raise AssertionError("DAG files must not read Connections or Variables at parse time")

    with mock.patch("airflow.sdk.BaseHook.get_connection", no_parse_time_reads), \
         mock.patch("airflow.sdk.Variable.get", no_parse_time_reads):
        return DagBag(dag_folder=str(ROOT / "dags"))


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    return _dagbag()


def get_dags():
    bag = _dagbag()
    return [(dag_id, dag, dag.fileloc) for dag_id, dag in bag.dags.items()]


DAGS = get_dags()
IDS = [Path(fileloc).name for _, _, fileloc in DAGS]


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}, dagbag.import_errors


def test_every_dag_file_defines_its_dag():
    assert sorted(Path(f).stem for _, _, f in DAGS) == sorted(p.stem for p in DAG_FILES)


@pytest.mark.parametrize(("dag_id", "dag", "fileloc"), DAGS, ids=IDS)
def test_dag_id_is_the_file_stem(dag_id, dag, fileloc):
    assert dag_id == Path(fileloc).stem, f"{dag_id} in {fileloc} is not named after its file"


@pytest.mark.parametrize(("dag_id", "dag", "fileloc"), DAGS, ids=IDS)
def test_has_doc_md(dag_id, dag, fileloc):
    assert dag.doc_md and len(dag.doc_md) > 200, f"{dag_id} in {fileloc} has no doc_md"


@pytest.mark.parametrize(("dag_id", "dag", "fileloc"), DAGS, ids=IDS)
def test_has_tags(dag_id, dag, fileloc):
    assert dag.tags, f"{dag_id} in {fileloc} has no tags"


@pytest.mark.parametrize(("dag_id", "dag", "fileloc"), DAGS, ids=IDS)
def test_has_owner(dag_id, dag, fileloc):
    owners = {t.owner for t in dag.tasks}
    assert owners and "airflow" not in owners, f"{dag_id} in {fileloc} has tasks without an owner: {owners}"


@pytest.mark.parametrize(("dag_id", "dag", "fileloc"), DAGS, ids=IDS)
def test_every_param_has_a_description(dag_id, dag, fileloc):
    missing = [name for name, p in dag.params.items() if not p.description]
    assert not missing, f"{dag_id} in {fileloc}: Params without description: {missing}"


@pytest.mark.parametrize(("dag_id", "dag", "fileloc"), DAGS, ids=IDS)
def test_params_validate_their_defaults(dag_id, dag, fileloc):
    dag.params.validate()  # raises ParamValidationError naming the Param


@pytest.mark.parametrize(("dag_id", "dag", "fileloc"), DAGS, ids=IDS)
def test_cleanup_and_revert_tasks_are_teardowns(dag_id, dag, fileloc):
    undo = [t for t in dag.tasks if t.task_id.startswith(("cleanup_", "revert_"))]
    assert all(t.is_teardown for t in undo), f"{dag_id} in {fileloc}: not teardowns: {[t.task_id for t in undo]}"


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_parse_imports_no_heavy_modules(path):
    """Parsing a DAG file must not pull in DB drivers, provider hooks or the task code."""
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]);"
        "heavy = [m for m in sys.modules if m.startswith(('psycopg', 'airflow.providers.postgres.hooks', "
        "'airflow.providers.slack.hooks', 'resilience.dr.drill.steps', 'resilience.platforms.local', "
        "'boto3')) or m in ('resilience.dr.drill.run', 'resilience.dr.activation', 'resilience.dr.failback', "
        "'resilience.dr.rollback', "
        "'resilience.dr.regions', 'resilience.dr.datasync')];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{path.name} imports at parse time: {out.stdout.strip()}"


SAFETY_DAGS = [(dag_id, dag, fileloc) for dag_id, dag, fileloc in DAGS if "safety" in dag.tags]


def test_the_sweeper_is_a_safety_dag():
    assert "chaos_abort" in [dag_id for dag_id, _, _ in SAFETY_DAGS]


@pytest.mark.parametrize(("dag_id", "dag", "fileloc"), SAFETY_DAGS, ids=[Path(f).name for _, _, f in SAFETY_DAGS])
def test_safety_dags_are_not_paused_at_creation(dag_id, dag, fileloc):
    """Airflow pauses new DAGs; a safety net that waits for someone to unpause it is not running."""
    assert dag.is_paused_upon_creation is False, \
        f"{dag_id} in {fileloc} is tagged safety but paused at creation: set is_paused_upon_creation=False"
