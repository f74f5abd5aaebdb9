"""An environment's two regions as the DR DAGs see them: platforms, DNS, metrics, control tables.

Built again in every task from the validated params (like the drill's ``Drill``), so a task
can be cleared and re-run on its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from resilience.config import REGIONS, Config, DrSettings, Environment
from resilience.dr.region_state import DnsLog, RegionState
from resilience.journal import Journal
from resilience.notify import require_connection

if TYPE_CHECKING:
    from resilience.platforms.base import Platform

log = logging.getLogger(__name__)


@dataclass
class Regions:
    config: Config
    environment: Environment
    run_id: str
    dag_id: str = ""

    @property
    def dr(self) -> DrSettings:
        assert self.environment.dr is not None  # parse_*_params refused environments without one
        return self.environment.dr

    @property
    def dr_environment(self) -> Environment:
        return self.config.environment(self.dr.dr_environment)

    @cached_property
    def primary_platform(self) -> Platform:
        from resilience.platforms.base import get_platform

        return get_platform(self.environment)

    @cached_property
    def dr_platform(self) -> Platform:
        from resilience.platforms.base import get_platform

        return get_platform(self.dr_environment)

    def platform(self, region: str) -> Platform:
        return self.primary_platform if region == "primary" else self.dr_platform

    @cached_property
    def record(self) -> Journal:
        return self.journal_of(self.run_id)

    def journal_of(self, run_id: str) -> Journal:
        """The journal of a DR run of this environment (this one, or the activation a failback ends)."""
        return Journal.for_conn(self.config.control_db_conn_id, run_id)

    @cached_property
    def state(self) -> RegionState:
        return RegionState.for_conn(self.config.control_db_conn_id)

    @cached_property
    def dns_log(self) -> DnsLog:
        return DnsLog.for_conn(self.config.control_db_conn_id)

    def dr_episode(self) -> int:
        """How many full DR activations of this environment have restored a database, this run included."""
        rows = self.record.db.execute(
            "SELECT count(*) FROM runs WHERE environment = %s AND dag_id = 'dr_activation'"
            " AND details -> 'path' ->> 'kind' = 'full_dr' AND (run_id = %s OR details ? 'restored')",
            (self.environment.name, self.run_id))
        return int(rows[0][0])

    @cached_property
    def dns(self) -> Any:
        from resilience.dns import Route53Weights

        return Route53Weights.lookup(self.dr.aws_conn_id, self.dr.zone, self.dr.record)

    def validate(self) -> None:
        """Platforms, Connections and the DNS record exist: everything checked before any side effect."""
        self.primary_platform  # noqa: B018 (building them is the check)
        self.dr_platform  # noqa: B018
        where = f"environments.{self.environment.name}"
        require_connection(self.config.control_db_conn_id, "defaults.control_db_conn_id")
        require_connection(self.environment.database_conn_id, f"{where}.database.conn_id")
        require_connection(self.dr.aws_conn_id, f"{where}.dr.dns.aws_conn_id")
        require_connection(self.dr.metrics.prometheus_conn_id, f"{where}.dr.metrics.prometheus_conn_id")
        log.info("DNS: Route53 %s, weights now %s", self.dns.describe(), self.dns.weights())

    # -- traffic ------------------------------------------------------------------------------

    def set_traffic(self, primary: int, reason: str) -> dict[str, Any]:
        """UPSERT the weights (zone and record logged first), audit the change; returns before/after."""
        before = self.dns.weights()
        log.info("DNS change: Route53 %s from primary=%d dr=%d to primary=%d dr=%d (%s)", self.dns.describe(),
                 before["primary"], before["dr"], primary, 100 - primary, reason)
        after = self.dns.set_weights(primary, 100 - primary)
        self.dns_log.record(self.run_id, self.dag_id, self.dr.zone, self.dr.record, before, after, reason)
        return {"zone": self.dr.zone, "zone_id": self.dns.record.zone_id, "record": self.dr.record,
                "before": before, "after": after, "reason": reason}

    def serving_region(self) -> str:
        """The region DNS sends most traffic to now."""
        weights = self.dns.weights()
        return max(REGIONS, key=lambda r: (weights[r], r == "primary"))

    def healthy(self, region: str) -> tuple[bool, dict[str, Any]]:
        health = self.platform(region).regions.region_health(region)
        return health.serving, health.to_dict()

    # -- the database credentials (the restored DR database has the primary's roles) -------------

    @cached_property
    def credentials(self) -> tuple[str, str | None]:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(self.environment.database_conn_id)
        return conn.login or "postgres", conn.password

    def connect(self, host: str, port: int, dbname: str) -> Any:
        import psycopg

        user, password = self.credentials
        return psycopg.connect(host=host, port=port, dbname=dbname, user=user, password=password,
                               connect_timeout=5, autocommit=True)

    def dsn(self, host: str, port: int, dbname: str) -> str:
        """A full DSN with the password: for the app's environment only, never logged."""
        from urllib.parse import quote

        user, password = self.credentials
        return f"postgresql://{quote(user)}:{quote(password or '', safe='')}@{host}:{port}/{dbname}"

    def wait_writable(self, box: Any, details: dict[str, Any] | None = None, timeout_s: float = 600
                      ) -> datetime | None:
        """Poll a restored database until recovery has ended; its newest write (progress logged every 5 s)."""
        from resilience.dr import integrity

        return integrity.wait_writable(lambda: self.connect(box.host, box.port, box.dbname), box.name, timeout_s,
                                       details, lambda conn, _: integrity.latest_write(
                                           conn, integrity.timestamped_tables(conn)))

    def primary_conn(self) -> Any:
        """The primary region's writable database as its platform knows it now (it follows a failover)."""
        endpoint = self.primary_platform.backups.database_endpoints()[0]
        return self.connect(endpoint.host, endpoint.port, self.environment.dbname)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
