"""A region on Kubernetes: the app's Deployment in one environment's namespace, and the region's entry point.

A Kubernetes environment is one region: ``primary`` (an environment with a ``dr`` section) or ``dr`` (an
environment named by another's ``dr.dr_environment``, tier ``dr``). Its health is the Deployment's ready
replicas against its wanted ones, and whether its entry point (``kubernetes.app.url``, e.g. the region's load
balancer) answers ``/health``.

The DR app is the app's Deployment in the DR cluster, kept at 0 replicas: activation scales it to the replicas
asked and waits until every one is ready (``kubectl scale`` + ``kubectl rollout status``); decommission scales
it back to 0.

The DSN. On a cluster the DR app takes its database settings from its own Secret/ConfigMap (the DR region's
database endpoint, e.g. a stable Service name the restore points at); the platform does not rewrite them:
a password must not travel into a Deployment's spec, and a changed pod template would be a rollout of its own.
What ``start_dr_app`` was asked for is recorded, password removed, on the Deployment as the annotation
``resilience/dr-database`` (``postgresql://user@host:port/dbname``), so an operator can see it next to the
app's own configuration; verify_dr's ``/api/health/database`` through the entry point checks that the app
does reach a database.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from resilience.errors import RefusedError
from resilience.platforms.types import DrApp, RegionHealth

if TYPE_CHECKING:
    from resilience.platforms.kubernetes.target import KubernetesTarget

log = logging.getLogger(__name__)

POLL_S = 0.5
PROGRESS_LOG_S = 10.0
SCALE_TIMEOUT_S = 600.0  # new nodes from the autoscaler, image pulls: minutes
ENTRY_POINT_TIMEOUT_S = 2.0
DR_DATABASE = "resilience/dr-database"


def dsn_without_password(dsn: str) -> str:
    """``postgresql://user:secret@host:5432/db?x=y`` -> ``postgresql://user@host:5432/db`` (no password, no
    options); a key=value DSN keeps only host, port, dbname and user."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        host = parts.hostname or ""
        netloc = (f"{parts.username}@" if parts.username else "") + (f"[{host}]" if ":" in host else host) + (
            f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    kept = [word for word in dsn.split() if word.split("=", 1)[0] in ("host", "port", "dbname", "user")]
    return " ".join(kept)


def entry_point_up(url: str, timeout_s: float = ENTRY_POINT_TIMEOUT_S) -> bool:
    """The entry point's ``/health`` answers 200 (a load balancer with no healthy target answers 502/503)."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError):
        return False


class KubernetesRegions:
    """Region ``region`` of the environment: its app's Deployment and its entry point."""

    def __init__(self, target: KubernetesTarget, region: str) -> None:
        from resilience.platforms.kubernetes.api import kubernetes_hook

        if not target.app_url:
            raise ValueError(f"namespace {target.namespace}: no entry point configured (kubernetes.app.url)")
        self.target, self.region, self.url = target, region, target.app_url
        hook = kubernetes_hook(target)
        self.apps, self.core = hook.apps_v1_client, hook.core_v1_client

    def _check_region(self, region: str) -> None:
        if region != self.region:
            raise ValueError(f"region: {region!r} is not this environment's region ({self.region!r}, namespace "
                             f"{self.target.namespace}): ask the other region's environment")

    def _deployment(self) -> Any:
        return self.apps.read_namespaced_deployment(self.target.app_deployment, self.target.namespace)

    def _counts(self) -> tuple[int, int]:
        """(replicas wanted, replicas ready) of the app's Deployment."""
        deployment = self._deployment()
        wanted = deployment.spec.replicas if deployment.spec.replicas is not None else 1
        return int(wanted), int((deployment.status.ready_replicas if deployment.status else 0) or 0)

    def requests_for(self, intent: str, arguments: Mapping[str, object]) -> list[str]:
        """Plan mode: the API requests ``intent`` would send (reads that only wait are listed once)."""
        path = f"/apis/apps/v1/namespaces/{self.target.namespace}/deployments/{self.target.app_deployment}"
        if intent == "start_dr_app":
            replicas = arguments.get("replicas")
            return [f"PATCH {path} metadata.annotations.{DR_DATABASE}={arguments.get('dsn')} (no password)",
                    f"PATCH {path}/scale spec.replicas={replicas}",
                    f"GET {path} until {replicas} replica(s) are ready and the rollout is complete (at most "
                    f"{SCALE_TIMEOUT_S:g} s)",
                    f"GET /api/v1/namespaces/{self.target.namespace}/pods?labelSelector={self.target.app_selector}"]
        if intent == "stop_dr_app":
            return [f"GET {path} (already at 0 replicas: nothing is sent)", f"PATCH {path}/scale spec.replicas=0",
                    f"GET {path} until status.replicas=0 (at most {SCALE_TIMEOUT_S:g} s)"]
        return [f"{intent}: reads only"]

    def region_url(self, region: str) -> str:
        self._check_region(region)
        return self.url

    def region_health(self, region: str) -> RegionHealth:
        self._check_region(region)
        wanted, ready = self._counts()
        health = RegionHealth(region, entry_point_up(self.url), ready, wanted)
        log.info("Region %s: entry point %s, %d/%d replica(s) of %s/%s ready", region,
                 "up" if health.entry_point_up else "DOWN", ready, wanted, self.target.namespace,
                 self.target.app_deployment)
        return health

    def start_dr_app(self, dsn: str, replicas: int) -> DrApp:
        """Scale the DR app's Deployment to ``replicas`` (from 0) and wait until every replica is ready and its
        rollout complete; idempotent (a running app at that count is only waited for)."""
        from resilience.platforms.kubernetes.workloads import rollout_state

        if self.region != "dr":
            raise RefusedError(f"start_dr_app: namespace {self.target.namespace} is region {self.region!r}, not the "
                               f"DR region: its app is never scaled by a DR activation")
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"replicas: {replicas!r} is not an integer >= 1")
        if not isinstance(dsn, str) or not dsn.strip():
            raise ValueError("dsn: the DR app needs the DR database's DSN (got an empty one)")
        ns, name = self.target.namespace, self.target.app_deployment
        recorded = dsn_without_password(dsn)
        log.info("Starting the DR app: scaling deployment %s/%s to %d replica(s); it takes its database settings "
                 "from its own Secret/ConfigMap (asked for %s, recorded as annotation %s)", ns, name, replicas,
                 recorded, DR_DATABASE)
        self.apps.patch_namespaced_deployment(name, ns, {"metadata": {"annotations": {DR_DATABASE: recorded}}})
        self.apps.patch_namespaced_deployment_scale(name, ns, {"spec": {"replicas": replicas}})
        started = last_log = time.monotonic()
        while True:
            deployment = self._deployment()
            state = rollout_state(deployment)
            ready = int((deployment.status.ready_replicas if deployment.status else 0) or 0)
            if state is None and ready >= replicas:
                break
            if time.monotonic() - started > SCALE_TIMEOUT_S:
                raise TimeoutError(f"DR app {ns}/{name}: {ready} of {replicas} replica(s) ready after "
                                   f"{SCALE_TIMEOUT_S:g} s ({state or 'rollout complete'})")
            if time.monotonic() - last_log >= PROGRESS_LOG_S:
                log.info("Waiting for the DR app %s/%s: %d of %d replica(s) ready (%s)", ns, name, ready, replicas,
                         state or "rollout complete")
                last_log = time.monotonic()
            time.sleep(POLL_S)
        pods = self._ready_pods()
        log.info("DR app %s/%s: %d replica(s) ready after %.1f s, behind %s", ns, name, len(pods),
                 time.monotonic() - started, self.url)
        return DrApp(self.url, tuple(pods))

    def _ready_pods(self) -> list[str]:
        from resilience.platforms.kubernetes.api import kubernetes_hook
        from resilience.platforms.kubernetes.workloads import pod_ready

        core = kubernetes_hook(self.target).core_v1_client
        pods = core.list_namespaced_pod(self.target.namespace, label_selector=self.target.app_selector).items
        return sorted(p.metadata.name for p in pods if pod_ready(p))

    def stop_dr_app(self) -> None:
        """Scale the DR app back to 0 and wait until no replica is left; idempotent."""
        if self.region != "dr":
            raise RefusedError(f"stop_dr_app: namespace {self.target.namespace} is region {self.region!r}, not the "
                               f"DR region: its app is never stopped by a failback")
        ns, name = self.target.namespace, self.target.app_deployment
        wanted, ready = self._counts()
        if wanted == 0 and ready == 0:
            log.warning("Not scaling the DR app %s/%s: already at 0 replicas", ns, name)
            return
        log.info("Stopping the DR app: scaling deployment %s/%s from %d to 0 replicas", ns, name, wanted)
        self.apps.patch_namespaced_deployment_scale(name, ns, {"spec": {"replicas": 0}})
        started = time.monotonic()
        while True:
            deployment = self._deployment()
            left = int((deployment.status.replicas if deployment.status else 0) or 0)
            if left == 0:
                return
            if time.monotonic() - started > SCALE_TIMEOUT_S:
                raise TimeoutError(f"DR app {ns}/{name}: {left} replica(s) still there {SCALE_TIMEOUT_S:g} s after "
                                   f"scaling to 0")
            time.sleep(POLL_S)
