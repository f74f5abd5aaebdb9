"""Waiting for an app to answer 200, against a local HTTP server that starts healthy only after a few asks."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

from resilience.http_probe import wait_http_ok
from tests.fakes.local_server import LocalServer


def starting_app(unhealthy_answers: int) -> type[BaseHTTPRequestHandler]:
    asked = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            asked.append(self.path)
            ok = len(asked) > unhealthy_answers
            body = b"ok" if ok else b"starting"
            self.send_response(200 if ok else 503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
            return

    return Handler


def test_the_wait_ends_at_the_first_200_and_says_what_it_got():
    with LocalServer(starting_app(2)) as app:
        waited = wait_http_ok(f"{app.base_url}/health", timeout_s=10, interval_s=0.01)
    assert waited.ok and waited.last.startswith("HTTP 200 in ") and waited.last.endswith(": ok")


def test_an_app_that_never_comes_up_ends_the_wait_with_its_last_answer():
    with LocalServer(starting_app(10**6)) as app:
        waited = wait_http_ok(f"{app.base_url}/health", timeout_s=0.3, interval_s=0.01)
    assert not waited.ok and waited.seconds >= 0.3 and waited.last.endswith(": starting")
    assert waited.last.startswith("HTTP 503 in ")


def test_nothing_listening_is_no_answer_not_an_exception():
    with LocalServer(starting_app(0)) as app:
        url = f"{app.base_url}/health"
    waited = wait_http_ok(url, timeout_s=0.2, interval_s=0.01, request_timeout_s=0.5)
    assert not waited.ok and waited.last.startswith("no answer (")
