"""Patroni's REST API: the one way the product reads and changes a PostgreSQL cluster's topology.

The lab and production differ only in the endpoints (an Airflow HTTP Connection per environment,
or the lab's node list). Any member answers ``/cluster`` for the whole cluster, so the client
tries each endpoint in turn: a crashed leader's API is down, the others still answer.

Endpoints used (Patroni 3): ``GET /cluster`` (members, roles, lag, timeline), ``GET /config``
(``synchronous_mode``), ``GET /history`` (timeline switches, with their time), ``POST /switchover``
(planned, leader named), ``POST /failover`` (unplanned, candidate named), ``POST /reinitialize``
(a member that cannot rejoin), ``PATCH /config``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

LEADER_ROLES = ("leader", "master", "primary", "standby_leader")
PRIMARY_ROLES = ("master", "primary")  # a member's own /patroni (or /primary) body: out of recovery
STREAMING_STATES = ("running", "streaming")  # Patroni 3.0 says "running" for a replica that streams
STREAMING_LAG_BYTES = 16 * 1024 * 1024  # a replica within one WAL segment of the leader counts as streaming


class PatroniError(RuntimeError):
    """No endpoint answered, or Patroni refused a request (the message says which and why)."""


@dataclass(frozen=True)
class Member:
    """One member of ``GET /cluster``."""

    name: str
    role: str
    state: str
    host: str
    port: int
    api_url: str
    timeline: int | None = None
    lag_bytes: int | None = None  # None on the leader, or when Patroni does not know it

    @property
    def is_leader(self) -> bool:
        return self.role in LEADER_ROLES

    @property
    def is_sync_standby(self) -> bool:
        return self.role == "sync_standby"


@dataclass(frozen=True)
class Topology:
    """The cluster as one member saw it, and when."""

    members: tuple[Member, ...]
    read_at: float = field(default_factory=time.time)

    @property
    def leader(self) -> Member | None:
        return next((m for m in self.members if m.is_leader and m.state == "running"), None)

    @property
    def replicas(self) -> list[Member]:
        return [m for m in self.members if not m.is_leader]

    def streaming_replicas(self, max_lag_bytes: int = STREAMING_LAG_BYTES) -> list[Member]:
        """Replicas running on the leader's timeline within ``max_lag_bytes`` of it."""
        leader = self.leader
        return [m for m in self.replicas if leader is not None and m.state in STREAMING_STATES
                and m.timeline == leader.timeline and m.lag_bytes is not None and m.lag_bytes <= max_lag_bytes]

    def whole(self, replicas: int, sync_standby: bool, max_lag_bytes: int = STREAMING_LAG_BYTES) -> bool:
        """A running leader with ``replicas`` replicas streaming from it, one of them its synchronous
        standby when ``sync_standby`` (in synchronous mode Patroni promotes, or switches over to, no other)."""
        streaming = self.streaming_replicas(max_lag_bytes)
        return (self.leader is not None and len(streaming) >= replicas
                and (not sync_standby or any(m.is_sync_standby for m in streaming)))

    def describe(self) -> str:
        """``node-a leader tl 3; node-b sync_standby running tl 3 lag 0``: for logs and reports."""
        parts = []
        for m in self.members:
            lag = "" if m.lag_bytes is None else f" lag {m.lag_bytes}"
            parts.append(f"{m.name} {m.role} {m.state} tl {m.timeline}{lag}")
        return "; ".join(parts) or "no members"

    def to_dict(self) -> dict[str, object]:
        return {"leader": self.leader.name if self.leader else None,
                "members": [{"name": m.name, "role": m.role, "state": m.state, "timeline": m.timeline,
                             "lag_bytes": m.lag_bytes} for m in self.members]}


@dataclass(frozen=True)
class TimelineSwitch:
    """One row of ``GET /history``: the timeline that ended, and when the next one began."""

    timeline: int
    at_epoch_s: float
    reason: str
    new_leader: str | None


def _api_base(member: Member) -> str:
    """``http://host:port`` of a member's REST API (``api_url`` ends in ``/patroni``)."""
    return member.api_url.rsplit("/patroni", 1)[0]


def parse_cluster(doc: dict[str, object]) -> Topology:
    """``GET /cluster`` JSON -> Topology (``lag`` may be ``"unknown"``: kept as None)."""
    members = []
    raw_members = doc.get("members")
    for raw in raw_members if isinstance(raw_members, list) else []:
        item = dict(raw)
        lag = item.get("lag")
        members.append(Member(str(item["name"]), str(item.get("role", "")), str(item.get("state", "")),
                              str(item.get("host", "")), int(item.get("port") or 0), str(item.get("api_url", "")),
                              int(item["timeline"]) if item.get("timeline") is not None else None,
                              int(lag) if isinstance(lag, int) else None))
    return Topology(tuple(members))


def parse_history(rows: list[list[object]]) -> list[TimelineSwitch]:
    """``GET /history``: ``[timeline, lsn, reason, timestamp, new_leader]`` rows (the last two since 2.1)."""
    switches = []
    for row in rows:
        stamp = row[3] if len(row) > 3 else None
        if not isinstance(stamp, str):
            continue
        switches.append(TimelineSwitch(int(str(row[0])), datetime.fromisoformat(stamp).timestamp(), str(row[2]),
                                       str(row[4]) if len(row) > 4 and row[4] else None))
    return switches


