"""What the DR DAGs (activation, failback, emergency rollback) keep in the control DB besides their
run journal (journal.py):

- ``dr_regions``: which region serves an environment now and, while DR is active, where the
  DR database is and from which moment its data starts (what failback syncs back).
- ``dns_changes``: every weight change of the API record, before and after, by which run:
  the audit trail, and what a traffic rollback goes back to.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from resilience.controldb import ControlStore

log = logging.getLogger(__name__)



def _json(value: Any) -> str:
    return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))


class RegionState(ControlStore):
    """Which region serves an environment (``dr_regions``); no row means the primary, DR inactive."""

    def get(self, environment: str) -> dict[str, Any]:
        rows = self.db.execute(
            "SELECT serving, dr_active, run_id, activated_at, recovery_point, database, app_url"
            " FROM dr_regions WHERE environment = %s", (environment,))
        if not rows:
            return {"serving": "primary", "dr_active": False, "run_id": None, "activated_at": None,
                    "recovery_point": None, "database": None, "app_url": None}
        keys = ("serving", "dr_active", "run_id", "activated_at", "recovery_point", "database", "app_url")
        return dict(zip(keys, rows[0], strict=True))

    def set(self, environment: str, **fields: Any) -> None:
        current = {**self.get(environment), **fields}
        self.db.execute(
            "INSERT INTO dr_regions (environment, serving, dr_active, run_id, activated_at, recovery_point, database,"
            " app_url) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (environment) DO UPDATE SET"
            " serving = EXCLUDED.serving, dr_active = EXCLUDED.dr_active, run_id = EXCLUDED.run_id,"
            " activated_at = EXCLUDED.activated_at, recovery_point = EXCLUDED.recovery_point,"
            " database = EXCLUDED.database, app_url = EXCLUDED.app_url, updated_at = clock_timestamp()",
            (environment, current["serving"], current["dr_active"], current["run_id"], current["activated_at"],
             current["recovery_point"], _json(current["database"]) if current["database"] else None,
             current["app_url"]))
        log.info("Region state of %s: serving=%s dr_active=%s", environment, current["serving"], current["dr_active"])


class DnsLog(ControlStore):
    """``dns_changes``: each weight change, written right after Route53 accepted it."""

    def record(self, run_id: str, dag_id: str, zone: str, record: str, before: dict[str, int],
               after: dict[str, int], reason: str) -> None:
        self.db.execute(
            "INSERT INTO dns_changes (run_id, dag_id, zone, record, before, after, reason)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (run_id, dag_id, zone, record, _json(before), _json(after), reason))

    def for_run(self, run_id: str) -> list[dict[str, Any]]:
        """The changes one run made, oldest first (for its report)."""
        rows = self.db.execute(
            "SELECT at, before, after, reason FROM dns_changes WHERE run_id = %s ORDER BY id", (run_id,))
        return [{"at": at.isoformat(), "before": before, "after": after, "reason": reason}
                for at, before, after, reason in rows]

    def last(self, record: str) -> dict[str, Any] | None:
        rows = self.db.execute(
            "SELECT id, run_id, dag_id, zone, before, after, reason, at FROM dns_changes WHERE record = %s"
            " ORDER BY id DESC LIMIT 1", (record,))
        if not rows:
            return None
        return dict(zip(("id", "run_id", "dag_id", "zone", "before", "after", "reason", "at"), rows[0], strict=True))

