"""dr_activation's steps, in the runbook's order: assess, declare, restore in DR, deploy, verify, cut over.

Every step records itself (the run journal) under one of the runbook's phases, so the
report can hold each phase against its budget. Nothing touches DNS before the DR region
has passed its health checks.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from resilience.config import load_config
from resilience.dr import decision
from resilience.dr.activation_params import ActivationParams, parse_activation_params
from resilience.dr.regions import Regions, iso
from resilience.http_probe import http_probe, wait_http_ok
from resilience.platforms.types import RestoreMethod, RestoreRequest

log = logging.getLogger(__name__)

RESTORE_TASKS = {decision.FAST_RESTORE: "restore_fast", decision.LATEST_RESTORE: "restore_latest",
                 decision.COMPLETE_PITR: "restore_pitr"}
RESTORE_TIMEOUT_S = 3600
WRITABLE_TIMEOUT_S = 600
HEALTH_TIMEOUT_S = 60


def _context(run: dict[str, Any], run_id: str) -> tuple[ActivationParams, Regions]:
    config = load_config()
    params = parse_activation_params(run["params"], config, now=datetime.now(UTC))
    return params, Regions(config, config.environment(params.environment), run_id, run.get("dag_id", ""))


# -- phase 1: assessment & communication ----------------------------------------------------------

def _assess(regions: Regions, params: ActivationParams, now: datetime) -> tuple[decision.DrPath, dict[str, Any]]:
    """Answer the decision tree's questions (Param, or detected for auto) and pick the path."""
    answers: dict[str, Any] = {}
    health = regions.primary_platform.regions.region_health("primary")
    seen = decision.detect_primary_accessible(health.entry_point_up, health.healthy_replicas, health.replicas)
    accessible = decision.resolve_answer(params.primary_accessible, seen.answer, "primary_accessible")
    answers["primary_accessible"] = {"answer": accessible, "param": params.primary_accessible,
                                     "evidence": seen.evidence}
    if not accessible:
        from resilience.dr.backup_repos import dr_repo, repo_arg
        from resilience.dr.pgbackrest import parse_info

        stanza = regions.environment.pgbackrest_stanza
        # the primary region is lost: judge the backups its loss leaves, those of the DR region's repository
        info = parse_info(regions.dr_platform.backups.pgbackrest(["info", "--output=json", f"--stanza={stanza}",
                                                          *repo_arg(dr_repo(regions.environment))], 60), stanza)
        latest = info.latest
        loss = decision.detect_data_loss_acceptable(latest.stop if latest else None, now,
                                                    params.rpo_target_min * 60)
        wal = decision.wal_segments_between(latest.archive_stop if latest else None, info.archive_max)
        budgets = decision.phase_budgets(params.rto_target_min)
        dr_budget = budgets["dr_environment"] - budgets["assessment"]
        pressure = decision.detect_time_critical(latest.size_bytes if latest else None,
                                                 wal * decision.WAL_SEGMENT_BYTES, dr_budget)
        for name, seen_answer, param in (("data_loss_acceptable", loss, params.data_loss_acceptable),
                                         ("time_critical", pressure, params.time_critical)):
            answers[name] = {"answer": decision.resolve_answer(param, seen_answer.answer, name), "param": param,
                             "evidence": seen_answer.evidence}
    path = decision.dr_path(accessible, answers.get("data_loss_acceptable", {}).get("answer", True),
                            answers.get("time_critical", {}).get("answer", True))
    return path, answers


