"""The cache on Kubernetes: its Deployment or StatefulSet, scaled to 0 and back to the recorded count.

The runbook's Immediate Abort scales every Deployment back to a blind 3; here the revert restores the
count the cache had before the fault (kept in the ledger by the fault). Kubernetes has no timer that
could scale it back by itself: an abandoned fault is reverted by ``chaos_abort``'s sweep.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from resilience.platforms.types import CacheState

if TYPE_CHECKING:
    from resilience.platforms.kubernetes.target import KubernetesTarget

log = logging.getLogger(__name__)

POLL_S = 0.2
SCALE_TIMEOUT_S = 300.0  # a Redis pod pulling its image on a new node: minutes, not seconds


class KubernetesCache:
    def __init__(self, target: KubernetesTarget) -> None:
        from resilience.platforms.kubernetes.api import kubernetes_hook

        if not target.cache_kind or not target.cache_name:
            raise ValueError(f"namespace {target.namespace}: no cache configured (kubernetes.cache: kind, name)")
        self.kind, self.name, self.namespace = target.cache_kind, target.cache_name, target.namespace
        self.apps = kubernetes_hook(target).apps_v1_client

    def _read(self) -> Any:
        read = (self.apps.read_namespaced_deployment if self.kind == "Deployment"
                else self.apps.read_namespaced_stateful_set)
        return read(self.name, self.namespace)

    def _scale(self, replicas: int) -> None:
        patch = (self.apps.patch_namespaced_deployment_scale if self.kind == "Deployment"
                 else self.apps.patch_namespaced_stateful_set_scale)
        log.info("Scaling %s/%s %s to %d replica(s)", self.namespace, self.name, self.kind, replicas)
        patch(self.name, self.namespace, {"spec": {"replicas": replicas}})

    def requests_for(self, intent: str, arguments: Mapping[str, object]) -> list[str]:
        """Plan mode: the API requests ``intent`` would send."""
        plural = "deployments" if self.kind == "Deployment" else "statefulsets"
        path = f"/apis/apps/v1/namespaces/{self.namespace}/{plural}/{self.name}"
        replicas = 0 if intent == "stop_cache" else arguments.get("replicas")
        if intent in ("stop_cache", "start_cache"):
            return [f"PATCH {path}/scale spec.replicas={replicas} (the count before is read first and kept)",
                    f"GET {path} until status.readyReplicas={replicas} (at most {SCALE_TIMEOUT_S:g} s)"]
        return [f"{intent}: reads only"]

    def cache_state(self) -> CacheState:
        workload = self._read()
        wanted = workload.spec.replicas if workload.spec.replicas is not None else 1
        return CacheState(int(wanted), int((workload.status.ready_replicas if workload.status else 0) or 0))

    def stop_cache(self, deadline_epoch_s: float | None = None) -> CacheState:
        if deadline_epoch_s is not None:
            log.warning("Kubernetes has no timer to scale %s back at %s: chaos_abort's sweep reverts it if this run "
                        "dies", self.name, deadline_epoch_s)
        before = self.cache_state()
        self._scale(0)
        self._wait(lambda s: s.ready == 0, "no replica ready")
        return before

    def start_cache(self, replicas: int) -> CacheState:
        if replicas < 1:
            raise ValueError(f"replicas: {replicas} would leave the cache stopped; the revert needs at least 1")
        if self.cache_state() != CacheState(replicas, replicas):
            self._scale(replicas)
        return self._wait(lambda s: s.replicas == replicas and s.ready == replicas, f"{replicas} replica(s) ready")

    def _wait(self, done: Callable[[CacheState], bool], what: str) -> CacheState:
        deadline = time.monotonic() + SCALE_TIMEOUT_S
        while True:
            state = self.cache_state()
            if done(state):
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.kind} {self.namespace}/{self.name}: not {what} after {SCALE_TIMEOUT_S:g} s "
                                   f"({state.ready} of {state.replicas} ready)")
            time.sleep(POLL_S)
