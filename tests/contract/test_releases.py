"""The releases capability's contract (emergency rollback): after a second release is rolled out, a rollback
returns the region to the previous release, every replica runs it again, and a retried rollback goes no further.

Parametrised over the lab (its primary region's real replicas, restarted one at a time by its supervisor) and
the Kubernetes backend against the loopback API server (``tests/contract/kubeapi``: its Deployment controller
keeps a ReplicaSet per template revision and reuses an older one under the next revision on a ``rollout
undo``). Kubernetes only: current and previous swap as with ``kubectl rollout undo``, and a Helm-managed app is
rolled back by ``helm rollback`` (a stand-in ``helm`` on PATH here: no Helm binary can be installed on this
machine) or refused at the start when the worker has no helm.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resilience.platforms.types import AppRelease
from tests.contract.kubeapi import KubeApi
from tests.contract.platforms import CONN_ID, NAMESPACE, PLATFORMS, capability, kubernetes_target
from tests.contract.test_workloads import app_deployment

FIRST, SECOND = "registry.local/ofm-social-os:1.4.2", "registry.local/ofm-social-os:1.4.3"
HELM_DEPLOYMENT, HELM_SELECTOR, HELM_RELEASE = "ofm-social-os-helm", "app=ofm-social-os-helm", "ofm"
HELM_FIRST, HELM_SECOND = "registry.local/ofm-social-os:2.0.0", "registry.local/ofm-social-os:2.0.1"


def helm_deployment() -> dict[str, Any]:
    """A Deployment of a Helm chart: labelled managed-by Helm, annotated with its release, as Helm 3 does."""
    manifest = app_deployment(HELM_FIRST)
    labels = {"app": "ofm-social-os-helm"}
    manifest["metadata"] = {"name": HELM_DEPLOYMENT, "namespace": NAMESPACE,
                            "labels": {**labels, "app.kubernetes.io/managed-by": "Helm"},
                            "annotations": {"meta.helm.sh/release-name": HELM_RELEASE,
                                            "meta.helm.sh/release-namespace": NAMESPACE}}
    manifest["spec"]["selector"] = {"matchLabels": labels}
    manifest["spec"]["template"]["metadata"] = {"labels": labels}
    return manifest


@pytest.fixture(scope="module")
def kubeapi() -> Iterator[KubeApi]:
    with KubeApi() as api:
        api.create(app_deployment(FIRST))
        api.create(helm_deployment())
        yield api
        assert api.controller_errors() == []


def on_kubernetes(kubeapi: KubeApi, monkeypatch: pytest.MonkeyPatch, app: tuple[str, str] | None = None) -> Any:
    from resilience.platforms.kubernetes.releases import KubernetesReleases
    from resilience.platforms.kubernetes.target import KubernetesTarget

    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", kubeapi.connection_json(namespace=NAMESPACE))
    target = KubernetesTarget(CONN_ID, NAMESPACE, *app) if app else kubernetes_target()
    return KubernetesReleases(target, "primary")


@pytest.fixture(params=PLATFORMS)
def platform(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    from resilience.platforms.kubernetes.releases import KubernetesReleases

    return request.param, capability(request, monkeypatch, lambda target: KubernetesReleases(target, "primary"))


def deploy(kind: str, request: pytest.FixtureRequest, release: str) -> None:
    """Roll out ``release`` the platform's own way: the lab's deploy, or a new image in the pod template."""
    if kind == "lab":
        from resilience.lab import control

        control.deploy_release(request.getfixturevalue("lab"), "primary", release, fail_rate=0.0)
        return
    from resilience.platforms.kubernetes.releases import KubernetesReleases

    releases = KubernetesReleases(kubernetes_target(), "primary")
    releases._wait_rollout("primary")  # the release before has its ReplicaSet: else it leaves no revision
    releases.apps.patch_namespaced_deployment(releases.target.app_deployment, NAMESPACE, {
        "metadata": {"annotations": {"kubernetes.io/change-cause": f"deploy {release}"}},
        "spec": {"template": {"spec": {"containers": [{"name": "api", "image": release}]}}}})
    releases._wait_rollout("primary")


def images(api: KubeApi, selector: str) -> set[str]:
    """The images the pods run (those not being deleted), read straight from the API server."""
    pods = api.list("v1", "pods", NAMESPACE, selector)
    return {c["image"] for p in pods if "deletionTimestamp" not in p["metadata"] for c in p["spec"]["containers"]}


def running(kind: str, request: pytest.FixtureRequest) -> set[str]:
    """What the replicas run, seen from outside: the lab's supervisor and /health, or the pods' images."""
    if kind == "lab":
        from resilience.lab import control

        return {str(r["release"]) for r in control.replicas(request.getfixturevalue("lab")).values()}
    return images(request.getfixturevalue("kubeapi"), "app=ofm-social-os")


def test_a_rollback_returns_to_the_previous_release_and_a_retry_goes_no_further(platform, request):
    kind, releases = platform
    first, second = ("v1", "v2") if kind == "lab" else (FIRST, SECOND)
    deploy(kind, request, second)
    before = releases.app_release("primary")
    assert isinstance(before, AppRelease) and before.rollback_blocker is None
    assert (before.current.release, before.current.rollback_of) == (second, None)
    assert before.previous is not None and before.previous.release == first
    assert before.history[-1] == before.current and before.previous in before.history
    assert running(kind, request) == {second}

    after = releases.rollback_app("primary")
    assert (after.current.release, after.current.rollback_of) == (first, second)
    assert after.current.number > before.current.number  # a rollback is a new revision
    assert running(kind, request) == {first}  # every replica runs the previous release again
    assert releases.app_release("primary") == after
    again = releases.rollback_app("primary")  # a retried task finishes the same rollback
    assert again == after and running(kind, request) == {first}
    if kind == "kubernetes":  # as kubectl rollout undo: the undone revision is now the previous one
        assert after.previous is not None and (after.previous.release, after.previous.number) == (
            second, before.current.number)


def test_the_region_must_be_the_environments_own(kubeapi, monkeypatch):
    """Kubernetes only: an environment is one region (the lab is both)."""
    releases = on_kubernetes(kubeapi, monkeypatch)
    with pytest.raises(ValueError, match=r"region: 'dr' is not this environment's region \('primary'"):
        releases.app_release("dr")


def fake_helm(bindir: Path, calls: Path) -> None:
    """A stand-in for the helm binary: records its arguments and the cluster of its --kubeconfig, then does to
    the chart's Deployment what ``helm rollback`` does to it (re-applies the previous release's template)."""
    bindir.mkdir()
    script = bindir / "helm"
    script.write_text(f"""#!{sys.executable}