def start_activation(raw_params: dict[str, Any], run_id: str, dag_id: str, started_at: datetime) -> dict[str, Any]:
    """Validate everything, assess, decide; then take the lock and open the record (first side effect)."""
    from resilience.errors import RefusedError
    from resilience.journal import take_run_lock

    config = load_config()
    now = datetime.now(UTC)
    params = parse_activation_params(raw_params, config, now)
    regions = Regions(config, config.environment(params.environment), run_id, dag_id)
    regions.validate()
    current = regions.state.get(params.environment)
    if current["dr_active"]:
        raise RefusedError(f"DR is already active for {params.environment} (since {iso(current['activated_at'])}, "
                           f"run {current['run_id']}): fail back with dr_failback first")
    path, answers = _assess(regions, params, now)
    for question, given in answers.items():
        log.info("%s? %s (%s; %s)", question.replace("_", " ").capitalize(), "YES" if given["answer"] else "NO",
                 "detected" if given["param"] == "auto" else f"param {given['param']}", given["evidence"])
    log.info("Decision: %s", path.reason)
    from resilience.incidents.severity import incident_severity

    severity = incident_severity(params.severity, path.kind)
    log.info("Severity of the incident to declare: %s (%s)", severity.level, severity.reason)
    if path.kind == "regional_failover":
        regions.primary_platform.require(["database", "regions"], "a regional failover")
    else:
        regions.primary_platform.require(["backups"], "a full DR activation (the sources a restore must not be)")
        regions.dr_platform.require(["sandboxes", "regions"], "a full DR activation (restore, DR app)")
    pitr = params.pitr_target if path.restore == decision.COMPLETE_PITR else None
    planned = None
    if params.dry_run:  # no lock: a plan changes nothing
        from resilience.dr.plan import PLAN_KEY, activation_plan
        from resilience.plan import log_plan

        planned = {PLAN_KEY: activation_plan(regions, params, path, pitr, run_id, now)}
        log_plan(f"DR activation of {params.environment} ({path.kind})", planned[PLAN_KEY])
    else:
        take_run_lock(config.control_db_conn_id, run_id, dag_id, "DR activation",
                      break_reason=params.break_lock_reason)
    regions.record.open(dag_id, "dr_operation", params.environment, params.to_dict(), started_at)
    regions.record.note(kind="dr_activation", path=path.to_dict(), answers=answers, severity=severity.to_dict(),
                          dns_before=regions.dns.weights(), **(planned or {}))
    return {"params": params.to_dict(), "dag_id": dag_id, "started_at": started_at.isoformat(),
            "path": path.to_dict(), "answers": answers, "pitr_target": iso(pitr), "dry_run": params.dry_run,
            "severity": severity.to_dict()}


