"""environments.yaml -> typed, validated Environment objects.

Every error names the field it is about (``environments.<name>.<field>``) and what is
allowed, and is raised before anything acts on an environment.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from resilience.platforms.kubernetes.target import KubernetesTarget, parse_target
from resilience.schedules import Schedule, parse_schedules
from resilience.slo import LOOSER_WHEN_LOWER, OVERRIDABLE_BOUNDS, SloPolicy, looser_than
from resilience.slo_verify.settings import SloVerifySettings, parse_slo_verify

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "include" / "config" / "environments.yaml"
CONFIG_ENV_VAR = "RESILIENCE_ENVIRONMENTS"
REPORT_DIR_ENV_VAR = "RESILIENCE_REPORT_DIR"

PLATFORMS = ("local", "kubernetes")
TIERS = ("test", "staging", "production", "dr")


@dataclass(frozen=True)
class SloLoosest:
    """The loosest SLO bounds a run may ask for (``environments.<name>.slo.loosest``): an override past
    one is refused before anything is touched, so a run cannot neuter its own guard. The defaults let
    the scenarios' own overrides through (postgres-failover: 95 %, +5 points) and no further, except a
    tolerated breach (``max_breach_s``): none unless the environment says so."""

    min_availability_pct: float = 95.0
    max_error_rate_increase_pct: float = 5.0
    max_p95_ratio: float = 10.0
    max_recovery_s: float = 600.0
    max_breach_s: float = 0.0  # none unless the environment allows it (the lab and staging: postgres-failover's 30 s)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class SloSource:
    """Where and how the chaos guard reads an environment's SLOs from Prometheus, and how far a run may
    loosen them."""

    prometheus_conn_id: str
    window: str
    poll_interval_s: float
    query_timeout_s: float
    queries: Mapping[str, str]
    loosest: SloLoosest = SloLoosest()
    # the scenarios' runbook checks measured over the fault window: measure -> PromQL with {range}
    window_queries: Mapping[str, str] = field(default_factory=dict)

    def window_query(self, measure: str, range_s: float) -> str:
        """``measure``'s query over the last ``range_s`` seconds (evaluated at the fault window's end)."""
        seconds = max(range_s, window_seconds(self.window))  # a fault shorter than the rate window: the window
        return self.window_queries[measure].replace("{range}", prom_duration(math.ceil(seconds))).replace(
            "{window}", self.window)


DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def prom_duration(seconds: float) -> str:
    """Seconds as a Prometheus duration in whole seconds: 86400 -> ``86400s``."""
    return f"{max(1, round(seconds))}s"


def window_seconds(window: str, where: str = "window") -> float:
    """A Prometheus duration (``5s``, ``1m``, ``1m30s``) in seconds; ``where`` names the field in the error."""
    parts = DURATION_PART.findall(window)
    if not parts or "".join(n + u for n, u in parts) != window:
        raise ValueError(f"{where}: {window!r} is not a Prometheus duration like 5s, 1m or 1m30s")
    return sum(float(n) * UNIT_S[u] for n, u in parts)


REGIONS = ("primary", "dr")
REGION_METRICS = ("up", "error_rate_pct", "p95_ms", "requests_per_s")


@dataclass(frozen=True)
class RegionMetrics:
    """Per-region health read from Prometheus: query templates with ``{job}`` and ``{window}``."""

    prometheus_conn_id: str
    window: str
    poll_interval_s: float
    query_timeout_s: float
    scrape_interval_s: float
    jobs: Mapping[str, str]  # region -> the scrape job of its entry point (load balancer)
    queries: Mapping[str, str]

    def query(self, metric: str, region: str, window: str | None = None) -> str:
        """The PromQL of ``metric`` for ``region`` (``window`` defaults to the rate window)."""
        return self.queries[metric].replace("{job}", self.jobs[region]).replace("{window}", window or self.window)

    def region_queries(self, region: str) -> dict[str, str]:
        return {metric: self.query(metric, region) for metric in self.queries}


@dataclass(frozen=True)
class DrSettings:
    """How an environment fails over to its DR region and comes back (``environments.<name>.dr``)."""

    dr_environment: str  # the environment whose platform hosts the DR region's database and app
    aws_conn_id: str
    zone: str  # Route53 hosted zone name, e.g. ``ofm.social.``
    record: str  # the API's weighted record, e.g. ``api.ofm.social.``
    metrics: RegionMetrics
    statuspage_conn_id: str | None = None
    statuspage_page_id: str | None = None
    sequence_gap: int = 1_000_000_000  # DR episode k: ids past max(backup + this, (2k-1) x this): no key clashes


@dataclass(frozen=True)
class WorkerSandboxSettings:
    """Where a non-lab environment's sandboxes live on the Airflow worker (``environments.<name>.sandbox``):
    one PostgreSQL data directory per sandbox under ``root``, served by ``pg_bindir``'s server as ``os_user``
    (None: the worker's own user; required when the worker runs as root, which PostgreSQL refuses) on the
    first free port from ``port_min``. The lab's sandboxes live where its lab.json says instead."""

    root: str
    pg_bindir: str
    os_user: str | None = None
    port_min: int = 25432  # below the kernel's ephemeral range (field-notes: ports)


@dataclass(frozen=True)
class UploadsSource:
    """``uploads``: the bucket the app stores its uploads in, read through an Amazon Connection (never through
    the fault); with the app database's ``uploads`` table it proves that no acknowledged upload was lost or
    corrupted (s3-5xx's runbook check)."""

    aws_conn_id: str
    bucket: str
    key_prefix: str = "uploads/"  # the app's object keys: rows under another prefix are not the app's uploads


def parse_uploads(raw: Mapping[str, Any], where: str) -> UploadsSource | None:
    if not raw:
        return None
    return UploadsSource(aws_conn_id=_require(raw, "aws_conn_id", where), bucket=_require(raw, "bucket", where),
                         key_prefix=str(raw.get("key_prefix", "uploads/")))


@dataclass(frozen=True)
class Service:
    """One of an environment's ``services``: a campaign across many services faults each on its own, at most
    ``chaos.blast_radius`` at once, never two that share a dependency (the ledger's admission enforces it).

    ``selector`` finds its pods the way the platform does (kubernetes: an equality-based label selector, as
    ``kubernetes.app.selector``); ``slo_queries`` are its own ``slo.queries`` or, when it gives none, the
    environment's; ``depends_on`` names the shared dependencies a fault on it may hit (``postgres``, ``redis``)."""

    name: str
    selector: str
    depends_on: tuple[str, ...] = ()
    slo_queries: Mapping[str, str] = field(default_factory=dict)


SERVICE_KEYS = ("name", "selector", "slo", "depends_on")
# a service's name becomes part of task ids, pool names and report anchors: an RFC 1123 label
SERVICE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DEPENDENCY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_services(raw: Any, platform: str, slo: SloSource | None, where: str) -> tuple[Service, ...]:
    """The ``services`` list: unique names, a selector the platform can use, SLO queries (their own, all of
    them, or the environment's) and the dependencies they share."""
    from resilience.platforms.kubernetes.target import _SELECTOR

    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError(f"{where} must be a list of services, got {type(raw).__name__}")
    if raw and platform != "kubernetes":
        raise ValueError(f"{where}: a {platform} environment runs one app (the lab's replicas behind its load "
                         "balancer), so it takes no services; services are listed for kubernetes environments")
    services: list[Service] = []
    for index, entry in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{at} must be a mapping with {list(SERVICE_KEYS)}, got {type(entry).__name__}")
        unknown = sorted(set(entry) - set(SERVICE_KEYS))
        if unknown:
            raise ValueError(f"{at}: unknown key(s) {unknown}; allowed: {list(SERVICE_KEYS)}")
        name = _require(entry, "name", at)
        if not SERVICE_NAME.match(name):
            raise ValueError(f"{at}.name: {name!r} must be lower-case letters, digits and '-' (at most 63, starting "
                             "and ending with a letter or digit)")
        at = f"{where}.{name}"
        if any(s.name == name for s in services):
            raise ValueError(f"{at}: the name {name!r} is listed twice; each service is listed once")
        selector = _require(entry, "selector", at)
        if not _SELECTOR.match(selector):
            raise ValueError(f"{at}.selector: {selector!r} must be an equality-based label selector like "
                             "'app=checkout' or 'app=checkout,tier=api'")
        depends_on = entry.get("depends_on", [])
        if not isinstance(depends_on, list) or any(not isinstance(d, str) or not DEPENDENCY_NAME.match(d)
                                                   for d in depends_on):
            raise ValueError(f"{at}.depends_on: {depends_on!r} must be a list of dependency names like "
                             "[postgres, redis]")
        if len(set(depends_on)) != len(depends_on):
            raise ValueError(f"{at}.depends_on: {depends_on!r} names a dependency twice")
        own = _section(entry, "slo", at)
        unknown = sorted(set(own) - {"queries"})
        if unknown:
            raise ValueError(f"{at}.slo: unknown key(s) {unknown}; allowed: ['queries'] (the rest is the "
                             "environment's slo)")
        queries = _section(own, "queries", f"{at}.slo")
        if queries:
            missing = [m for m in SLO_METRICS if m not in queries]
            extra = sorted(set(queries) - set(SLO_METRICS))
            if missing or extra:
                raise ValueError(f"{at}.slo.queries: must give a query for each of {list(SLO_METRICS)} (missing "
                                 f"{missing}, unknown {extra}), or none to use the environment's")
            resolved = {m: str(queries[m]) for m in SLO_METRICS}
        elif slo is not None:
            resolved = dict(slo.queries)
        else:
            raise ValueError(f"{at}.slo.queries is missing and the environment has no slo section: the guard "
                             "would have nothing to watch")
        services.append(Service(name=name, selector=selector, depends_on=tuple(depends_on), slo_queries=resolved))
    return tuple(services)


def parse_blast_radius(chaos: Mapping[str, Any], where: str) -> int:
    """``chaos.blast_radius``: at most this many faults active at once across all runs (default 1)."""
    from resilience.chaos.blast_radius import DEFAULT_BLAST_RADIUS

    value = chaos.get("blast_radius", DEFAULT_BLAST_RADIUS)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}.blast_radius: {value!r} must be an integer >= 1 (faults active at once)")
    return value


