"""The cache capability's contract (redis-unavailable): stopped, nothing answers; started, exactly the
replica count it had answers again; starting twice is harmless.

Parametrised over the lab (its one redis-server, real) and the Kubernetes backend against the
loopback API server (``tests/contract/kubeapi``: a Redis Deployment of 2 replicas, so "back to
the count it had" is not "back to 1"; readiness comes from the fixture's kubelet, not from Redis).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.contract.kubeapi import KubeApi
from tests.contract.platforms import NAMESPACE, PLATFORMS, capability


def redis_deployment(replicas: int) -> dict[str, Any]:
    labels = {"app": "redis"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "redis", "namespace": NAMESPACE, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "redis", "image": "redis:7"}]}}}}


@pytest.fixture(scope="module")
def kubeapi() -> Iterator[KubeApi]:
    with KubeApi() as api:
        api.create(redis_deployment(2))
        yield api
        assert api.controller_errors() == []


@pytest.fixture(params=PLATFORMS)
def cache(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    from resilience.platforms.kubernetes.cache import KubernetesCache

    cache = capability(request, monkeypatch, KubernetesCache, cache_kind="Deployment", cache_name="redis")
    KubeApi.wait(lambda: (state := cache.cache_state()).ready == state.replicas > 0, timeout_s=30)
    return cache


def test_stop_then_start_restores_exactly_the_replicas_it_had(cache):
    before = cache.cache_state()
    assert before.alive and before.ready == before.replicas >= 1
    stopped_from = cache.stop_cache()
    assert stopped_from == before  # what the revert will restore
    assert not cache.cache_state().alive  # nothing answers once stop returns
    after = cache.start_cache(stopped_from.replicas)
    assert after == before and cache.cache_state() == before
    assert cache.start_cache(stopped_from.replicas) == before  # a revert run twice changes nothing


def test_a_start_that_would_leave_the_cache_stopped_is_refused(cache):
    with pytest.raises(ValueError, match="replicas"):
        cache.start_cache(0)
    assert cache.cache_state().alive
