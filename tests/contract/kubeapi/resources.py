"""The resource types the test API server serves (its discovery document).

kmock bundles the K3s built-ins (pods, deployments, replicasets, statefulsets, services,
networkpolicies, ...). The custom resources the platform backend uses are declared here.
A LIST of a declared resource with no objects answers an empty list; an undeclared one is 404.
"""

from __future__ import annotations

import warnings
from typing import Any

import kmock

_CRUD = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]

# group/version/plural -> discovery info
CUSTOM_RESOURCES: dict[str, dict[str, Any]] = {
    "networking.istio.io/v1beta1/virtualservices": {"kind": "VirtualService", "singular": "virtualservice",
                                                     "shortnames": ["vs"], "categories": ["istio-io"]},
    "networking.istio.io/v1/virtualservices": {"kind": "VirtualService", "singular": "virtualservice",
                                                "shortnames": ["vs"], "categories": ["istio-io"]},
    "networking.istio.io/v1beta1/destinationrules": {"kind": "DestinationRule", "singular": "destinationrule",
                                                      "shortnames": ["dr"], "categories": ["istio-io"]},
    "chaos-mesh.org/v1alpha1/httpchaos": {"kind": "HTTPChaos", "singular": "httpchaos", "categories": ["chaos-mesh"]},
    "chaos-mesh.org/v1alpha1/podchaos": {"kind": "PodChaos", "singular": "podchaos", "categories": ["chaos-mesh"]},
    "chaos-mesh.org/v1alpha1/networkchaos": {"kind": "NetworkChaos", "singular": "networkchaos",
                                             "categories": ["chaos-mesh"]},
    "chaos-mesh.org/v1alpha1/stresschaos": {"kind": "StressChaos", "singular": "stresschaos",
                                            "categories": ["chaos-mesh"]},
}


def declare(emulator: kmock.KubernetesEmulator) -> None:
    """Declare the built-ins and the custom resources on an emulator."""
    with warnings.catch_warnings():  # kmock 0.8 uses the deprecated importlib.resources.read_binary
        warnings.simplefilter("ignore", DeprecationWarning)
        emulator.resources.load_bundled()
    for key, info in CUSTOM_RESOURCES.items():
        emulator.resources[key] = {"namespaced": True, "verbs": _CRUD, "subresources": ["status"],
                                   "shortnames": [], "categories": [], **info}


def is_custom(resource: kmock.resource) -> bool:
    """Custom resources (CRDs) differ from built-ins, e.g. in the patch types they accept."""
    return f"{resource.group}/{resource.version}/{resource.plural}" in CUSTOM_RESOURCES


def api_version(resource: kmock.resource) -> str:
    return f"{resource.group}/{resource.version}" if resource.group else resource.version


def parse_api_version(api_version_: str) -> tuple[str, str]:
    """'apps/v1' -> ('apps', 'v1'); 'v1' -> ('', 'v1')."""
    group, _, version = api_version_.rpartition("/")
    return group, version
