"""The workload capability's contract: what pod-kill and preflight rely on, on every platform.

Parametrised over the lab (real processes behind its load balancer, replaced by its supervisor) and
the Kubernetes backend against a Kubernetes API server on loopback (``tests/contract/kubeapi``: kmock
serves the API; no real kubelet or controller runs here, so a fixture plays the Deployment and
ReplicaSet controllers and the kubelet, scaling grace periods by 0.1).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.contract.kubeapi import KubeApi
from tests.contract.platforms import (
    APP_DEPLOYMENT,
    CONN_ID,
    NAMESPACE,
    PLATFORMS,
    capability,
    kubernetes_target,
)

DEPLOYMENT = APP_DEPLOYMENT
REPLICAS = 3


def app_deployment(image: str = "registry.local/ofm-social-os:1.4.2") -> dict[str, Any]:
    """The runbook's app: Deployment ofm-social-os-api, pods labelled app=ofm-social-os, 3 replicas."""
    labels = {"app": "ofm-social-os"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE, "labels": labels},
            "spec": {"replicas": REPLICAS, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds": 30,
                                           "containers": [{"name": "api", "image": image}]}}}}


@pytest.fixture(scope="module")
def kubeapi() -> Iterator[KubeApi]:
    with KubeApi() as api:
        api.create(app_deployment())
        yield api
        assert api.controller_errors() == []


@pytest.fixture(params=PLATFORMS)
def workloads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    from resilience.platforms.kubernetes.workloads import KubernetesWorkloads

    return capability(request, monkeypatch, KubernetesWorkloads)


def whole(workloads: Any) -> list:
    """The workload at its ready count (an earlier test's replacements may still be starting)."""
    return list(workloads.wait_ready(REPLICAS, set(), timeout_s=60).replicas)


def test_replicas_are_ready_each_with_its_own_instance(workloads):
    replicas = whole(workloads)
    assert len(replicas) == REPLICAS and all(r.ready for r in replicas)
    assert len({r.instance for r in replicas}) == REPLICAS and None not in {r.instance for r in replicas}
    assert workloads.rollout_in_progress() is None  # steady state: nothing being rolled out
    census = workloads.pod_census()  # preflight's ">= 80 % of the pods ready", here every one
    assert census.total >= REPLICAS and census.ready == census.total, census


def test_a_graceful_deletion_is_replaced_by_a_new_instance_and_the_wait_is_idempotent(workloads):
    victim = whole(workloads)[0]
    [deletion] = workloads.delete_replicas([victim.name], grace_period_s=30, force=False)
    assert (deletion.name, deletion.instance, deletion.outcome) == (victim.name, victim.instance, "exited within grace")
    assert deletion.terminated_in_s is not None and deletion.terminated_in_s < 30
    assert victim.instance not in {r.instance for r in workloads.replicas()}  # gone when delete returns
    ready = workloads.wait_ready(REPLICAS, {victim.instance}, timeout_s=60)
    assert len(ready.replicas) >= REPLICAS and victim.instance not in ready.instances().values()
    again = workloads.wait_ready(REPLICAS, {victim.instance}, timeout_s=5)  # a revert run twice waits for nothing
    assert set(again.instances().values()) == set(ready.instances().values())


def test_a_forced_deletion_ends_at_once_and_is_replaced(workloads):
    victims = whole(workloads)[:2]
    deletions = workloads.delete_replicas([v.name for v in victims], grace_period_s=30, force=True)
    assert [(d.name, d.instance, d.outcome) for d in deletions] == [(v.name, v.instance, "SIGKILL") for v in victims]
    ready = workloads.wait_ready(REPLICAS, {v.instance for v in victims if v.instance}, timeout_s=60)
    assert not {v.instance for v in victims} & set(ready.instances().values())


def test_a_name_that_is_not_a_replica_is_refused_before_anything_is_deleted(workloads):
    before = {r.instance for r in whole(workloads)}
    with pytest.raises(ValueError, match=r"\['no-such-replica'\] are not replicas of"):
        workloads.delete_replicas([whole(workloads)[0].name, "no-such-replica"], grace_period_s=30, force=False)
    assert {r.instance for r in workloads.replicas()} == before


def test_a_template_change_is_a_rollout_in_progress_until_every_replica_is_updated(kubeapi, monkeypatch):
    """Kubernetes only: the lab has no rollout controller (it reports none in progress, as tested above)."""
    from resilience.platforms.kubernetes.workloads import KubernetesWorkloads

    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", kubeapi.connection_json(namespace=NAMESPACE))
    workloads = KubernetesWorkloads(kubernetes_target())
    whole(workloads)
    workloads.apps.patch_namespaced_deployment(DEPLOYMENT, NAMESPACE, {"spec": {"template": {"spec": {
        "containers": [{"name": "api", "image": "registry.local/ofm-social-os:1.4.3"}]}}}})
    seen = [workloads.rollout_in_progress()]  # right after the patch: not observed yet, or not all updated
    kubeapi.wait(lambda: seen.append(workloads.rollout_in_progress()) or seen[-1] is None, timeout_s=30)
    assert seen[0] is not None and seen[-1] is None, seen
    assert all(s.startswith(f"deployment {DEPLOYMENT}: ") for s in seen[:-1]), seen
    pods = whole(workloads)
    assert len({r.release for r in pods}) == 1 and pods[0].release is not None  # all on the new template


def test_a_services_view_sees_the_rollout_of_its_own_deployment_and_not_the_apps(kubeapi, monkeypatch):
    """Kubernetes only. A campaign across services checks, in preflight, each service's rollout: the view
    whose app selector is the service's reads the Deployments that selector picks."""
    from dataclasses import replace

    from resilience.platforms.kubernetes.workloads import KubernetesWorkloads
    from tests.contract.services import service_deployment

    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", kubeapi.connection_json(namespace=NAMESPACE))
    kubeapi.create(service_deployment("search"))
    app = KubernetesWorkloads(kubernetes_target())
    search = KubernetesWorkloads(replace(kubernetes_target(), app_selector="app=search"))
    kubeapi.wait(lambda: search.rollout_in_progress() is None and app.rollout_in_progress() is None, timeout_s=30)
    search.apps.patch_namespaced_deployment("search", NAMESPACE, {"spec": {"template": {"spec": {
        "containers": [{"name": "app", "image": "registry.local/search:2"}]}}}})
    seen, app_seen = [search.rollout_in_progress()], [app.rollout_in_progress()]
    kubeapi.wait(lambda: seen.append(search.rollout_in_progress()) or app_seen.append(app.rollout_in_progress())
                 or seen[-1] is None, timeout_s=30)
    assert seen[0] is not None and seen[0].startswith("deployment search: "), seen
    assert set(app_seen) == {None}, app_seen  # the app's own Deployment is not rolling out
    search.apps.delete_namespaced_deployment("search", NAMESPACE)
