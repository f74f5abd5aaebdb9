"""The object-store fault's contract (s3-5xx): set, it is what the platform says it serves, labelled with
its experiment; cleared, none is served; clearing twice is harmless; clearing one experiment leaves
nothing of it behind.

Parametrised over the lab (its fault proxy in front of moto, real) and the Kubernetes backend against
the loopback API server (``tests/contract/kubeapi``: the VirtualService is stored and listed as the API
server would; no Istio sidecar runs here, so the abort itself is not exercised on this backend).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from resilience.platforms.types import ObjectStoreFault
from tests.contract.kubeapi import KubeApi
from tests.contract.platforms import CONN_ID, NAMESPACE, PLATFORMS, capability, kubernetes_target

HOST = "s3.us-east-1.amazonaws.com"


@pytest.fixture(scope="module")
def kubeapi() -> Iterator[KubeApi]:
    with KubeApi() as api:
        yield api


@pytest.fixture(params=PLATFORMS)
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    from resilience.platforms.kubernetes.object_store import KubernetesObjectStore

    return capability(request, monkeypatch, KubernetesObjectStore, object_store_host=HOST)


def test_a_fault_is_served_until_cleared_and_clearing_is_idempotent(store):
    assert store.object_store_fault().error_rate == 0.0
    served = store.fail_object_store(ObjectStoreFault(0.3, 503, experiment="41"))
    assert (served.error_rate, served.status) == (0.3, 503)
    now = store.object_store_fault()
    assert (now.error_rate, now.status) == (0.3, 503)
    assert store.clear_object_store_fault("41").error_rate == 0.0
    assert store.object_store_fault().error_rate == 0.0
    assert store.clear_object_store_fault("41").error_rate == 0.0  # a revert run twice


def test_a_retried_inject_of_the_same_experiment_serves_the_new_plan(store):
    store.fail_object_store(ObjectStoreFault(0.3, 503, experiment="42"))
    store.fail_object_store(ObjectStoreFault(0.5, 500, experiment="42"))
    now = store.object_store_fault()
    assert (now.error_rate, now.status) == (0.5, 500)
    assert store.clear_object_store_fault("42").error_rate == 0.0


def test_the_virtual_service_carries_its_experiment_and_is_gone_after_the_revert(kubeapi, monkeypatch):
    """Kubernetes only: what abort and sweep find by label (runbook: delete ... -l chaos-experiment)."""
    from resilience.platforms.kubernetes.object_store import KubernetesObjectStore

    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", kubeapi.connection_json(namespace=NAMESPACE))
    store = KubernetesObjectStore(kubernetes_target(object_store_host=HOST))
    store.fail_object_store(ObjectStoreFault(0.25, 503, experiment="43"))
    [vs] = kubeapi.list("networking.istio.io/v1beta1", "virtualservices", NAMESPACE, "chaos-experiment=43")
    assert vs["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "resilience"
    assert vs["spec"]["hosts"] == [HOST]
    assert vs["spec"]["http"][0]["fault"]["abort"] == {"percentage": {"value": 25.0}, "httpStatus": 503}
    store.clear_object_store_fault(None)  # an abort: every fault this product set
    assert kubeapi.list("networking.istio.io/v1beta1", "virtualservices", NAMESPACE, "chaos-experiment") == []
