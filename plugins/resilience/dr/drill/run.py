"""The monthly DR drill: what every step shares, and the first step (validate, open the run's journal).

The steps live in modules named for the runbook: ``verify_backups``, ``restore`` (the
sandbox's life), ``verify_restore`` (integrity, app) and ``conclude`` (RTO/RPO, report,
Slack; the lock and the verdict are the journal's). Every step takes the validated params (from
``start_drill``) and the run id, and records itself in the journal, so a step can be cleared and
re-run on its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from resilience.config import Config, Environment, load_config
from resilience.dr.drill.params import DrillParams, parse_drill_params
from resilience.journal import Journal, take_run_lock
from resilience.notify import require_connection
from resilience.platforms.base import Platform, get_platform
from resilience.platforms.types import Sandbox

log = logging.getLogger(__name__)

RESTORE_TIMEOUT_S = 3600
WRITABLE_TIMEOUT_S = 600
APP_TIMEOUT_S = 60


@dataclass
class Drill:
    """Everything a step needs, rebuilt from the validated params in every task."""

    params: DrillParams
    run_id: str
    config: Config

    @classmethod
    def from_xcom(cls, params: dict[str, Any], run_id: str) -> Drill:
        config = load_config()
        return cls(parse_drill_params(params, config, now=datetime.now(UTC)),
                   run_id, config)

    @property
    def source(self) -> Environment:
        return self.config.environment(self.params.environment)

    @property
    def target(self) -> Environment:
        return self.config.environment(self.params.dr_environment)

    @cached_property
    def platform(self) -> Platform:
        """The DR environment's platform: it hosts the sandbox and reaches the repository."""
        return get_platform(self.target)

    @cached_property
    def record(self) -> Journal:
        return Journal.for_conn(self.config.control_db_conn_id, self.run_id)

    @cached_property
    def source_credentials(self) -> tuple[str, str | None]:
        """Login and password of the source database (the restore has the same roles)."""
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(self.source.database_conn_id)
        return conn.login or "postgres", conn.password

    def source_conn(self) -> Any:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=self.source.database_conn_id).get_conn()

    def sandbox_conn(self, sandbox: Sandbox) -> Any:
        import psycopg

        user, password = self.source_credentials
        return psycopg.connect(host=sandbox.host, port=sandbox.port, dbname=sandbox.dbname, user=user,
                               password=password, connect_timeout=5, autocommit=True)


def start_drill(raw_params: dict[str, Any], run_id: str, dag_id: str, started_at: datetime) -> dict[str, Any]:
    """Validate params, config and connections (no side effect before this passes), then open the record."""
    config = load_config()
    params = parse_drill_params(raw_params, config, now=datetime.now(UTC))
    source = config.environment(params.environment)
    target = config.environment(params.dr_environment)
    get_platform(source)
    get_platform(target)
    require_connection(config.control_db_conn_id, "defaults.control_db_conn_id")
    require_connection(source.database_conn_id, f"environments.{source.name}.database.conn_id")
    log.info(
        "DR drill %s: %s -> sandbox in %s, %s restore, RTO target %g min, RPO target %g min%s",
        run_id, source.name, target.name,
        f"point-in-time ({params.pitr_target.isoformat()})" if params.pitr_target else "latest",
        params.rto_target_min, params.rpo_target_min, ", full drill" if params.full_drill else "",
    )
    drill = Drill(params, run_id, config)
    drill.platform.require(["backups", "sandboxes"], "a DR drill (verify the repositories, restore a sandbox)")
    get_platform(source).require(["backups"], "a DR drill (the source servers a sandbox must not be)")
    if params.dry_run:  # no lock: a plan changes nothing
        from resilience.dr.plan import PLAN_KEY, drill_plan
        from resilience.plan import log_plan

        planned = drill_plan(drill, run_id, datetime.now(UTC))
        log_plan(f"the DR drill of {source.name} into {target.name}", planned)
        drill.record.open(dag_id, "dr_drill", source.name, params.to_dict(), started_at,
                          dr_environment=target.name)
        with drill.record.step("plan") as details:
            details[PLAN_KEY] = planned
        return params.to_dict()
    # no drill while chaos (or another DR run) is active: the lock is held until release_lock
    take_run_lock(config.control_db_conn_id, run_id, dag_id, "DR drill")
    drill.record.open(dag_id, "dr_drill", source.name, params.to_dict(), started_at, dr_environment=target.name)
    return params.to_dict()
