"""Memory hogs on Kubernetes: a stress pod with a memory limit in the app's namespace (memory-pressure).

The pod is the Kubernetes documentation's own example of a container exceeding its memory limit
(``polinux/stress``, ``stress --vm 1 --vm-bytes <hog>M --vm-hang 1`` under ``limits.memory``:
https://kubernetes.io/docs/tasks/configure-pod-container/assign-memory-resource/#exceed-a-container-s-memory-limit):
the kernel OOM-kills it inside its own limit, the kubelet reports the container ``terminated`` with reason
``OOMKilled`` (exit code 137) and, with ``restartPolicy: OnFailure``, restarts it (``restartCount``,
``lastState.terminated``). Its memory request equals its limit, so the scheduler reserves what it may use:
the node itself is never pushed past what it accepted.

Every hog is labelled ``chaos-experiment=<ledger id>`` and ``app.kubernetes.io/managed-by=resilience`` (as the
object-store fault's VirtualServices) so abort and sweep find it; a pod of the hog's name without those labels is
never touched. Dead-man switch: ``activeDeadlineSeconds`` from the deadline, after which the kubelet ends the pod
by itself (phase Failed, reason DeadlineExceeded) even if nobody reverts the fault.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from resilience.errors import RefusedError
from resilience.platforms.types import MemoryHog

if TYPE_CHECKING:
    from resilience.platforms.kubernetes.target import KubernetesTarget

log = logging.getLogger(__name__)

IMAGE = "polinux/stress"  # as the documentation's example; pin a digest where images are mirrored
CONTAINER = "stress"
MANAGED_BY = ("app.kubernetes.io/managed-by", "resilience")
EXPERIMENT_LABEL = "chaos-experiment"
HOG_LABEL = "resilience/memory-hog"
ANNOTATIONS = {"limit_mb": "resilience/limit-mb", "hog_mb": "resilience/hog-mb", "expires_at": "resilience/expires-at"}
POLL_S = 0.2
GONE_TIMEOUT_S = 60.0
OOM_KILLED = "OOMKilled"


def active_deadline_s(deadline_epoch_s: float, now_s: float) -> int:
    """``activeDeadlineSeconds``: whole seconds until the deadline, rounded down (ending early is safe, late is
    not), at least 1; ValueError naming the field when the deadline is not in the future."""
    if deadline_epoch_s <= now_s:
        raise ValueError(f"deadline_epoch_s: {deadline_epoch_s:.3f} is not in the future (now {now_s:.3f})")
    return max(1, math.floor(deadline_epoch_s - now_s))


def stress_pod(name: str, namespace: str, limit_mb: int, hog_mb: int, deadline_epoch_s: float | None,
               experiment: str | None, now_s: float) -> dict[str, Any]:
    """The stress pod: ``hog_mb`` MiB allocated under a ``limit_mb`` MiB limit, ended at the deadline."""
    labelled = experiment or "manual"
    annotations = {ANNOTATIONS["limit_mb"]: str(limit_mb), ANNOTATIONS["hog_mb"]: str(hog_mb),
                   "resilience/owner": f"memory-pressure fault, ledger entry {labelled}"}
    spec: dict[str, Any] = {
        "restartPolicy": "OnFailure",  # an OOM kill restarts it: the pressure lasts the fault's window
        "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": False,
        "containers": [{
            "name": CONTAINER, "image": IMAGE, "command": ["stress"],
            "args": ["--vm", "1", "--vm-bytes", f"{hog_mb}M", "--vm-hang", "1"],
            "resources": {"limits": {"memory": f"{limit_mb}Mi", "cpu": "250m"},
                          "requests": {"memory": f"{limit_mb}Mi", "cpu": "10m"}},
        }],
    }
    if deadline_epoch_s is not None:
        spec["activeDeadlineSeconds"] = active_deadline_s(deadline_epoch_s, now_s)
        annotations[ANNOTATIONS["expires_at"]] = repr(float(deadline_epoch_s))
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {EXPERIMENT_LABEL: labelled, MANAGED_BY[0]: MANAGED_BY[1], HOG_LABEL: name},
                         "annotations": annotations},
            "spec": spec}


def ours(pod: Any, name: str) -> bool:
    """A pod this product made for hog ``name`` (by its labels, not its name alone)."""
    labels = pod.metadata.labels or {}
    return labels.get(MANAGED_BY[0]) == MANAGED_BY[1] and labels.get(HOG_LABEL) == name and EXPERIMENT_LABEL in labels


def oom_kills(pod: Any) -> int:
    """How many times the hog's container was OOM-killed, from the pod's status (ContainerStatus ``state`` and
    ``lastState``: https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#PodStatus).

    Kubernetes keeps only the last termination: when it was ``OOMKilled``, every restart counts as one (the pod
    runs one stress container, restarted only on failure, and under its limit it fails only by OOM); a
    container terminated ``OOMKilled`` now and not yet restarted counts one more."""
    statuses = (pod.status.container_statuses or []) if pod.status else []
    kills = 0
    for s in statuses:
        last = s.last_state.terminated if s.last_state else None
        now = s.state.terminated if s.state else None
        if last is not None and last.reason == OOM_KILLED:
            kills += s.restart_count or 0
        if now is not None and now.reason == OOM_KILLED:
            kills += 1
    return kills


def as_memory_hog(pod: Any) -> MemoryHog:
    meta, status = pod.metadata, pod.status
    annotations = meta.annotations or {}
    phase = status.phase if status else None
    running = meta.deletion_timestamp is None and phase not in ("Succeeded", "Failed")
    ended = None
    if not running:
        terminated = [s.state.terminated for s in (status.container_statuses or []) if s.state and s.state.terminated]
        ended = (status.reason if status and status.reason else
                 terminated[0].reason if terminated else "Deleting" if meta.deletion_timestamp else phase)
    expires = annotations.get(ANNOTATIONS["expires_at"])
    return MemoryHog(meta.name, int(annotations.get(ANNOTATIONS["limit_mb"], 0)),
                     int(annotations.get(ANNOTATIONS["hog_mb"], 0)), running, oom_kills(pod),
                     float(expires) if expires else None, (meta.labels or {}).get(EXPERIMENT_LABEL), ended,
                     f"pod {meta.namespace}/{meta.name}")


class KubernetesMemory:
    """Stress pods in one namespace (``environments.<name>.kubernetes.namespace``)."""

    def __init__(self, target: KubernetesTarget) -> None:
        self.target, self.namespace = target, target.namespace
        self._core: Any = None

    @property
    def core(self) -> Any:
        """The CoreV1 client, built on first use."""
        if self._core is None:
            from resilience.platforms.kubernetes.api import kubernetes_hook

            self._core = kubernetes_hook(self.target).core_v1_client
        return self._core

    def _read(self, name: str) -> Any | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.core.read_namespaced_pod(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _ours(self, name: str) -> Any | None:
        """The hog's pod, None when there is none; RefusedError when a pod of that name is not ours."""
        pod = self._read(name)
        if pod is not None and not ours(pod, name):
            raise RefusedError(f"pod {self.namespace}/{name} exists and is not a memory hog of this product "
                               f"(no labels {MANAGED_BY[0]}={MANAGED_BY[1]}, {HOG_LABEL}={name}): not touching it")
        return pod

    def requests_for(self, intent: str, arguments: Mapping[str, object]) -> list[str]:
        """Plan mode: the API requests ``intent`` would send."""
        pods, name = f"/api/v1/namespaces/{self.namespace}/pods", arguments.get("name")
        if intent == "start_memory_hog":
            deadline = arguments.get("deadline_epoch_s")
            return [f"GET {pods}/{name} (a hog of that name already running is kept)",
                    f"POST {pods} {name}: {IMAGE} allocating {arguments.get('hog_mb')} MiB under limits.memory="
                    f"{arguments.get('limit_mb')}Mi, restartPolicy OnFailure, "
                    + ("no activeDeadlineSeconds" if deadline is None else f"activeDeadlineSeconds until {deadline}")
                    + f" (labels {EXPERIMENT_LABEL}={arguments.get('experiment') or 'manual'}, "
                      f"{MANAGED_BY[0]}={MANAGED_BY[1]})"]
        if intent == "stop_memory_hog":
            return [f"GET {pods}/{name}", f"DELETE {pods}/{name} (gracePeriodSeconds=0, preconditions.uid = its uid "
                                          "now)", f"GET {pods}/{name} until 404"]
        return [f"{intent}: reads only"]

    def memory_hog(self, name: str) -> MemoryHog | None:
        pod = self._ours(name)
        return None if pod is None else as_memory_hog(pod)

    def start_memory_hog(self, name: str, limit_mb: int, hog_mb: int, deadline_epoch_s: float | None = None,
                         experiment: str | None = None) -> MemoryHog:
        from kubernetes.client.exceptions import ApiException

        for field, value in (("limit_mb", limit_mb), ("hog_mb", hog_mb)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64 * 1024:
                raise ValueError(f"{field}: {value!r} is not an integer number of MiB in 1..65536")
        body = stress_pod(name, self.namespace, limit_mb, hog_mb, deadline_epoch_s, experiment, time.time())
        existing = self._ours(name)
        if existing is not None:
            hog = as_memory_hog(existing)
            if hog.running:
                log.info("Memory hog %s already runs (%s)", name, hog.describe())
                return hog
            log.info("Memory hog %s ended (%s): replacing its pod", name, hog.ended)
            self.stop_memory_hog(name)
        log.info("Creating stress pod %s/%s: %d MiB in a %d MiB memory limit, %s (ledger #%s)", self.namespace, name,
                 hog_mb, limit_mb, "no deadline" if deadline_epoch_s is None
                 else f"ends by itself in {body['spec']['activeDeadlineSeconds']} s", experiment or "manual")
        try:
            created = self.core.create_namespaced_pod(self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            created = self._ours(name)  # a concurrent start of the same hog won
            if created is None:
                raise
        return as_memory_hog(created)

    def stop_memory_hog(self, name: str) -> None:
        """Delete the hog's pod at once (grace 0) and wait until the API server has removed it; idempotent."""
        from kubernetes.client import V1DeleteOptions, V1Preconditions
        from kubernetes.client.exceptions import ApiException

        pod = self._ours(name)
        if pod is None:
            log.info("No memory hog %s in %s: nothing to stop", name, self.namespace)
            return
        log.info("Deleting stress pod %s/%s (uid %s), grace period 0", self.namespace, name, pod.metadata.uid)
        try:
            self.core.delete_namespaced_pod(name, self.namespace, body=V1DeleteOptions(
                grace_period_seconds=0, preconditions=V1Preconditions(uid=pod.metadata.uid)))
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone already, or a new pod took the name (409: uid precondition)
                raise
        deadline = time.monotonic() + GONE_TIMEOUT_S
        while (left := self._read(name)) is not None and left.metadata.uid == pod.metadata.uid:
            if time.monotonic() > deadline:
                raise TimeoutError(f"pod {self.namespace}/{name} still exists {GONE_TIMEOUT_S:g} s after its deletion "
                                   "(a finalizer, or a node not reporting?)")
            time.sleep(POLL_S)
