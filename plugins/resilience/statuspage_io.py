"""Statuspage incidents through an HTTP Connection (the runbook's ``curl .../v1/pages/$PAGE_ID/incidents``).

The Connection's host is the API (``https://api.statuspage.io``) and its password the API
key, sent as ``Authorization: OAuth <key>``. A missing Connection or a failing API is not an
error: the incident is logged and the run goes on, since a DR must never wait on it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from resilience.notify import connection_defined

log = logging.getLogger(__name__)

STATUSES = ("investigating", "identified", "monitoring", "resolved")
IMPACTS = ("none", "minor", "major", "critical")


def incident_body(name: str, status: str, impact: str, body: str) -> dict[str, Any]:
    """The JSON Statuspage expects for a new incident or an update (pure)."""
    if status not in STATUSES:
        raise ValueError(f"status: {status!r} is not one of {list(STATUSES)}")
    if impact not in IMPACTS:
        raise ValueError(f"impact: {impact!r} is not one of {list(IMPACTS)}")
    return {"incident": {"name": name, "status": status, "impact_override": impact, "body": body}}


def _hook(conn_id: str, method: str) -> Any:
    from airflow.providers.http.hooks.http import HttpHook

    return HttpHook(method=method, http_conn_id=conn_id)


def _headers(hook: Any) -> dict[str, str]:
    return {"Authorization": f"OAuth {hook.get_connection(hook.http_conn_id).password or ''}",
            "Content-Type": "application/json"}


def open_incident(conn_id: str | None, page_id: str | None, name: str, body: str, impact: str = "major"
                  ) -> dict[str, Any] | None:
    """Create an ``investigating`` incident; returns ``{"id", "shortlink", "status"}`` or None when not posted."""
    payload = incident_body(name, "investigating", impact, body)
    if not conn_id or not page_id or not connection_defined(conn_id):
        log.warning("Not posting to Statuspage (Connection %r, page %r not configured). Incident was: %s",
                    conn_id, page_id, json.dumps(payload))
        return None
    hook = _hook(conn_id, "POST")
    try:
        incident = hook.run(f"v1/pages/{page_id}/incidents", data=json.dumps(payload), headers=_headers(hook)).json()
    except Exception as exc:  # the DR goes on; the incident is in the log
        log.error("Statuspage incident not opened (%s: %s). Incident was: %s", type(exc).__name__, exc,
                  json.dumps(payload))
        return None
    log.info("Statuspage incident %s opened on page %s: %r (%s)", incident.get("id"), page_id, name,
             incident.get("shortlink", "no shortlink"))
    return {"id": incident.get("id"), "shortlink": incident.get("shortlink"), "status": incident.get("status")}


def update_incident(conn_id: str | None, page_id: str | None, incident_id: str | None, status: str, body: str
                    ) -> bool:
    """Move an incident on (``monitoring`` once traffic is served again); False when not posted."""
    if status not in STATUSES:
        raise ValueError(f"status: {status!r} is not one of {list(STATUSES)}")
    if not incident_id or not conn_id or not page_id or not connection_defined(conn_id):
        log.warning("Not updating Statuspage (no incident or Connection): %s: %s", status, body)
        return False
    hook = _hook(conn_id, "PATCH")
    try:
        hook.run(f"v1/pages/{page_id}/incidents/{incident_id}",
                 data=json.dumps({"incident": {"status": status, "body": body}}), headers=_headers(hook))
    except Exception as exc:
        log.error("Statuspage incident %s not moved to %s (%s: %s)", incident_id, status, type(exc).__name__, exc)
        return False
    log.info("Statuspage incident %s is now %s", incident_id, status)
    return True
