"""Which environment a scheduled run acts on (environments.yaml ``schedules``), decided per run.

A manual run acts on its Params. A scheduled run (run_type ``scheduled``) acts on the environment its
DAG's entry under ``schedules`` names, so moving the weekly campaign from the lab to staging is a config
change, not an edit of a Param default. The choice is taken at run time by the start task: DAG files read
no file at parse time.

Names are checked when the file loads (an unknown environment, a list); what the environment allows
(``chaos.enabled``, ``sandbox.allowed``) is checked when a scheduled run starts, naming the ``schedules``
field: flipping an environment's chaos kill switch must stop its scheduled campaigns, not make the whole
file unloadable for every DAG (a DR activation included).

One environment per schedule: a list is refused at load. A run holds one environment's lock, record and
report, and its Params name one environment; a second environment on the same cadence is a second DAG (or
a run by hand), not a loop inside one run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resilience.config import Config, Environment

log = logging.getLogger(__name__)

SCHEDULED = "scheduled"  # DagRunType.SCHEDULED's value (a str enum: equal to its value)
# The scheduled DAGs and the Params a schedule sets for them (each an environment name).
SCHEDULE_FIELDS: Mapping[str, tuple[str, ...]] = {
    "chaos_campaign": ("environment",),
    "dr_monthly_drill": ("environment", "dr_environment"),
    "slo_verify": ("environment",),
}


@dataclass(frozen=True)
class Schedule:
    """``schedules.<dag_id>``: the environment(s) the DAG's scheduled runs act on, by Param name."""

    dag_id: str
    environments: Mapping[str, str]  # Param name -> environment name, e.g. {"environment": "staging"}


def _environment_name(raw: Mapping[str, Any], key: str, where: str, environments: Mapping[str, Environment]) -> str:
    value = raw.get(key)
    if isinstance(value, list | tuple):
        raise ValueError(f"{where}.{key}: {value!r} must be one environment name: a schedule targets one "
                         "environment (run the DAG by hand, or give it a second DAG, for another)")
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}.{key} is missing: name one of {sorted(environments)}")
    if value not in environments:
        raise ValueError(f"{where}.{key}: {value!r} is not one of {sorted(environments)} (environments.yaml)")
    return value


def _check_target(dag_id: str, field: str, env: Environment, where: str) -> None:
    """What the DAG's run would refuse anyway, refused naming the schedule's field (not the Param's)."""
    if dag_id == "chaos_campaign":
        _check_campaign(env, where)
    elif dag_id == "slo_verify" and env.slo_verify is None:
        raise ValueError(f"{where}: {env.name!r} has no slo_verify section (environments.{env.name}.slo_verify)")
    elif field == "dr_environment" and not env.sandbox_allowed:
        raise ValueError(f"{where}: {env.name!r} does not allow restore sandboxes "
                         f"(environments.{env.name}.sandbox.allowed is false)")


def _check_campaign(env: Environment, where: str) -> None:
    if not env.chaos_enabled:
        raise ValueError(f"{where}: {env.name!r} forbids chaos (environments.{env.name}.chaos.enabled is false)")
    if env.is_production:
        raise ValueError(f"{where}: {env.name!r} is production: chaos there needs a run that says allow_production, "
                         "which a scheduled run cannot; trigger it by hand")
    if env.slo is None:
        raise ValueError(f"{where}: {env.name!r} has no slo section: the guard would have nothing to watch")


def parse_schedules(raw: Mapping[str, Any], environments: Mapping[str, Environment]) -> dict[str, Schedule]:
    """The ``schedules`` section, validated against the environments: each error names its field."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"schedules must be a mapping of DAG id to its environment, got {type(raw).__name__}")
    schedules = {}
    for dag_id, entry in raw.items():
        where = f"schedules.{dag_id}"
        if dag_id not in SCHEDULE_FIELDS:
            raise ValueError(f"{where}: {dag_id!r} is not one of the scheduled DAGs {sorted(SCHEDULE_FIELDS)}")
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a mapping, got {type(entry).__name__}")
        fields = SCHEDULE_FIELDS[dag_id]
        if unknown := sorted(set(entry) - set(fields)):
            raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {list(fields)}")
        schedules[dag_id] = Schedule(dag_id, {f: _environment_name(entry, f, where, environments) for f in fields})
    return schedules


def run_params(dag_id: str, run_type: str, params: Mapping[str, Any], config: Config) -> dict[str, Any]:
    """The Params a run acts on: a scheduled run's environment(s) from its schedule, any other run's as given
    (manual, backfill, asset-triggered: someone chose them). Raises ValueError naming the schedule's field when
    its environment refuses the DAG.

    A scheduled DAG with no ``schedules`` entry keeps its Param defaults (the lab)."""
    scheduled = scheduled_environments(dag_id, run_type, config)
    for field, name in scheduled.items():
        _check_target(dag_id, field, config.environment(name, f"schedules.{dag_id}.{field}"),
                      f"schedules.{dag_id}.{field}")
    return {**params, **scheduled}


def scheduled_environments(dag_id: str, run_type: str, config: Config) -> Mapping[str, str]:
    """Param name -> environment a run of ``run_type`` takes from ``schedules`` (nothing unless scheduled and
    configured), unchecked: where the run was meant to act, even when its start will refuse it."""
    schedule = config.schedules.get(dag_id)
    return schedule.environments if run_type == SCHEDULED and schedule is not None else {}


def params_for_run(dag_id: str, run_type: str, params: Mapping[str, Any],
                   config: Config | None = None) -> dict[str, Any]:
    """:func:`run_params` with the loaded environments.yaml, saying in the log where the environment came from."""
    from resilience.config import load_config

    config = config or load_config()
    chosen = run_params(dag_id, run_type, params, config)
    if run_type == SCHEDULED:
        if dag_id in config.schedules:
            log.info("Scheduled run: %s from environments.yaml schedules.%s (the form's defaults said %s)",
                     ", ".join(f"{k} {v}" for k, v in config.schedules[dag_id].environments.items()), dag_id,
                     ", ".join(f"{k} {params.get(k)}" for k in config.schedules[dag_id].environments))
        else:
            log.warning("Scheduled run with no schedules.%s in environments.yaml: acting on the Param defaults "
                        "(environment %s)", dag_id, params.get("environment"))
    return chosen
