"""The regions capability's contract (DR activation, failback, the safety net): the DR app, stopped, has no
replica and its entry point does not answer; started from zero it becomes ready with exactly the replicas asked,
health reports them and its entry point answers; starting again changes nothing; stopped, it is at zero again.

Parametrised over the lab (its DR region's real processes and load balancer on 127.0.0.2, on the lab's own
read-write DSN) and the Kubernetes backend against the loopback API server (``tests/contract/kubeapi``: the DR
app's Deployment at 0 replicas in the DR namespace, readiness from the fixture's kubelet; the region's entry
point is a stand-in load balancer on loopback that answers ``/health`` 200 while a pod of the app is Ready,
503 otherwise, as an ALB with no healthy target does).
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from resilience.platforms.types import DrApp, RegionHealth
from tests.contract.kubeapi import KubeApi
from tests.contract.kubeapi.controllers import is_ready
from tests.contract.platforms import APP_SELECTOR, CONN_ID, NAMESPACE, PLATFORMS, capability
from tests.contract.test_workloads import app_deployment

DR_REPLICAS = 2
DSN = "postgresql://app:s3cret-pw@db.ofm-production-dr.svc:5432/ofm_social_os?sslmode=require"


def dr_deployment() -> dict[str, Any]:
    """The DR app as it waits in the DR cluster: the app's Deployment, scaled to zero."""
    manifest = app_deployment()
    manifest["spec"]["replicas"] = 0
    return manifest


class EntryPoint:
    """A load balancer in front of the app's pods: ``/health`` 200 while one is Ready, else 503."""

    def __init__(self, api: KubeApi) -> None:
        def healthy() -> bool:
            return any(is_ready(p) and "deletionTimestamp" not in p["metadata"]
                       for p in api.list("v1", "pods", NAMESPACE, APP_SELECTOR))

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                status = 200 if self.path == "/health" and healthy() else 503
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> EntryPoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def kubeapi() -> Iterator[KubeApi]:
    with KubeApi() as api:
        api.create(dr_deployment())
        yield api
        assert api.controller_errors() == []


@pytest.fixture(scope="module")
def entry_point(kubeapi: KubeApi) -> Iterator[EntryPoint]:
    with EntryPoint(kubeapi) as entry:
        yield entry


def kubernetes_regions(url: str, region: str = "dr") -> Any:
    from resilience.platforms.kubernetes.regions import KubernetesRegions
    from resilience.platforms.kubernetes.target import KubernetesTarget

    return KubernetesRegions(KubernetesTarget(CONN_ID, NAMESPACE, "ofm-social-os-api", APP_SELECTOR, app_url=url),
                             region)


@pytest.fixture(params=PLATFORMS)
def dr(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """(the regions capability of the platform that hosts the DR region, a DSN for its app)."""
    if request.param == "lab":
        return capability(request, monkeypatch, kubernetes_regions), request.getfixturevalue("lab")["app_db"][
            "read_write_dsn"]
    url = request.getfixturevalue("entry_point").url
    return capability(request, monkeypatch, lambda _: kubernetes_regions(url)), DSN


def test_the_dr_app_scaled_from_zero_serves_with_the_replicas_asked_and_stops_at_zero(dr):
    regions, dsn = dr
    regions.stop_dr_app()
    assert regions.region_health("dr") == RegionHealth("dr", False, 0, 0)

    app = regions.start_dr_app(dsn, DR_REPLICAS)
    assert isinstance(app, DrApp) and app.url == regions.region_url("dr")
    assert len(app.replicas) == DR_REPLICAS == len(set(app.replicas))
    health = regions.region_health("dr")
    assert health == RegionHealth("dr", True, DR_REPLICAS, DR_REPLICAS) and health.serving
    assert regions.start_dr_app(dsn, DR_REPLICAS) == app  # idempotent: the same replicas

    regions.stop_dr_app()
    assert regions.region_health("dr") == RegionHealth("dr", False, 0, 0)
    regions.stop_dr_app()  # idempotent


def test_the_dsn_is_recorded_without_its_password(kubeapi, entry_point, monkeypatch):
    """Kubernetes only: the DR app reads its database settings from its own Secret; the DSN asked for is
    recorded on the Deployment, password and options removed."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", kubeapi.connection_json(namespace=NAMESPACE))
    regions = kubernetes_regions(entry_point.url)
    try:
        regions.start_dr_app(DSN, 1)
        deployment = kubeapi.get("apps/v1", "deployments", NAMESPACE, "ofm-social-os-api")
        annotations = deployment["metadata"]["annotations"]
        assert annotations["resilience/dr-database"] == "postgresql://app@db.ofm-production-dr.svc:5432/ofm_social_os"
        assert "s3cret-pw" not in str(deployment)
    finally:
        regions.stop_dr_app()


def test_a_region_is_asked_only_about_itself_and_the_primary_app_is_never_scaled(kubeapi, entry_point,
                                                                                 monkeypatch):
    """Kubernetes only: an environment is one region (the lab is both)."""
    from resilience.errors import RefusedError

    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", kubeapi.connection_json(namespace=NAMESPACE))
    with pytest.raises(ValueError, match=r"region: 'primary' is not this environment's region \('dr'"):
        kubernetes_regions(entry_point.url).region_health("primary")
    primary = kubernetes_regions(entry_point.url, "primary")
    patches = len(kubeapi.requests("PATCH"))
    with pytest.raises(RefusedError, match="is region 'primary', not the DR region"):
        primary.start_dr_app(DSN, 2)
    with pytest.raises(RefusedError, match="is region 'primary', not the DR region"):
        primary.stop_dr_app()
    assert len(kubeapi.requests("PATCH")) == patches
    with pytest.raises(ValueError, match=r"replicas: 0 is not an integer >= 1"):
        kubernetes_regions(entry_point.url).start_dr_app(DSN, 0)
