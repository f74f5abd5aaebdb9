"""The app's workload on Kubernetes: its pods (by label selector) and its Deployment, through KubernetesHook.

What ``pod-kill`` and preflight need, as the runbook does it with ``kubectl``: ``get pods``,
``delete pod --grace-period``, wait until the ReplicaSet has replaced them, ``rollout status``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from resilience.platforms.types import PodCensus, Replica, ReplicaDeletion, WorkloadReady

if TYPE_CHECKING:
    from resilience.platforms.kubernetes.target import KubernetesTarget

log = logging.getLogger(__name__)

POLL_S = 0.2
DELETION_MARGIN_S = 30.0  # past the grace period: the kubelet's SIGKILL, its report, the API server's removal


def pod_ready(pod: Any) -> bool:
    """Running, not being deleted, and its Ready condition True (what the Service routes to)."""
    if pod.metadata.deletion_timestamp is not None or (pod.status and pod.status.phase) != "Running":
        return False
    conditions = (pod.status.conditions or []) if pod.status else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def ready_since(pod: Any) -> float | None:
    """When the pod's Ready condition last turned True (epoch s), or None while it is not Ready."""
    if not pod_ready(pod):
        return None
    conditions = (pod.status.conditions or []) if pod.status else []
    changed = next((c.last_transition_time for c in conditions if c.type == "Ready"), None)
    return changed.timestamp() if changed is not None else None


def as_replica(pod: Any) -> Replica:
    statuses = (pod.status.container_statuses or []) if pod.status else []
    labels = pod.metadata.labels or {}
    return Replica(pod.metadata.name, pod_ready(pod), pod.metadata.uid, sum(s.restart_count or 0 for s in statuses),
                   labels.get("pod-template-hash"), ready_since(pod))


def rollout_state(deployment: Any) -> str | None:
    """Why the Deployment's rollout is not complete, or None: ``kubectl rollout status``'s checks, in order
    (https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#complete-deployment)."""
    name, spec, status = deployment.metadata.name, deployment.spec, deployment.status
    wanted = spec.replicas if spec.replicas is not None else 1
    if status is None or (status.observed_generation or 0) < (deployment.metadata.generation or 0):
        return f"deployment {name}: its newest spec is not observed yet"
    updated, total, available = status.updated_replicas or 0, status.replicas or 0, status.available_replicas or 0
    if updated < wanted:
        return f"deployment {name}: {updated} of {wanted} replicas updated"
    if total > updated:
        return f"deployment {name}: {total - updated} old replica(s) pending termination"
    if available < updated:
        return f"deployment {name}: {available} of {updated} updated replicas available"
    return None


