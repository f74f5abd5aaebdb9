"""The object-store fault on Kubernetes: an Istio VirtualService that aborts a share of the app's S3 calls.

One VirtualService per experiment, named and labelled for it (``chaos-experiment=<ledger id>``,
``app.kubernetes.io/managed-by=resilience``), on the S3 egress host the mesh routes (a ServiceEntry
for that host must exist, as it does wherever egress goes through the mesh). Istio's HTTP fault
injection: https://istio.io/latest/docs/reference/config/networking/virtual-service/#HTTPFaultInjection-Abort
A VirtualService cannot expire by itself: an abandoned one is removed by ``chaos_abort``'s sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from resilience.platforms.types import ObjectStoreFault

if TYPE_CHECKING:
    from resilience.platforms.kubernetes.target import KubernetesTarget

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "networking.istio.io", "v1beta1", "virtualservices"
MANAGED = "app.kubernetes.io/managed-by=resilience"
EXPERIMENT_LABEL = "chaos-experiment"
PREFIX = "chaos-s3-5xx-"


def virtual_service(host: str, namespace: str, fault: ObjectStoreFault) -> dict[str, Any]:
    """The VirtualService that makes ``fault.error_rate`` of the calls to ``host`` answer ``fault.status``."""
    experiment = fault.experiment or "manual"
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualService",
        "metadata": {"name": f"{PREFIX}{experiment}", "namespace": namespace,
                     "labels": {EXPERIMENT_LABEL: experiment, "app.kubernetes.io/managed-by": "resilience"},
                     "annotations": {"resilience/owner": f"s3-5xx fault, ledger entry {experiment}"}},
        "spec": {"hosts": [host], "http": [{
            "fault": {"abort": {"percentage": {"value": round(100 * fault.error_rate, 3)},
                                "httpStatus": fault.status}},
            "route": [{"destination": {"host": host}}]}]},
    }


def served(item: dict[str, Any]) -> ObjectStoreFault:
    """The fault one of our VirtualServices serves."""
    abort = item["spec"]["http"][0]["fault"]["abort"]
    return ObjectStoreFault(float(abort["percentage"]["value"]) / 100, int(abort["httpStatus"]),
                            experiment=item["metadata"].get("labels", {}).get(EXPERIMENT_LABEL))


class KubernetesObjectStore:
    def __init__(self, target: KubernetesTarget) -> None:
        from resilience.platforms.kubernetes.api import kubernetes_hook

        if not target.object_store_host:
            raise ValueError(f"namespace {target.namespace}: no object store configured (kubernetes.object_store.host)")
        self.host, self.namespace = target.object_store_host, target.namespace
        self.custom = kubernetes_hook(target).custom_object_client

    def _ours(self, experiment: str | None = None) -> list[dict[str, Any]]:
        selector = MANAGED + (f",{EXPERIMENT_LABEL}={experiment}" if experiment else f",{EXPERIMENT_LABEL}")
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                           label_selector=selector)
        return [i for i in listed.get("items", []) if i["metadata"]["name"].startswith(PREFIX)]

    def requests_for(self, intent: str, arguments: Mapping[str, object]) -> list[str]:
        """Plan mode: the API requests ``intent`` would send."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{PLURAL}"
        name = f"{PREFIX}{arguments.get('experiment') or '<ledger id>'}"
        if intent == "fail_object_store":
            return [f"POST {path} {name}: abort {100 * float(arguments.get('error_rate') or 0):g} % of calls to "  # type: ignore[arg-type]
                    f"{self.host} with HTTP {arguments.get('status')} (labels {EXPERIMENT_LABEL}, {MANAGED})"]
        if intent == "clear_object_store_fault":
            return [f"GET {path}?labelSelector={MANAGED},{EXPERIMENT_LABEL}=<ledger id>", f"DELETE {path}/{name}"]
        return [f"{intent}: reads only"]

    def object_store_fault(self) -> ObjectStoreFault:
        """The fault served now: ours with the highest error rate (one per experiment; normally one)."""
        faults = [served(i) for i in self._ours()]
        return max(faults, key=lambda f: f.error_rate) if faults else ObjectStoreFault()

    def fail_object_store(self, fault: ObjectStoreFault) -> ObjectStoreFault:
        from kubernetes.client.exceptions import ApiException

        if fault.expires_at is not None:
            log.warning("A VirtualService cannot expire by itself: chaos_abort's sweep removes it if this run dies")
        body = virtual_service(self.host, self.namespace, fault)
        log.info("Creating VirtualService %s/%s: %.1f %% of calls to %s answer %d", self.namespace,
                 body["metadata"]["name"], 100 * fault.error_rate, self.host, fault.status)
        try:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            # a retried inject of the same experiment: make it serve this plan's fault
            self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                       body["metadata"]["name"], {"spec": body["spec"]})
        return served(body)

    def clear_object_store_fault(self, experiment: str | None) -> ObjectStoreFault:
        from kubernetes.client.exceptions import ApiException

        for item in self._ours(experiment):
            name = item["metadata"]["name"]
            log.info("Deleting VirtualService %s/%s", self.namespace, name)
            try:
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        return self.object_store_fault()
