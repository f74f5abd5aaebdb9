"""A local Statuspage API (no real Statuspage can run here).

It speaks the part of the v1 REST API the package uses: ``POST /v1/pages/{page}/incidents``
and ``PATCH /v1/pages/{page}/incidents/{id}`` with ``{"incident": {...}}`` bodies, the
``Authorization: OAuth <key>`` header checked (401 otherwise), answers shaped like the real
ones (``id``, ``name``, ``status``, ``shortlink``, ``incident_updates``).
"""

from __future__ import annotations

import json
import re
import uuid

from tests.fakes.local_server import JsonHandler, LocalServer

API_KEY = "lab-statuspage-key"
INCIDENTS = re.compile(r"^/v1/pages/([^/]+)/incidents(?:/([^/]+))?$")


class StatuspageServer(LocalServer):
    def __init__(self) -> None:
        self.incidents: dict[str, dict] = {}
        self.requests: list[dict] = []
        server = self

        class Handler(JsonHandler):
            def _handle(self, method: str) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                server.requests.append({"method": method, "path": self.path, "body": body})
                if self.headers.get("Authorization") != f"OAuth {API_KEY}":
                    return self._reply(401, {"error": "Could not authenticate"})
                match = INCIDENTS.match(self.path)
                if not match or "incident" not in body:
                    return self._reply(422, {"error": "incident is missing"})
                page, incident_id = match.groups()
                fields = body["incident"]
                if method == "POST" and incident_id is None:
                    new_id = uuid.uuid4().hex[:12]
                    server.incidents[new_id] = {"id": new_id, "page_id": page, "shortlink": f"https://stspg.io/{new_id}",
                                                "incident_updates": [], **fields}
                    server.incidents[new_id]["incident_updates"].append(fields)
                    return self._reply(201, server.incidents[new_id])
                if method == "PATCH" and incident_id in server.incidents:
                    server.incidents[incident_id].update(fields)
                    server.incidents[incident_id]["incident_updates"].append(fields)
                    return self._reply(200, server.incidents[incident_id])
                return self._reply(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self._handle("POST")

            def do_PATCH(self) -> None:  # noqa: N802
                self._handle("PATCH")

            def log_message(self, *args) -> None:
                pass

        super().__init__(Handler)
        self.url = self.base_url

    def connection_json(self) -> str:
        """The Airflow HTTP Connection (``AIRFLOW_CONN_...`` value) that points the package here."""
        return json.dumps({"conn_type": "http", "host": self.url, "password": API_KEY})
