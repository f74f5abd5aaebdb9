"""The runbook's "Recovery Validation Checklist", one check each, and the DNS safety net.

The checklist runs against the region that serves traffic after the operation: the DR
region after a full activation, the primary after a regional failover or a failback.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import TYPE_CHECKING, Any

from resilience.checks import Check
from resilience.dr.regions import Regions
from resilience.http_probe import http_probe

if TYPE_CHECKING:
    from resilience.platforms.base import Platform

log = logging.getLogger(__name__)

API_LATENCY_LIMIT_S = 2.0  # runbook: API endpoints responding (< 2s response time)


def checklist(regions: Regions, region: str, database: dict[str, Any] | None, expected_replicas: int | None,
              recovery_point: str | None) -> list[Check]:
    """All pods healthy, database with the expected data, API < 2 s, auth, uploads, webhooks, monitoring."""
    platform = regions.platform(region)
    url = platform.regions.region_url(region)
    checks = [_replicas(platform, region, expected_replicas), _database(regions, database, recovery_point),
              _dns_serves(regions, region)]
    status, seconds, _ = http_probe(f"{url}/api/posts?limit=20")
    checks.append(Check("API responds < 2 s", status == 200 and seconds < API_LATENCY_LIMIT_S,
                        f"GET /api/posts: HTTP {status} in {seconds * 1000:.0f} ms"))
    status, seconds, body = http_probe(f"{url}/api/auth/health-check", "POST", b'{"test": true}',
                                       headers={"Content-Type": "application/json"})
    checks.append(Check("authentication functional", status == 200,
                        f"POST /api/auth/health-check: HTTP {status} {body[:80].decode(errors='replace')}"))
    checks.append(_upload(url))
    checks.append(_webhook(regions, url, region, database))
    checks.append(_monitoring(regions, region))
    for check in checks:
        log.info("%s", check)
    return checks


def _replicas(platform: Platform, region: str, expected: int | None) -> Check:
    health = platform.regions.region_health(region)
    wanted = expected or health.replicas
    return Check("all app replicas healthy", health.healthy_replicas >= wanted > 0,
                 f"{health.healthy_replicas}/{wanted} replicas healthy, entry point "
                 f"{'up' if health.entry_point_up else 'DOWN'}")


def _serving_conn(regions: Regions, database: dict[str, Any] | None) -> Any:
    if database:
        return regions.connect(database["host"], database["port"], database["dbname"])
    return regions.primary_conn()


def _database(regions: Regions, database: dict[str, Any] | None, recovery_point: str | None) -> Check:
    from resilience.dr import integrity

    try:
        with _serving_conn(regions, database) as conn:
            tables = integrity.timestamped_tables(conn)
            counts = integrity.count_rows(conn, tables, None, None)
            newest = integrity.latest_write(conn, tables)
    except Exception as exc:
        return Check("database accessible with expected data", False, f"{type(exc).__name__}: {exc}")
    empty = [t for t, n in counts.items() if n == 0]
    behind = recovery_point is not None and (newest is None or newest.isoformat() < recovery_point)
    return Check("database accessible with expected data", sum(counts.values()) > 0 and not behind,
                 f"{sum(counts.values())} rows in {len(counts)} tables"
                 + (f" (empty: {', '.join(empty)})" if empty else "")
                 + f", newest write {newest.isoformat() if newest else None}"
                 + (f" (restored up to {recovery_point})" if recovery_point else ""))


def _dns_serves(regions: Regions, region: str) -> Check:
    weights = regions.dns.weights()
    return Check("DNS sends traffic to the serving region", weights[region] == max(weights.values()) > 0,
                 f"{regions.dr.record} weights {weights}")


def _upload(url: str) -> Check:
    payload = os.urandom(1024)
    status, seconds, body = http_probe(f"{url}/api/uploads", "POST", payload,
                                       headers={"Content-Type": "application/octet-stream"})
    try:
        stored = json.loads(body).get("sha256")
    except ValueError:
        stored = None
    ok = status in (200, 201) and stored == hashlib.sha256(payload).hexdigest()
    return Check("file uploads working", ok, f"POST /api/uploads: HTTP {status} in {seconds * 1000:.0f} ms, "
                                             f"checksum {'matches' if stored else 'missing'}")


def _webhook(regions: Regions, url: str, region: str, database: dict[str, Any] | None) -> Check:
    event_id = os.urandom(8).hex()
    status, _, _ = http_probe(f"{url}/api/webhooks", "POST", json.dumps({"id": event_id, "type": "dr.check"}).encode(),
                              headers={"Content-Type": "application/json"})
    try:
        with _serving_conn(regions, database) as conn:
            stored = conn.execute("SELECT count(*) FROM webhook_events WHERE event_id = %s", (event_id,)).fetchone()[0]
    except Exception as exc:
        return Check("webhook processing active", False, f"HTTP {status}; event not readable: {exc}")
    return Check("webhook processing active", status in (200, 202) and stored == 1,
                 f"POST /api/webhooks: HTTP {status}; event {event_id} stored in the {region} database: {bool(stored)}")


def _monitoring(regions: Regions, region: str) -> Check:
    from resilience.prometheus import PrometheusHook, single_value

    metrics = regions.dr.metrics
    try:
        up = single_value(PrometheusHook(metrics.prometheus_conn_id).query(metrics.query("up", region)))
    except Exception as exc:
        return Check("monitoring operational", False, f"Prometheus: {type(exc).__name__}: {exc}")
    return Check("monitoring operational", up == 1, f"Prometheus scrapes the {region} region: up = {up}")


def ensure_healthy_traffic(regions: Regions) -> dict[str, Any]:
    """Safety net after any failure: DNS must send traffic to a healthy region.

    If the region DNS favours is unhealthy and the other one is healthy, all traffic moves there.
    """
    serving = regions.serving_region()
    ok, health = regions.healthy(serving)
    if ok:
        log.info("DNS sends traffic to %s, which is healthy (%s): nothing to do", serving, health)
        return {"serving": serving, "moved": False, "health": health}
    other = "dr" if serving == "primary" else "primary"
    other_ok, other_health = regions.healthy(other)
    if not other_ok:
        log.error("DNS sends traffic to %s, which is unhealthy (%s), and %s is unhealthy too (%s): traffic left "
                  "where it is", serving, health, other, other_health)
        return {"serving": serving, "moved": False, "health": health, "other": other_health}
    change = regions.set_traffic(100 if other == "primary" else 0,
                                 f"safety: {serving} unhealthy, {other} healthy")
    return {"serving": other, "moved": True, "change": change, "health": other_health}


def return_home(regions: Regions, home: str) -> dict[str, Any]:
    """All traffic back to ``home`` if it is healthy and does not have it all already."""
    weights = regions.dns.weights()
    if weights[home] == 100 and sum(weights.values()) == 100:
        return {"serving": home, "moved": False}
    ok, health = regions.healthy(home)
    if not ok:
        log.error("Cannot return traffic to %s: it is unhealthy (%s)", home, health)
        return {"serving": regions.serving_region(), "moved": False, "health": health}
    change = regions.set_traffic(100 if home == "primary" else 0, f"unfinished operation: all traffic back to {home}")
    return {"serving": home, "moved": True, "change": change, "health": health}
