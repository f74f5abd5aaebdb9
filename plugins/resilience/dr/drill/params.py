"""The DR drill's inputs: validated before any side effect, each error naming its field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from resilience.config import Config
from resilience.param_values import MAX_TARGET_MIN, flag, parse_pitr_target, target_minutes

DEFAULT_RTO_TARGET_MIN = 30
DEFAULT_RPO_TARGET_MIN = 15
REPO_CHOICES = (1, 2)  # pgBackRest's repo1 (primary region) and repo2 (DR region)


@dataclass(frozen=True)
class DrillParams:
    environment: str
    dr_environment: str
    full_drill: bool
    rto_target_min: float
    rpo_target_min: float
    pitr_target: datetime | None
    no_cleanup: bool
    repo: int = 1
    dry_run: bool = False  # plan mode: validate, list the calls; make none

    def to_dict(self) -> dict[str, Any]:
        """Back to the Params' own names and JSON types (for XCom and the record)."""
        return {
            "environment": self.environment,
            "dr_environment": self.dr_environment,
            "full_drill": self.full_drill,
            "rto_target": self.rto_target_min,
            "rpo_target": self.rpo_target_min,
            "pitr_target": self.pitr_target.isoformat() if self.pitr_target else None,
            "no_cleanup": self.no_cleanup,
            "repo": self.repo,
            "dry_run": self.dry_run,
        }


def parse_repo(params: Mapping[str, Any], environment: Any) -> int:
    """``repo``: the repository the drill restores from; one of the source environment's repositories."""
    from resilience.dr.backup_repos import repo_by_index

    value = params.get("repo", 1)
    if value is None:
        value = 1
    if isinstance(value, bool) or not isinstance(value, int) or value not in REPO_CHOICES:
        raise ValueError(f"params.repo: {value!r} is not one of {list(REPO_CHOICES)}")
    try:
        repo_by_index(environment, value)
    except ValueError as exc:
        raise ValueError(f"params.{exc}") from None
    return value


def parse_drill_params(params: Mapping[str, Any], config: Config, now: datetime) -> DrillParams:
    """Validate the drill's Params against environments.yaml. Raises ValueError on bad input."""
    environment = config.environment(str(params.get("environment", "")), "params.environment")
    dr_environment = config.environment(str(params.get("dr_environment", "")), "params.dr_environment")
    if not dr_environment.sandbox_allowed:
        allowed = sorted(n for n, e in config.environments.items() if e.sandbox_allowed)
        raise ValueError(
            f"params.dr_environment: {dr_environment.name!r} does not allow restore sandboxes "
            f"(environments.{dr_environment.name}.sandbox.allowed is false); use one of {allowed}"
        )
    return DrillParams(
        environment=environment.name,
        dr_environment=dr_environment.name,
        full_drill=flag(params, "full_drill"),
        rto_target_min=target_minutes(params, "rto_target", DEFAULT_RTO_TARGET_MIN),
        rpo_target_min=target_minutes(params, "rpo_target", DEFAULT_RPO_TARGET_MIN),
        pitr_target=parse_pitr_target(params.get("pitr_target"), now),
        no_cleanup=flag(params, "no_cleanup"),
        repo=parse_repo(params, environment),
        dry_run=flag(params, "dry_run"),
    )


def drill_params() -> dict[str, Any]:
    """The trigger form: the Params the validation above reads, with their JSON schema."""
    from airflow.sdk import Param

    from resilience.config import ENVIRONMENT_NAMES, SANDBOX_ENVIRONMENT_NAMES
    from resilience.dr.activation_params import dry_run_param

    return {
        "environment": Param("lab", type="string", enum=list(ENVIRONMENT_NAMES), title="Source environment",
                             description="Whose backups to restore (an entry of include/config/environments.yaml)."),
        "dr_environment": Param("lab", type="string", enum=list(SANDBOX_ENVIRONMENT_NAMES),
                                title="Sandbox environment",
                                description="Where the throw-away sandbox is created; must allow sandboxes."),
        "full_drill": Param(True, type="boolean", title="Full drill",
                            description="Also run `pgbackrest verify` over the whole repository (slower)."),
        "rto_target": Param(DEFAULT_RTO_TARGET_MIN, type="number", exclusiveMinimum=0, maximum=MAX_TARGET_MIN,
                            title="RTO target (minutes)",
                            description="Longest acceptable time from the drill's start to the app healthy."),
        "rpo_target": Param(DEFAULT_RPO_TARGET_MIN, type="number", exclusiveMinimum=0, maximum=MAX_TARGET_MIN,
                            title="RPO target (minutes)",
                            description="Largest acceptable data-loss window; also the maximum WAL archive age."),
        "pitr_target": Param(None, type=["null", "string"], format="date-time", title="Point-in-time target",
                             description="Empty: restore the latest backup. Otherwise an RFC 3339 time in the "
                                         "past (e.g. 2026-11-28T10:30:00Z) to recover to."),
        "repo": Param(1, type="integer", enum=list(REPO_CHOICES), title="Restore from repository",
                      description="The pgBackRest repository the sandbox is restored from (backup and WAL): "
                                  "1 = the primary region's bucket, 2 = the DR region's bucket. Every repository "
                                  "is verified either way."),
        "no_cleanup": Param(False, type="boolean", title="Keep the sandbox",
                            description="Keep the sandbox (database and app) after the drill; the report "
                                        "gives its DSN. Drop it with `resilience sandbox drop NAME`."),
        "dry_run": dry_run_param(" (the sandbox's place is checked not to be the source)"),
    }