import json, os, sys
from kubernetes import client, config
args = sys.argv[1:]
kubeconfig = args[args.index("--kubeconfig") + 1]
server = json.load(open(kubeconfig))["clusters"][0]["cluster"]["server"]
with open({str(calls)!r}, "a") as out:
    out.write(json.dumps({{"args": args, "server": server}}) + "\\n")
config.load_kube_config(config_file=kubeconfig)
client.AppsV1Api().patch_namespaced_deployment({HELM_DEPLOYMENT!r}, args[args.index("--namespace") + 1], {{
    "spec": {{"template": {{"spec": {{"containers": [{{"name": "api", "image": {HELM_FIRST!r}}}]}}}}}}}})
print("Rollback was a success! Happy Helming!")
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def roll_out_helm_upgrade(releases: Any) -> AppRelease:
    """``helm upgrade`` of the chart to its second release (the Deployment's template changes)."""
    releases.apps.patch_namespaced_deployment(HELM_DEPLOYMENT, NAMESPACE, {"spec": {"template": {"spec": {
        "containers": [{"name": "api", "image": HELM_SECOND}]}}}})
    return releases._wait_rollout("primary")


def test_a_helm_managed_app_is_rolled_back_by_helm_and_refused_without_it(kubeapi, monkeypatch, tmp_path):
    """Kubernetes only: a rollout undo of a Helm release's Deployment would be undone by the next helm upgrade."""
    path = os.environ["PATH"]
    releases = on_kubernetes(kubeapi, monkeypatch, (HELM_DEPLOYMENT, HELM_SELECTOR))
    upgraded = roll_out_helm_upgrade(releases)
    assert upgraded.managed_by == f"Helm release {HELM_RELEASE}" and upgraded.current.release == HELM_SECOND

    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))  # a worker without helm: refused before any change
    patches = len(kubeapi.requests("PATCH"))
    blocked = releases.app_release("primary")
    assert blocked.rollback_blocker is not None and "no helm binary" in blocked.rollback_blocker
    assert f"helm rollback {HELM_RELEASE} --namespace {NAMESPACE}" in blocked.rollback_blocker
    from resilience.errors import RefusedError

    with pytest.raises(RefusedError, match=f"belongs to Helm release {HELM_RELEASE}"):
        releases.rollback_app("primary")
    assert len(kubeapi.requests("PATCH")) == patches

    calls = tmp_path / "helm-calls.jsonl"
    fake_helm(tmp_path / "bin", calls)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{path}")
    assert releases.app_release("primary").rollback_blocker is None
    after = releases.rollback_app("primary")
    assert (after.current.release, after.current.rollback_of) == (HELM_FIRST, HELM_SECOND)
    assert images(kubeapi, HELM_SELECTOR) == {HELM_FIRST}
    [call] = [json.loads(line) for line in calls.read_text().splitlines()]
    args = call["args"]
    assert args[:6] == ["rollback", HELM_RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout"]
    assert call["server"] == kubeapi.url  # the Connection's cluster
    assert not Path(args[args.index("--kubeconfig") + 1]).exists()  # the credentials' file is gone
    assert releases.rollback_app("primary") == after  # a retry does not call helm again
    assert len(calls.read_text().splitlines()) == 1
