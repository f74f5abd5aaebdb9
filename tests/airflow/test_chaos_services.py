"""Under real Airflow: chaos_services kills a pod of each of 4 services, at most K = 2 faults at once, never two
on the services that share postgres.

The cluster is the loopback Kubernetes API server of the contract tests (``tests/contract/kubeapi``: kmock
plus controller and kubelet fixtures), not a real cluster: none can run here. It holds 4 Deployments of 2
replicas (pods labelled ``app=<name>``) and staging's own app Deployment (preflight reads its rollout).
``staging`` is pointed at it (``kubernetes.conn_id``), lists the 4 as ``services`` (``orders`` and ``billing``
share ``depends_on: [postgres]``) with ``chaos.blast_radius: 2``; its SLOs are the lab's Prometheus and its
Patroni the lab's. One chaos_services run, pod-kill, 10 s, then from outside: each service's killed pod
replaced under a new uid, every ledger row of the run reverted with its service, at most 2 faults open at
once and the two postgres services never together (from the ledger's timestamps), a score per service in
the run's report, and the run succeeded.

Airflow: the standalone of ``tests/airflow/conftest.py`` (``resilience airflow up``, stopped with ``resilience
airflow down``), started for this module by ``services_airflow``: its processes must see the edited
environments.yaml and the loopback cluster's Connection from their start (a DAG reads environments.yaml
in its task processes and triggers; the pool of the guards is sized from it by ``up``), which a session-wide
instance started by another module does not.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resilience import airflow_local
from tests.airflow.conftest import PORT, RealAirflow, standalone
from tests.contract.kubeapi import KubeApi
from tests.contract.platforms import APP_DEPLOYMENT, APP_SELECTOR, CONN_ID, NAMESPACE, cluster_config
from tests.contract.services import REPLICAS, most_at_once, service_deployment, with_services
from tests.contract.test_kubernetes_campaign import pods, ready_pods
from tests.fakes.slack import SlackWebhookServer

pytestmark = [pytest.mark.airflow, pytest.mark.integration]

SERVICES = {"checkout": [], "search": [], "orders": ["postgres"], "billing": ["postgres"]}
SHARED = ("orders", "billing")
K = 2
DURATION_S = 10
CAMPAIGN = {"environment": "staging", "scenarios": ["pod-kill"], "duration": DURATION_S, "max_p95_ratio": 5,
            "scenario_options": {"pod-kill": {"count": 1, "grace_period_s": 2}}}


@pytest.fixture(scope="module")
def kubeapi() -> Iterator[KubeApi]:
    with KubeApi() as api:
        api.create(service_deployment(APP_DEPLOYMENT, app=APP_SELECTOR.partition("=")[2]))
        for name in SERVICES:
            api.create(service_deployment(name))
        yield api
        assert api.controller_errors() == []


@pytest.fixture(scope="module")
def services_airflow(lab, kubeapi: KubeApi) -> Iterator[RealAirflow]:
    """``airflow standalone`` through ``resilience airflow up`` as conftest's ``real_airflow`` starts it, with
    staging's environments.yaml and the loopback cluster's Connection in its environment; on conftest's port,
    or the three after it when the session's instance already holds it. Stopped with ``resilience airflow down``,
    and no process of its home may survive."""
    from resilience.config import load_config

    home = Path(tempfile.mkdtemp(prefix="resilience-standalone-services-"))
    port = PORT + 3 if airflow_local.healthy(airflow_local.Standalone(home, PORT)) else PORT
    sa = airflow_local.Standalone(home, port)
    slack = SlackWebhookServer().__enter__()
    with cluster_config(home, kubeapi.connection_json(namespace=NAMESPACE), with_services(SERVICES, K)) as config_path:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        env.update({"AIRFLOW_HOME": str(home), airflow_local.PORT_ENV_VAR: str(port),
                    "RESILIENCE_REPORT_DIR": str(home / "reports"), "RESILIENCE_LAB_DIR": lab["lab_dir"],
                    "RESILIENCE_ENVIRONMENTS": str(config_path),
                    f"AIRFLOW_CONN_{CONN_ID.upper()}": os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"],
                    f"AIRFLOW_CONN_{load_config().slack_conn_id_for('staging')}".upper(): slack.connection_json()})
    with standalone(sa, lab, env, slack, "services_start_s", "services_stop_s") as airflow:
        yield airflow


def report_of(af: RealAirflow, run_id: str) -> dict[str, Any]:
    for path in (Path(af.env["RESILIENCE_REPORT_DIR"]) / "chaos_campaign").glob("*.json"):
        report = json.loads(path.read_text())
        if report["run_id"] == run_id:
            return report
    raise AssertionError(f"no report of {run_id} in {af.env['RESILIENCE_REPORT_DIR']}/chaos_campaign")


def test_each_service_loses_a_pod_within_the_blast_radius_and_gets_a_score(services_airflow, kubeapi):
    af = services_airflow
    for name in SERVICES:
        af.wait_for(lambda name=name: ready_pods(kubeapi, f"app={name}") == REPLICAS, 60, f"{name}'s {REPLICAS} pods ready")
    before = {name: pods(kubeapi, f"app={name}") for name in SERVICES}

    run_id = af.trigger("chaos_services", CAMPAIGN)
    run = af.wait_run("chaos_services", run_id, timeout_s=900)
    assert run["state"] == "success", f"{run['task_states']}\n" + af.failure_logs("chaos_services", run_id)

    rows = af.control_db(
        "SELECT service, scenario, state, plan, extract(epoch FROM created_at)::float8,"
        " extract(epoch FROM injected_at)::float8, extract(epoch FROM reverted_at)::float8"
        " FROM fault_ledger WHERE run_id = %s ORDER BY id", (run_id,))
    assert sorted((r[0], r[1], r[2]) for r in rows) == sorted((n, "pod-kill", "reverted") for n in SERVICES), rows
    for service, _, _, plan, _, injected_at, _ in rows:
        [killed] = plan["replicas"]
        assert killed in before[service], f"{service}'s fault killed {killed}, not one of its pods {before[service]}"
        assert injected_at is not None, f"{service}'s fault was never applied"
        old_uid = before[service][killed]
        af.wait_for(lambda s=service, uid=old_uid: len(pods(kubeapi, f"app={s}")) == REPLICAS
                    and uid not in pods(kubeapi, f"app={s}").values(), 60, f"{service}'s killed pod {killed} replaced")

    on = {r[0]: (r[5], r[6]) for r in rows}          # the fault applied -> reverted
    held = {r[0]: (r[4], r[6]) for r in rows}        # admitted (ledger row written) -> reverted: the slot
    timeline = {s: (round(held[s][0], 1), round(on[s][0], 1), round(on[s][1], 1)) for s in SERVICES}
    print(f"chaos_services: {run_id} {run['start_date']} -> {run['end_date']}; admitted / applied / reverted: "
          f"{timeline}")
    assert most_at_once(list(on.values())) <= K, f"more than {K} faults on at once: {timeline}"
    assert most_at_once(list(held.values())) <= K, f"more than {K} blast-radius slots held at once: {timeline}"
    # the radius was used, not only respected: two faults did run together
    assert most_at_once(list(held.values())) == K, f"the faults never ran {K} at once: {timeline}"
    a, b = (held[s] for s in SHARED)
    assert a[1] <= b[0] or b[1] <= a[0], f"{SHARED} (both on postgres) were faulted at the same time: {timeline}"

    report = report_of(af, run_id)
    assert set(report.get("services") or {}) == set(SERVICES), report.get("services")
    for name, summary in report["services"].items():
        assert isinstance(summary["resilience_score"], int | float), (name, summary)
        assert summary["status"] == "completed" and summary["passed"] == summary["scenarios"] == 1, (name, summary)
