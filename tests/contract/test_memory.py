"""The memory-pressure capability's contract: a hog over its limit is OOM-killed, seen through the platform's own
reads, while no app replica restarts; stopped, nothing of it is left; stopping twice is harmless; a hog with a
deadline ends by itself.

Parametrised over the lab (stress-ng in a memory-limited cgroup, OOM-killed by the real kernel) and the
Kubernetes backend against the loopback API server (``tests/contract/kubeapi``: the fixture's kubelet OOM-kills
a stress container whose ``--vm-bytes`` exceed its ``limits.memory`` and honours ``activeDeadlineSeconds``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from resilience.errors import RefusedError
from tests.contract.kubeapi import KubeApi
from tests.contract.platforms import CONN_ID, NAMESPACE, PLATFORMS, capability, kubernetes_target
from tests.contract.test_workloads import REPLICAS, app_deployment

HOG = "contract-hog"
OOM_WITHIN_S = 30.0  # the lab: stress-ng touching 96 MiB under 32 MiB is killed within a second; slack for 2 busy cores
DEADLINE_AHEAD_S = 3.0
DEADLINE_SLACK_S = 15.0


@pytest.fixture(scope="module")
def kubeapi() -> Iterator[KubeApi]:
    with KubeApi() as api:
        api.create(app_deployment())
        yield api
        assert api.controller_errors() == []


def kubernetes_platform(target: Any) -> SimpleNamespace:
    """The two capabilities the memory-pressure fault uses, as ``Platform`` hands them out."""
    from resilience.platforms.kubernetes.memory import KubernetesMemory
    from resilience.platforms.kubernetes.workloads import KubernetesWorkloads

    return SimpleNamespace(memory=KubernetesMemory(target), workloads=KubernetesWorkloads(target))


@pytest.fixture(params=PLATFORMS)
def platform(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    platform = capability(request, monkeypatch, kubernetes_platform)
    if request.param == "lab":  # the lab's LocalPlatform provides both itself
        platform = SimpleNamespace(memory=platform, workloads=platform)
    platform.workloads.wait_ready(REPLICAS if request.param == "kubernetes" else 1, set(), timeout_s=60)
    yield platform
    platform.memory.stop_memory_hog(HOG)  # a failed test leaves nothing behind


def restarts(platform: Any) -> dict[str, tuple[str | None, int]]:
    return {r.name: (r.instance, r.restarts) for r in platform.workloads.replicas()}


def wait_for(predicate: Any, timeout_s: float) -> Any:
    return KubeApi.wait(predicate, timeout_s=timeout_s, interval_s=0.1)


def test_a_hog_over_its_limit_is_oom_killed_and_no_app_replica_restarts(platform):
    before = restarts(platform)
    hog = platform.memory.start_memory_hog(HOG, limit_mb=32, hog_mb=96, experiment="51")
    assert (hog.name, hog.limit_mb, hog.hog_mb, hog.running, hog.experiment) == (HOG, 32, 96, True, "51")
    assert platform.memory.start_memory_hog(HOG, 32, 96, experiment="51").running  # a retried inject: the same hog
    killed = wait_for(lambda: (h := platform.memory.memory_hog(HOG)) and h.oom_kills > 0 and h, OOM_WITHIN_S)
    assert killed.limit_mb == 32 and killed.hog_mb == 96 and killed.expires_at is None
    assert restarts(platform) == before  # the OOM killer acted inside the hog's limit only
    platform.memory.stop_memory_hog(HOG)
    assert platform.memory.memory_hog(HOG) is None  # nothing of it is left once stop returns
    platform.memory.stop_memory_hog(HOG)  # a revert run twice
    assert platform.memory.memory_hog(HOG) is None
    assert restarts(platform) == before


def test_a_hog_within_its_limit_is_not_oom_killed(platform):
    platform.memory.start_memory_hog(HOG, limit_mb=64, hog_mb=16)
    time.sleep(2)  # the kubelet's OOM kill comes after 0.5 s, the kernel's at once
    hog = platform.memory.memory_hog(HOG)
    assert hog is not None and hog.running and hog.oom_kills == 0, hog
    platform.memory.stop_memory_hog(HOG)


def test_a_hog_with_a_deadline_ends_by_itself(platform):
    deadline = time.time() + DEADLINE_AHEAD_S
    hog = platform.memory.start_memory_hog(HOG, limit_mb=64, hog_mb=16, deadline_epoch_s=deadline)
    assert hog.running and hog.expires_at == deadline
    ended = wait_for(lambda: (h := platform.memory.memory_hog(HOG)) and not h.running and h,
                     DEADLINE_AHEAD_S + DEADLINE_SLACK_S)
    assert time.time() >= deadline - 1  # whole seconds, rounded down: never late
    assert ended.ended == "DeadlineExceeded" and ended.oom_kills == 0, ended
    platform.memory.stop_memory_hog(HOG)  # the revert removes what is left
    assert platform.memory.memory_hog(HOG) is None


def test_a_deadline_in_the_past_is_refused_before_any_effect(platform):
    with pytest.raises(ValueError, match="deadline_epoch_s: .* is not in the future"):
        platform.memory.start_memory_hog(HOG, 64, 16, deadline_epoch_s=time.time() - 1)
    assert platform.memory.memory_hog(HOG) is None


def test_the_stress_pod_is_labelled_limited_and_a_stranger_of_its_name_is_never_touched(kubeapi, monkeypatch):
    """Kubernetes only: what abort and sweep find by label, the limit the kubelet enforces, the dead-man switch."""
    from resilience.platforms.kubernetes.memory import KubernetesMemory

    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", kubeapi.connection_json(namespace=NAMESPACE))
    memory = KubernetesMemory(kubernetes_target())
    memory.start_memory_hog(HOG, limit_mb=32, hog_mb=96, deadline_epoch_s=time.time() + 60, experiment="52")
    [pod] = kubeapi.list("v1", "pods", NAMESPACE, "chaos-experiment=52")
    assert pod["metadata"]["name"] == HOG and pod["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "resilience"
    [container] = pod["spec"]["containers"]
    assert container["resources"]["limits"]["memory"] == container["resources"]["requests"]["memory"] == "32Mi"
    assert container["args"][:4] == ["--vm", "1", "--vm-bytes", "96M"]
    assert 55 <= pod["spec"]["activeDeadlineSeconds"] <= 60 and pod["spec"]["restartPolicy"] == "OnFailure"
    memory.stop_memory_hog(HOG)
    assert kubeapi.list("v1", "pods", NAMESPACE, "chaos-experiment") == []
    kubeapi.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": HOG, "namespace": NAMESPACE},
                    "spec": {"containers": [{"name": "someone-elses", "image": "registry.local/x:1"}]}})
    with pytest.raises(RefusedError, match=f"pod {NAMESPACE}/{HOG} exists and is not a memory hog"):
        memory.stop_memory_hog(HOG)
    with pytest.raises(RefusedError):
        memory.start_memory_hog(HOG, 32, 96)
    assert kubeapi.get("v1", "pods", NAMESPACE, HOG) is not None  # untouched
    memory.core.delete_namespaced_pod(HOG, NAMESPACE, grace_period_seconds=0)
