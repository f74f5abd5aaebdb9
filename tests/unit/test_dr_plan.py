"""Plan mode of the DR DAGs: the plan run's report and verdict, and what each capability says it would send."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from resilience.dns import RecordValues, WeightedRecord, weights_change
from resilience.dr.drill.outcome import drill_outcome
from resilience.dr.operation_report import build_report, render_html, slack_message
from resilience.dr.pgbackrest import restore_args
from resilience.dr.plan import PlannedStep, plan_html, route53_change
from resilience.journal import final_verdict
from resilience.platforms.kubernetes.target import KubernetesTarget
from resilience.platforms.types import RestoreRequest
from resilience.platforms.worker_sandboxes import DataDirSandboxes

START = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
PLANNED = [PlannedStep(step="dns_cutover", where="route53", call="set weights primary=0 dr=100",
                       requests=["route53.change_resource_record_sets(...)"])]


def plan_record(dag_id="dr_activation", steps=()):
    return {"run_id": "manual__plan", "dag_id": dag_id, "environment": "lab", "status": "running",
            "params": {"environment": "lab", "rto_target": 30, "dry_run": True}, "started_at": START,
            "finished_at": None, "steps": list(steps),
            "details": {"kind": dag_id, "path": {"kind": "full_dr", "restore": "latest", "reason": "lost"},
                        "answers": {}, "planned_calls": PLANNED}}


@pytest.mark.parametrize("dag_id", ["dr_activation", "dr_failback", "emergency_rollback"])
def test_a_plan_run_reports_planned_with_its_calls_and_needs_no_step(dag_id):
    report = build_report(plan_record(dag_id), [], START + timedelta(seconds=5))
    assert report["status"] == "planned" and report["deviated"] is False
    assert report["required_steps"] == [] and report["planned_calls"] == PLANNED
    assert "rto" not in report and "phases" not in report
    html = render_html(report)
    assert "Plan: the 1 call(s) this run would make (none was made)" in html
    assert "route53.change_resource_record_sets(...)" in html
    message = slack_message(report, "/r/plan.html")
    assert "*PLANNED* (dry run)" in message and "1 call(s) in dns_cutover; nothing was changed" in message


def test_a_step_that_failed_in_a_plan_run_fails_it():
    failed = {"step": "declare_incident", "phase": "assessment", "status": "failed", "start": START.isoformat(),
              "end": START.isoformat(), "duration_s": 0, "details": {}, "error": "boom"}
    assert build_report(plan_record(steps=[failed]), [], START)["status"] == "failed"


def test_the_verdict_passes_a_plan_and_still_fails_a_failure():
    assert final_verdict({"status": "planned", "report_html": "/r/p.html"}, "operation") == "planned"
    with pytest.raises(Exception, match="operation failed"):
        final_verdict({"status": "failed", "report_html": "/r/p.html"}, "operation")


def drill_record(dry_run, plan_status="success"):
    phases = [{"phase": "plan", "started_at": START, "ended_at": START, "status": plan_status, "error": None,
               "details": {"planned_calls": PLANNED}}] if dry_run else []
    return {"run_id": "manual__d", "started_at": START, "phases": phases,
            "params": {"rto_target": 30, "rpo_target": 15, "no_cleanup": False, "dry_run": dry_run}}


@pytest.mark.parametrize(("dry_run", "plan_status", "status"), [
    (True, "success", "planned"),
    (True, "failed", "failed"),  # the plan itself did not complete
    (False, None, "failed"),  # a real drill whose steps never reported
])
def test_drill_outcome_of_a_plan_run(dry_run, plan_status, status):
    outcome = drill_outcome(drill_record(dry_run, plan_status), START + timedelta(seconds=3))
    assert outcome["status"] == status
    assert (outcome["checks"] == []) is dry_run


def test_plan_html_is_empty_outside_plan_mode_and_escapes_inside():
    assert plan_html(None) == ""
    html = plan_html([PlannedStep(step="s", where="w", call="<x>", requests=["a & b"])])
    assert "&lt;x&gt;" in html and "a &amp; b" in html


def test_the_planned_route53_change_is_the_exact_batch_the_cutover_sends():
    record = WeightedRecord("Z1", "api.example.com.", {"primary": RecordValues("A", ("10.0.0.1",), 60),
                                                        "dr": RecordValues("A", ("10.1.0.1",), 60)})
    regions = SimpleNamespace(dns=SimpleNamespace(record=record))
    call = route53_change(regions, "dns_cutover", 0, "DR activation")  # type: ignore[arg-type]
    sent = call["requests"][0]
    assert sent.startswith("route53.change_resource_record_sets(HostedZoneId=Z1, ChangeBatch=")
    assert json.loads(sent[sent.index("ChangeBatch=") + 12:-1]) == weights_change(record, {"primary": 0, "dr": 100})


def test_a_sandbox_restore_plan_gives_the_pgbackrest_restore_arguments(tmp_path):
    boxes = DataDirSandboxes("lab", "app", tmp_path, Path("/usr/lib/postgresql/15/bin"), "postgres", 25000,
                             restorer=None)  # type: ignore[arg-type]
    data_dir = str(tmp_path / "drill-x" / "pgdata")
    target = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    sent = boxes.requests_for("restore_sandbox", {"sandbox": "drill-x", "data_dir": data_dir, "port": 25001,
                                                  "stanza": "app", "method": "pitr",
                                                  "target_time": target.isoformat(), "repo": 2})
    expected = " ".join(restore_args(RestoreRequest("app", "pitr", target, 2), data_dir))
    assert sent[0].startswith(f"pgbackrest {expected} --recovery-option=restore_command=")
    assert "-p 25001" in sent[1] and "start as postgres" in sent[1]
    assert boxes.requests_for("drop_sandbox", {"sandbox": "drill-x", "data_dir": data_dir})[-1] == \
        f"rm -r {tmp_path / 'drill-x'}"
    assert boxes.requests_for("list_sandboxes", {}) == ["list_sandboxes: reads only"]


TARGET = KubernetesTarget("k8s", "ofm-dr", "api", "app=api", app_url="http://dr.example")


def unbuilt(cls, **attrs):
    """An instance without its API clients (requests_for only reads the target)."""
    obj = cls.__new__(cls)
    obj.__dict__.update(attrs)
    return obj


def test_kubernetes_dr_app_plan_scales_the_deployment():
    from resilience.platforms.kubernetes.regions import KubernetesRegions

    regions = unbuilt(KubernetesRegions, target=TARGET, region="dr", url=TARGET.app_url)
    sent = regions.requests_for("start_dr_app", {"dsn": "postgresql://u:***@db:5432/app", "replicas": 3})
    path = "/apis/apps/v1/namespaces/ofm-dr/deployments/api"
    assert sent[0] == f"PATCH {path} metadata.annotations.resilience/dr-database=postgresql://u:***@db:5432/app " \
                      "(no password)"
    assert sent[1] == f"PATCH {path}/scale spec.replicas=3"
    assert regions.requests_for("stop_dr_app", {})[1] == f"PATCH {path}/scale spec.replicas=0"


@pytest.mark.parametrize(("managed_by", "sends"), [
    (None, "PATCH /apis/apps/v1/namespaces/ofm-dr/deployments/api (JSON patch, rollout undo"),
    ("Helm release ofm", "helm rollback ofm --namespace ofm-dr --wait --timeout 600s"),
])
def test_kubernetes_rollback_plan_follows_who_manages_the_release(managed_by, sends):
    from resilience.platforms.kubernetes.releases import KubernetesReleases

    releases = unbuilt(KubernetesReleases, target=TARGET, region="primary")
    sent = releases.requests_for("rollback_app", {"region": "primary", "to_revision": 4, "to_release": "api:v1",
                                                  "managed_by": managed_by})
    assert any(r.startswith(sends) for r in sent), sent
    assert any("revision 4 (api:v1)" in r for r in sent)
