"""The test API server (KubeApi) behaves like the Kubernetes API for the official client and KubernetesHook.

Every behaviour runs twice: through `kubernetes.client` on a plain `Configuration`, and through
Airflow's `KubernetesHook(conn_id=...)` reading `AIRFLOW_CONN_<ID>` (the `flavour` parameter).
One server (on a free port) serves the module; each test works in a namespace of its own.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
import urllib.request
from dataclasses import dataclass
from typing import Any

import kubernetes.client as k
import pytest
from kubernetes.client.rest import ApiException
from kubernetes.watch import Watch

from . import KubeApi

_namespaces = itertools.count()


@pytest.fixture(scope="module")
def api():
    with KubeApi() as server:
        yield server
        assert server.controller_errors() == []


@dataclass
class Cluster:
    """The clients a test uses, and the namespace it works in."""

    api: KubeApi
    ns: str
    core: k.CoreV1Api
    apps: k.AppsV1Api
    custom: k.CustomObjectsApi
    hook: Any = None


BOTH = pytest.mark.parametrize("flavour", ["client", "hook"], indirect=True)


@pytest.fixture
def flavour(request, api, monkeypatch) -> Cluster:
    """The official client; with ``@BOTH`` also Airflow's KubernetesHook through a Connection. The hook is only
    the transport, so it runs for the operations the product makes (errors, pods and scale, custom objects)."""
    kind = getattr(request, "param", "client")
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.originalname.lower().removeprefix("test_"))[:40].strip("-")
    ns = f"{slug}-{next(_namespaces)}-{kind}"
    if kind == "client":
        client = k.ApiClient(k.Configuration(host=api.url))
        return Cluster(api, ns, k.CoreV1Api(client), k.AppsV1Api(client), k.CustomObjectsApi(client))
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    monkeypatch.setenv("AIRFLOW_CONN_KUBEAPI_TEST", api.connection_json(namespace=ns))
    hook = KubernetesHook(conn_id="kubeapi_test")
    assert hook.get_namespace() == ns
    return Cluster(api, ns, hook.core_v1_client, hook.apps_v1_client, hook.custom_object_client, hook)


def container(image: str = "registry.local/web:1") -> dict[str, Any]:
    return {"name": "app", "image": image}


def deployment(name: str, replicas: int, image: str = "registry.local/web:1", **template_meta: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}, **template_meta},
                                  "spec": {"containers": [container(image)], "terminationGracePeriodSeconds": 5}}}}


def pod(name: str, labels: dict[str, str] | None = None, grace: int = 30) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [container()], "terminationGracePeriodSeconds": grace}}


def names(items) -> list[str]:
    return sorted(i.metadata.name if hasattr(i, "metadata") and not isinstance(i, dict) else i["metadata"]["name"]
                  for i in items)


def status_body(e: ApiException) -> dict[str, Any]:
    return json.loads(e.body)


def ready_deployment(c: Cluster, name: str, replicas: int):
    def check():
        d = c.apps.read_namespaced_deployment(name, c.ns)
        s = d.status
        ok = (s is not None and s.observed_generation == d.metadata.generation and (s.ready_replicas or 0) == replicas
              and (s.updated_replicas or 0) == replicas and (s.replicas or 0) == replicas)
        return d if ok else None
    return c.api.wait(check, timeout_s=20)


def live_pods(c: Cluster, selector: str) -> list:
    return [p for p in c.core.list_namespaced_pod(c.ns, label_selector=selector).items
            if p.metadata.deletion_timestamp is None]


# ---- 1. metadata stamping, 404 / 409 -------------------------------------------------------------

@BOTH
def test_create_stamps_metadata_and_errors_are_status(flavour: Cluster):
    c = flavour
    d1 = c.apps.create_namespaced_deployment(c.ns, deployment("web", 1))
    d2 = c.apps.create_namespaced_deployment(c.ns, deployment("api", 1))
    for d in (d1, d2):
        assert d.metadata.namespace == c.ns
        assert re.fullmatch(r"[0-9a-f-]{36}", d.metadata.uid)
        assert d.metadata.creation_timestamp is not None
        assert d.metadata.generation == 1
    assert int(d2.metadata.resource_version) > int(d1.metadata.resource_version)
    assert d1.metadata.uid != d2.metadata.uid

    labelled = c.apps.patch_namespaced_deployment("web", c.ns, {"metadata": {"labels": {"tier": "front"}}})
    assert labelled.metadata.generation == 1  # metadata is not spec
    assert int(labelled.metadata.resource_version) > int(d2.metadata.resource_version)
    respec = c.apps.patch_namespaced_deployment("web", c.ns, {"spec": {"replicas": 2}})
    assert respec.metadata.generation == 2 and respec.metadata.labels["tier"] == "front"

    with pytest.raises(ApiException) as dup:
        c.apps.create_namespaced_deployment(c.ns, deployment("web", 1))
    body = status_body(dup.value)
    assert (dup.value.status, body["kind"], body["status"], body["reason"]) == (409, "Status", "Failure",
                                                                                "AlreadyExists")
    assert body["message"] == 'deployments.apps "web" already exists'
    for call in (lambda: c.core.read_namespaced_pod("nope", c.ns), lambda: c.core.delete_namespaced_pod("nope", c.ns),
                 lambda: c.apps.patch_namespaced_deployment("nope", c.ns, {"spec": {"replicas": 1}})):
        with pytest.raises(ApiException) as missing:
            call()
        assert missing.value.status == 404 and status_body(missing.value)["reason"] == "NotFound"
    with pytest.raises(ApiException) as stale:  # optimistic concurrency on a PUT
        old = d1.to_dict()
        c.apps.replace_namespaced_deployment("web", c.ns, c.apps.api_client.sanitize_for_serialization(d1))
    assert stale.value.status == 409 and status_body(stale.value)["reason"] == "Conflict", old
    if c.hook is not None:
        assert c.hook.get_deployment_status("web", c.ns).metadata.generation == 2


def test_generate_name_and_validation(flavour: Cluster):
    c = flavour
    p = c.core.create_namespaced_pod(c.ns, {"metadata": {"generateName": "stress-"}, "spec": {"containers": [container()]}})
    assert re.fullmatch(r"stress-[a-z0-9]{5}", p.metadata.name)
    with pytest.raises(ApiException) as no_containers:
        c.core.create_namespaced_pod(c.ns, {"metadata": {"name": "empty"}, "spec": {}})
    assert no_containers.value.status == 422 and status_body(no_containers.value)["reason"] == "Invalid"
    bad = deployment("bad", 1)
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(ApiException) as mismatch:
        c.apps.create_namespaced_deployment(c.ns, bad)
    assert mismatch.value.status == 422


# ---- 2. selectors --------------------------------------------------------------------------------

SELECTORS = [
    ("app=web", ["w1", "w2", "w3"]),
    ("app==web", ["w1", "w2", "w3"]),
    ("app!=web", ["db", "bare"]),  # != also matches pods without the label
    ("app in (web,db)", ["db", "w1", "w2", "w3"]),
    ("app in (web, db),tier=front", ["w1", "w2"]),
    ("app notin (web)", ["db", "bare"]),
    ("tier", ["db", "w1", "w2", "w3"]),
    ("!tier", ["bare"]),
    ("app=web,tier!=front", ["w3"]),
    ("app.kubernetes.io/part-of=shop", ["w1"]),
    ("", ["bare", "db", "w1", "w2", "w3"]),
]


def test_label_and_field_selectors(flavour: Cluster):
    c = flavour
    labels = {"w1": {"app": "web", "tier": "front", "app.kubernetes.io/part-of": "shop"},
              "w2": {"app": "web", "tier": "front"}, "w3": {"app": "web", "tier": "back"},
              "db": {"app": "db", "tier": "back"}, "bare": {}}
    for name, lab in labels.items():
        c.core.create_namespaced_pod(c.ns, pod(name, lab))
    c.api.create({**pod("elsewhere", {"app": "web"}), "metadata": {"name": "elsewhere", "namespace": f"other-{c.ns}",
                                                                 "labels": {"app": "web"}}})
    for selector, expected in SELECTORS:
        assert names(c.core.list_namespaced_pod(c.ns, label_selector=selector).items) == sorted(expected), selector
        assert names(c.api.list("v1", "pods", c.ns, selector)) == sorted(expected), selector
    assert "elsewhere" in names(c.core.list_pod_for_all_namespaces(label_selector="app=web").items)

    c.api.wait(lambda: len(c.core.list_namespaced_pod(c.ns, field_selector="status.phase=Running").items) == 5)
    c.core.patch_namespaced_pod_status("db", c.ns, {"status": {"phase": "Failed"}})
    assert names(c.core.list_namespaced_pod(c.ns, field_selector="status.phase=Running").items) == [
        "bare", "w1", "w2", "w3"]
    assert names(c.core.list_namespaced_pod(c.ns, field_selector="status.phase!=Running,metadata.name=db").items) == [
        "db"]
    for bad in ({"label_selector": "app in (web"}, {"label_selector": "a=b=c"}, {"field_selector": "spec.image=x"}):
        with pytest.raises(ApiException) as e:
            c.core.list_namespaced_pod(c.ns, **bad)
        assert e.value.status == 400 and status_body(e.value)["reason"] == "BadRequest", bad
    if c.hook is not None:  # the hook's own helper returns the raw urllib3 response
        raw = c.hook.get_namespaced_pod_list(label_selector="tier=back", namespace=c.ns)
        assert names(json.loads(raw.data)["items"]) == ["db", "w3"]


# ---- 3. Deployment -> ReplicaSet -> Pods ---------------------------------------------------------

@BOTH
def test_deployment_controller_pods_replacement_and_scaling(flavour: Cluster):
    c = flavour
    c.apps.create_namespaced_deployment(c.ns, deployment("web", 3))
    d = ready_deployment(c, "web", 3)
    assert d.status.available_replicas == 3 and d.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    [rs] = c.apps.list_namespaced_replica_set(c.ns, label_selector="app=web").items
    assert re.fullmatch(r"web-[a-z0-9]{10}", rs.metadata.name)
    assert rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert [(o.kind, o.name, o.uid, o.controller) for o in rs.metadata.owner_references] == [
        ("Deployment", "web", d.metadata.uid, True)]
    assert rs.status.ready_replicas == 3
    pods = live_pods(c, "app=web")
    assert len(pods) == 3
    for p in pods:
        assert re.fullmatch(rf"{rs.metadata.name}-[a-z0-9]{{5}}", p.metadata.name)
        assert p.metadata.labels["pod-template-hash"] == rs.metadata.labels["pod-template-hash"]
        assert p.metadata.owner_references[0].uid == rs.metadata.uid
        assert p.status.phase == "Running"
        assert {cond.type: cond.status for cond in p.status.conditions}["Ready"] == "True"
        assert [(s.name, s.ready, s.restart_count) for s in p.status.container_statuses] == [("app", True, 0)]

    victim = pods[0].metadata.name
    c.core.delete_namespaced_pod(victim, c.ns, grace_period_seconds=0)
    c.api.wait(lambda: len(live_pods(c, "app=web")) == 3 and victim not in names(live_pods(c, "app=web")))
    ready_deployment(c, "web", 3)

    c.apps.patch_namespaced_deployment_scale("web", c.ns, {"spec": {"replicas": 5}})
    assert c.apps.read_namespaced_deployment_scale("web", c.ns).spec.replicas == 5
    ready_deployment(c, "web", 5)
    c.apps.patch_namespaced_deployment("web", c.ns, {"spec": {"replicas": 1}})
    ready_deployment(c, "web", 1)
    c.api.wait(lambda: len(c.core.list_namespaced_pod(c.ns, label_selector="app=web").items) == 1)  # grace over
    c.apps.patch_namespaced_deployment_scale("web", c.ns, {"spec": {"replicas": 0}})
    c.api.wait(lambda: c.core.list_namespaced_pod(c.ns, label_selector="app=web").items == [])
    d = c.apps.read_namespaced_deployment("web", c.ns)
    assert d.status.replicas is None and d.status.observed_generation == d.metadata.generation
    if c.hook is not None:
        assert c.hook.get_deployment_status("web", c.ns).spec.replicas == 0


# ---- 4. rollouts and rollout undo ----------------------------------------------------------------

def replica_sets(c: Cluster) -> dict[str, tuple[str, int]]:
    """ReplicaSet name -> (revision, spec.replicas)."""
    return {rs.metadata.name: (rs.metadata.annotations["deployment.kubernetes.io/revision"], rs.spec.replicas)
            for rs in c.apps.list_namespaced_replica_set(c.ns).items}


def test_template_change_rolls_out_and_undo_is_a_new_revision(flavour: Cluster):
    c = flavour
    c.apps.create_namespaced_deployment(c.ns, deployment("web", 2))
    ready_deployment(c, "web", 2)
    [rs1] = replica_sets(c)
    c.apps.patch_namespaced_deployment("web", c.ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "registry.local/web:2"}]}}}})
    d = ready_deployment(c, "web", 2)
    assert d.metadata.generation == 2 and d.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    c.api.wait(lambda: replica_sets(c)[rs1] == ("1", 0) and len(live_pods(c, "app=web")) == 2)
    [rs2] = [name for name in replica_sets(c) if name != rs1]
    assert replica_sets(c)[rs2] == ("2", 2)
    assert {p.spec.containers[0].image for p in live_pods(c, "app=web")} == {"registry.local/web:2"}

    # A rollout whose pods never become Ready keeps the old pods serving.
    c.apps.patch_namespaced_deployment("web", c.ns, {"spec": {"template": {
        "metadata": {"annotations": {"kubeapi.test/crashloop": "true"}},
        "spec": {"containers": [{"name": "app", "image": "registry.local/web:3-broken"}]}}}})

    def stuck():
        d = c.apps.read_namespaced_deployment("web", c.ns)
        return d.status.observed_generation == 3 and (d.status.updated_replicas or 0) == 2 and d
    d = c.api.wait(stuck)
    c.api.wait(lambda: any((s.restart_count or 0) > 0 for p in live_pods(c, "app=web")
                           for s in (p.status.container_statuses or []) if p.metadata.annotations))
    d = c.apps.read_namespaced_deployment("web", c.ns)
    assert d.status.ready_replicas == 2 and d.status.unavailable_replicas == 2
    assert replica_sets(c)[rs2] == ("2", 2)

    # `kubectl rollout undo`: the client copies the previous ReplicaSet's template into the Deployment.
    previous = c.apps.read_namespaced_replica_set(rs2, c.ns).spec.template
    template = c.apps.api_client.sanitize_for_serialization(previous)
    del template["metadata"]["labels"]["pod-template-hash"]
    c.apps.patch_namespaced_deployment("web", c.ns, [{"op": "replace", "path": "/spec/template", "value": template}])
    d = ready_deployment(c, "web", 2)
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "4"
    sets = c.api.wait(lambda: (s := replica_sets(c)) and s[rs2] == ("4", 2) and sum(r for _, r in s.values()) == 2
                      and s)
    assert len(sets) == 3  # rs1 (revision 1), the broken one (3), rs2 reused as revision 4


# ---- 5. StatefulSet ------------------------------------------------------------------------------

def test_statefulset_ordinals_scaling_and_status(flavour: Cluster):
    c = flavour
    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "redis"},
           "spec": {"replicas": 3, "serviceName": "redis", "selector": {"matchLabels": {"app": "redis"}},
                    "template": {"metadata": {"labels": {"app": "redis"}},
                                 "spec": {"containers": [container("redis:7")], "terminationGracePeriodSeconds": 2}}}}
    c.apps.create_namespaced_stateful_set(c.ns, sts)

    def ready(n):
        def check():
            s = c.apps.read_namespaced_stateful_set("redis", c.ns)
            st = s.status
            return (st is not None and st.observed_generation == s.metadata.generation and (st.replicas or 0) == n
                    and (st.ready_replicas or 0) == n and (st.current_replicas or 0) == n and s)
        return c.api.wait(check, timeout_s=20)

    s = ready(3)
    assert s.status.current_revision == s.status.update_revision
    assert names(live_pods(c, "app=redis")) == ["redis-0", "redis-1", "redis-2"]
    created = {p.metadata.name: p.metadata.creation_timestamp for p in live_pods(c, "app=redis")}
    assert created["redis-0"] <= created["redis-1"] <= created["redis-2"]  # OrderedReady
    c.apps.patch_namespaced_stateful_set_scale("redis", c.ns, {"spec": {"replicas": 0}})
    c.api.wait(lambda: c.core.list_namespaced_pod(c.ns, label_selector="app=redis").items == [], timeout_s=20)
    assert c.apps.read_namespaced_stateful_set("redis", c.ns).status.replicas in (0, None)
    c.apps.patch_namespaced_stateful_set("redis", c.ns, {"spec": {"replicas": 2}})
    s = ready(2)
    assert s.metadata.generation == 3
    assert names(live_pods(c, "app=redis")) == ["redis-0", "redis-1"]
    c.core.delete_namespaced_pod("redis-1", c.ns)  # a killed member comes back under the same name
    c.api.wait(lambda: (p := c.api.get("v1", "pods", c.ns, "redis-1")) and "deletionTimestamp" in p["metadata"])
    ready(2)


# ---- 6. graceful deletion and propagation --------------------------------------------------------

def test_pod_delete_honours_grace_period(flavour: Cluster):
    c = flavour
    for name in ("slow", "body", "force", "default"):
        c.core.create_namespaced_pod(c.ns, pod(name, grace=10))
    c.api.wait(lambda: all(p.spec.node_name for p in c.core.list_namespaced_pod(c.ns).items))

    deleted = c.core.delete_namespaced_pod("slow", c.ns, grace_period_seconds=20)
    assert deleted.metadata.deletion_timestamp is not None and deleted.metadata.deletion_grace_period_seconds == 20
    still = c.core.read_namespaced_pod("slow", c.ns)
    assert still.metadata.deletion_grace_period_seconds == 20
    c.core.delete_namespaced_pod("body", c.ns, body=k.V1DeleteOptions(grace_period_seconds=5))
    assert c.core.read_namespaced_pod("body", c.ns).metadata.deletion_grace_period_seconds == 5
    c.core.delete_namespaced_pod("default", c.ns)  # no grace given: spec.terminationGracePeriodSeconds
    assert c.core.read_namespaced_pod("default", c.ns).metadata.deletion_grace_period_seconds == 10
    c.core.delete_namespaced_pod("force", c.ns, grace_period_seconds=0)
    with pytest.raises(ApiException) as gone:
        c.core.read_namespaced_pod("force", c.ns)
    assert gone.value.status == 404
    c.api.wait(lambda: names(c.core.list_namespaced_pod(c.ns).items) == [], timeout_s=15)  # 20 s * 0.1


@pytest.mark.parametrize("policy", ["Background", "Foreground", "Orphan"])
def test_deployment_delete_propagation(flavour: Cluster, policy):
    c = flavour
    c.apps.create_namespaced_deployment(c.ns, deployment("web", 2))
    ready_deployment(c, "web", 2)
    c.apps.delete_namespaced_deployment("web", c.ns, propagation_policy=policy)
    if policy == "Foreground":  # the owner waits, marked, for its dependents
        d = c.apps.read_namespaced_deployment("web", c.ns)
        assert d.metadata.deletion_timestamp is not None and "foregroundDeletion" in d.metadata.finalizers
    if policy == "Orphan":
        c.api.wait(lambda: c.api.get("apps/v1", "deployments", c.ns, "web") is None)
        [rs] = c.apps.list_namespaced_replica_set(c.ns).items
        assert rs.metadata.owner_references is None
        assert len(live_pods(c, "app=web")) == 2  # the ReplicaSet still runs its pods
        return
    c.api.wait(lambda: c.apps.list_namespaced_replica_set(c.ns).items == []
               and c.core.list_namespaced_pod(c.ns).items == []
               and c.apps.list_namespaced_deployment(c.ns).items == [], timeout_s=15)
    with pytest.raises(ApiException) as e:
        c.apps.delete_namespaced_deployment("web", c.ns)
    assert e.value.status == 404


def test_delete_options_validation_and_eviction(flavour: Cluster):
    c = flavour
    c.core.create_namespaced_pod(c.ns, pod("p", grace=0))
    with pytest.raises(ApiException) as e:
        c.core.delete_namespaced_pod("p", c.ns, propagation_policy="Sideways")
    assert e.value.status == 422
    with pytest.raises(ApiException) as e:
        c.core.delete_namespaced_pod("p", c.ns, body=k.V1DeleteOptions(preconditions=k.V1Preconditions(uid="x")))
    assert e.value.status == 409
    c.core.create_namespaced_pod_eviction("p", c.ns, {"apiVersion": "policy/v1", "kind": "Eviction",
                                                      "metadata": {"name": "p"}})
    c.api.wait(lambda: c.api.get("v1", "pods", c.ns, "p") is None)


# ---- 7. watch ------------------------------------------------------------------------------------

def test_watch_streams_events(flavour: Cluster):
    c = flavour
    c.core.create_namespaced_pod(c.ns, pod("first", {"app": "w"}, grace=0))
    events: list[tuple[str, str]] = []
    started = threading.Event()

    def watch():
        w = Watch()
        for ev in w.stream(c.core.list_namespaced_pod, c.ns, label_selector="app=w", timeout_seconds=10,
                           _request_timeout=15):
            started.set()
            events.append((ev["type"], ev["object"].metadata.name))
            if ("DELETED", "first") in events:
                w.stop()

    t = threading.Thread(target=watch)
    t.start()
    assert started.wait(10)
    c.core.create_namespaced_pod(c.ns, pod("second", {"app": "w"}))
    c.core.create_namespaced_pod(c.ns, pod("other", {"app": "x"}))
    c.api.wait(lambda: ("MODIFIED", "second") in events)  # scheduled, then Running
    c.core.delete_namespaced_pod("first", c.ns, grace_period_seconds=0)
    t.join(15)
    assert not t.is_alive()
    assert events[0] == ("ADDED", "first") and ("ADDED", "second") in events and events[-1] == ("DELETED", "first")
    assert "other" not in {name for _, name in events}
    assert any("watch=True" in path for _, path in c.api.requests("GET"))  # what kubernetes-python sends

    # watch=true (lower case, as kubectl and kubernetes_asyncio send), resuming from a list's resourceVersion
    rv = c.core.list_namespaced_pod(c.ns).metadata.resource_version
    c.core.delete_namespaced_pod("other", c.ns, grace_period_seconds=0)
    url = (f"{c.api.url}/api/v1/namespaces/{c.ns}/pods?watch=true&resourceVersion={rv}&timeoutSeconds=1"
           "&fieldSelector=metadata.name%3Dother")
    with urllib.request.urlopen(url, timeout=10) as resp:
        lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("DELETED", "other")]


# ---- 8. custom resources -------------------------------------------------------------------------

@BOTH
def test_virtualservice_and_httpchaos(flavour: Cluster):
    c = flavour
    co, istio, chaos = c.custom, ("networking.istio.io", "v1beta1"), ("chaos-mesh.org", "v1alpha1")
    assert co.list_namespaced_custom_object(*istio, c.ns, "virtualservices")["items"] == []
    assert co.list_namespaced_custom_object(*chaos, c.ns, "httpchaos")["items"] == []
    vs = {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
          "metadata": {"name": "web", "labels": {"app": "web"}},
          "spec": {"hosts": ["web"], "http": [{"route": [{"destination": {"host": "web"}}]}]}}
    if c.hook is not None:
        c.hook.create_custom_object(*istio, "virtualservices", vs, namespace=c.ns)
        got = c.hook.get_custom_object(*istio, "virtualservices", "web", namespace=c.ns)
    else:
        co.create_namespaced_custom_object(*istio, c.ns, "virtualservices", vs)
        got = co.get_namespaced_custom_object(*istio, c.ns, "virtualservices", "web")
    assert got["metadata"]["namespace"] == c.ns and got["metadata"]["generation"] == 1
    co.create_namespaced_custom_object(*istio, c.ns, "virtualservices",
                                       {**vs, "metadata": {"name": "api", "labels": {"app": "api"}}})
    fault = {"fault": {"abort": {"httpStatus": 503, "percentage": {"value": 50}}}}
    patched = co.patch_namespaced_custom_object(*istio, c.ns, "virtualservices", "web",
                                                {"spec": {"http": [{**fault, "route": [{"destination": {"host": "web"}}]}]}})
    assert patched["spec"]["http"][0]["fault"]["abort"]["httpStatus"] == 503 and patched["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as e:  # a JSON-patch list sent as merge-patch, as a real server answers
        co.patch_namespaced_custom_object(*istio, c.ns, "virtualservices", "web",
                                          [{"op": "remove", "path": "/spec/http/0/fault"}])
    assert e.value.status == 422
    co.patch_namespaced_custom_object(*istio, c.ns, "virtualservices", "web",
                                      [{"op": "remove", "path": "/spec/http/0/fault"}],
                                      _content_type="application/json-patch+json")
    assert "fault" not in co.get_namespaced_custom_object(*istio, c.ns, "virtualservices", "web")["spec"]["http"][0]
    listed = co.list_namespaced_custom_object(*istio, c.ns, "virtualservices", label_selector="app=web")["items"]
    assert names(listed) == ["web"]

    chaos_obj = {"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "HTTPChaos",
                 "metadata": {"name": "abort-web", "labels": {"resilience/run": "r1"}},
                 "spec": {"mode": "all", "selector": {"labelSelectors": {"app": "web"}}, "target": "Request",
                          "port": 8080, "abort": True, "duration": "30s"}}
    co.create_namespaced_custom_object(*chaos, c.ns, "httpchaos", chaos_obj)
    assert names(co.list_namespaced_custom_object(*chaos, c.ns, "httpchaos",
                                                  label_selector="resilience/run=r1")["items"]) == ["abort-web"]
    assert co.list_namespaced_custom_object(*chaos, c.ns, "httpchaos", label_selector="resilience/run=r2")[
        "items"] == []
    if c.hook is not None:
        c.hook.delete_custom_object(*chaos, "httpchaos", "abort-web", namespace=c.ns)
    else:
        co.delete_namespaced_custom_object(*chaos, c.ns, "httpchaos", "abort-web")
    assert co.list_namespaced_custom_object(*chaos, c.ns, "httpchaos")["items"] == []
    with pytest.raises(ApiException) as e:
        co.get_namespaced_custom_object(*chaos, c.ns, "httpchaos", "abort-web")
    assert e.value.status == 404


def test_other_builtin_kinds_and_empty_lists(flavour: Cluster):
    c = flavour
    net = k.NetworkingV1Api(c.core.api_client)
    assert net.list_namespaced_network_policy(c.ns).items == []
    assert c.core.list_namespaced_service(c.ns).items == []
    net.create_namespaced_network_policy(c.ns, {"metadata": {"name": "deny-all"},
                                                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
    c.core.create_namespaced_service(c.ns, {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"},
                                                                                   "ports": [{"port": 80}]}})
    assert names(net.list_namespaced_network_policy(c.ns).items) == ["deny-all"]
    assert names(c.core.list_namespaced_service(c.ns).items) == ["web"]
    net.delete_namespaced_network_policy("deny-all", c.ns)
    assert net.list_namespaced_network_policy(c.ns).items == []


# ---- 8b. the kubelet's memory limits and activeDeadlineSeconds ---------------------------------------

def stress_pod(name: str, vm_bytes: str, limit: str, restart_policy: str, **spec: Any) -> dict[str, Any]:
    """The Kubernetes documentation's memory-limit example: polinux/stress allocating `vm_bytes` under `limit`."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": restart_policy, **spec, "containers": [{
                "name": "stress", "image": "polinux/stress", "command": ["stress"],
                "args": ["--vm", "1", "--vm-bytes", vm_bytes, "--vm-hang", "1"],
                "resources": {"limits": {"memory": limit}, "requests": {"memory": limit}}}]}}


