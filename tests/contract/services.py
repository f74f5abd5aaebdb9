"""A Kubernetes environment with many services on the loopback API server, shared by chaos_services' contract
test, its real-Airflow test and its benchmark: the services' Deployments, staging's environments.yaml edit,
and how many faults overlapped."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tests.contract.platforms import CONN_ID, NAMESPACE

REPLICAS = 2


def service_deployment(name: str, app: str | None = None, replicas: int = REPLICAS) -> dict[str, Any]:
    """Deployment ``name`` of ``replicas`` pods labelled ``app=<app or name>`` (5 s termination grace)."""
    labels = {"app": app or name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds": 5,
                                           "containers": [{"name": "app", "image": f"registry.local/{name}:1"}]}}}}


def with_services(services: Mapping[str, Sequence[str]], blast_radius: int,
                  slo_queries: Mapping[str, Mapping[str, str]] | None = None) -> Callable[[dict[str, Any]], None]:
    """The environments.yaml edit: staging on the loopback cluster listing ``services`` (name -> depends_on,
    selector ``app=<name>``, SLO queries of its own where ``slo_queries`` names it) with ``blast_radius``; its
    SLOs the lab's Prometheus, its Patroni the lab's."""
    def edit(environments: dict[str, Any]) -> None:
        lab_env, staging = environments["lab"], environments["staging"]
        staging["kubernetes"]["conn_id"] = CONN_ID
        staging["slo"] = lab_env["slo"]
        staging["database"]["patroni_conn_id"] = lab_env["database"]["patroni_conn_id"]
        staging["chaos"]["blast_radius"] = blast_radius
        staging["services"] = [{"name": name, "selector": f"app={name}", "depends_on": list(deps)}
                               | ({"slo": {"queries": dict(slo_queries[name])}} if name in (slo_queries or {}) else {})
                               for name, deps in services.items()]
    return edit


def most_at_once(intervals: Sequence[tuple[float, float]]) -> int:
    """The largest number of ``(start, end)`` intervals open at one instant (an end first at a tie)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most
