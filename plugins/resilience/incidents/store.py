"""Incidents and their post-mortem follow-ups in the control-plane database.

- ``incidents``: one row per declared incident: severity, its Slack channel, when, which run.
- ``incident_items``: the runbook's post-mortem items of each incident, with due date and done mark.
- ``incident_reminders``: each follow-up reminder sent (one per incident and stage: never twice).

The tables are created here and only here, once per process (a later schema module takes them over).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from resilience.controldb import ControlStore
from resilience.incidents.followups import ITEMS, STAGES

log = logging.getLogger(__name__)



def incident_id(run_id: str, declared_at: datetime) -> str:
    """A short, stable id for the incident a run declares (a retried declaration finds the same row)."""
    return f"inc-{declared_at.astimezone(UTC):%Y%m%d-%H%M}-{hashlib.sha1(run_id.encode()).hexdigest()[:6]}"


@dataclass(frozen=True)
class Incident:
    id: str
    dag_id: str
    run_id: str
    environment: str
    name: str
    severity: str
    slack_channel: str
    declared_at: datetime
    report_path: str | None = None
    pagerduty_dedup_key: str | None = None


@dataclass(frozen=True)
class Item:
    item: str
    stage: str
    due_at: datetime
    done_at: datetime | None
    done_by: str | None


INCIDENT_COLUMNS = ("id", "dag_id", "run_id", "environment", "name", "severity", "slack_channel", "declared_at",
                    "report_path", "pagerduty_dedup_key")


class IncidentStore(ControlStore):
    """The three incident tables."""

    def declare(self, incident: Incident) -> None:
        """The incident and its post-mortem items (idempotent: a retried declaration keeps the first row)."""
        values = tuple(getattr(incident, c) for c in INCIDENT_COLUMNS)
        self.db.execute(
            f"INSERT INTO incidents ({', '.join(INCIDENT_COLUMNS)}) VALUES ({', '.join(['%s'] * len(values))})"
            " ON CONFLICT (id) DO UPDATE SET pagerduty_dedup_key ="
            " coalesce(EXCLUDED.pagerduty_dedup_key, incidents.pagerduty_dedup_key)", values)
        for stage in STAGES:
            for item in stage.items:
                self.db.execute(
                    "INSERT INTO incident_items (incident_id, item, stage, due_at) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT DO NOTHING", (incident.id, item, stage.name, incident.declared_at + stage.after))
        log.info("Incident %s (%s, %s) recorded: post-mortem follow-ups go to %s", incident.id, incident.severity,
                 incident.name, incident.slack_channel)

    def set_report(self, run_id: str, path: str) -> str | None:
        """Link the run's incident report; the incident's id (None: the run declared none)."""
        rows = self.db.execute("UPDATE incidents SET report_path = %s WHERE run_id = %s RETURNING id", (path, run_id))
        return rows[0][0] if rows else None

    def incidents(self, include_closed: bool = False) -> list[Incident]:
        """Newest first; without ``include_closed``, only those with an item not done."""
        where = "" if include_closed else \
            " WHERE EXISTS (SELECT 1 FROM incident_items i WHERE i.incident_id = incidents.id AND i.done_at IS NULL)"
        rows = self.db.execute(f"SELECT {', '.join(INCIDENT_COLUMNS)} FROM incidents{where} ORDER BY declared_at DESC")
        return [Incident(*row) for row in rows]

    def items(self, incident: str) -> list[Item]:
        rows = self.db.execute("SELECT item, stage, due_at, done_at, done_by FROM incident_items"
                               " WHERE incident_id = %s ORDER BY due_at, item", (incident,))
        return [Item(*row) for row in rows]

    def sent_stages(self, incident: str) -> frozenset[str]:
        rows = self.db.execute("SELECT stage FROM incident_reminders WHERE incident_id = %s", (incident,))
        return frozenset(r[0] for r in rows)

    def mark_done(self, incident: str, item: str, by: str | None) -> bool:
        """Mark ``item`` of ``incident`` done; False when it already was. Unknown ids are refused by name."""
        if item not in ITEMS:
            raise ValueError(f"item: {item!r} is not one of {list(ITEMS)}")
        if not self.db.execute("SELECT 1 FROM incidents WHERE id = %s", (incident,)):
            raise ValueError(f"incident: {incident!r} is not recorded (see `resilience incident list --all`)")
        rows = self.db.execute(
            "UPDATE incident_items SET done_at = clock_timestamp(), done_by = %s"
            " WHERE incident_id = %s AND item = %s AND done_at IS NULL RETURNING item", (by, incident, item))
        return bool(rows)

    def claim_reminder(self, incident: str, stage: str, channel: str) -> bool:
        """Take the one right to send ``stage``'s reminder (False: sent before, or by a concurrent run)."""
        return bool(self.db.execute(
            "INSERT INTO incident_reminders (incident_id, stage, channel) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING stage", (incident, stage, channel)))

    def release_reminder(self, incident: str, stage: str) -> None:
        """Give a claim back when its message did not go out: the next run tries again."""
        self.db.execute("DELETE FROM incident_reminders WHERE incident_id = %s AND stage = %s", (incident, stage))