class KubernetesWorkloads:
    """The app's pods and Deployment in one namespace (``environments.<name>.kubernetes``)."""

    def __init__(self, target: KubernetesTarget) -> None:
        from resilience.platforms.kubernetes.api import kubernetes_hook

        self.target = target
        hook = kubernetes_hook(target)
        self.core, self.apps = hook.core_v1_client, hook.apps_v1_client

    def _pods(self) -> list[Any]:
        return list(self.core.list_namespaced_pod(self.target.namespace, label_selector=self.target.app_selector).items)

    def replicas(self) -> list[Replica]:
        return sorted((as_replica(p) for p in self._pods()), key=lambda r: r.name)

    def delete_replicas(self, names: list[str], grace_period_s: int, force: bool) -> list[ReplicaDeletion]:
        """``kubectl delete pod`` of each (all at once), then wait until the API server has removed them. Each
        delete carries its pod's uid as a precondition: a replacement that took the same name is never hit."""
        from kubernetes.client import V1DeleteOptions, V1Preconditions
        from kubernetes.client.exceptions import ApiException

        grace = 0 if force else grace_period_s
        ns, pods = self.target.namespace, {p.metadata.name: p for p in self._pods()}
        unknown = [n for n in names if n not in pods]
        if unknown:
            raise ValueError(f"pods {unknown} are not replicas of {self.target.app_deployment} "
                             f"({self.target.app_selector} in {ns}): {sorted(pods)}")
        started = time.monotonic()
        pending: dict[str, str] = {}
        ended: dict[str, ReplicaDeletion] = {}
        for name in names:
            uid = pods[name].metadata.uid
            log.info("Deleting pod %s/%s (uid %s), grace period %d s", ns, name, uid, grace)
            try:
                self.core.delete_namespaced_pod(name, ns, body=V1DeleteOptions(
                    grace_period_seconds=grace, preconditions=V1Preconditions(uid=uid)))
                pending[name] = uid
            except ApiException as exc:
                if exc.status != 404:
                    raise
                ended[name] = ReplicaDeletion(name, uid, "not running", 0.0)
        deadline = started + grace + DELETION_MARGIN_S
        while pending:
            for name, uid in list(pending.items()):
                if not self._still_there(name, uid):
                    took = round(time.monotonic() - started, 3)
                    # the API server removes a pod once its containers have stopped: before the grace period
                    # ended they exited on SIGTERM; at its end the kubelet SIGKILLed them
                    outcome = "SIGKILL" if force else ("exited within grace" if took < grace else "killed after grace")
                    ended[name] = ReplicaDeletion(name, uid, outcome, took)
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"pods {sorted(pending)} still exist {grace} s grace + {DELETION_MARGIN_S:g} s "
                                   f"after their deletion (a finalizer, or a node not reporting?)")
            if pending:
                time.sleep(POLL_S)
        return [ended[name] for name in names]

    def _still_there(self, name: str, uid: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            return bool(self.core.read_namespaced_pod(name, self.target.namespace).metadata.uid == uid)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def wait_ready(self, expected: int, not_instances: set[str], timeout_s: float) -> WorkloadReady:
        """The ReplicaSet replaces deleted pods under new names: wait until ``expected`` pods are Ready, none of
        them a deleted one (by uid)."""
        from resilience.platforms.readiness import wait_ready

        return wait_ready(self.replicas, expected, not_instances, timeout_s, POLL_S,
                          f"pods of {self.target.app_deployment}")

    def requests_for(self, intent: str, arguments: Mapping[str, object]) -> list[str]:
        """Plan mode: the API requests ``intent`` would send (reads that only wait are listed once)."""
        pods = f"/api/v1/namespaces/{self.target.namespace}/pods"
        if intent == "delete_replicas":
            grace = 0 if arguments.get("force") else arguments.get("grace_period_s")
            names = list(arguments.get("names") or [])  # type: ignore[call-overload]
            return [f"DELETE {pods}/{name} (gracePeriodSeconds={grace}, preconditions.uid = its uid now)"
                    for name in names] + [f"GET {pods}/<name> until 404, for each of the {len(names)} pod(s)"]
        if intent == "wait_ready":
            return [f"GET {pods}?labelSelector={self.target.app_selector} until {arguments.get('expected')} new pods "
                    f"are Ready (at most {arguments.get('timeout_s')} s)"]
        return [f"{intent}: reads only"]

    def pod_census(self) -> PodCensus:
        """Every pod of the namespace, as the runbook's `kubectl get pods -n <ns>` shows them; a completed
        Job's pod (phase Succeeded) is not one that should be running."""
        pods = [p for p in self.core.list_namespaced_pod(self.target.namespace).items
                if (p.status and p.status.phase) != "Succeeded"]
        return PodCensus(sum(pod_ready(p) for p in pods), len(pods), f"namespace {self.target.namespace}")

    def rollout_in_progress(self) -> str | None:
        """The rollouts of the Deployments whose pods the app selector picks (the app's; a service's, in a
        campaign across services, where the selector is the service's); the app Deployment by name when the
        selector picks none (pods of a StatefulSet, say)."""
        from resilience.platforms.kubernetes.target import selector_matches

        picked = [d for d in self.apps.list_namespaced_deployment(self.target.namespace).items
                  if selector_matches(self.target.app_selector, d.spec.template.metadata.labels or {})]
        if not picked:
            picked = [self.apps.read_namespaced_deployment(self.target.app_deployment, self.target.namespace)]
        states = [s for s in (rollout_state(d) for d in picked) if s is not None]
        return "; ".join(states) or None