class PatroniClient:
    """Synchronous client over ``endpoints`` (``http://host:port`` of each member's REST API)."""

    def __init__(self, endpoints: Sequence[str], timeout_s: float = 5.0, auth_header: str | None = None) -> None:
        if not endpoints:
            raise ValueError("endpoints: at least one Patroni REST API URL is needed")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout_s = timeout_s
        self.auth_header = auth_header

    def _request(self, method: str, path: str, body: dict[str, object] | None = None,
                 endpoints: Sequence[str] | None = None) -> tuple[int, str]:
        errors = []
        for endpoint in endpoints or self.endpoints:
            request = urllib.request.Request(f"{endpoint}{path}", method=method,
                                             data=None if body is None else json.dumps(body).encode())
            request.add_header("Content-Type", "application/json")
            if self.auth_header:
                request.add_header("Authorization", self.auth_header)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as exc:  # Patroni answered: its refusal is the answer
                return exc.code, exc.read().decode(errors="replace")
            except (OSError, ValueError) as exc:
                errors.append(f"{endpoint}: {exc}")
        raise PatroniError(f"no Patroni REST API answered {method} {path}: {'; '.join(errors)}")

    def _json(self, path: str) -> object:
        status, text = self._request("GET", path)
        if status != 200:
            raise PatroniError(f"GET {path}: HTTP {status}: {text[:200]}")
        return json.loads(text)

    def topology(self) -> Topology:
        doc = self._json("/cluster")
        if not isinstance(doc, dict):
            raise PatroniError(f"GET /cluster: not a JSON object: {doc!r:.200}")
        return parse_cluster(doc)

    def synchronous_mode(self) -> bool:
        doc = self._json("/config")
        return bool(doc.get("synchronous_mode")) if isinstance(doc, dict) else False

    def set_synchronous_mode(self, enabled: bool) -> None:
        self._checked("PATCH", "/config", {"synchronous_mode": enabled})

    def history(self) -> list[TimelineSwitch]:
        rows = self._json("/history")
        return parse_history(rows if isinstance(rows, list) else [])

    def _checked(self, method: str, path: str, body: dict[str, object],
                 endpoints: Sequence[str] | None = None) -> str:
        status, text = self._request(method, path, body, endpoints)
        if status not in (200, 202):
            raise PatroniError(f"{method} {path} {json.dumps(body)}: HTTP {status}: {text.strip()[:300]}")
        return text.strip()

    def switchover(self, leader: str, candidate: str | None = None) -> str:
        """Planned: the leader hands over (to ``candidate``, else Patroni's pick); returns Patroni's answer."""
        body: dict[str, object] = {"leader": leader}
        if candidate:
            body["candidate"] = candidate
        return self._checked("POST", "/switchover", body)

    def failover(self, candidate: str) -> str:
        """Unplanned: make ``candidate`` the leader even when the leader is gone."""
        return self._checked("POST", "/failover", {"candidate": candidate})

    def reinitialize(self, member: Member) -> str:
        """Rebuild ``member`` from the leader (asked of that member's own API)."""
        return self._checked("POST", "/reinitialize", {"force": True}, endpoints=[_api_base(member)])

    def writable(self, member: Member) -> bool:
        """The member holds the leader lock and its PostgreSQL is out of recovery: ``GET /primary`` on its
        own API answers 200 for the lock holder, and its body's ``role`` comes from ``pg_is_in_recovery()``
        (``/cluster``, and ``/primary``'s status alone, call a member the leader while its promotion is
        still under way: writes are refused for up to a second more)."""
        try:
            status, text = self._request("GET", "/primary", endpoints=[_api_base(member)])
            role = json.loads(text).get("role") if status == 200 else None
        except (PatroniError, ValueError, AttributeError):
            return False
        return role in PRIMARY_ROLES

    def wait_for(self, predicate: Callable[[Topology], bool], timeout_s: float,
                 interval_s: float = 0.2) -> Topology | None:
        """Poll ``/cluster`` until ``predicate`` holds; the last topology, or None on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                topology = self.topology()
                if predicate(topology):
                    return topology
            except PatroniError:
                pass  # every API down for a moment (a crashed leader, a restarting member)
            if time.monotonic() >= deadline:
                return None
            time.sleep(interval_s)

    def wait_writable_leader(self, timeout_s: float, not_named: str | None = None) -> Topology | None:
        """Wait for a writable leader (other than ``not_named``)."""
        return self.wait_for(lambda t: t.leader is not None and t.leader.name != not_named
                             and self.writable(t.leader), timeout_s)

    def wait_whole(self, replicas: int, sync_standby: bool, timeout_s: float) -> Topology | None:
        return self.wait_for(lambda t: t.whole(replicas, sync_standby), timeout_s)


def client_from_connection(conn_id: str, timeout_s: float = 5.0) -> PatroniClient:
    """The Patroni client of an Airflow HTTP Connection: ``host`` is one URL or several comma-separated
    (every member's API, so a dead leader's does not blind us), ``extra.endpoints`` may list them too;
    login/password become basic auth (Patroni's ``restapi.authentication``)."""
    import base64

    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson
    endpoints = [str(e) for e in extra.get("endpoints") or []]
    if conn.host:
        scheme = conn.schema or "http"
        for host in conn.host.split(","):
            host = host.strip()
            url = host if "://" in host else f"{scheme}://{host}"
            endpoints.append(f"{url}:{conn.port}" if conn.port and url.count(":") < 2 else url)
    if not endpoints:
        raise ValueError(f"connection {conn_id}: no Patroni endpoint (set host, or extra.endpoints)")
    auth = None
    if conn.login:
        token = base64.b64encode(f"{conn.login}:{conn.password or ''}".encode()).decode()
        auth = f"Basic {token}"
    return PatroniClient(endpoints, timeout_s, auth)
