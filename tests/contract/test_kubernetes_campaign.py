"""chaos_campaign through dag.test() on a Kubernetes environment: the DAG's wiring with this backend, not
only the platform methods.

``staging`` is pointed at the loopback API server (``tests/contract/kubeapi``: kmock plus controller and
kubelet fixtures, as no real cluster runs here) for its workloads and cache, and at the lab's Prometheus
for its SLOs (the lab's app serves the traffic the guard watches); its database stays the lab's
Patroni. Asserted from outside: the pods replaced under new uids, the cache back at the replica count
it had, the ledger rows reverted, and in plan mode, not one mutating request in the API server's log.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.kubeapi import KubeApi
from tests.contract.platforms import CONN_ID, NAMESPACE, cluster_config
from tests.contract.test_cache import redis_deployment
from tests.contract.test_workloads import REPLICAS, app_deployment
from tests.integration.dagkit import load_dag

pytestmark = pytest.mark.integration
CACHE_REPLICAS = 2
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture(scope="module")
def kubeapi() -> Iterator[KubeApi]:
    with KubeApi() as api:
        api.create(app_deployment())
        api.create(redis_deployment(CACHE_REPLICAS))
        yield api
        assert api.controller_errors() == []


def on_the_loopback_cluster(environments: dict[str, Any]) -> None:
    """staging's workloads and cache on the loopback cluster; its SLOs from the lab's Prometheus, its database
    the lab's Patroni."""
    lab_env, staging = environments["lab"], environments["staging"]
    staging["kubernetes"]["conn_id"] = CONN_ID
    staging["slo"] = lab_env["slo"]
    staging["database"]["patroni_conn_id"] = lab_env["database"]["patroni_conn_id"]


@pytest.fixture(scope="module")
def cluster(kubeapi: KubeApi, lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with cluster_config(tmp_path_factory.mktemp("cluster"), kubeapi.connection_json(namespace=NAMESPACE),
                        on_the_loopback_cluster) as path:
        yield path


@pytest.fixture
def campaign_dag(airflow_db, cluster):
    """Loaded per test: dag.test() leaves a run's conf in the DAG's params (a dry run would stay one)."""
    return load_dag("chaos_campaign")


def pods(api: KubeApi, selector: str) -> dict[str, str]:
    """name -> uid of the pods matching ``selector`` that are not being deleted."""
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in api.list("v1", "pods", NAMESPACE, selector)
            if not p["metadata"].get("deletionTimestamp")}


def ready_pods(api: KubeApi, selector: str) -> int:
    return sum(any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))
               for p in api.list("v1", "pods", NAMESPACE, selector) if not p["metadata"].get("deletionTimestamp"))


def report_of(dagrun) -> dict[str, Any]:
    for path in (Path(os.environ["RESILIENCE_REPORT_DIR"]) / "chaos_campaign").glob("*.json"):
        report = json.loads(path.read_text())
        if report["run_id"] == dagrun.run_id:
            return report
    raise AssertionError(f"no report for {dagrun.run_id}")


def test_plan_mode_lists_the_api_requests_and_sends_none(campaign_dag, kubeapi):
    KubeApi.wait(lambda: ready_pods(kubeapi, "app=ofm-social-os") == REPLICAS, timeout_s=30)
    before = len(kubeapi.requests())
    dagrun = campaign_dag.test(run_conf={"environment": "staging", "scenarios": ["pod-kill", "redis-unavailable"],
                                         "duration": 10, "dry_run": True})
    assert dagrun.state == "success", {ti.task_id: ti.state for ti in dagrun.get_task_instances()}
    sent = kubeapi.requests()[before:]
    assert sent and not [r for r in sent if r[0] in MUTATING], sent  # it read the cluster, changed nothing
    scenarios = {s["scenario"]: s for s in report_of(dagrun)["scenarios"]}
    [delete, wait] = scenarios["pod-kill"]["planned_calls"]
    assert delete["call"].startswith("workloads.delete_replicas(names=['ofm-social-os-api-")
    assert delete["requests"][0].startswith(f"DELETE /api/v1/namespaces/{NAMESPACE}/pods/ofm-social-os-api-")
    assert "gracePeriodSeconds=30" in delete["requests"][0] and wait["step"] == "revert"
    [stop, start] = scenarios["redis-unavailable"]["planned_calls"]
    assert stop["requests"][0] == (f"PATCH /apis/apps/v1/namespaces/{NAMESPACE}/deployments/redis/scale "
                                   "spec.replicas=0 (the count before is read first and kept)")
    assert start["call"] == f"cache.start_cache(replicas={CACHE_REPLICAS})"


