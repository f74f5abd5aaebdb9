"""Declaring an incident: record it (with its post-mortem items), then escalate by its severity."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime

from resilience.config import Config
from resilience.incidents.severity import Severity
from resilience.incidents.store import Incident, IncidentStore, incident_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Declaration:
    """Who declares what: the run, its environment, the incident's name and severity, the message."""

    dag_id: str
    run_id: str
    run_started_at: datetime  # with the run id, names the incident: a retried declaration finds the same one
    environment: str
    name: str
    severity: Severity
    text: str


def declare(config: Config, declaration: Declaration, now: datetime) -> dict[str, object]:
    """Record the incident first (the post-mortem follow-ups exist even if escalation fails), then escalate:
    the severity's Slack channels and, for P0, PagerDuty (dedup key: the incident id)."""
    from resilience.notify import escalate

    route = config.escalation.route(declaration.severity.level)
    incident = Incident(incident_id(declaration.run_id, declaration.run_started_at), declaration.dag_id,
                        declaration.run_id, declaration.environment, declaration.name, declaration.severity.level,
                        route.incident_channel, now)
    store = IncidentStore.for_conn(config.control_db_conn_id)
    store.declare(incident)
    log.info("Declaring %s incident %s: %s", incident.severity, incident.id, declaration.severity.reason)
    escalated = escalate(config.escalation, incident.severity, f"{declaration.text} (incident {incident.id})",
                         dedup_key=incident.id, source=f"resilience/{declaration.dag_id}/{declaration.environment}",
                         details={"incident": incident.id, "run_id": declaration.run_id,
                                  "environment": declaration.environment, "severity": incident.severity})
    if escalated.pagerduty:
        store.declare(replace(incident, pagerduty_dedup_key=escalated.pagerduty))
    return {"id": incident.id, "channel": incident.slack_channel, **escalated.to_dict()}
