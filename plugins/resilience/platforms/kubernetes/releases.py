"""The app's releases on Kubernetes: its Deployment's ReplicaSets, and the runbook's rollback.

History is ``kubectl rollout history``'s: one ReplicaSet per pod-template revision (annotation
``deployment.kubernetes.io/revision``), the release being its image(s), the cause its
``kubernetes.io/change-cause``. ``previous`` is the ReplicaSet of the highest revision below the current one,
as ``kubectl rollout undo`` picks it.

Rollback = ``kubectl rollout undo`` through the API: one JSON patch sets the Deployment's pod template to the
previous ReplicaSet's (its ``pod-template-hash`` label dropped, as kubectl does) and its annotations to kubectl's
(the ReplicaSet's, the controller's own kept), then ``rollout status``: wait until
:func:`~resilience.platforms.kubernetes.workloads.rollout_state` says complete. As with kubectl, the Deployment
controller reuses the old ReplicaSet under the next revision: current and previous swap. A rollback run twice
does not swap them back: the patch also records ``resilience/rolled-back-revision`` (the revision undone) and
``resilience/rolled-back-to`` (the template hash restored) on the Deployment; while the Deployment is exactly
there (current hash and previous revision match), the current revision is a rollback (``rollback_of``) and a
retried rollback only waits for its rollout.

Helm. A Deployment labelled ``app.kubernetes.io/managed-by=Helm`` (or annotated
``meta.helm.sh/release-name``) belongs to a Helm release: a ``rollout undo`` would be reverted by the next
``helm upgrade`` (Helm merges against its own record of the release, which the undo leaves at the bad
revision). Helm's record lives in release Secrets (``sh.helm.release.v1.<name>.v<N>``), and rolling back means
applying the previous revision's whole manifest (every kind in the chart, three-way merged) and writing a new
record: reimplementing ``helm rollback`` here would be a partial copy of Helm with rights on every kind the chart
holds. So a Helm-managed app is rolled back by the ``helm`` binary itself (``helm rollback <release>
--namespace <ns> --wait``) with the Airflow Connection's cluster credentials, and the binary is required: when
it is not on the worker's PATH, ``app_release`` says so in ``rollback_blocker`` and ``emergency_rollback``
refuses at its start, before any side effect (naming the command to run by hand). Helm's "previous" is its
previous release revision; when that one did not change the pod template, the pods do not change (the
returned ``current`` says so). Helm needs its own rights (release Secrets, the chart's kinds): they are the
chart's deployer's, not granted by include/kubernetes/role.yaml.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from resilience.errors import RefusedError
from resilience.platforms.kubernetes.workloads import rollout_state
from resilience.platforms.types import AppRelease, Revision

if TYPE_CHECKING:
    from resilience.platforms.kubernetes.target import KubernetesTarget

log = logging.getLogger(__name__)

POLL_S = 0.2
PROGRESS_LOG_S = 10.0
ROLLOUT_TIMEOUT_S = 600.0  # kubectl rollout status waits up to progressDeadlineSeconds (600 s by default)
REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
HASH_LABEL = "pod-template-hash"
HELM_MANAGED_BY = ("app.kubernetes.io/managed-by", "Helm")
HELM_RELEASE = "meta.helm.sh/release-name"
ROLLED_BACK_REVISION = "resilience/rolled-back-revision"
ROLLED_BACK_TO = "resilience/rolled-back-to"
# kubectl rollout undo keeps these of the Deployment and takes every other annotation from the ReplicaSet
# (annotationsToSkip in k8s.io/kubectl/pkg/polymorphichelpers/rollback.go)
KUBECTL_SKIPPED = {"kubectl.kubernetes.io/last-applied-configuration", REVISION,
                   "deployment.kubernetes.io/revision-history", "deployment.kubernetes.io/desired-replicas",
                   "deployment.kubernetes.io/max-replicas", "deprecated.deployment.rollback.to"}


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def _template_hash(rs: dict[str, Any]) -> str | None:
    return ((rs.get("metadata") or {}).get("labels") or {}).get(HASH_LABEL)


def _revision_number(rs: dict[str, Any]) -> int:
    try:
        return int(_annotations(rs).get(REVISION, "0"))
    except ValueError:
        return 0


def _bare_template(template: dict[str, Any]) -> dict[str, Any]:
    """A pod template without the ``pod-template-hash`` label (what the Deployment's own template holds)."""
    bare = copy.deepcopy(template)
    labels = (bare.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return bare


def release_name(template: dict[str, Any]) -> str:
    """The images a pod template runs, in container order: what a release is on Kubernetes."""
    containers = (template.get("spec") or {}).get("containers") or []
    return ", ".join(str(c.get("image") or "?") for c in containers) or "?"


def _epoch(timestamp: Any) -> float | None:
    if isinstance(timestamp, datetime):
        return timestamp.timestamp()
    if isinstance(timestamp, str):
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    return None


def helm_release(deployment: dict[str, Any]) -> str | None:
    """The Helm release that owns the Deployment ("" when labelled Helm-managed without a release name), or
    None when Helm does not manage it."""
    meta = deployment.get("metadata") or {}
    name = _annotations(deployment).get(HELM_RELEASE)
    if name:
        return str(name)
    key, value = HELM_MANAGED_BY
    return "" if (meta.get("labels") or {}).get(key) == value else None


def app_release_of(region: str, deployment: dict[str, Any], replicasets: list[dict[str, Any]],
                   helm_binary: str | None) -> AppRelease:
    """The AppRelease of a Deployment and the ReplicaSets it owns (API dicts; pure)."""
    name = deployment["metadata"]["name"]
    ordered = sorted(replicasets, key=_revision_number)
    if not ordered:
        raise RefusedError(f"deployment {name}: no ReplicaSet yet (its first rollout has not started)")
    template = _bare_template(deployment["spec"]["template"])
    current_rs = next((rs for rs in ordered if _bare_template(rs["spec"]["template"]) == template), ordered[-1])
    older = [rs for rs in ordered if rs is not current_rs]
    previous_rs = older[-1] if older else None

    def revision(rs: dict[str, Any], rollback_of: str | None = None) -> Revision:
        return Revision(release_name(rs["spec"]["template"]), _revision_number(rs),
                        _epoch(rs["metadata"].get("creationTimestamp")), _annotations(rs).get(CHANGE_CAUSE),
                        rollback_of)

    marks = _annotations(deployment)
    rolled_back = (previous_rs is not None and marks.get(ROLLED_BACK_TO) == _template_hash(current_rs)
                   and marks.get(ROLLED_BACK_REVISION) == str(_revision_number(previous_rs)))
    current = revision(current_rs, release_name(previous_rs["spec"]["template"])
                       if rolled_back and previous_rs is not None else None)
    history = tuple(current if rs is current_rs else revision(rs) for rs in ordered)
    helm = helm_release(deployment)
    blocker = None
    if deployment["spec"].get("paused"):
        blocker = f"deployment {name} is paused: resume it first (kubectl rollout resume deployment/{name})"
    elif helm == "":
        blocker = (f"deployment {name} is labelled {HELM_MANAGED_BY[0]}={HELM_MANAGED_BY[1]} without a "
                   f"{HELM_RELEASE} annotation: the Helm release to roll back is unknown")
    elif helm and helm_binary is None:
        blocker = (f"deployment {name} belongs to Helm release {helm}, which only helm can roll back (a rollout "
                   f"undo would be reverted by the next helm upgrade), and no helm binary is on the worker's PATH: "
                   f"install it, or run `helm rollback {helm} --namespace {deployment['metadata']['namespace']}`")
    return AppRelease(region, current, revision(previous_rs) if previous_rs is not None else None, history,
                      f"Helm release {helm}" if helm else None, blocker)


def undo_patch(deployment: dict[str, Any], previous_rs: dict[str, Any], undone_revision: int) -> list[dict[str, Any]]:
    """``kubectl rollout undo``'s JSON patch (template and annotations replaced), with the rollback's marks and
    the Deployment's resourceVersion as a precondition (a concurrent change fails the patch, 409/422)."""
    annotations = {k: v for k, v in _annotations(deployment).items() if k != CHANGE_CAUSE}
    annotations.update({k: v for k, v in _annotations(previous_rs).items() if k not in KUBECTL_SKIPPED})
    annotations.update(_marks(previous_rs, undone_revision))
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": deployment["metadata"]["resourceVersion"]},
            {"op": "replace", "path": "/spec/template", "value": _bare_template(previous_rs["spec"]["template"])},
            {"op": "replace", "path": "/metadata/annotations", "value": annotations}]


def _marks(previous_rs: dict[str, Any], undone_revision: int) -> dict[str, str]:
    return {ROLLED_BACK_REVISION: str(undone_revision), ROLLED_BACK_TO: str(_template_hash(previous_rs))}


class KubernetesReleases:
    """The app's Deployment (``kubernetes.app.deployment``) in one namespace; the environment is one region."""

    def __init__(self, target: KubernetesTarget, region: str) -> None:
        from resilience.platforms.kubernetes.api import kubernetes_hook

        self.target, self.region = target, region
        self.hook = kubernetes_hook(target)
        self.apps = self.hook.apps_v1_client

    def _check_region(self, region: str) -> None:
        if region != self.region:
            raise ValueError(f"region: {region!r} is not this environment's region ({self.region!r}, namespace "
                             f"{self.target.namespace}): ask the other region's environment")

    def _read(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The Deployment and the ReplicaSets it controls (found by its selector, then by owner uid)."""
        serialize = self.apps.api_client.sanitize_for_serialization
        deployment = serialize(self.apps.read_namespaced_deployment(self.target.app_deployment,
                                                                    self.target.namespace))
        selector = ",".join(f"{k}={v}" for k, v in
                            ((deployment["spec"].get("selector") or {}).get("matchLabels") or {}).items())
        listed = serialize(self.apps.list_namespaced_replica_set(self.target.namespace, label_selector=selector))
        uid = deployment["metadata"]["uid"]
        owned = [rs for rs in listed.get("items") or []
                 if any(ref.get("uid") == uid and ref.get("controller") for ref in rs["metadata"].get("ownerReferences")
                        or [])]
        return deployment, owned

    def requests_for(self, intent: str, arguments: Mapping[str, object]) -> list[str]:
        """Plan mode: what ``rollback_app`` would send, by who manages the Deployment (``managed_by`` from
        :meth:`app_release`: a Helm release, or none: ``kubectl rollout undo`` through the API)."""
        ns, name = self.target.namespace, self.target.app_deployment
        path = f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"
        if intent != "rollback_app":
            return [f"{intent}: reads only"]
        wait = f"GET {path} until every replica runs the restored template (at most {ROLLOUT_TIMEOUT_S:g} s)"
        reads = [f"GET {path}", f"GET /apis/apps/v1/namespaces/{ns}/replicasets (the Deployment's ReplicaSets)"]
        target = f"revision {arguments.get('to_revision')} ({arguments.get('to_release')})"
        managed_by = str(arguments.get("managed_by") or "")
        if managed_by.startswith("Helm release "):
            helm = managed_by.removeprefix("Helm release ")
            return [*reads, f"PATCH {path} metadata.annotations {ROLLED_BACK_REVISION}, {ROLLED_BACK_TO} (the "
                            "rollback's marks, so a retried task only waits)",
                    f"helm rollback {helm} --namespace {ns} --wait --timeout {int(ROLLOUT_TIMEOUT_S)}s (the "
                    f"Connection's kubeconfig) -> {target}", wait]
        return [*reads, f"PATCH {path} (JSON patch, rollout undo: test metadata.resourceVersion, replace "
                        f"spec.template with {target}'s ReplicaSet template, replace metadata.annotations with "
                        "the rollback's marks)", wait]

    def app_release(self, region: str) -> AppRelease:
        self._check_region(region)
        deployment, owned = self._read()
        release = app_release_of(region, deployment, owned, shutil.which("helm"))
        log.info("Region %s (deployment %s/%s) runs revision %d: %s%s", region, self.target.namespace,
                 self.target.app_deployment, release.current.number, release.current.release,
                 f" ({release.managed_by})" if release.managed_by else "")
        return release

    def rollback_app(self, region: str) -> AppRelease:
        self._check_region(region)
        deployment, owned = self._read()
        release = app_release_of(region, deployment, owned, shutil.which("helm"))
        name, ns = self.target.app_deployment, self.target.namespace
        if release.rollback_blocker:
            raise RefusedError(f"region {region}: {release.rollback_blocker}")
        if release.current.rollback_of:
            log.warning("Not rolling back deployment %s/%s again: revision %d (%s) is already the rollback of %s; "
                        "waiting for its rollout", ns, name, release.current.number, release.current.release,
                        release.current.rollback_of)
            return self._wait_rollout(region)
        if release.previous is None:
            raise RefusedError(f"region {region}: deployment {ns}/{name} has no previous revision to roll back to "
                               f"(current revision {release.current.number}: {release.current.release})")
        previous_rs = next(rs for rs in owned if _revision_number(rs) == release.previous.number)
        if helm_release(deployment):
            self._helm_rollback(deployment, previous_rs, release)
        else:
            log.info("Rolling back deployment %s/%s (rollout undo): revision %d (%s) -> the template of revision %d "
                     "(%s)", ns, name, release.current.number, release.current.release, release.previous.number,
                     release.previous.release)
            self.apps.patch_namespaced_deployment(name, ns, undo_patch(deployment, previous_rs,
                                                                       release.current.number))
        return self._wait_rollout(region)

    def _helm_rollback(self, deployment: dict[str, Any], previous_rs: dict[str, Any], release: AppRelease) -> None:
        helm, ns = helm_release(deployment), self.target.namespace
        binary = shutil.which("helm")
        if not helm or binary is None:  # app_release_of set the blocker: checked by the caller
            raise RefusedError(f"region {release.region}: {release.rollback_blocker}")
        # the marks first: once helm has restored the template they make a retried task wait instead of undoing
        self.apps.patch_namespaced_deployment(self.target.app_deployment, ns, {"metadata": {"annotations": _marks(
            previous_rs, release.current.number)}})
        timeout_s = int(ROLLOUT_TIMEOUT_S)
        with self._helm_kubeconfig() as flags:
            cmd = [binary, "rollback", helm, "--namespace", ns, "--wait", "--timeout", f"{timeout_s}s", *flags]
            log.info("Rolling back Helm release %s in %s (deployment %s, revision %d: %s): %s", helm, ns,
                     self.target.app_deployment, release.current.number, release.current.release,
                     " ".join(["helm", *cmd[1:]]))
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s + 60, check=False)
        if done.returncode != 0:
            tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-5:])
            raise RuntimeError(f"helm rollback {helm} --namespace {ns} exited {done.returncode}: {tail}")
        log.info("helm: %s", (done.stdout.strip().splitlines() or ["(no output)"])[-1])

    @contextlib.contextmanager
    def _helm_kubeconfig(self) -> Iterator[list[str]]:
        """helm's flags for the Connection's cluster: in-cluster (none), its kubeconfig file, or its inline
        kubeconfig written to a private temporary file removed afterwards."""
        extras = self.hook._get_field  # the hook's reader of the Connection's extras (with the old prefixes)
        context = ["--kube-context", str(extras("cluster_context"))] if extras("cluster_context") else []
        if extras("in_cluster"):
            yield context
        elif extras("kube_config_path"):
            yield ["--kubeconfig", str(extras("kube_config_path")), *context]
        elif extras("kube_config"):
            inline = extras("kube_config")
            fd, path = tempfile.mkstemp(prefix="resilience-helm-", suffix=".kubeconfig")
            try:
                with os.fdopen(fd, "w") as out:
                    out.write(inline if isinstance(inline, str) else json.dumps(inline))
                yield ["--kubeconfig", path, *context]
            finally:
                os.unlink(path)
        else:
            yield context  # helm's defaults (KUBECONFIG, ~/.kube/config), as the hook's own

    def _wait_rollout(self, region: str) -> AppRelease:
        """``kubectl rollout status``: until every replica runs the Deployment's template and is available."""
        name, ns = self.target.app_deployment, self.target.namespace
        started = last_log = time.monotonic()
        while True:
            state = rollout_state(self.apps.read_namespaced_deployment(name, ns))
            if state is None:
                release = self.app_release(region)
                log.info("Deployment %s/%s rolled out in %.1f s: revision %d (%s)", ns, name,
                         time.monotonic() - started, release.current.number, release.current.release)
                return release
            if time.monotonic() - started > ROLLOUT_TIMEOUT_S:
                raise TimeoutError(f"deployment {ns}/{name}: rollout not complete after {ROLLOUT_TIMEOUT_S:g} s "
                                   f"({state})")
            if time.monotonic() - last_log >= PROGRESS_LOG_S:
                log.info("Waiting for the rollout of %s/%s: %s", ns, name, state)
                last_log = time.monotonic()
            time.sleep(POLL_S)
