"""Plan mode of the DR DAGs (``dry_run``): the calls a run would make on its path, worked out, none made.

The first task of each DR DAG validates everything as a real run does (and dr_activation answers
its decision tree, reading only). In plan mode it then lists here, step by step, every call the
run would make: through a capability of a region's platform, with the requests that capability
says it would send (:func:`resilience.plan.planned_requests`: Kubernetes API paths, Patroni REST,
pgBackRest arguments, the lab's processes), or to a service (Route53's exact ``ChangeBatch`` from
:func:`resilience.dns.weights_change`, Statuspage, Slack, SQL on a database). The list goes into
the run's record (so its report shows it) and the log; the DAG's ``plan_gate`` then skips every
acting task, and the closing tasks write the report without touching DNS.

This module is imported while DAG files are parsed (:func:`plan_gate`): at the top it imports only
the standard library and ``resilience.plan`` (which imports nothing else).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from resilience.incidents.severity import incident_severity
from resilience.plan import PlannedStep

if TYPE_CHECKING:
    from resilience.dr.activation_params import ActivationParams
    from resilience.dr.decision import DrPath
    from resilience.dr.drill.run import Drill
    from resilience.dr.failback_params import FailbackParams
    from resilience.dr.regions import Regions
    from resilience.dr.rollback_params import RollbackParams
    from resilience.platforms.base import Capability, Platform
    from resilience.platforms.types import DatabaseEndpoint, Sandbox

log = logging.getLogger(__name__)

PLAN_KEY = "planned_calls"  # where the plan is kept: the operation record's details, the drill's ``plan`` phase
PLANNED = "planned"  # the status of a plan run (its report, its record, its verdict)


def capability_call(platform: Platform, where: str, step: str, capability: Capability, intent: str,
                    **arguments: object) -> PlannedStep:
    """``platform.<capability>.<intent>(**arguments)`` and the requests its implementation would send."""
    from resilience.plan import PlannedCall, plan_document

    [planned] = plan_document(platform, [PlannedCall(step, capability, intent, arguments)], where)
    return planned


def service_call(step: str, where: str, call: str, requests: list[str]) -> PlannedStep:
    """A call to a service that is no platform capability (Route53, Statuspage, Slack, SQL)."""
    return PlannedStep(step=step, where=where, call=call, requests=requests)


# -- the services every DR operation talks to ----------------------------------------------------------

def route53_change(regions: Regions, step: str, primary: int, why: str) -> PlannedStep:
    """The exact ``ChangeBatch`` a weight change to primary ``primary`` / DR ``100 - primary`` would send."""
    from resilience.dns import weights_change

    record = regions.dns.record
    batch = weights_change(record, {"primary": primary, "dr": 100 - primary})
    return service_call(step, "route53", f"set weights primary={primary} dr={100 - primary} of {record.name} ({why})",
                        [f"route53.change_resource_record_sets(HostedZoneId={record.zone_id}, ChangeBatch="
                         f"{json.dumps(batch, sort_keys=True)})",
                         f"route53.list_resource_record_sets(HostedZoneId={record.zone_id}) to read the weights "
                         "back; the change is audited in dns_changes"])


def statuspage_call(regions: Regions, step: str, status: str, name: str, body: str, incident: str | None
                    ) -> PlannedStep:
    from resilience.notify import connection_defined
    from resilience.statuspage_io import incident_body

    conn_id, page = regions.dr.statuspage_conn_id, regions.dr.statuspage_page_id
    if not conn_id or not page or not connection_defined(conn_id):
        sent = [f"none: Statuspage is not configured (Connection {conn_id!r}, page {page!r}); the {status} "
                "incident is logged instead"]
    elif incident is None:
        sent = [f"POST v1/pages/{page}/incidents {json.dumps(incident_body(name, status, 'major', body))} "
                f"(Connection {conn_id})"]
    else:
        sent = [f"PATCH v1/pages/{page}/incidents/{incident} "
                f"{json.dumps({'incident': {'status': status, 'body': body}})} (Connection {conn_id})"]
    verb = "open" if incident is None else "move"
    return service_call(step, "statuspage", f"{verb} incident {incident or name!r} -> {status}", sent)


def slack_call(conn_id: str | None, step: str, text: str) -> PlannedStep:
    from resilience.notify import connection_defined

    sent = ([f"POST the webhook of Connection {conn_id}: {text!r}"] if conn_id and connection_defined(conn_id)
            else [f"none: Connection {conn_id!r} is not defined; the message is logged"])
    return service_call(step, "slack", "post a message", sent)


def escalation_call(regions: Regions, severity: str, text: str) -> PlannedStep:
    """The incident recorded, then the escalation of its severity: each Slack channel, PagerDuty for P0."""
    from resilience.notify import connection_defined

    escalation = regions.config.escalation
    route = escalation.route(severity)
    sent = ["INSERT INTO incidents, incident_items (the post-mortem items)"]
    for channel in route.channels:
        conn_id = escalation.slack_conn_ids.get(channel)
        sent.append(f"POST the webhook of Connection {conn_id} ({channel}): {f'[{severity}] {text}'!r}"
                    if conn_id and connection_defined(conn_id) else
                    f"none to {channel}: Connection {conn_id!r} is not defined; the message is logged")
    if route.pagerduty:
        conn_id = escalation.pagerduty_conn_id
        sent.append(f"POST /v2/enqueue (PagerDuty Events API v2, Connection {conn_id}): trigger, severity critical"
                    if conn_id and connection_defined(conn_id) else
                    f"no page: PagerDuty Connection {conn_id!r} is not defined; the alert is logged")
    return service_call("declare_incident", "escalation", f"declare a {severity} incident and escalate", sent)


def _report(slack_conn_id: str | None) -> list[PlannedStep]:
    return [slack_call(slack_conn_id, "notify_slack", "the report's summary (this plan's, in plan mode)")]


def _sandbox_args(box: Sandbox) -> dict[str, object]:
    return {"sandbox": box.name, "data_dir": box.data_dir, "port": box.port}


def planned_sandbox(platform: Platform, name: str, dbname: str, sources: list[DatabaseEndpoint]) -> Sandbox:
    """Where a sandbox would live, checked not to be a source exactly as :func:`open_sandbox` does; nothing
    is created (a conflict refuses the plan as it would refuse the run)."""
    from resilience.dr.sandbox import sandbox_conflicts
    from resilience.errors import RefusedError

    planned = platform.sandboxes.plan_sandbox(name, dbname)
    if problems := sandbox_conflicts(planned.endpoint(), sources):
        raise RefusedError(f"sandbox {name} refused: " + "; ".join(problems))
    return planned


def restore_calls(platform: Platform, where: str, step: str, box: Sandbox, stanza: str, method: str,
                  target: datetime | None, repo: int | None, create_step: str | None = None) -> list[PlannedStep]:
    """Create the sandbox (in ``create_step``, default ``step``), then restore ``method`` (to ``target``, from
    ``repo``) into it and start it."""
    from resilience.platforms.types import RestoreRequest

    RestoreRequest(stanza, method, target, repo)  # type: ignore[arg-type]  # refused here as the run would be
    return [capability_call(platform, where, create_step or step, "sandboxes", "create_sandbox",
                            **_sandbox_args(box)),
            capability_call(platform, where, step, "sandboxes", "restore_sandbox", **_sandbox_args(box),
                            stanza=stanza, method=method, target_time=target.isoformat() if target else None,
                            repo=repo)]


def _validation(regions: Regions, region: str) -> PlannedStep:
    url = regions.platform(region).regions.region_url(region)
    return service_call("final_validation", region, "the runbook's Recovery Validation Checklist", [
        f"GET {url}/api/posts?limit=20, POST {url}/api/auth/health-check, an upload and a webhook test through "
        f"{url} (the checklist's own test objects)", "reads: replicas, database rows, DNS answer, monitoring"])


# -- dr_activation --------------------------------------------------------------------------------------

def activation_plan(regions: Regions, params: ActivationParams, path: DrPath, pitr: datetime | None, run_id: str,
                    now: datetime) -> list[PlannedStep]:
    """The calls dr_activation would make on ``path`` (decided from the same answers a real run gives)."""
    body = f"DR activation for {params.environment}: {path.reason}"
    calls = [statuspage_call(regions, "declare_incident", "investigating", params.incident_name, body, None),
             escalation_call(regions, incident_severity(params.severity, path.kind).level,
                             f":rotating_light: DR activation initiated for {params.environment} — {body} "
                             f"(run {run_id})")]
    if path.kind == "regional_failover":
        primary = regions.primary_platform
        url = primary.regions.region_url("primary")
        calls += [capability_call(primary, "primary", "regional_failover", "database", "failover_database"),
                  service_call("regional_failover", "primary", "wait for the app", [
                      f"GET {url}/api/health/database until 200"]),
                  capability_call(primary, "primary", "regional_failover", "database", "rebuild_database_replica",
                                  replicas=primary.database.database_replicas_expected()),
                  _validation(regions, "primary")]
        return [*calls, *_report(regions.config.slack_conn_id)]
    calls += _full_dr(regions, params, path, pitr, run_id, now)
    return [*calls, *_report(regions.config.slack_conn_id)]


def _full_dr(regions: Regions, params: ActivationParams, path: DrPath, pitr: datetime | None, run_id: str,
             now: datetime) -> list[PlannedStep]:
    from resilience.dr.backup_repos import dr_repo
    from resilience.dr.sandbox import sandbox_name

    env, dr = regions.environment, regions.dr_platform
    method = str(path.restore)
    step = f"restore_{method}"
    repo = dr_repo(env)
    box = planned_sandbox(dr, sandbox_name(f"dr-{env.name}", run_id, now), env.dbname,
                          regions.primary_platform.backups.database_endpoints())
    episode = regions.dr_episode() + 1  # the record of this run is not open yet: +1 is this one
    gap = regions.dr.sequence_gap
    user, _ = regions.credentials
    dsn = f"postgresql://{user}:***@{box.host}:{box.port}/{box.dbname}"
    calls = restore_calls(dr, "dr", step, box, env.pgbackrest_stanza, method, pitr if method == "pitr" else None,
                          repo.repo if repo else None)
    calls.append(service_call(step, "dr", f"move the sequences of {box.name} to DR episode {episode}'s band", [
        f"SELECT schemaname, sequencename, last_value FROM pg_sequences (on {box.host}:{box.port}/{box.dbname})",
        f"SELECT setval(seq, max(last_value + {gap}, {(2 * episode - 1) * gap})) for each sequence found"]))
    dr_url = dr.regions.region_url("dr")
    calls += [capability_call(dr, "dr", "deploy_app", "regions", "start_dr_app", dsn=dsn, replicas=params.dr_replicas),
              service_call("verify_dr", "dr", "health of the DR region", [
                  f"GET {dr_url}/health", f"GET {dr_url}/api/health/database",
                  f"{params.dr_replicas} replica(s) healthy (reads)"]),
              route53_change(regions, "dns_cutover", 0, f"DR activation {run_id}: primary region lost"),
              service_call("dns_cutover", "control DB", f"dr_regions[{env.name}]: serving=dr, dr_active=true, "
                           f"database={box.name}", ["one UPSERT in the control database"]),
              statuspage_call(regions, "dns_cutover", "monitoring", params.incident_name,
                              "Traffic is served from the DR region; we are monitoring.", "<the declared incident>"),
              _validation(regions, "dr")]
    return calls


# -- dr_failback ----------------------------------------------------------------------------------------

def failback_plan(regions: Regions, params: FailbackParams, state: Mapping[str, Any], run_id: str) -> list[PlannedStep]:
    """The calls dr_failback would make: sync, each canary step's weights, the cutover, the final sync,
    decommission."""
    database = state["database"]
    where = f"{database['host']}:{database['port']}/{database['dbname']}"
    since = state["recovery_point"] or state["activated_at"]
    primary = regions.primary_platform.backups.database_endpoints()[0]
    primary_at = f"{primary.host}:{primary.port}/{regions.environment.dbname}"
    sync = [f"COPY (rows changed since {since.isoformat() if hasattr(since, 'isoformat') else since}, or the last "
            f"sync's watermark) TO STDOUT on DR {where}, per timestamped table in foreign-key order",
            f"COPY into staging tables and apply as upserts ({params.conflict_policy}) on the primary {primary_at}, "
            "one transaction; rows DR deleted are listed, not deleted"]
    calls = [service_call("wait_primary_stable", "prometheus",
                          f"stability of the primary for {params.stable_hours:g} h",
                          [f"range queries of up and the error rate every poll, for up to "
                           f"{params.stability_timeout_hours:g} h (reads)"]),
             service_call("sync_dr_writes", "primary", f"copy DR's writes from {database['name']}", [
                 *sync, f"setval each sequence of the primary to DR's + {regions.dr.sequence_gap}"])]
    for weight in params.steps:
        calls.append(route53_change(regions, "canary_ramp", weight, f"canary step {weight} %"))
    calls.append(service_call("canary_ramp", "prometheus", f"analysis of each step for {params.interval_s:g} s", [
        f"error rate and p95 of both regions every poll (reads); {params.threshold} failed check(s) roll back:"]))
    calls.append(route53_change(regions, "canary_ramp", 0, "rollback, only if the analysis fails"))
    calls += [route53_change(regions, "dns_cutover", 100, f"failback {run_id}: cutover to the primary region"),
              statuspage_call(regions, "dns_cutover", "resolved", "", "Traffic is back on the primary region.",
                              "<the activation's incident>"),
              service_call("final_sync", "dr", f"freeze DR {database['name']} and copy what it took during the ramp", [
                  f"ALTER DATABASE read-only and end the open sessions on {where}", *sync,
                  "thaw DR again if the sync fails"]),
              _validation(regions, "primary")]
    if params.decommission_dr:
        from resilience.platforms.types import Sandbox

        dr = regions.dr_platform
        box = Sandbox.from_dict(database)
        calls += [capability_call(dr, "dr", "decommission_dr", "regions", "stop_dr_app"),
                  capability_call(dr, "dr", "decommission_dr", "sandboxes", "drop_sandbox", **_sandbox_args(box))]
    return [*calls, *_report(regions.config.slack_conn_id)]


# -- emergency_rollback ---------------------------------------------------------------------------------

def rollback_plan(regions: Regions, params: RollbackParams, parts: Mapping[str, Any], now: datetime
                  ) -> list[PlannedStep]:
    """The calls emergency_rollback would make for each part ``start_rollback`` validated (``parts``)."""
    calls: list[PlannedStep] = []
    if "application" in parts:
        app = parts["application"]
        calls.append(capability_call(regions.platform(params.app_region), params.app_region, "rollback_application",
                                     "releases", "rollback_app", region=params.app_region,
                                     from_release=app["from"]["release"], from_revision=app["from"]["number"],
                                     to_release=app["to"]["release"], to_revision=app["to"]["number"],
                                     managed_by=app["managed_by"]))
    if "database" in parts:
        assert params.pitr_target is not None
        env, platform = regions.environment, regions.primary_platform
        box = planned_sandbox(platform, f"rollback-{now:%Y%m%d-%H%M%S}", env.dbname,
                              platform.backups.database_endpoints())
        calls += restore_calls(platform, "primary", "rollback_database", box, env.pgbackrest_stanza, "pitr",
                               params.pitr_target, None)
    if "traffic" in parts:
        wanted = parts["traffic"]["to"]
        primary = int(round(100 * wanted["primary"] / max(1, sum(wanted.values()))))
        change = route53_change(regions, "rollback_traffic", primary, f"traffic {params.traffic_to}")
        target = "primary" if wanted["primary"] >= wanted["dr"] else "dr"
        healthy, health = regions.healthy(target)  # rollback_traffic refuses an unhealthy region taking it all
        if not healthy and wanted[target] == 100:
            change["requests"] = [f"none: refused now, the {target} region is not healthy ({health})"]
        calls.append(change)
    return [*calls, *_report(regions.config.slack_conn_id)]


# -- dr_monthly_drill -----------------------------------------------------------------------------------

def drill_plan(drill: Drill, run_id: str, now: datetime) -> list[PlannedStep]:
    """The calls the drill would make: verify every repository, the sandbox, restore, checks, cleanup."""
    from resilience.dr.backup_repos import BackupRepo, environment_repos, repo_arg, repo_by_index
    from resilience.dr.sandbox import sandbox_name
    from resilience.platforms.base import get_platform

    params, source, platform = drill.params, drill.source, drill.platform
    stanza = source.pgbackrest_stanza
    where = drill.target.name
    repos: list[BackupRepo | None] = [*environment_repos(source)] or [None]
    calls: list[PlannedStep] = []
    for repo in repos:
        label = f"repo{repo.repo}" if repo else "the default repository"
        calls.append(capability_call(platform, label, "verify_backups", "backups", "pgbackrest",
                                     args=["info", "--output=json", f"--stanza={stanza}", *repo_arg(repo)]))
        if params.full_drill:
            calls.append(capability_call(platform, label, "verify_backups", "backups", "pgbackrest",
                                         args=["verify", f"--stanza={stanza}", *repo_arg(repo)]))
    box = planned_sandbox(platform, sandbox_name("drill", run_id, now), source.dbname,
                          get_platform(source).backups.database_endpoints())
    repo = repo_by_index(source, params.repo)
    method = "pitr" if params.pitr_target else "latest"
    calls += restore_calls(platform, where, "restore", box, stanza, method, params.pitr_target,
                           repo.repo if repo else None, create_step="create_sandbox")
    user = drill.source_credentials[0]
    calls += [capability_call(platform, where, "check_integrity", "sandboxes", "amcheck", **_sandbox_args(box)),
              service_call("check_integrity", where, "the SQL integrity checks and row counts", [
                  f"the queries of include/sql/integrity/ on the sandbox {box.host}:{box.port} and row counts on "
                  f"the source {source.name} (reads)"]),
              capability_call(platform, where, "check_app", "sandboxes", "start_app", **_sandbox_args(box),
                              dsn=f"postgresql://{user}:***@{box.host}:{box.port}/{box.dbname}")]
    if params.no_cleanup:
        calls.append(service_call("cleanup_sandbox", where, f"keep sandbox {box.name} (no_cleanup)", ["none"]))
    else:
        calls.append(capability_call(platform, where, "cleanup_sandbox", "sandboxes", "drop_sandbox",
                                     **_sandbox_args(box)))
    return [*calls, *_report(drill.config.slack_conn_id)]


# -- the DAGs' gate and the reports ---------------------------------------------------------------------

def is_plan_run(run: Mapping[str, Any] | None) -> bool:
    """Whether the start task's result is a plan run's: ``dry_run`` in it, or in its ``params`` (the drill
    returns its Params themselves)."""
    return run is not None and bool((run.get("params") or run).get("dry_run"))


def skip_in_plan_mode(run: Mapping[str, Any] | None, why: str) -> None:
    """Skip the calling task in a plan run. For the tasks ``plan_gate``'s skip does not reach: a task whose
    trigger rule lets it run after a skipped upstream (none_failed_min_one_success, all_done) while the start
    task, also its upstream, succeeded."""
    if is_plan_run(run):
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(f"plan mode (dry_run): {why}")


def plan_gate() -> Any:
    """Add the ``plan_gate`` task to the DAG being defined: a short-circuit after the start task. In plan mode
    it skips the tasks right after it and the skip flows on through their trigger rules; the closing tasks
    (all_done) still run. Call it with the start task's result."""
    from airflow.sdk import task

    @task.short_circuit(task_id="plan_gate", ignore_downstream_trigger_rules=False)
    def gate(run: dict) -> bool:
        """Plan mode (dry_run) stops here: every acting task is skipped; the report shows the plan."""
        planned = is_plan_run(run)
        if planned:
            log.warning("Not acting: this is a plan run (dry_run); its calls are in the log of the first task "
                        "and in the report")
        return not planned

    return gate


def plan_html(calls: list[PlannedStep] | None) -> str:
    """The report's plan section (empty outside plan mode)."""
    from html import escape

    if calls is None:
        return ""
    rows = "".join(
        f"<tr><td>{n}</td><td>{escape(c['step'])}</td><td>{escape(c['where'])}</td><td><code>{escape(c['call'])}"
        f"</code></td><td>{'<br>'.join(f'<code>{escape(r)}</code>' for r in c['requests'])}</td></tr>"
        for n, c in enumerate(calls, start=1))
    return (f"<h2>Plan: the {len(calls)} call(s) this run would make (none was made)</h2><table><tr><th>#</th>"
            f"<th>step</th><th>where</th><th>call</th><th>requests</th></tr>{rows}</table>")


def plan_message(title: str, report: dict[str, Any], html_path: str) -> str:
    """The Slack summary of a plan run."""
    calls = report.get(PLAN_KEY) or []
    steps = sorted({c["step"] for c in calls}, key=[c["step"] for c in calls].index)
    return (f":clipboard: {title} *PLANNED* (dry run) — {report['environment']}: {len(calls)} call(s) in "
            f"{', '.join(steps)}; nothing was changed\nRun {report['run_id']} · report {html_path}")