@dataclass(frozen=True)
class Environment:
    """One environment of environments.yaml, validated."""

    name: str
    description: str
    platform: str
    tier: str
    database_conn_id: str
    dbname: str
    pgbackrest_stanza: str
    chaos_enabled: bool
    sandbox_allowed: bool
    patroni_conn_id: str | None = None  # the database's Patroni REST API (HTTP Connection)
    orphan_grace_s: float = 120.0  # a fault open this long past its planned end is an orphan
    settings: Mapping[str, Any] = field(default_factory=dict)
    slo: SloSource | None = None
    dr: DrSettings | None = None
    kubernetes: KubernetesTarget | None = None  # platform kubernetes: the cluster, namespace and app
    worker_sandbox: WorkerSandboxSettings | None = None  # sandbox.root/pg_bindir: sandboxes on the worker
    slo_verify: SloVerifySettings | None = None  # verify-slo's Key Metrics and business metrics (slo_verify DAG)
    slack_conn_id: str | None = None  # its runs' alerts (Deadline Alerts); None: defaults.slack_conn_id
    uploads: UploadsSource | None = None  # the app's upload bucket: acknowledged uploads audited after s3-5xx
    services: tuple[Service, ...] = ()  # a campaign across many services (none: the environment's one app)
    blast_radius: int = 1  # chaos.blast_radius: at most this many faults active at once across all runs

    @property
    def is_production(self) -> bool:
        return self.tier == "production"

    def slo_source(self) -> SloSource:
        """``slo``, for chaos (whose Params refuse an environment without one): a clear error when absent."""
        if self.slo is None:
            raise ValueError(f"environments.{self.name} has no slo section in environments.yaml: "
                             "the guard would have nothing to watch")
        return self.slo

    def for_service(self, name: str) -> Environment:
        """This environment as one fault on service ``name`` sees it: the app's selector and SLO queries are the
        service's. The default service (a campaign that names none) is the environment itself."""
        from dataclasses import replace

        from resilience.chaos.blast_radius import DEFAULT_SERVICE

        if name == DEFAULT_SERVICE and all(s.name != name for s in self.services):
            return self
        service = self.service(name)
        kubernetes = replace(self.kubernetes, app_selector=service.selector) if self.kubernetes else None
        slo = replace(self.slo, queries=dict(service.slo_queries)) if self.slo else None
        return replace(self, kubernetes=kubernetes, slo=slo)

    def for_revert(self, name: str, recorded_selector: str | None) -> Environment:
        """What the revert of a fault on service ``name`` sees: :meth:`for_service`, or, when ``name`` has left
        ``services`` since the fault was admitted, the pod selector its ledger row recorded then. Undoing a
        fault needs only the selector, and must not depend on the config still listing the service."""
        from dataclasses import replace

        if recorded_selector is None or self.kubernetes is None or any(s.name == name for s in self.services):
            return self.for_service(name)
        return replace(self, kubernetes=replace(self.kubernetes, app_selector=recorded_selector))

    def service(self, name: str, field_name: str = "service") -> Service:
        """The service called ``name``; ``field_name`` names the input in the error."""
        for service in self.services:
            if service.name == name:
                return service
        raise ValueError(f"{field_name}: {name!r} is not one of environments.{self.name}.services "
                         f"{[s.name for s in self.services]}")


