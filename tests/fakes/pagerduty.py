"""A local PagerDuty Events API v2 endpoint (no real PagerDuty can run here).

It speaks the protocol the PagerDuty provider's Events hook sends: ``POST /v2/enqueue`` with a
JSON event (``routing_key``, ``event_action`` trigger/acknowledge/resolve, ``dedup_key``,
``payload`` with ``summary``, ``source`` and ``severity`` in critical/error/warning/info),
answered ``202 {"status": "success", "message": "Event processed", "dedup_key": ...}`` like the
real service; a wrong routing key or a malformed event gets its ``400 {"status": "invalid event"}``.
Every accepted event is kept for asserts.
"""

from __future__ import annotations

import json
import uuid

from tests.fakes.local_server import JsonHandler, LocalServer

ROUTING_KEY = "lab0routing0key0000000000000000"  # an integration key is 32 characters
SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")


def _problem(event: dict) -> str | None:
    """Why the Events API would refuse ``event`` (None: accepted)."""
    if event.get("routing_key") != ROUTING_KEY:
        return "routing_key is invalid"
    if event.get("event_action") not in ACTIONS:
        return f"event_action must be one of {list(ACTIONS)}"
    if event["event_action"] != "trigger":
        return None if isinstance(event.get("dedup_key"), str) else "dedup_key is required"
    payload = event.get("payload") or {}
    missing = [k for k in ("summary", "source", "severity") if not payload.get(k)]
    if missing:
        return f"payload is missing {missing}"
    if payload["severity"] not in SEVERITIES:
        return f"payload.severity must be one of {list(SEVERITIES)}"
    return None


class PagerdutyEventsServer(LocalServer):
    def __init__(self) -> None:
        self.events: list[dict] = []
        server = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v2/enqueue":
                    return self._reply(404, {"status": "not found"})
                try:
                    event = json.loads(raw or b"{}")
                except ValueError:
                    return self._reply(400, {"status": "invalid event", "message": "Event object is invalid",
                                             "errors": ["body is not JSON"]})
                problem = _problem(event)
                if problem:
                    return self._reply(400, {"status": "invalid event", "message": "Event object is invalid",
                                             "errors": [problem]})
                dedup_key = event.get("dedup_key") or uuid.uuid4().hex
                server.events.append({**event, "dedup_key": dedup_key})
                self._reply(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key})

            def log_message(self, *args) -> None:
                pass

        super().__init__(Handler)
        self.url = self.base_url

    def connection_json(self) -> str:
        """The Airflow Connection (``AIRFLOW_CONN_...`` value) that points the provider's Events hook here:
        the password is the integration (routing) key, the host the events URL the hook posts to."""
        return json.dumps({"conn_type": "pagerduty_events", "host": self.url, "password": ROUTING_KEY})