@pytest.mark.parametrize(("quantity", "size"), [("64Mi", 64 * 2**20), ("1Gi", 2**30), ("128M", 128 * 10**6),
                                                ("134217728", 2**27), ("0.5Gi", 2**29)])
def test_memory_quantities(quantity, size):
    from .controllers import memory_quantity

    assert memory_quantity(quantity) == size


@BOTH
def test_a_stress_container_over_its_memory_limit_is_oom_killed(flavour: Cluster):
    from .controllers import stress_demand_bytes

    c = flavour
    assert stress_demand_bytes(stress_pod("x", "256M", "64Mi", "Never")["spec"]["containers"][0]) == 256 * 2**20
    assert stress_demand_bytes(container()) is None  # not stress: never OOM-killed
    c.core.create_namespaced_pod(c.ns, stress_pod("restarted", "256M", "64Mi", "OnFailure"))
    c.core.create_namespaced_pod(c.ns, stress_pod("once", "256M", "64Mi", "Never"))
    c.core.create_namespaced_pod(c.ns, stress_pod("fits", "32M", "64Mi", "OnFailure"))
    c.core.create_namespaced_pod(c.ns, stress_pod("deadline", "32M", "64Mi", "OnFailure", activeDeadlineSeconds=2))

    def status(name: str) -> Any:
        return c.core.read_namespaced_pod(name, c.ns).status

    killed_now = c.api.wait(lambda: (s := status("restarted").container_statuses) and s[0].state.terminated and s[0])
    assert (killed_now.state.terminated.reason, killed_now.state.terminated.exit_code) == ("OOMKilled", 137)
    assert not killed_now.ready
    again = c.api.wait(lambda: (s := status("restarted").container_statuses) and s[0].restart_count >= 2 and s[0])
    assert (again.last_state.terminated.reason, again.last_state.terminated.exit_code) == ("OOMKilled", 137)
    assert status("restarted").phase == "Running"  # OnFailure: restarted, not failed

    once = c.api.wait(lambda: (s := status("once")).phase == "Failed" and s)
    [stress] = once.container_statuses
    assert (stress.state.terminated.reason, stress.state.terminated.exit_code, stress.restart_count) == (
        "OOMKilled", 137, 0)

    fits = status("fits")
    assert fits.phase == "Running" and fits.container_statuses[0].restart_count == 0
    assert fits.container_statuses[0].state.running is not None and fits.container_statuses[0].last_state is None

    ended = c.api.wait(lambda: (s := status("deadline")).phase == "Failed" and s, timeout_s=10)
    assert (ended.reason, ended.container_statuses[0].state.terminated is not None) == ("DeadlineExceeded", True)
    assert not [cond for cond in ended.conditions if cond.type == "Ready" and cond.status == "True"]
    for name in ("restarted", "once", "fits", "deadline"):
        c.core.delete_namespaced_pod(name, c.ns, grace_period_seconds=0)