SEVERITIES = ("P0", "P1", "P2", "P3")  # the runbook's "Severity Levels"


@dataclass(frozen=True)
class SeverityRoute:
    """Who hears of an incident of one severity: Slack channels (the first is the incident's own channel,
    where its post-mortem reminders go) and, when ``pagerduty``, the on-call through PagerDuty."""

    channels: tuple[str, ...]
    pagerduty: bool = False

    @property
    def incident_channel(self) -> str:
        return self.channels[0]


@dataclass(frozen=True)
class Escalation:
    """``defaults.escalation``: the runbook's severity levels and escalation ladder (Level 2 the on-call SRE
    in #ops-alerts, Level 3 the engineering manager in #incident-response, P0 pages through PagerDuty).

    ``slack_conn_ids``: channel -> the Slack incoming-webhook Connection posting there (a webhook posts to
    the channel it was made for). An absent Connection is logged, never fatal."""

    severities: Mapping[str, SeverityRoute]
    slack_conn_ids: Mapping[str, str]
    pagerduty_conn_id: str | None = None

    def route(self, severity: str) -> SeverityRoute:
        if severity not in self.severities:
            raise ValueError(f"severity: {severity!r} is not one of {sorted(self.severities)}")
        return self.severities[severity]


DEFAULT_ESCALATION = Escalation(
    severities={"P0": SeverityRoute(("#incident-response", "#ops-alerts"), pagerduty=True),
                "P1": SeverityRoute(("#incident-response", "#ops-alerts")),
                "P2": SeverityRoute(("#ops-alerts",)), "P3": SeverityRoute(("#ops-alerts",))},
    slack_conn_ids={"#ops-alerts": "resilience_slack_ops_alerts",
                    "#incident-response": "resilience_slack_incident_response"},
    pagerduty_conn_id="resilience_pagerduty",
)


