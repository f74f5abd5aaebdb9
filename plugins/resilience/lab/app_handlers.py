"""The demo app's routes: pure functions of the request returning (status, JSON body).

Dependencies (database, cache, object store, metrics) are injected, so each can be replaced by
a fake in tests or left out: without a cache ``GET /api/posts`` reads PostgreSQL every time,
without an object store ``POST /api/uploads`` answers 503 "not configured". A release with a fail
rate answers that share of ``/api/*`` requests 500 before they reach any dependency.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from resilience.lab.app_cache import ReadThroughCache
from resilience.lab.app_db import DEMO_EMAIL, Database
from resilience.lab.app_metrics import AppMetrics
from resilience.lab.app_s3 import ObjectStore, S3Unavailable

log = logging.getLogger("resilience.lab.app")

Query = dict[str, list[str]]
Response = tuple[int, Any]
Route = Callable[[Query, bytes], Response]


def db_error(exc: psycopg.Error) -> Response:
    return 503, {"status": "error", "error": type(exc).__name__}


class DemoApp:
    """Route table and handlers."""

    def __init__(self, db: Database, metrics: AppMetrics, cache: ReadThroughCache | None = None,
                 store: ObjectStore | None = None, max_posts: int = 100, *, release: str = "v1",
                 fail_rate: float = 0.0, rng: random.Random | None = None) -> None:
        self.db = db
        self.metrics = metrics
        self.cache = cache
        self.store = store
        self.max_posts = max_posts
        self.release = release
        self.fail_rate = fail_rate
        self.rng = rng or random.Random()
        metrics.release_info.labels(release=release).set(1)
        self.routes: dict[tuple[str, str], Route] = {
            ("GET", "/health"): lambda q, b: (200, {"status": "ok"}),
            ("GET", "/api/health/database"): self.database_health,
            ("GET", "/api/posts"): self.list_posts,
            ("POST", "/api/posts"): self.create_post,
            ("POST", "/api/uploads"): self.create_upload,
            ("POST", "/api/auth/health-check"): self.auth_check,
            ("POST", "/api/webhooks"): self.receive_webhook,
        }

    def known_path(self, path: str) -> bool:
        return path == "/metrics" or any(p == path for _, p in self.routes)

    def injects_failure(self, path: str) -> bool:
        """True for the share ``fail_rate`` of ``/api/*`` requests (``/health`` never fails)."""
        return path.startswith("/api/") and self.fail_rate > 0 and self.rng.random() < self.fail_rate

    def database_health(self, query: Query, body: bytes) -> Response:
        try:
            return 200, self.db.health()
        except psycopg.Error as exc:
            return 503, {"status": "error", "database": "app", "error": type(exc).__name__}

    def list_posts(self, query: Query, body: bytes) -> Response:
        """Recent posts, read through the cache; a cache failure only means a database read."""
        raw = query.get("limit", ["20"])[0]
        if not raw.isdigit() or not 1 <= int(raw) <= self.max_posts:
            return 400, {"error": f"limit: {raw!r} is not an integer in 1..{self.max_posts}"}
        key = f"posts:recent:{int(raw)}"
        outcome = "none"
        if self.cache is not None:
            cached, outcome = self.cache.get(key)
            self.metrics.cache.labels(result=outcome).inc()
            if cached is not None:
                return 200, {"posts": json.loads(cached), "cache": "hit"}
        try:
            posts = self.db.recent_posts(int(raw))
        except psycopg.Error as exc:
            return db_error(exc)
        if self.cache is not None and outcome == "miss":
            self.cache.set(key, json.dumps(posts).encode())
        return 200, {"posts": posts, "cache": outcome}

    def create_post(self, query: Query, body: bytes) -> Response:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": "body: not valid JSON"}
        text = data.get("body") if isinstance(data, dict) else None
        if not isinstance(text, str) or not 1 <= len(text) <= 5000:
            return 400, {"error": "body: must be a string of 1..5000 characters"}
        account_id = data.get("account_id")
        if account_id is not None and (not isinstance(account_id, int) or isinstance(account_id, bool)):
            return 400, {"error": f"account_id: {account_id!r} is not an integer"}
        try:
            return 201, self.db.create_post(text, account_id)
        except psycopg.IntegrityError as exc:
            return 400, {"error": f"account_id: {account_id} rejected ({type(exc).__name__})"}
        except psycopg.Error as exc:
            return db_error(exc)

    def create_upload(self, query: Query, body: bytes) -> Response:
        """Store the body in S3 (retried), then record it; the row exists only for an accepted object."""
        if self.store is None:
            return 503, {"status": "error", "error": "uploads are not configured (no S3 endpoint)"}
        if not body:
            return 400, {"error": "body: an upload needs a non-empty body"}
        digest = hashlib.sha256(body).hexdigest()
        key = f"uploads/{datetime.now(UTC):%Y/%m/%d}/{uuid.uuid4().hex}"
        try:
            attempts = self.store.put(key, body, digest)
        except S3Unavailable as exc:
            log.warning("Upload %s failed: %s", key, exc)
            return 503, {"status": "error", "error": "S3 unavailable", "attempts": exc.attempts}
        try:
            row = self.db.record_upload(key, len(body), digest)
        except psycopg.Error as exc:
            log.warning("Upload %s stored in S3 but not recorded: %s", key, type(exc).__name__)
            return db_error(exc)
        return 201, {**row, "attempts": attempts}

    def auth_check(self, query: Query, body: bytes) -> Response:
        """The runbook's ``POST /api/auth/health-check``: a session token issued and verified, and
        the account lookup a login does, answered by the database."""
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": "body: not valid JSON"}
        if not isinstance(data, dict) or data.get("test") is not True:
            return 400, {"error": 'body: must be {"test": true}'}
        token = session_token(DEMO_EMAIL)
        if not verify_token(token, DEMO_EMAIL):
            return 500, {"status": "error", "auth": "token did not verify"}
        try:
            account = self.db.find_account(DEMO_EMAIL)
        except psycopg.Error as exc:
            return db_error(exc)
        return 200, {"status": "ok", "auth": "ok", "account_lookup": "found" if account else "no such account"}

    def receive_webhook(self, query: Query, body: bytes) -> Response:
        """Accept a webhook (``{"id", "type", ...}``) and store it once; 202 as webhook senders expect."""
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": "body: not valid JSON"}
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("type"), str):
            return 400, {"error": "body: needs string fields id and type"}
        try:
            return 202, self.db.record_webhook(data["id"][:200], data["type"][:100], data)
        except psycopg.Error as exc:
            return db_error(exc)


SESSION_KEY = uuid.uuid4().bytes  # per process: tokens only need to verify where they were issued


def session_token(subject: str) -> str:
    return f"{subject}.{hmac.new(SESSION_KEY, subject.encode(), hashlib.sha256).hexdigest()}"


def verify_token(token: str, subject: str) -> bool:
    return hmac.compare_digest(token, session_token(subject))