def test_a_campaign_kills_pods_and_stops_the_cache_then_restores_both(campaign_dag, kubeapi, lab):
    import psycopg

    KubeApi.wait(lambda: ready_pods(kubeapi, "app=ofm-social-os") == REPLICAS, timeout_s=30)
    app_before = pods(kubeapi, "app=ofm-social-os")
    dagrun = campaign_dag.test(run_conf={
        "environment": "staging", "scenarios": ["pod-kill", "redis-unavailable"], "duration": 10,
        "max_p95_ratio": 5, "scenario_options": {"pod-kill": {"count": 2, "grace_period_s": 10}}})
    states = {ti.task_id: ti.state for ti in dagrun.get_task_instances()}
    assert dagrun.state == "success", states
    with psycopg.connect(lab["connections"]["resilience_control_db"]) as conn:
        rows = conn.execute("SELECT scenario, state, plan, revert_info FROM fault_ledger WHERE run_id = %s "
                            "ORDER BY id", (dagrun.run_id,)).fetchall()
    assert [(r[0], r[1]) for r in rows] == [("pod-kill", "reverted"), ("redis-unavailable", "reverted")]
    killed = rows[0][2]["replicas"]
    assert len(killed) == 2 and set(killed) <= set(app_before)
    app_after = pods(kubeapi, "app=ofm-social-os")
    assert len(app_after) == REPLICAS and not set(app_after.values()) & {app_before[k] for k in killed}
    redis = kubeapi.get("apps/v1", "deployments", NAMESPACE, "redis")
    assert redis["spec"]["replicas"] == CACHE_REPLICAS == rows[1][3]["replicas_before"]
    assert ready_pods(kubeapi, "app=redis") == CACHE_REPLICAS
    scaled = [r for r in kubeapi.requests("PATCH") if r[1].endswith("/deployments/redis/scale")]
    assert len(scaled) >= 2  # to 0, and back
    verdicts = {s["scenario"]: s["verdict"]["status"] for s in report_of(dagrun)["scenarios"]}
    assert verdicts == {"pod-kill": "passed", "redis-unavailable": "passed"}


def test_immediate_abort_removes_every_labelled_object_not_only_the_open_experiments(cluster, kubeapi, lab):
    """Immediate Abort on staging: the open s3-5xx entry is reverted through the ledger, and a VirtualService
    the product labelled for another experiment (its entry lost, say) goes too, as the runbook's
    `kubectl delete ... -l chaos-experiment` would; the app's own objects are left alone."""
    import psycopg

    from resilience.chaos.abort import abort_everything
    from resilience.ledger import Ledger
    from resilience.platforms.kubernetes.object_store import KubernetesObjectStore
    from resilience.platforms.kubernetes.target import KubernetesTarget
    from resilience.platforms.types import ObjectStoreFault

    ledger = Ledger(lambda: psycopg.connect(lab["connections"]["resilience_control_db"]))
    entry_id = ledger.record_intent("manual__abort_test", "chaos_campaign", "staging", "s3-5xx",
                                    {"error_rate": 0.5, "status": 503}, expires_in_s=600)
    store = KubernetesObjectStore(KubernetesTarget(CONN_ID, NAMESPACE, "ofm-social-os-api", "app=ofm-social-os",
                                                   object_store_host="s3.us-east-1.amazonaws.com"))
    store.fail_object_store(ObjectStoreFault(0.5, 503, experiment=str(entry_id)))
    ledger.mark_active(entry_id, {"previous_error_rate": 0.0})
    store.fail_object_store(ObjectStoreFault(0.2, 500, experiment="stray"))
    before = len(kubeapi.list("apps/v1", "deployments", NAMESPACE, None))

    done = abort_everything("resilience_control_db", ledger, by="chaos_abort:abort_all", reason="test")

    assert done["reverted"] == [entry_id] and done["failed"] == [], done
    assert done["leftovers_removed"] == ["staging: every object_store leftover", "staging: every memory leftover"]
    assert kubeapi.list("networking.istio.io/v1beta1", "virtualservices", NAMESPACE, None) == []
    assert ledger.get(entry_id).state == "reverted"
    assert len(kubeapi.list("apps/v1", "deployments", NAMESPACE, None)) == before
