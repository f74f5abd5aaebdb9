"""emergency_rollback's inputs: which parts to roll back, each validated before any change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from resilience.config import REGIONS, Config
from resilience.dr.activation_params import dr_environment_of, dry_run_flag, dry_run_param
from resilience.param_values import flag, parse_pitr_target

DEFAULT_PITR_AGO = timedelta(minutes=30)
TRAFFIC_TARGETS = ("previous", "primary", "dr")


@dataclass(frozen=True)
class RollbackParams:
    environment: str
    application: bool
    app_region: str
    database: bool
    pitr_target: datetime | None
    traffic: bool
    traffic_to: str
    dry_run: bool = False  # plan mode: validate each part, list the calls; make none

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["pitr_target"] = self.pitr_target.isoformat() if self.pitr_target else None
        return doc


def _choice(params: Mapping[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = params.get(name, default)
    if value not in allowed:
        raise ValueError(f"params.{name}: {value!r} is not one of {list(allowed)}")
    return str(value)


def parse_rollback_params(params: Mapping[str, Any], config: Config, now: datetime) -> RollbackParams:
    environment = dr_environment_of(config, str(params.get("environment", "")))
    parsed = RollbackParams(
        environment=environment.name,
        application=flag(params, "application"),
        app_region=_choice(params, "app_region", REGIONS, "primary"),
        database=flag(params, "database"),
        pitr_target=parse_pitr_target(params.get("pitr_target"), now),
        traffic=flag(params, "traffic"),
        traffic_to=_choice(params, "traffic_to", TRAFFIC_TARGETS, "previous"),
        dry_run=dry_run_flag(params),
    )
    if not (parsed.application or parsed.database or parsed.traffic):
        raise ValueError("params: choose at least one of application, database, traffic to roll back")
    if parsed.database and parsed.pitr_target is None:
        parsed = RollbackParams(**{**asdict(parsed), "pitr_target": now - DEFAULT_PITR_AGO})
    return parsed


def rollback_params() -> dict[str, Any]:
    from airflow.sdk import Param

    from resilience.config import DR_ENVIRONMENT_NAMES

    return {
        "environment": Param("lab", type="string", enum=list(DR_ENVIRONMENT_NAMES), title="Environment",
                             description="The environment to roll back (it needs a dr section in environments.yaml)."),
        "application": Param(False, type="boolean", title="Roll back the application", section="Application",
                             description="Back to the previous release (rolling restart), in the region below."),
        "app_region": Param("primary", type="string", enum=list(REGIONS), title="Application region",
                            section="Application", description="Which region's app goes back one release."),
        "database": Param(False, type="boolean", title="Point-in-time recovery", section="Database",
                          description="Restore the database as it was at the target into a NEW environment "
                                      "(rollback-YYYYMMDD-HHMM); the source is not touched."),
        "pitr_target": Param(None, type=["null", "string"], format="date-time", title="Recovery point",
                             section="Database",
                             description="RFC 3339 time in the past. Empty: 30 minutes ago (the runbook's default)."),
        "traffic": Param(False, type="boolean", title="Roll back traffic (DNS)", section="Traffic",
                         description="Set the API record's Route53 weights (zone and record logged first)."),
        "traffic_to": Param("previous", type="string", enum=list(TRAFFIC_TARGETS), title="Traffic to",
                            section="Traffic",
                            description="previous: the weights before the last recorded change; primary / dr: all "
                                        "traffic to that region."),
        "dry_run": dry_run_param(" (a previous release, backups covering the target, a DNS change to go back to)",
                                 "Plan"),
    }