def declare_incident(run: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Statuspage incident (investigating), then the incident recorded and escalated by its severity (Slack
    channels, PagerDuty for P0), before any recovery work."""
    from resilience.incidents.declare import Declaration, declare
    from resilience.incidents.severity import Severity
    from resilience.statuspage_io import open_incident

    params, regions = _context(run, run_id)
    with regions.record.step("declare_incident", "assessment") as details:
        body = f"DR activation for {params.environment}: {run['path']['reason']}"
        # recovery never waits on communication: a failed post is logged and reported, and the run goes on
        incident = _best_effort("Statuspage", details, open_incident, regions.dr.statuspage_conn_id,
                                regions.dr.statuspage_page_id, params.incident_name, body)
        declaration = Declaration(run.get("dag_id", ""), run_id, datetime.fromisoformat(run["started_at"]),
                                  params.environment, params.incident_name, Severity(**run["severity"]),
                                  f":rotating_light: DR activation initiated for {params.environment} — {body} "
                                  f"(run {run_id})")
        escalation = _best_effort("Escalation", details, declare, regions.config, declaration, datetime.now(UTC))
        details.update(statuspage=incident, escalation=escalation)
        regions.record.note(incident=incident, escalation=escalation)
        return {"incident": incident, "escalation": escalation}


def _best_effort(what: str, details: dict[str, Any], call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except Exception as exc:
        log.error("%s post failed (%s: %s); the activation goes on", what, type(exc).__name__, exc)
        details[f"{what.lower()}_error"] = f"{type(exc).__name__}: {exc}"
        return None


def primary_branch(run: dict[str, Any]) -> str:
    """Is the primary region accessible? -> regional failover, else full DR."""
    kind = run["path"]["kind"]
    answer = run["answers"]["primary_accessible"]
    log.info("Is the primary region accessible? %s (%s)", "YES" if answer["answer"] else "NO", answer["evidence"])
    return "regional_failover" if kind == "regional_failover" else "choose_restore"


def restore_branch(run: dict[str, Any]) -> str:
    """Data loss acceptable? Time critical? -> fast / latest / complete PITR restore."""
    for question in ("data_loss_acceptable", "time_critical"):
        answer = run["answers"][question]
        log.info("%s? %s (%s)", question.replace("_", " ").capitalize(), "YES" if answer["answer"] else "NO",
                 answer["evidence"])
    log.info("-> %s", run["path"]["reason"])
    return RESTORE_TASKS[run["path"]["restore"]]


# -- phase 2: DR environment ------------------------------------------------------------------------

def regional_failover(run: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Primary region reachable: promote its replica, wait for the app, then rebuild redundancy."""
    params, regions = _context(run, run_id)
    platform = regions.primary_platform
    with regions.record.step("regional_failover", "dr_environment") as details:
        before = platform.database.database_roles()
        started = time.monotonic()
        new_primary = platform.database.failover_database()
        details["failover_s"] = round(time.monotonic() - started, 3)
        url = platform.regions.region_url("primary")
        details["app_ready_s"] = _wait_http_ok(f"{url}/api/health/database", HEALTH_TIMEOUT_S)
        log.info("Promoted %s (was replica of %s); the app answers through it after %.1f s", new_primary,
                 before.get("primary"), details["app_ready_s"])
        platform.database.rebuild_database_replica()
        details.update(roles_before=before, roles_after=platform.database.database_roles())
        return {"new_primary": new_primary, **details}


def restore_dr_database(run: dict[str, Any], run_id: str, method: RestoreMethod) -> dict[str, Any]:
    """Restore the primary's backups into the DR region's new database by ``method``; wait until writable."""
    from resilience.dr.backup_repos import dr_repo
    from resilience.dr.sandbox import open_sandbox, sandbox_name

    params, regions = _context(run, run_id)
    env = regions.environment
    repo = dr_repo(env)  # the primary region's repository is lost with it
    source = repo.to_dict() if repo else {"name": "repo1", "label": "the default repository (no DR-region repo "
                                          "configured)"}
    target = datetime.fromisoformat(run["pitr_target"]) if run.get("pitr_target") else None
    request = RestoreRequest(env.pgbackrest_stanza, method, target if method == decision.COMPLETE_PITR else None,
                             repo.repo if repo else None)  # checked before anything is created
    with regions.record.step(f"restore_{method}", "dr_environment") as details:
        details["repository"] = source
        regions.record.note(restored_from=source)
        box = open_sandbox(regions.dr_platform, sandbox_name(f"dr-{env.name}", run_id, datetime.now(UTC)),
                           env.dbname, regions.primary_platform.backups.database_endpoints())
        regions.state.set(env.name, database=box.to_dict())  # known even if this run dies half-way
        regions.record.note(restored=box.name)
        log.info("Restoring %s into the DR database %s (%s%s) from %s", env.pgbackrest_stanza, box.name, method,
                 f" to {target.isoformat() if target else 'the end of the WAL archive'}"
                 if method == decision.COMPLETE_PITR else "", source["label"])
        started = time.monotonic()
        size = regions.dr_platform.sandboxes.restore_sandbox(box, request, timeout_s=RESTORE_TIMEOUT_S)
        details.update(database=box.to_dict(), restored_bytes=size, restore_s=round(time.monotonic() - started, 3))
        newest = regions.wait_writable(box, details, WRITABLE_TIMEOUT_S)
        episode = regions.dr_episode()
        details["dr_episode"] = episode
        details["sequences_moved"] = _move_sequences(regions, box, episode, regions.dr.sequence_gap)
        details["total_s"] = round(time.monotonic() - started, 3)
        details["newest_write"] = iso(newest)
        log.info("DR database %s writable after %.1f s; newest restored write %s; DR episode %d: ids from "
                 "%s", box.name, details["total_s"], iso(newest), episode, details["sequences_moved"])
        return {"database": box.to_dict(), "method": method, "newest_write": iso(newest),
                "restore_s": details["restore_s"], "total_s": details["total_s"], "repository": source["name"]}


def dr_sequence_start(restored_last: int, episode: int, gap: int) -> int:
    """Where a sequence of DR episode ``episode`` (1, 2, ...) continues: never an id the primary holds
    or may still hand out.

    ``restored_last + gap``: past every id the primary handed out after the backup (the rows DR
    lacks; the primary comes back with them). ``(2 x episode - 1) x gap``: past the primary's own
    band after earlier failbacks. A failback moves the primary ``gap`` past DR's sequence, so after
    episode k it hands out ids from about ``2k x gap``; a restore from a backup older than that
    failback has sequences far behind it, and ``restored_last + episode x gap`` (the rule before)
    landed inside the primary's band: the same id on both sides, dropped as a conflict.
    """
    if episode < 1 or gap < 1:
        raise ValueError(f"episode {episode} and sequence_gap {gap} must be positive")
    return max(restored_last + gap, (2 * episode - 1) * gap)


def _move_sequences(regions: Regions, box: Any, episode: int, gap: int) -> dict[str, int]:
    """Move every sequence of the restored database to its DR band (:func:`dr_sequence_start`): ids created
    in DR never collide with the primary's."""
    from psycopg import sql

    moved = {}
    with regions.connect(box.host, box.port, box.dbname) as conn:
        rows = conn.execute("SELECT schemaname, sequencename, coalesce(last_value, 0) FROM pg_sequences").fetchall()
        for schema, name, last in rows:
            qualified = sql.Identifier(schema, name).as_string(conn)
            moved[f"{schema}.{name}"] = int(conn.execute("SELECT setval(%s::regclass, %s)", (
                qualified, dr_sequence_start(int(last), episode, gap))).fetchone()[0])
    return moved


# -- phase 3: application ---------------------------------------------------------------------------

def deploy_app(run: dict[str, Any], run_id: str, restored: dict[str, Any]) -> dict[str, Any]:
    """Deploy the app in the DR region against the restored database."""
    params, regions = _context(run, run_id)
    db = restored["database"]
    with regions.record.step("deploy_app", "application") as details:
        deployed = regions.dr_platform.regions.start_dr_app(regions.dsn(db["host"], db["port"], db["dbname"]),
                                                    params.dr_replicas)
        regions.state.set(params.environment, app_url=deployed.url)
        details.update(url=deployed.url, replicas=len(deployed.replicas))
        log.info("App deployed in DR: %d replicas behind %s", len(deployed.replicas), deployed.url)
        return {"url": deployed.url, "replicas": len(deployed.replicas)}


def verify_dr(run: dict[str, Any], run_id: str, deployed: dict[str, Any]) -> dict[str, Any]:
    """The runbook's health endpoints through the DR entry point, and every replica ready."""
    from resilience.checks import Check, summary
    from resilience.errors import ChecksFailedError

    params, regions = _context(run, run_id)
    with regions.record.step("verify_dr", "application") as details:
        checks = []
        for path in ("/health", "/api/health/database"):
            status, seconds, _ = http_probe(f"{deployed['url']}{path}")
            checks.append(Check(f"GET {path}", status == 200, f"HTTP {status} in {seconds * 1000:.0f} ms"))
        health = regions.dr_platform.regions.region_health("dr")
        checks.append(Check("replicas ready", health.healthy_replicas == params.dr_replicas,
                            f"{health.healthy_replicas}/{params.dr_replicas} replicas healthy"))
        details["checks"] = [c.to_dict() for c in checks]
        for check in checks:
            log.info("%s", check)
        if not all(c.passed for c in checks):
            raise ChecksFailedError(f"DR region not healthy, DNS left unchanged: {summary(checks)}")
        return {"checks": details["checks"]}


# -- phase 4: traffic cutover -------------------------------------------------------------------------

def dns_cutover(run: dict[str, Any], run_id: str, restored: dict[str, Any]) -> dict[str, Any]:
    """All traffic to DR (Route53 weights 0/100); DR becomes the serving region."""
    from resilience.statuspage_io import update_incident

    params, regions = _context(run, run_id)
    with regions.record.step("dns_cutover", "traffic_cutover") as details:
        change = regions.set_traffic(0, f"DR activation {run_id}: primary region lost")
        regions.state.set(params.environment, serving="dr", dr_active=True, run_id=run_id,
                          activated_at=datetime.now(UTC), recovery_point=restored.get("newest_write"),
                          database=restored["database"])
        details.update(change)
        regions.record.note(dns_change=change)
        incident = (regions.record.load()["details"].get("incident") or {}).get("id")
        update_incident(regions.dr.statuspage_conn_id, regions.dr.statuspage_page_id, incident, "monitoring",
                        "Traffic is served from the DR region; we are monitoring.")
        return change


def _wait_http_ok(url: str, timeout_s: float) -> float:
    waited = wait_http_ok(url, timeout_s)
    if not waited.ok:
        raise TimeoutError(f"{url} did not answer 200 within {timeout_s:g} s (last: {waited.last})")
    return waited.seconds
