"""chaos_services through dag.test() on a Kubernetes environment with three services: the mapped groups'
wiring, each fault on its own service's pods, the verdicts and scores grouped per service.

``staging`` is pointed at the loopback API server (``tests/contract/kubeapi``: kmock plus controller and
kubelet fixtures, as no real cluster runs here) and lists three services; its SLOs are the lab's Prometheus.
dag.test() runs a deferred task's trigger inline, to its event, before any other task: a fault that must wait
for the blast radius would wait here for a revert that never comes. So the services here share no dependency
and K (3) admits them all; the wait, the bound and the dependency rule are tested under real Airflow
(``tests/airflow/test_chaos_services.py``) and the trigger in ``tests/integration/test_blast_radius_admission.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract.kubeapi import KubeApi
from tests.contract.platforms import NAMESPACE, cluster_config
from tests.contract.services import REPLICAS, service_deployment, with_services
from tests.contract.test_kubernetes_campaign import pods, ready_pods, report_of
from tests.contract.test_workloads import app_deployment
from tests.integration.dagkit import load_dag

pytestmark = pytest.mark.integration
SERVICES = {"checkout": [], "orders": ["postgres"], "billing": ["redis"]}
# a service whose SLO queries read a metric nobody exports: its baseline cannot be taken
NO_DATA = "ledger"
NO_DATA_QUERIES = {m: "sum(rate(resilience_no_such_metric_total[{window}]))"
                   for m in ("availability_pct", "error_rate_pct", "p95_ms")}


@pytest.fixture(scope="module")
def kubeapi() -> Iterator[KubeApi]:
    with KubeApi() as api:
        api.create(app_deployment())  # the environment's own app: preflight reads its rollout
        for name in [*SERVICES, NO_DATA]:
            api.create(service_deployment(name))
        yield api
        assert api.controller_errors() == []


@pytest.fixture(scope="module")
def cluster(kubeapi: KubeApi, lab: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with cluster_config(tmp_path_factory.mktemp("services"), kubeapi.connection_json(namespace=NAMESPACE),
                        with_services({**SERVICES, NO_DATA: []}, blast_radius=3,
                                      slo_queries={NO_DATA: NO_DATA_QUERIES})) as path:
        yield path


def test_each_service_loses_a_pod_of_its_own_and_gets_its_own_verdict(airflow_db, cluster, kubeapi, lab):
    import psycopg

    for name in SERVICES:
        KubeApi.wait(lambda name=name: ready_pods(kubeapi, f"app={name}") == REPLICAS, timeout_s=30)
    before = {name: pods(kubeapi, f"app={name}") for name in SERVICES}
    dagrun = load_dag("chaos_services").test(run_conf={
        "environment": "staging", "services": list(SERVICES), "scenarios": ["pod-kill"], "duration": 10,
        "max_p95_ratio": 5,
        "scenario_options": {"pod-kill": {"count": 1, "grace_period_s": 2}}})
    states = {(ti.task_id, ti.map_index): ti.state for ti in dagrun.get_task_instances()}
    assert dagrun.state == "success", states
    assert {s for (t, _), s in states.items() if t == "fault.verdict"} == {"success"}
    with psycopg.connect(lab["connections"]["resilience_control_db"]) as conn:
        rows = conn.execute("SELECT service, scenario, state, plan, depends_on FROM fault_ledger WHERE run_id = %s "
                            "ORDER BY id", (dagrun.run_id,)).fetchall()
    assert sorted((r[0], r[1], r[2]) for r in rows) == sorted((n, "pod-kill", "reverted") for n in SERVICES)
    for service, _, _, plan, depends_on in rows:
        [killed] = plan["replicas"]
        assert killed in before[service], f"{service}'s fault killed {killed}, not one of its pods"
        after = pods(kubeapi, f"app={service}")
        assert len(after) == REPLICAS and before[service][killed] not in after.values()
        assert depends_on == SERVICES[service]
    for name in set(SERVICES) - {r[0] for r in rows}:
        pytest.fail(f"{name} was not faulted")
    report = report_of(dagrun)
    assert report["services"] == {name: {"status": "completed", "resilience_score": 100.0, "passed": 1,
                                         "scenarios": 1} for name in SERVICES}
    assert {(s["service"], s["verdict"]["status"]) for s in report["scenarios"]} == {
        (name, "passed") for name in SERVICES}


def test_a_service_not_in_the_environment_is_refused_before_anything(airflow_db, cluster, kubeapi):
    requests = len(kubeapi.requests())
    dagrun = load_dag("chaos_services").test(run_conf={"environment": "staging", "scenarios": ["pod-kill"],
                                                       "services": ["checkout", "payments"], "duration": 10})
    assert dagrun.state == "failed"
    start = next(ti for ti in dagrun.get_task_instances() if ti.task_id == "start_campaign")
    assert start.state == "failed"
    assert not [r for r in kubeapi.requests()[requests:] if r[0] in {"POST", "PUT", "PATCH", "DELETE"}]


def test_a_baseline_that_cannot_be_taken_gives_the_slot_back_and_touches_no_pod(airflow_db, cluster, kubeapi, lab):
    """The inject measures the baseline once admitted; when it cannot (no data), the inject (a setup, whose
    teardown then does not run) reverts its own ledger row before failing: the slot is free, no pod killed."""
    import psycopg

    KubeApi.wait(lambda: ready_pods(kubeapi, f"app={NO_DATA}") == REPLICAS, timeout_s=30)
    before = pods(kubeapi, f"app={NO_DATA}")
    dagrun = load_dag("chaos_services").test(run_conf={
        "environment": "staging", "services": [NO_DATA], "scenarios": ["pod-kill"], "duration": 10})
    states = {ti.task_id: ti.state for ti in dagrun.get_task_instances()}
    assert dagrun.state == "failed" and states["fault.inject"] == "failed", states
    assert states["fault.guard_slo"] == "upstream_failed", states
    with psycopg.connect(lab["connections"]["resilience_control_db"]) as conn:
        [(state, reverted_by, injected_at)] = conn.execute(
            "SELECT state, reverted_by, injected_at FROM fault_ledger WHERE run_id = %s", (dagrun.run_id,)).fetchall()
    assert (state, reverted_by, injected_at) == ("reverted", "inject", None)
    assert pods(kubeapi, f"app={NO_DATA}") == before
    [fault] = report_of(dagrun)["scenarios"]
    assert (fault["service"], fault["verdict"]["status"]) == (NO_DATA, "aborted"), fault["verdict"]
