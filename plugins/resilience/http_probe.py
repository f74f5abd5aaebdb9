"""Asking an app over HTTP: one request, or the same request until it answers 200 (a DR app starting, a
restored sandbox's app)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass


def http_probe(url: str, method: str = "GET", body: bytes | None = None, timeout_s: float = 5.0,
               headers: dict[str, str] | None = None) -> tuple[int | None, float, bytes]:
    """(status or None when unreachable, seconds, body) of one request."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, time.monotonic() - started, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, time.monotonic() - started, exc.read()
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        return None, time.monotonic() - started, str(exc).encode()


@dataclass(frozen=True)
class HttpWait:
    """How a wait for a 200 ended: ``ok``, after ``seconds``, and the last answer in words."""

    ok: bool
    seconds: float
    last: str


def wait_http_ok(url: str, timeout_s: float, interval_s: float = 0.2, request_timeout_s: float = 5.0) -> HttpWait:
    """GET ``url`` until it answers 200 or ``timeout_s`` has passed; never raises."""
    started = time.monotonic()
    while True:
        status, took_s, body = http_probe(url, timeout_s=request_timeout_s)
        last = (f"HTTP {status} in {took_s * 1000:.0f} ms: {body[:120].decode(errors='replace')}" if status
                else f"no answer ({body[:120].decode(errors='replace')})")
        waited = round(time.monotonic() - started, 3)
        if status == 200:
            return HttpWait(True, waited, last)
        if waited >= timeout_s:
            return HttpWait(False, waited, last)
        time.sleep(interval_s)
