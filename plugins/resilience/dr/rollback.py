"""emergency_rollback: the runbook's "Rollback Procedures", each part chosen by a Param.

- application: the region's app back to its previous release (rolling);
- database: point-in-time recovery into a new environment ``rollback-YYYYMMDD-HHMM`` (default
  target 30 minutes ago); the source is never written;
- traffic: the API record's weights back to what they were before the last change (or all
  to one region).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from resilience.config import load_config
from resilience.dr.regions import Regions, iso
from resilience.dr.rollback_params import RollbackParams, parse_rollback_params

log = logging.getLogger(__name__)

def _context(run: dict[str, Any], run_id: str) -> tuple[RollbackParams, Regions]:
    config = load_config()
    params = parse_rollback_params(run["params"], config, datetime.now(UTC))
    return params, Regions(config, config.environment(params.environment), run_id, run.get("dag_id", ""))


def start_rollback(raw_params: dict[str, Any], run_id: str, dag_id: str, started_at: datetime) -> dict[str, Any]:
    """Validate every selected part (a previous release, backups covering the target, a DNS change
    to go back to), then take the lock and open the record."""
    from resilience.errors import RefusedError
    from resilience.journal import take_run_lock

    config = load_config()
    params = parse_rollback_params(raw_params, config, datetime.now(UTC))
    regions = Regions(config, config.environment(params.environment), run_id, dag_id)
    regions.validate()
    plan: dict[str, Any] = {}
    if params.application:
        regions.platform(params.app_region).require(["releases"], f"an application rollback in {params.app_region}")
        release = regions.platform(params.app_region).releases.app_release(params.app_region)
        if release.rollback_blocker:
            raise RefusedError(f"params.application: the {params.app_region} region's app cannot be rolled back "
                               f"from here: {release.rollback_blocker}")
        current = release.current
        if release.previous is None or current.rollback_of:
            raise RefusedError(f"params.application: the {params.app_region} region has no previous release to roll "
                               f"back to (current {current.release}, revision {current.number}"
                               + (f", itself a rollback of {current.rollback_of})" if current.rollback_of else ")"))
        plan["application"] = {"from": release.current.to_dict(), "to": release.previous.to_dict(),
                               "managed_by": release.managed_by}
    if params.database:
        regions.primary_platform.require(["backups", "sandboxes"], "a database rollback (PITR into a new environment)")
        plan["database"] = _check_backups_cover(regions, params.pitr_target)
    if params.traffic:
        plan["traffic"] = _traffic_target(regions, params.traffic_to)
    for part, what in plan.items():
        log.info("Will roll back %s: %s", part, what)
    planned = None
    if params.dry_run:  # no lock: a plan changes nothing
        from resilience.dr.plan import PLAN_KEY, rollback_plan
        from resilience.plan import log_plan

        planned = {PLAN_KEY: rollback_plan(regions, params, plan, datetime.now(UTC))}
        log_plan(f"the emergency rollback of {params.environment} ({', '.join(plan)})", planned[PLAN_KEY])
    else:
        take_run_lock(config.control_db_conn_id, run_id, dag_id, "emergency rollback")
    regions.record.open(dag_id, "dr_operation", params.environment, params.to_dict(), started_at)
    regions.record.note(kind="emergency_rollback", plan=plan, **(planned or {}))
    return {"params": params.to_dict(), "dag_id": dag_id, "started_at": started_at.isoformat(), "plan": plan,
            "dry_run": params.dry_run}


def _check_backups_cover(regions: Regions, target: datetime | None) -> dict[str, Any]:
    from resilience.dr.pgbackrest import parse_info
    from resilience.errors import RefusedError

    assert target is not None
    stanza = regions.environment.pgbackrest_stanza
    backups = regions.primary_platform.backups
    info = parse_info(backups.pgbackrest(["info", "--output=json", f"--stanza={stanza}"], 60), stanza)
    usable = [b for b in info.backups if b.stop <= target]
    if not usable:
        oldest = info.backups[0].stop.isoformat() if info.backups else "none"
        raise RefusedError(f"params.pitr_target: {target.isoformat()} precedes the end of every backup "
                           f"(oldest ends {oldest}): nothing to recover from")
    return {"target": target.isoformat(), "from_backup": usable[-1].label}


def _traffic_target(regions: Regions, traffic_to: str) -> dict[str, Any]:
    from resilience.errors import RefusedError

    current = regions.dns.weights()
    if traffic_to == "previous":
        last = regions.dns_log.last(regions.dr.record)
        if last is None:
            raise RefusedError(f"params.traffic_to: no recorded change of {regions.dr.record} to roll back")
        wanted = last["before"]
    else:
        wanted = {"primary": 100 if traffic_to == "primary" else 0, "dr": 100 if traffic_to == "dr" else 0}
    return {"from": current, "to": wanted}


def rollback_application(run: dict[str, Any], run_id: str) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowSkipException

    params, regions = _context(run, run_id)
    if not params.application:
        raise AirflowSkipException("application rollback not selected")
    with regions.record.step("rollback_application", "application") as details:
        started = time.monotonic()
        release = regions.platform(params.app_region).releases.rollback_app(params.app_region)
        details.update(region=params.app_region, release=release.current.to_dict(),
                       rolled_back_from=run["plan"]["application"]["from"],
                       seconds=round(time.monotonic() - started, 2))
        log.info("%s region rolled back to release %s in %.1f s", params.app_region, release.current.release,
                 details["seconds"])
        return details


def rollback_database(run: dict[str, Any], run_id: str) -> dict[str, Any]:
    """PITR into a new environment named for the day; kept (it is the result), its DSN reported."""
    from airflow.sdk.exceptions import AirflowSkipException

    from resilience.dr.sandbox import open_sandbox
    from resilience.platforms.types import RestoreRequest

    params, regions = _context(run, run_id)
    if not params.database:
        raise AirflowSkipException("database rollback not selected")
    assert params.pitr_target is not None
    env = regions.environment
    platform = regions.primary_platform
    with regions.record.step("rollback_database", "database") as details:
        name = f"rollback-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        box = open_sandbox(platform, name, env.dbname, platform.backups.database_endpoints())
        log.info("Point-in-time recovery of %s to %s into new environment %s", env.pgbackrest_stanza,
                 params.pitr_target.isoformat(), name)
        started = time.monotonic()
        platform.sandboxes.restore_sandbox(box, RestoreRequest(env.pgbackrest_stanza, "pitr", params.pitr_target),
                                 timeout_s=3600)
        newest = regions.wait_writable(box)
        user, _ = regions.credentials
        details.update(environment=name, dsn=box.dsn(user), target=params.pitr_target.isoformat(),
                       newest_write=iso(newest), seconds=round(time.monotonic() - started, 2), database=box.to_dict())
        regions.record.note(rollback_database=details)
        log.info("New environment %s ready at %s (newest row %s)", name, box.dsn(user), iso(newest))
        return details


def rollback_traffic(run: dict[str, Any], run_id: str) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowSkipException

    from resilience.errors import RefusedError

    params, regions = _context(run, run_id)
    if not params.traffic:
        raise AirflowSkipException("traffic rollback not selected")
    wanted = run["plan"]["traffic"]["to"]
    with regions.record.step("rollback_traffic", "traffic") as details:
        target = "primary" if wanted["primary"] >= wanted["dr"] else "dr"
        ok, health = regions.healthy(target)
        if not ok and wanted[target] == 100:
            raise RefusedError(f"traffic_to: the {target} region is not healthy ({health}); DNS left as it is")
        change = regions.set_traffic(int(round(100 * wanted["primary"] / max(1, sum(wanted.values())))),
                                     f"emergency rollback {run_id}: traffic {params.traffic_to}")
        details.update(change)
        if change["after"]["dr"] == 0:
            regions.state.set(params.environment, serving="primary")
        elif change["after"]["primary"] == 0:
            regions.state.set(params.environment, serving="dr")
        return change