def parse_escalation(raw: Mapping[str, Any], where: str) -> Escalation:
    """The ``escalation`` section: a route for each of P0-P3, every channel named with its Connection."""
    if not raw:
        return DEFAULT_ESCALATION
    unknown = sorted(set(raw) - {"severities", "slack_channels", "pagerduty_conn_id"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: severities, slack_channels, pagerduty_conn_id")
    channels = _section(raw, "slack_channels", where)
    for channel, conn_id in channels.items():
        if not str(channel).startswith("#") or not isinstance(conn_id, str) or not conn_id:
            raise ValueError(f"{where}.slack_channels: {channel!r}: {conn_id!r} must map a '#channel' to a "
                             "Slack webhook Connection id")
    severities = _section(raw, "severities", where)
    if sorted(severities) != list(SEVERITIES):
        raise ValueError(f"{where}.severities: {sorted(severities)} must be exactly {list(SEVERITIES)}")
    routes = {}
    for level in SEVERITIES:
        entry = _section(severities, level, f"{where}.severities")
        named = entry.get("channels")
        if not isinstance(named, list) or not named or any(c not in channels for c in named):
            raise ValueError(f"{where}.severities.{level}.channels: {named!r} must be a non-empty list of channels "
                             f"named in {where}.slack_channels {sorted(channels)}")
        page = entry.get("pagerduty", False)
        if not isinstance(page, bool):
            raise ValueError(f"{where}.severities.{level}.pagerduty: {page!r} must be true or false")
        routes[level] = SeverityRoute(tuple(named), page)
    pagerduty = _optional_str(raw, "pagerduty_conn_id", where)
    if pagerduty is None and any(r.pagerduty for r in routes.values()):
        raise ValueError(f"{where}.pagerduty_conn_id is missing: a severity pages through PagerDuty")
    return Escalation(routes, {str(c): str(i) for c, i in channels.items()}, pagerduty)


@dataclass(frozen=True)
class Config:
    """The whole file: defaults plus environments by name."""

    control_db_conn_id: str
    slack_conn_id: str | None
    report_dir: Path
    environments: Mapping[str, Environment]
    escalation: Escalation = DEFAULT_ESCALATION
    schedules: Mapping[str, Schedule] = field(default_factory=dict)  # scheduled DAG -> environment(s) it acts on

    def slack_conn_id_for(self, environment: str) -> str | None:
        """The Slack Connection of ``environment``'s alerts: its own ``slack_conn_id``, else the default's
        (an environment not in the file: the default)."""
        env = self.environments.get(environment)
        return (env.slack_conn_id if env else None) or self.slack_conn_id

    def environment(self, name: str, field_name: str = "environment") -> Environment:
        """The environment called ``name``; ``field_name`` names the input in the error."""
        try:
            return self.environments[name]
        except KeyError:
            raise ValueError(
                f"{field_name}: {name!r} is not one of {sorted(self.environments)} (from environments.yaml)"
            ) from None


def _require(mapping: Mapping[str, Any], key: str, where: str, kind: type = str) -> Any:
    if key not in mapping:
        raise ValueError(f"{where}.{key} is missing")
    value = mapping[key]
    if not isinstance(value, kind):
        raise ValueError(f"{where}.{key}: {value!r} is not a {kind.__name__}")
    return value


def _optional_str(mapping: Mapping[str, Any], key: str, where: str) -> str | None:
    value = mapping.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{where}.{key}: {value!r} is not a non-empty string")
    return value


def _section(mapping: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = mapping.get(key, {})
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}.{key} must be a mapping, got {type(value).__name__}")
    return value


SANDBOX_KEYS = ("allowed", "root", "pg_bindir", "os_user", "port_min")


def parse_worker_sandbox(raw: Mapping[str, Any], platform: str, where: str) -> WorkerSandboxSettings | None:
    """The ``sandbox`` section's place on the Airflow worker (``root``, ``pg_bindir``, ``os_user``, ``port_min``).

    The lab's sandboxes live where its lab.json says: a ``local`` environment takes none of these. A
    ``kubernetes`` environment that allows sandboxes needs ``root`` and ``pg_bindir`` (absolute paths)."""
    unknown = sorted(set(raw) - set(SANDBOX_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {list(SANDBOX_KEYS)}")
    allowed = raw.get("allowed", False)
    if not isinstance(allowed, bool):
        raise ValueError(f"{where}.allowed: {allowed!r} must be true or false")
    placed = [k for k in SANDBOX_KEYS[1:] if k in raw]
    if platform == "local":
        if placed:
            raise ValueError(f"{where}: {placed} are not taken by a local environment (the lab's sandboxes live "
                             "under its lab.json sandbox_root, served by its pg_bindir)")
        return None
    if not placed and not allowed:
        return None
    paths = {}
    for key in ("root", "pg_bindir"):
        value = _optional_str(raw, key, where)
        if value is None:
            raise ValueError(f"{where}.{key} is missing: a {platform} environment's sandboxes are restored on the "
                             "Airflow worker, which needs root (their directory) and pg_bindir (the server's binaries)")
        if not value.startswith("/"):
            raise ValueError(f"{where}.{key}: {value!r} must be an absolute path on the Airflow worker")
        paths[key] = value.rstrip("/") or "/"
    if paths["root"] == "/":
        raise ValueError(f"{where}.root: '/' is not a sandbox root: give a directory of its own")
    port_min = raw.get("port_min", WorkerSandboxSettings.port_min)
    if isinstance(port_min, bool) or not isinstance(port_min, int) or not 1024 <= port_min <= 65335:
        raise ValueError(f"{where}.port_min: {port_min!r} must be an integer from 1024 to 65335 (200 ports are "
                         "tried from it)")
    return WorkerSandboxSettings(root=paths["root"], pg_bindir=paths["pg_bindir"],
                                 os_user=_optional_str(raw, "os_user", where), port_min=port_min)


SLO_METRICS = ("availability_pct", "error_rate_pct", "p95_ms")


def _seconds(mapping: Mapping[str, Any], key: str, where: str, default: float | None) -> float:
    """``mapping[key]`` as seconds > 0; ``default`` None: the key is required."""
    value = mapping.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{where}.{key}: {value!r} must be a number of seconds > 0")
    return float(value)


# What each overridable SLO bound may be at all (SloPolicy's ranges), as (check, words): for the loosest
# bounds here and for the run's overrides (chaos Params).
SLO_BOUND_RANGES = {
    "min_availability_pct": (lambda v: 0 <= v <= 100, "a percentage in 0..100"),
    "max_error_rate_increase_pct": (lambda v: 0 <= v <= 100, "percentage points in 0..100"),
    "max_p95_ratio": (lambda v: v >= 1, "a ratio >= 1"),
    "max_recovery_s": (lambda v: v > 0, "a number of seconds > 0"),
    "max_breach_s": (lambda v: v >= 0, "a number of seconds >= 0"),
}


def parse_loosest(raw: Mapping[str, Any], where: str) -> SloLoosest:
    """The ``slo.loosest`` section: each bound in its range and no stricter than the runbook's own SLO
    (else a run keeping the runbook's SLO would be refused); absent keys take the defaults."""
    unknown = sorted(set(raw) - set(OVERRIDABLE_BOUNDS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {list(OVERRIDABLE_BOUNDS)}")
    runbook, values = SloPolicy(), SloLoosest().as_dict()
    for bound in OVERRIDABLE_BOUNDS:
        value = raw.get(bound, values[bound])
        check, words = SLO_BOUND_RANGES[bound]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or not check(value):
            raise ValueError(f"{where}.{bound}: {value!r} must be {words}")
        own = getattr(runbook, bound)
        if looser_than(bound, own, value):
            side = "<=" if bound in LOOSER_WHEN_LOWER else ">="
            raise ValueError(f"{where}.{bound}: {value!r} is stricter than the runbook's own SLO ({own:g}), "
                             f"which every run must be allowed to keep: it must be {side} {own:g}")
        values[bound] = float(value)
    return SloLoosest(**values)


def parse_slo(raw: Mapping[str, Any], where: str) -> SloSource | None:
    """The ``slo`` section: every metric's query, a window, positive timings and the loosest bounds."""
    if not raw:
        return None
    queries = _section(raw, "queries", where)
    missing = [m for m in SLO_METRICS if m not in queries]
    if missing:
        raise ValueError(f"{where}.queries: missing {missing} (each of {list(SLO_METRICS)} needs a query)")
    timings = {key: _seconds(raw, key, where, None) for key in ("poll_interval_s", "query_timeout_s")}
    window = _require(raw, "window", where)
    window_seconds(window, f"{where}.window")
    return SloSource(
        prometheus_conn_id=_require(raw, "prometheus_conn_id", where),
        window=window,
        queries={m: str(queries[m]) for m in SLO_METRICS},
        loosest=parse_loosest(_section(raw, "loosest", where), f"{where}.loosest"),
        window_queries=parse_window_queries(_section(raw, "window_queries", where), f"{where}.window_queries"),
        **timings,
    )


def parse_window_queries(raw: Mapping[str, Any], where: str) -> dict[str, str]:
    """``slo.window_queries``: a query per window measure of the scenarios' checks, each over ``{range}``."""
    from resilience.chaos.expectations import MEASURES

    allowed = sorted(m for m, spec in MEASURES.items() if spec.source == "window")
    queries = {}
    for measure, query in raw.items():
        if measure not in allowed:
            raise ValueError(f"{where}.{measure}: not a window measure (allowed: {allowed})")
        if not isinstance(query, str) or "{range}" not in query:
            raise ValueError(f"{where}.{measure}: must be a PromQL string over {{range}} (the fault window)")
        queries[measure] = query
    return queries


def _fqdn(mapping: Mapping[str, Any], key: str, where: str) -> str:
    value = _require(mapping, key, where)
    if not value.endswith(".") or " " in value:
        raise ValueError(f"{where}.{key}: {value!r} must be a fully qualified DNS name ending with a dot")
    return value


def parse_dr(raw: Mapping[str, Any], where: str) -> DrSettings | None:
    """The ``dr`` section: DNS, Statuspage, and the per-region metrics of failover and failback."""
    if not raw:
        return None
    dns = _section(raw, "dns", where)
    metrics = _section(raw, "metrics", where)
    queries = _section(metrics, "queries", f"{where}.metrics")
    missing = [m for m in REGION_METRICS if m not in queries]
    if missing:
        raise ValueError(f"{where}.metrics.queries: missing {missing} (each of {list(REGION_METRICS)} needs a query)")
    jobs = _section(metrics, "jobs", f"{where}.metrics")
    if set(jobs) != set(REGIONS):
        raise ValueError(f"{where}.metrics.jobs: {sorted(jobs)!r} must name the scrape job of {list(REGIONS)}")
    statuspage = _section(raw, "statuspage", where)
    gap = raw.get("sequence_gap", 1_000_000_000)
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 1:
        raise ValueError(f"{where}.sequence_gap: {gap!r} must be a positive integer")
    return DrSettings(
        dr_environment=_require(raw, "dr_environment", where),
        aws_conn_id=_require(dns, "aws_conn_id", f"{where}.dns"),
        zone=_fqdn(dns, "zone", f"{where}.dns"),
        record=_fqdn(dns, "record", f"{where}.dns"),
        metrics=RegionMetrics(
            prometheus_conn_id=_require(metrics, "prometheus_conn_id", f"{where}.metrics"),
            window=_require(metrics, "window", f"{where}.metrics"),
            poll_interval_s=_seconds(metrics, "poll_interval_s", f"{where}.metrics", 5.0),
            query_timeout_s=_seconds(metrics, "query_timeout_s", f"{where}.metrics", 4.0),
            scrape_interval_s=_seconds(metrics, "scrape_interval_s", f"{where}.metrics", 15.0),
            jobs={r: str(jobs[r]) for r in REGIONS},
            queries={m: str(queries[m]) for m in REGION_METRICS},
        ),
        statuspage_conn_id=statuspage.get("conn_id") or None,
        statuspage_page_id=statuspage.get("page_id") or None,
        sequence_gap=gap,
    )


def parse_environment(name: str, raw: Mapping[str, Any]) -> Environment:
    """Validate one ``environments.<name>`` entry."""
    where = f"environments.{name}"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be a mapping, got {type(raw).__name__}")
    platform = _require(raw, "platform", where)
    if platform not in PLATFORMS:
        raise ValueError(f"{where}.platform: {platform!r} is not one of {list(PLATFORMS)}")
    tier = _require(raw, "tier", where)
    if tier not in TIERS:
        raise ValueError(f"{where}.tier: {tier!r} is not one of {list(TIERS)}")
    database = _section(raw, "database", where)
    pgbackrest = _section(raw, "pgbackrest", where)
    from resilience.dr.backup_repos import parse_repos

    parse_repos(pgbackrest, f"{where}.pgbackrest")  # validated here: a bad repos list fails at load
    chaos = _section(raw, "chaos", where)
    sandbox = _section(raw, "sandbox", where)
    known = {"description", "platform", "tier", "database", "pgbackrest", "chaos", "sandbox", "slo", "dr", "kubernetes",
             "slack_conn_id", "slo_verify", "uploads", "services"}
    kubernetes = parse_target(raw.get("kubernetes"), f"{where}.kubernetes") if platform == "kubernetes" else None
    slo = parse_slo(_section(raw, "slo", where), f"{where}.slo")
    return Environment(
        name=name,
        description=str(raw.get("description", "")),
        platform=platform,
        tier=tier,
        database_conn_id=_require(database, "conn_id", f"{where}.database"),
        dbname=_require(database, "dbname", f"{where}.database"),
        pgbackrest_stanza=_require(pgbackrest, "stanza", f"{where}.pgbackrest"),
        patroni_conn_id=_optional_str(database, "patroni_conn_id", f"{where}.database"),
        chaos_enabled=bool(chaos.get("enabled", False)),
        orphan_grace_s=_seconds(chaos, "orphan_grace_s", f"{where}.chaos", 120.0),
        sandbox_allowed=bool(sandbox.get("allowed", False)),
        settings={k: v for k, v in raw.items() if k not in known} | {"pgbackrest": dict(pgbackrest)},
        slo=slo,
        dr=parse_dr(_section(raw, "dr", where), f"{where}.dr"),
        kubernetes=kubernetes,
        worker_sandbox=parse_worker_sandbox(sandbox, platform, f"{where}.sandbox"),
        slo_verify=parse_slo_verify(raw.get("slo_verify"), f"{where}.slo_verify"),
        slack_conn_id=_optional_str(raw, "slack_conn_id", where),
        uploads=parse_uploads(_section(raw, "uploads", where), f"{where}.uploads"),
        services=parse_services(raw.get("services"), platform, slo, f"{where}.services"),
        blast_radius=parse_blast_radius(chaos, f"{where}.chaos"),
    )


def parse_config(raw: Mapping[str, Any]) -> Config:
    """Validate the whole environments.yaml document."""
    if not isinstance(raw, Mapping):
        raise ValueError("environments.yaml must hold a mapping at the top level")
    defaults = _section(raw, "defaults", "")
    environments = _section(raw, "environments", "")
    if not environments:
        raise ValueError("environments is empty: at least one environment is required")
    report_dir = Path(os.environ.get(REPORT_DIR_ENV_VAR) or str(defaults.get("report_dir", "reports")))
    parsed = _check_dr_targets({name: parse_environment(name, env) for name, env in environments.items()})
    return Config(
        control_db_conn_id=_require(defaults, "control_db_conn_id", "defaults"),
        slack_conn_id=defaults.get("slack_conn_id") or None,
        report_dir=report_dir if report_dir.is_absolute() else PROJECT_ROOT / report_dir,
        environments=parsed,
        escalation=parse_escalation(_section(defaults, "escalation", "defaults"), "defaults.escalation"),
        schedules=parse_schedules(raw.get("schedules") or {}, parsed),
    )


def _check_dr_targets(environments: dict[str, Environment]) -> dict[str, Environment]:
    for env in environments.values():
        if env.dr and env.dr.dr_environment not in environments:
            raise ValueError(f"environments.{env.name}.dr.dr_environment: {env.dr.dr_environment!r} is not one of "
                             f"{sorted(environments)}")
    return environments


@cache
def _load_cached(path: Path, mtime_ns: int) -> Config:
    import yaml

    with path.open() as fh:
        return parse_config(yaml.safe_load(fh) or {})


def load_config(path: Path | None = None) -> Config:
    """Read environments.yaml (``$RESILIENCE_ENVIRONMENTS`` or the packaged one)."""
    path = Path(path or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)
    if not path.is_file():
        raise FileNotFoundError(f"environments file {path} does not exist (set {CONFIG_ENV_VAR})")
    return _load_cached(path.resolve(), path.stat().st_mtime_ns)


# The environments of the packaged environments.yaml, for the Params' drop-downs (DAG files
# must not read files at parse time); a test keeps this in step with the file.
ENVIRONMENT_NAMES = ("lab", "staging", "production", "dr-sandbox", "production-dr")
SANDBOX_ENVIRONMENT_NAMES = ("lab", "dr-sandbox")
DR_ENVIRONMENT_NAMES = ("lab", "production")  # those with a ``dr`` section: DR activation, failback, rollback
SLO_VERIFY_ENVIRONMENT_NAMES = ("lab", "production")  # those with a ``slo_verify`` section (slo_verify DAG)
