"""include/kubernetes/role.yaml grants exactly what the Kubernetes platform calls: every request the
backend makes while each capability does its whole job (inject, observe, revert) is allowed by the
Role, and every rule the Role grants is used. Checked against the loopback API server's request log
(``tests/contract/kubeapi``), so a new call without its RBAC rule, or a rule nothing needs, fails here.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from resilience.platforms.kubernetes.cache import KubernetesCache
from resilience.platforms.kubernetes.memory import KubernetesMemory
from resilience.platforms.kubernetes.object_store import KubernetesObjectStore
from resilience.platforms.kubernetes.regions import KubernetesRegions
from resilience.platforms.kubernetes.releases import KubernetesReleases
from resilience.platforms.kubernetes.target import KubernetesTarget
from resilience.platforms.kubernetes.workloads import KubernetesWorkloads
from resilience.platforms.types import ObjectStoreFault
from tests.contract.kubeapi import KubeApi
from tests.contract.platforms import NAMESPACE
from tests.contract.test_cache import redis_deployment
from tests.contract.test_workloads import app_deployment

ROLE = Path(__file__).resolve().parents[2] / "include" / "kubernetes" / "role.yaml"
# /api/v1/namespaces/ns/pods[/name[/sub]] and /apis/group/version/namespaces/ns/plural[/name[/sub]]
PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)/namespaces/[^/]+/(?P<plural>[^/]+)"
                  r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")
VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


def rbac_request(method: str, target: str) -> tuple[str, str, str]:
    """(apiGroup, resource[/subresource], verb) of one API request, as the API server authorises it
    (https://kubernetes.io/docs/reference/access-authn-authz/authorization/#determine-the-request-verb)."""
    url = urlsplit(target)
    match = PATH.match(url.path)
    assert match, f"not a namespaced resource request: {method} {target}"
    group, plural, name, sub = match["group"] or "", match["plural"], match["name"], match["sub"]
    read = "watch" if "watch=" in url.query else ("get" if name else "list")
    return group, f"{plural}/{sub}" if sub else plural, read if method == "GET" else VERBS[method]



def granted() -> set[tuple[str, str, str]]:
    [role] = [d for d in yaml.safe_load_all(ROLE.read_text()) if d["kind"] == "Role"]
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def test_the_role_grants_exactly_what_the_kubernetes_platform_calls(monkeypatch):
    with KubeApi() as api:
        api.create(app_deployment())
        api.create(redis_deployment(2))
        statefulset = {**redis_deployment(1), "kind": "StatefulSet", "metadata": {
            "name": "redis-sts", "namespace": NAMESPACE, "labels": {"app": "redis-sts"}}}
        statefulset["spec"] = {**statefulset["spec"], "serviceName": "redis-sts",
                               "selector": {"matchLabels": {"app": "redis-sts"}},
                               "template": {**statefulset["spec"]["template"], "metadata": {"labels": {"app": "redis-sts"}}}}
        api.create(statefulset)
        monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_RBAC", api.connection_json(namespace=NAMESPACE))
        target = KubernetesTarget("kubernetes_rbac", NAMESPACE, "ofm-social-os-api", "app=ofm-social-os",
                                  "Deployment", "redis", "s3.us-east-1.amazonaws.com")
        dr_app = {**app_deployment(), "metadata": {"name": "ofm-dr", "namespace": NAMESPACE, "labels": {"app": "ofm-dr"}}}
        dr_app["spec"] = {**dr_app["spec"], "replicas": 0, "selector": {"matchLabels": {"app": "ofm-dr"}},
                          "template": {**dr_app["spec"]["template"], "metadata": {"labels": {"app": "ofm-dr"}}}}
        api.create(dr_app)
        releases = KubernetesReleases(target, "primary")  # a second release rolled out (not the product's call),
        releases._wait_rollout("primary")  # once the first has its ReplicaSet: else there is one revision only
        releases.apps.patch_namespaced_deployment("ofm-social-os-api", NAMESPACE, {"spec": {"template": {"spec": {
            "containers": [{"name": "api", "image": "registry.local/ofm-social-os:1.4.3"}]}}}})
        releases._wait_rollout("primary")
        before = len(api.requests())
        workloads = KubernetesWorkloads(target)  # pod-kill and preflight
        victim = workloads.wait_ready(3, set(), timeout_s=30).replicas[0]
        workloads.delete_replicas([victim.name], grace_period_s=1, force=False)
        workloads.wait_ready(3, {str(victim.instance)}, timeout_s=30)
        workloads.rollout_in_progress()
        for kind, name, count in (("Deployment", "redis", 2), ("StatefulSet", "redis-sts", 1)):  # redis-unavailable
            cache = KubernetesCache(KubernetesTarget("kubernetes_rbac", NAMESPACE, "a", "app=a", kind, name))
            api.wait(lambda c=cache, n=count: c.cache_state().ready == n, timeout_s=30)
            cache.start_cache(cache.stop_cache().replicas)
        store = KubernetesObjectStore(target)  # s3-5xx: inject, a retried inject, revert
        store.fail_object_store(ObjectStoreFault(0.3, 503, experiment="7"))
        store.fail_object_store(ObjectStoreFault(0.3, 503, experiment="7"))
        store.clear_object_store_fault("7")
        memory = KubernetesMemory(target)  # memory-pressure: inject, a retried inject, observe, revert twice
        memory.start_memory_hog("chaos-memory-hog", 32, 96, time.time() + 60, experiment="8")
        memory.start_memory_hog("chaos-memory-hog", 32, 96, time.time() + 60, experiment="8")
        api.wait(lambda: (hog := memory.memory_hog("chaos-memory-hog")) is not None and hog.oom_kills > 0,
                 timeout_s=30)
        memory.stop_memory_hog("chaos-memory-hog")
        memory.stop_memory_hog("chaos-memory-hog")
        releases.app_release("primary")  # emergency rollback: its plan, then rollout undo
        releases.rollback_app("primary")
        dr = KubernetesRegions(KubernetesTarget("kubernetes_rbac", NAMESPACE, "ofm-dr", "app=ofm-dr",
                                                app_url="http://127.0.0.1:9"), "dr")  # DR activation, failback
        dr.start_dr_app("postgresql://app@db:5432/app", 2)
        dr.region_health("dr")
        dr.stop_dr_app()
        made = {rbac_request(method, path) for method, path in api.requests()[before:]}
    allowed = granted()
    assert made <= allowed, f"calls the Role does not allow: {sorted(made - allowed)}"
    assert allowed <= made, f"rules no call needs (remove them): {sorted(allowed - made)}"