# ---- 9. injected failures and the request log -----------------------------------------------------

def test_fail_next_answers_the_status_and_changes_nothing(flavour: Cluster):
    c = flavour
    c.core.create_namespaced_pod(c.ns, pod("victim", grace=0))
    c.api.fail_next("DELETE", rf"/namespaces/{c.ns}/pods/victim", 500)
    with pytest.raises(ApiException) as e:
        c.core.delete_namespaced_pod("victim", c.ns)
    assert e.value.status == 500 and status_body(e.value)["kind"] == "Status"
    assert c.api.get("v1", "pods", c.ns, "victim") is not None  # still there
    c.api.fail_next("POST", rf"/namespaces/{c.ns}/pods", 409)
    with pytest.raises(ApiException) as e:
        c.core.create_namespaced_pod(c.ns, pod("newcomer"))
    assert e.value.status == 409 and c.api.get("v1", "pods", c.ns, "newcomer") is None
    c.api.fail_next("PATCH", r"/scale", 503)
    with pytest.raises(ApiException) as e:
        c.apps.patch_namespaced_deployment_scale("nothing-yet", c.ns, {"spec": {"replicas": 0}})
    assert e.value.status == 503
    c.core.delete_namespaced_pod("victim", c.ns)  # one-shot: the next one goes through
    assert c.api.get("v1", "pods", c.ns, "victim") is None


