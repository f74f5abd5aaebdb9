"""Schedules per environment: environments.yaml ``schedules`` says what a scheduled run acts on; a manual
run acts on its Params. The choice is a pure function of the DAG, the run type, the Params and the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from resilience.config import DEFAULT_CONFIG_PATH, parse_config
from resilience.schedules import Schedule, params_for_run, run_params

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN_FORM = {"environment": "lab", "scenarios": ["pod-kill"], "duration": 60, "allow_production": False}
DRILL_FORM = {"environment": "lab", "dr_environment": "lab", "rto_target": 30}


def doc() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


def config_with(schedules: Any = None, edit=None):
    raw = doc()
    if schedules is not None:
        raw["schedules"] = schedules
    if edit:
        edit(raw)
    return parse_config(raw)


def test_the_packaged_schedules_target_staging_and_productions_backups():
    assert parse_config(doc()).schedules == {
        "chaos_campaign": Schedule("chaos_campaign", {"environment": "staging"}),
        "dr_monthly_drill": Schedule("dr_monthly_drill", {"environment": "production",
                                                          "dr_environment": "dr-sandbox"}),
        "slo_verify": Schedule("slo_verify", {"environment": "production"}),
    }


def test_no_schedules_section_leaves_the_param_defaults():
    raw = doc()
    del raw["schedules"]
    config = parse_config(raw)
    assert config.schedules == {}
    assert run_params("chaos_campaign", "scheduled", CAMPAIGN_FORM, config) == CAMPAIGN_FORM


@pytest.mark.parametrize(("schedules", "message"), [
    ({"chaos_campaign": {"environment": "nosuch"}},
     r"schedules\.chaos_campaign\.environment: 'nosuch' is not one of \['dr-sandbox', 'lab', 'production', "
     r"'production-dr', 'staging'\]"),
    ({"chaos_campaign": {"environment": ["staging", "lab"]}},
     r"schedules\.chaos_campaign\.environment: \['staging', 'lab'\] must be one environment name"),
    ({"chaos_campaign": {}}, r"schedules\.chaos_campaign\.environment is missing"),
    ({"dr_monthly_drill": {"environment": "production"}}, r"schedules\.dr_monthly_drill\.dr_environment is missing"),
    ({"chaos_campaign": {"environment": "staging", "dr_environment": "lab"}},
     r"schedules\.chaos_campaign: unknown key\(s\) \['dr_environment'\]; allowed: \['environment'\]"),
    ({"dr_failback": {"environment": "lab"}},
     r"schedules\.dr_failback: 'dr_failback' is not one of the scheduled DAGs \['chaos_campaign', 'dr_monthly_drill', 'slo_verify'\]"),
    ({"chaos_campaign": "staging"}, r"schedules\.chaos_campaign must be a mapping, got str"),
    (["chaos_campaign"], r"schedules must be a mapping of DAG id to its environment, got list"),
])
def test_a_bad_schedule_fails_to_load_naming_the_field(schedules, message):
    with pytest.raises(ValueError, match=message):
        config_with(schedules)


def _no_chaos_in_staging(raw: dict[str, Any]) -> None:
    raw["environments"]["staging"]["chaos"]["enabled"] = False


def _no_sandbox_in_dr_sandbox(raw: dict[str, Any]) -> None:
    raw["environments"]["dr-sandbox"]["sandbox"] = {"allowed": False}


@pytest.mark.parametrize(("dag_id", "run_type", "form", "expected"), [
    ("chaos_campaign", "scheduled", CAMPAIGN_FORM, {**CAMPAIGN_FORM, "environment": "staging"}),
    ("chaos_campaign", "manual", CAMPAIGN_FORM, CAMPAIGN_FORM),  # the form's choice, whatever the schedule says
    ("chaos_campaign", "manual", {**CAMPAIGN_FORM, "environment": "production"},
     {**CAMPAIGN_FORM, "environment": "production"}),
    ("chaos_campaign", "backfill", CAMPAIGN_FORM, CAMPAIGN_FORM),  # someone chose the Params: theirs
    ("chaos_campaign", "asset_triggered", CAMPAIGN_FORM, CAMPAIGN_FORM),
    ("dr_monthly_drill", "scheduled", DRILL_FORM,
     {**DRILL_FORM, "environment": "production", "dr_environment": "dr-sandbox"}),
    ("dr_monthly_drill", "manual", DRILL_FORM, DRILL_FORM),
    ("dr_activation", "scheduled", {"environment": "lab"}, {"environment": "lab"}),  # no schedule of its own
    ("slo_verify", "scheduled", {"environment": "lab", "window_h": 24}, {"environment": "production", "window_h": 24}),
    ("slo_verify", "manual", {"environment": "lab", "window_h": 1}, {"environment": "lab", "window_h": 1}),
])
def test_a_scheduled_run_takes_its_environment_from_the_config_a_manual_one_from_its_params(
        dag_id, run_type, form, expected):
    assert run_params(dag_id, run_type, form, parse_config(doc())) == expected


@pytest.mark.parametrize(("schedules", "edit", "dag_id", "message"), [
    (None, _no_chaos_in_staging, "chaos_campaign",
     r"^schedules\.chaos_campaign\.environment: 'staging' forbids chaos \(environments\.staging\.chaos\.enabled is "
     r"false\)$"),
    ({"chaos_campaign": {"environment": "production"}}, lambda raw: raw["environments"]["production"]["chaos"]
     .update(enabled=True), "chaos_campaign",
     r"^schedules\.chaos_campaign\.environment: 'production' is production: chaos there needs a run that says "
     r"allow_production"),
    ({"chaos_campaign": {"environment": "dr-sandbox"}}, None, "chaos_campaign",
     r"^schedules\.chaos_campaign\.environment: 'dr-sandbox' forbids chaos"),
    (None, _no_sandbox_in_dr_sandbox, "dr_monthly_drill",
     r"^schedules\.dr_monthly_drill\.dr_environment: 'dr-sandbox' does not allow restore sandboxes"),
    ({"slo_verify": {"environment": "staging"}}, None, "slo_verify",
     r"^schedules\.slo_verify\.environment: 'staging' has no slo_verify section \(environments\.staging\.slo_verify\)$"),
])
def test_a_scheduled_run_into_an_environment_that_forbids_it_is_refused_naming_the_schedule(
        schedules, edit, dag_id, message):
    """Checked when the scheduled run starts, not at load: turning off an environment's chaos (the kill
    switch) must stop its scheduled campaigns without making environments.yaml unloadable for every DAG."""
    config = config_with(schedules, edit)  # loads
    form = CAMPAIGN_FORM if dag_id == "chaos_campaign" else DRILL_FORM
    with pytest.raises(ValueError, match=message):
        run_params(dag_id, "scheduled", form, config)
    assert run_params(dag_id, "manual", form, config) == form  # a manual run is not the schedule's


def test_airflows_run_type_enum_is_recognised():
    from airflow.utils.types import DagRunType

    config = parse_config(doc())
    assert params_for_run("chaos_campaign", DagRunType.SCHEDULED, CAMPAIGN_FORM, config)["environment"] == "staging"
    assert params_for_run("chaos_campaign", DagRunType.MANUAL, CAMPAIGN_FORM, config)["environment"] == "lab"


@pytest.mark.parametrize(("dag_id", "start_task", "step", "expected"), [
    ("chaos_campaign", "start_campaign", "resilience.chaos.steps.start_campaign", {"environment": "staging"}),
    ("dr_monthly_drill", "start_drill", "resilience.dr.drill.steps.start_drill",
     {"environment": "production", "dr_environment": "dr-sandbox"}),
])
def test_the_start_task_of_a_scheduled_run_acts_on_the_configured_environment(airflow_db, dag_id, start_task, step,
                                                                               expected):
    """The DAG's own start task, given a scheduled run's context (the form's defaults in its Params): the
    step it calls receives the environments of environments.yaml's schedules."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.types import DagRunType

    dag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py")).get_dag(dag_id)
    defaults = {name: param.value for name, param in dag.params.items()}
    assert defaults["environment"] == "lab"
    context = {"dag": dag, "params": defaults, "run_id": "scheduled__2026-12-01T04:00:00+00:00",
               "dag_run": mock.Mock(run_type=DagRunType.SCHEDULED), "ti": mock.Mock()}
    start = dag.get_task(start_task).python_callable
    # the DAG file's own names (imported into its module), as the task process would resolve them
    with mock.patch.dict(start.__globals__, {"get_current_context": lambda: context,
                                             "run_id": lambda: context["run_id"]}), \
            mock.patch(step, return_value={}) as started:
        start()
    [(params, *_), _] = started.call_args
    assert {k: params[k] for k in expected} == expected
    assert {k: v for k, v in params.items() if k not in expected} == {
        k: v for k, v in defaults.items() if k not in expected}
