"""dr_activation through dag.test() on a Kubernetes environment: the DAG's wiring with this backend.

``production`` is pointed at the loopback API server (``tests/contract/kubeapi``: kmock plus controller and
kubelet fixtures, as no real cluster runs here) for its app's Deployment, and at the lab for what a cluster
test cannot serve: its entry point (``kubernetes.app.url``: the lab's load balancer, so ``/health`` and the
runbook's validation checklist answer), its database (the lab's Patroni), Route53 (the lab's moto) and its
metrics (the lab's Prometheus). With the primary region accessible the decision tree takes the regional
failover: the replica is promoted, the app answers through it, DNS stays on the primary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.kubeapi import KubeApi
from tests.contract.platforms import CONN_ID, cluster_config
from tests.contract.test_workloads import REPLICAS, app_deployment
from tests.integration.dagkit import DR_ACTIVATE, dr_report_of, lab_state, load_dag, notification_fakes

pytestmark = pytest.mark.integration
PRIMARY, DR = "ofm-production", "ofm-production-dr"
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture(scope="module")
def kubeapi() -> Iterator[KubeApi]:
    with KubeApi() as api:
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PRIMARY}})
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DR}})
        primary = app_deployment()
        primary["metadata"]["namespace"] = PRIMARY
        dr_app = app_deployment()  # the runbook's DR region: the same app, scaled to zero until activation
        dr_app["metadata"]["namespace"], dr_app["spec"]["replicas"] = DR, 0
        api.create(primary)
        api.create(dr_app)
        yield api
        assert api.controller_errors() == []


def on_the_loopback_cluster(lab: dict[str, Any]) -> Any:
    def edit(environments: dict[str, Any]) -> None:
        lab_env, production, dr = environments["lab"], environments["production"], environments["production-dr"]
        for env, namespace in ((production, PRIMARY), (dr, DR)):
            env["kubernetes"] = {"conn_id": CONN_ID, "namespace": namespace,
                                 "app": {**env["kubernetes"]["app"], "url": lab["app"]["url"]}}
        production["database"] = {**lab_env["database"]}
        production["pgbackrest"] = {**lab_env["pgbackrest"], "repos": [  # on the worker: the lab's endpoints by URL
            {"repo": r["repo"], "region": r["region"], "type": "s3", "bucket": r["bucket"], "s3_region": r["aws_region"],
             "endpoint": r["endpoint"], "ca_file": r["ca_file"], "path": r["path"],
             "aws_conn_id": lab_env["dr"]["dns"]["aws_conn_id"]} for r in lab["pgbackrest"]["repos"]]}
        production["dr"] = {**lab_env["dr"], "dr_environment": "production-dr"}
    return edit


@pytest.fixture(scope="module")
def cluster(kubeapi: KubeApi, lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with cluster_config(tmp_path_factory.mktemp("cluster"), kubeapi.connection_json(namespace=PRIMARY),
                        on_the_loopback_cluster(lab)) as path:
        yield path


def test_a_regional_failover_on_a_kubernetes_environment(airflow_db, cluster, kubeapi, lab):
    from resilience.config import load_config
    from resilience.dr.regions import Regions

    KubeApi.wait(lambda: kubeapi.get("apps/v1", "deployments", PRIMARY, "ofm-social-os-api")
                 .get("status", {}).get("readyReplicas") == REPLICAS, timeout_s=30)
    config = load_config()
    regions = Regions(config, config.environment("production"), "probe")
    weights_before = regions.dns.weights()
    leader_before = lab_state(lab)["app_db"]["roles"]["primary"]
    sent_before = len(kubeapi.requests())
    try:
        with notification_fakes():
            dagrun = load_dag("dr_activation").test(run_conf={**DR_ACTIVATE, "environment": "production"})
    finally:  # the failover moved the lab's primary: later modules get the Connection lab.json has now
        os.environ["AIRFLOW_CONN_RESILIENCE_LAB_APP_DB"] = lab_state(lab)["connections"]["resilience_lab_app_db"]
    states = {ti.task_id: ti.state for ti in dagrun.get_task_instances()}
    assert dagrun.state == "success", states
    assert states["regional_failover"] == "success" and states["choose_restore"] == "skipped", states
    report = dr_report_of(dagrun)
    assert report["path"]["kind"] == "regional_failover"
    evidence = report["answers"]["primary_accessible"]["evidence"]
    assert f"{REPLICAS}/{REPLICAS}" in evidence or f"{REPLICAS} of {REPLICAS}" in evidence, evidence
    assert lab_state(lab)["app_db"]["roles"]["primary"] != leader_before  # Patroni promoted the replica
    assert regions.dns.weights() == weights_before  # DNS untouched
    sent = kubeapi.requests()[sent_before:]
    assert any(path.endswith(f"/namespaces/{PRIMARY}/deployments/ofm-social-os-api") for _, path in sent), sent
    assert not [r for r in sent if r[0] in MUTATING], sent  # a regional failover changes nothing in the cluster
