"""A local Slack incoming-webhook endpoint (no real Slack can run here).

It speaks the webhook protocol the Slack provider uses: ``POST <webhook path>`` with a JSON
body (``text``, optional ``blocks``), answered ``200 ok``. Every body is kept for asserts.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

from tests.fakes.local_server import LocalServer


class SlackWebhookServer(LocalServer):
    def __init__(self) -> None:
        self.messages: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if "text" not in body and "blocks" not in body:
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(b"no_text")
                    return
                server.messages.append({"path": self.path, **body})
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        super().__init__(Handler)
        self.url = f"{self.base_url}/services/T000/B000/XXXX"

    def connection_json(self) -> str:
        """The Airflow Connection (``AIRFLOW_CONN_...`` value) that points the provider here."""
        return json.dumps({"conn_type": "slackwebhook", "password": self.url})
