"""The demo app's object store: S3 PUTs with our own retries and exponential backoff.

boto3's retries are off (one attempt per call), so every retry is ours and counted in
``s3_retries_total``. Retried: 5xx and throttling answers, connection errors and timeouts;
a 4xx is final. The boto3 client is built lazily (importing boto3 costs ~0.3 s) and can be
warmed in the background after the app listens, so a restarted replica is serving at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("resilience.lab.app")

RETRYABLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError",
                   "ServiceUnavailable"}


class S3Unavailable(RuntimeError):
    """Every attempt failed (or a non-retryable error): the upload did not happen."""

    def __init__(self, attempts: int, reason: str) -> None:
        super().__init__(f"S3 PUT failed after {attempts} attempt(s): {reason}")
        self.attempts = attempts
        self.reason = reason


@dataclass(frozen=True)
class S3Settings:
    endpoint: str
    bucket: str
    region: str
    access_key: str
    secret_key: str
    attempts: int = 4
    backoff_s: Sequence[float] = (0.05, 0.1, 0.2)
    connect_timeout_s: float = 1.0
    read_timeout_s: float = 2.0


def boto3_client(settings: S3Settings) -> Any:
    """A path-style S3 client on ``settings.endpoint`` with boto3's own retries disabled."""
    import boto3
    from botocore.config import Config

    config = Config(region_name=settings.region, retries={"total_max_attempts": 1, "mode": "standard"},
                    connect_timeout=settings.connect_timeout_s, read_timeout=settings.read_timeout_s,
                    s3={"addressing_style": "path"}, max_pool_connections=20,
                    request_checksum_calculation="when_required", response_checksum_validation="when_required")
    return boto3.client("s3", endpoint_url=settings.endpoint, aws_access_key_id=settings.access_key,
                        aws_secret_access_key=settings.secret_key, config=config)


def classify(exc: Exception) -> tuple[bool, str]:
    """(retryable, short reason) for an exception raised by a boto3 call."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return status >= 500 or status == 429 or code in RETRYABLE_CODES, f"HTTP {status} {code}".strip()
    if isinstance(exc, BotoCoreError):  # connection refused/closed, timeouts
        return True, type(exc).__name__
    return False, type(exc).__name__


class ObjectStore:
    """``put(key, body, sha256) -> attempts``; ``on_retry``/``on_attempt`` feed the metrics."""

    def __init__(self, settings: S3Settings, client_factory: Callable[[S3Settings], Any] = boto3_client,
                 sleep: Callable[[float], None] = time.sleep, on_retry: Callable[[], None] = lambda: None,
                 on_attempt: Callable[[str], None] = lambda status: None) -> None:
        self.settings = settings
        self._factory = client_factory
        self._client: Any = None
        self._lock = threading.Lock()
        self.sleep = sleep
        self.on_retry = on_retry
        self.on_attempt = on_attempt

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._factory(self.settings)
            return self._client

    def warm_up(self) -> None:
        """Build the client in a background thread (first upload does not pay the boto3 import)."""
        threading.Thread(target=self.client, name="s3-warm-up", daemon=True).start()

    def _backoff(self, attempt: int) -> float:
        steps = self.settings.backoff_s
        return steps[min(attempt - 1, len(steps) - 1)] if steps else 0.0

    def put(self, key: str, body: bytes, sha256: str) -> int:
        """Store ``body`` under ``key``; return how many attempts it took, or raise S3Unavailable."""
        client = self.client()
        for attempt in range(1, self.settings.attempts + 1):
            try:
                client.put_object(Bucket=self.settings.bucket, Key=key, Body=body,
                                  ContentType="application/octet-stream", Metadata={"sha256": sha256})
            except Exception as exc:
                retryable, reason = classify(exc)
                self.on_attempt(reason.split()[1] if reason.startswith("HTTP ") else "error")
                if not retryable or attempt == self.settings.attempts:
                    raise S3Unavailable(attempt, reason) from exc
                delay = self._backoff(attempt)
                log.info("S3 PUT %s: %s on attempt %d, retrying in %.0f ms", key, reason, attempt, delay * 1000)
                self.on_retry()
                self.sleep(delay)
                continue
            self.on_attempt("200")
            return attempt
        raise AssertionError("unreachable")  # the loop returns or raises