def test_request_log_and_dry_run(flavour: Cluster):
    c = flavour
    c.api.create(pod("seeded"))  # direct set-up is not a request
    before = len(c.api.requests())
    c.core.list_namespaced_pod(c.ns, label_selector="app=x")
    c.core.create_namespaced_pod(c.ns, pod("dry"), dry_run="All")
    c.core.delete_namespaced_pod("seeded", "default", dry_run="All")
    seen = c.api.requests()[before:]
    assert seen == [("GET", f"/api/v1/namespaces/{c.ns}/pods?labelSelector=app%3Dx"),
                    ("POST", f"/api/v1/namespaces/{c.ns}/pods?dryRun=All"),
                    ("DELETE", "/api/v1/namespaces/default/pods/seeded?dryRun=All")]
    assert [m for m, _ in c.api.requests()[before:] if m != "GET"] == ["POST", "DELETE"]
    assert c.api.get("v1", "pods", c.ns, "dry") is None and c.api.get("v1", "pods", "default", "seeded") is not None
    c.api.wait(lambda: True)
    c.core.delete_namespaced_pod("seeded", "default", grace_period_seconds=0)


# ---- lifecycle -----------------------------------------------------------------------------------

def test_stop_ends_watches_and_leaves_no_thread():
    with KubeApi() as server:
        core = k.CoreV1Api(k.ApiClient(k.Configuration(host=server.url)))
        ended: list[str] = []

        def watch():
            try:
                for _ in Watch().stream(core.list_namespaced_pod, "x", _request_timeout=30):
                    pass
            except Exception as e:  # the stream ends; re-watching a stopped server fails
                ended.append(type(e).__name__)

        watcher = threading.Thread(target=watch)
        watcher.start()
        server.wait(lambda: any("watch" in p for _, p in server.requests("GET")))
    watcher.join(10)
    assert not watcher.is_alive()
    assert server._thread not in threading.enumerate()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", server.port)) != 0  # nobody listens any more
