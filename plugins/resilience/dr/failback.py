"""dr_failback's steps (runbook "DR Recovery (Returning to Primary)"): stability, sync, canary, cutover."""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from resilience.config import load_config, window_seconds
from resilience.dr.failback_params import FailbackParams, parse_failback_params
from resilience.dr.regions import Regions, iso

log = logging.getLogger(__name__)

# the sync result's row lists and watermark: kept in the run's record, not in step details or XCom
RECORD_ONLY = ("conflict_rows", "deleted_rows", "watermark")
STABILITY_POLL_S = 30.0  # a stability window of hours needs no faster polling


def _context(run: dict[str, Any], run_id: str) -> tuple[FailbackParams, Regions]:
    config = load_config()
    params = parse_failback_params(run["params"], config)
    return params, Regions(config, config.environment(params.environment), run_id, run.get("dag_id", ""))


def warmup_s(regions: Regions) -> float:
    """After a weight change the rate window must fill with the new traffic (plus two scrapes)."""
    metrics = regions.dr.metrics
    return window_seconds(metrics.window, "dr.metrics.window") + 2 * metrics.scrape_interval_s


def start_failback(raw_params: dict[str, Any], run_id: str, dag_id: str, started_at: datetime) -> dict[str, Any]:
    """Validate Params, config, Connections and that DR serves; take the lock; build the sensors' specs."""
    from resilience.canary import stability_queries
    from resilience.errors import RefusedError
    from resilience.journal import take_run_lock

    config = load_config()
    params = parse_failback_params(raw_params, config)
    regions = Regions(config, config.environment(params.environment), run_id, dag_id)
    regions.validate()
    warmup = warmup_s(regions)
    metrics = regions.dr.metrics
    if params.interval_s < warmup + metrics.poll_interval_s:
        raise ValueError(f"params.interval_s: {params.interval_s:g} s is too short: each step needs the rate window "
                         f"plus two scrapes ({warmup:g} s) and one poll ({metrics.poll_interval_s:g} s)")
    state = regions.state.get(params.environment)
    if not state["dr_active"] or not state["database"]:
        raise RefusedError(f"DR is not active for {params.environment}: nothing to fail back (run dr_activation "
                           "first, or the last failback already completed)")
    regions.primary_platform.require(["backups", "regions"], "a failback (the primary's database and app)")
    if params.decommission_dr:
        regions.dr_platform.require(["regions", "sandboxes"], "decommission_dr (stop the DR app, drop its database)")
    planned = None
    if params.dry_run:  # no lock: a plan changes nothing
        from resilience.dr.plan import PLAN_KEY, failback_plan
        from resilience.plan import log_plan

        planned = {PLAN_KEY: failback_plan(regions, params, state, run_id)}
        log_plan(f"the failback of {params.environment}", planned[PLAN_KEY])
    else:
        take_run_lock(config.control_db_conn_id, run_id, dag_id, "failback")
    regions.record.open(dag_id, "dr_operation", params.environment, params.to_dict(), started_at)
    regions.record.note(kind="dr_failback", dr_since=iso(state["activated_at"]), dns_before=regions.dns.weights(),
                          **(planned or {}))
    stable_s = params.stable_hours * 3600
    step = f"{metrics.scrape_interval_s:g}s"
    stability = {
        "prometheus_conn_id": metrics.prometheus_conn_id,
        "queries": stability_queries(metrics.query("up", "primary"), metrics.query("error_rate_pct", "primary"),
                                     f"{stable_s:.0f}s", step),
        "window": f"{stable_s:.0f}s", "expected_samples": stable_s / metrics.scrape_interval_s,
        "max_error_rate_pct": params.policy.max_error_rate_pct,
        "poll_interval_s": min(STABILITY_POLL_S, max(metrics.poll_interval_s, stable_s / 10)),
        "query_timeout_s": max(metrics.query_timeout_s, 5.0),
        "timeout_s": params.stability_timeout_hours * 3600,
    }
    canary = {
        "aws_conn_id": regions.dr.aws_conn_id, "record": asdict(regions.dns.record), "plan": list(params.steps),
        "interval_s": params.interval_s, "warmup_s": warmup, "threshold": params.threshold,
        "prometheus_conn_id": metrics.prometheus_conn_id,
        "primary_queries": {m: metrics.query(m, "primary") for m in ("error_rate_pct", "p95_ms")},
        "dr_queries": {m: metrics.query(m, "dr") for m in ("error_rate_pct", "p95_ms")},
        "policy": asdict(params.policy), "poll_interval_s": metrics.poll_interval_s,
        "query_timeout_s": metrics.query_timeout_s,
        "audit": {"control_conn_id": config.control_db_conn_id, "run_id": run_id, "dag_id": dag_id,
                  "zone": regions.dr.zone, "record": regions.dr.record},
        # a step can hold for up to `threshold` more intervals before it rolls back
        "budget_s": len(params.steps) * params.interval_s * (params.threshold + 1) + 60,
        "meta": {"environment": params.environment, "dag_id": dag_id},
    }
    log.info("Failback of %s: DR active since %s (data from %s); stable %g h; canary %s %% every %g s",
             params.environment, iso(state["activated_at"]), iso(state["recovery_point"]), params.stable_hours,
             list(params.steps), params.interval_s)
    return {"params": params.to_dict(), "dag_id": dag_id, "started_at": started_at.isoformat(),
            "stability": stability, "canary": canary, "dry_run": params.dry_run}


def record_stability(run: dict[str, Any], run_id: str, event: dict[str, Any]) -> None:
    _, regions = _context(run, run_id)
    regions.record.note(stability={"status": event["status"], "checks": event["checks"]})


def sync_dr_writes(run: dict[str, Any], run_id: str, step: str = "sync_dr_writes") -> dict[str, Any]:
    """Copy the rows DR changed since the last sync back to the primary (COPY + upsert, conflicts reported;
    rows DR deleted are reported, not deleted on the primary).

    ``sync_dr_writes`` runs while DR serves: the primary's sequences move one ``sequence_gap`` past
    DR's, so both sides hand out disjoint ids during the canary. ``final_sync`` freezes DR first
    (read-only, open sessions ended): nothing DR acknowledges can come after its snapshot; a final
    sync that fails thaws DR again (the run reverts what it changed: DR may still be needed). Each
    sync starts where the last one of this DR database stopped (its watermark, kept in the run's
    record), even when that was another failback run.
    """
    from resilience.dr.datasync import Watermark, frozen_for_sync
    from resilience.dr.datasync import sync_dr_writes as sync
    from resilience.errors import ChecksFailedError

    params, regions = _context(run, run_id)
    state = regions.state.get(params.environment)
    db = state["database"]
    since = state["recovery_point"] or state["activated_at"]
    final = step == "final_sync"
    phase = "data_sync"
    with regions.record.step(step, phase) as details:
        after = _last_watermark(regions, db["name"])
        with (regions.connect(db["host"], db["port"], db["dbname"]) as dr, regions.primary_conn() as primary,
              frozen_for_sync(dr) if final else nullcontext() as frozen):
            if frozen is not None:
                details["frozen"] = frozen  # the same dict: a thaw on failure shows in the record
            primary.autocommit = False
            result = sync(dr, primary, since, params.conflict_policy, Watermark.from_dict(after),
                          0 if final else regions.dr.sequence_gap)
            regions.record.note(sync_watermark={"database": db["name"], "at": datetime.now(UTC).isoformat(),
                                                  "step": step, **result["watermark"]})
            details.update({k: v for k, v in result.items() if k not in RECORD_ONLY})
            previous = regions.record.load()["details"].get("sync")
            regions.record.note(sync=_merge_sync(previous, result))
            log.info("%s: %d row(s) changed in DR since %s, %d applied to the primary, %d conflict(s) (%s)", step,
                     result["copied"], f"the sync of {after['at']}" if after else iso(since), result["applied"],
                     result["conflicts"], params.conflict_policy)
            if result["deleted_in_dr"]:
                log.warning("%s: %d row(s) DR deleted are still on the primary (reported, not applied): %s", step,
                            result["deleted_in_dr"], result["deleted_rows"][:10])
            if result["unexplained"]:
                raise ChecksFailedError(f"{step}: {result['unexplained']} row(s) copied from DR are not on the "
                                        "primary as DR has them and are no reported conflict: data would be lost")
        return {k: v for k, v in result.items() if k not in RECORD_ONLY}


def _last_watermark(regions: Regions, database: str) -> dict[str, Any] | None:
    """Where the last sync of DR database ``database`` stopped (any failback run), None before the first."""
    rows = regions.record.db.execute(
        "SELECT details -> 'sync_watermark' FROM runs WHERE dag_id = 'dr_failback'"
        " AND details -> 'sync_watermark' ->> 'database' = %s"
        " ORDER BY details -> 'sync_watermark' ->> 'at' DESC LIMIT 1", (database,))
    return rows[0][0] if rows else None


def _merge_sync(previous: dict[str, Any] | None, result: dict[str, Any]) -> dict[str, Any]:
    """The report's view over both syncs: each pass copies only what changed since the last one, so rows
    applied and conflicts add up. Rows DR deleted are not applied, so each pass finds every one still on
    the primary again: the latest pass's ``deleted_in_dr`` and ``deleted_rows`` stand (a sum would count
    the first sync's twice)."""
    result = {k: v for k, v in result.items() if k != "watermark"}
    if not previous:
        return result
    totals = ("copied", "applied", "conflicts", "unexplained")
    tables = {t: {**{k: s.get(k, 0) + previous["tables"].get(t, {}).get(k, 0) for k in totals},
                  "deleted_in_dr": s.get("deleted_in_dr", 0)}
              for t, s in result["tables"].items()}
    return {**result, "tables": tables, **{k: sum(t[k] for t in tables.values()) for k in totals},
            "conflict_rows": (previous.get("conflict_rows", []) + result["conflict_rows"])[:500]}


def record_ramp(params: dict[str, Any], run_id: str, event: dict[str, Any]) -> None:
    """Audit every weight change the canary made and keep its analysis for the report."""
    config = load_config()
    regions = Regions(config, config.environment(params["environment"]), run_id, "dr_failback")
    for change in event.get("changes", []):
        if change.get("audited"):  # the trigger wrote it to dns_changes when Route53 accepted it
            continue
        regions.dns_log.record(run_id, "dr_failback", regions.dr.zone, regions.dr.record, change["before"],
                               change["after"], change["reason"])
    start = datetime.fromtimestamp(event["started"], UTC)
    regions.record.note(canary={k: event.get(k) for k in ("status", "plan", "step", "reason", "error",
                                                             "failed_checks", "samples", "analyses", "changes")})
    status = "success" if event["status"] == "completed" else "failed"
    regions.record.add_step("canary_ramp", "canary", status, start, datetime.fromtimestamp(event["ended"], UTC),
                            {"plan": event["plan"], "status": event["status"]},
                            error=event.get("reason") or event.get("error"))


def dns_cutover(run: dict[str, Any], run_id: str) -> dict[str, Any]:
    """All traffic on the primary (100/0, confirmed by reading back); the primary serves again."""
    from resilience.statuspage_io import update_incident

    params, regions = _context(run, run_id)
    with regions.record.step("dns_cutover", "cutover") as details:
        change = regions.set_traffic(100, f"failback {run_id}: cutover to the primary region")
        activation_run = regions.state.get(params.environment)["run_id"]
        regions.state.set(params.environment, serving="primary", dr_active=True)
        details.update(change)
        if activation_run:  # the incident the activation declared is over
            try:
                incident = regions.journal_of(activation_run).load()["details"].get("incident") or {}
            except LookupError:
                incident = {}
            details["incident_resolved"] = update_incident(
                regions.dr.statuspage_conn_id, regions.dr.statuspage_page_id, incident.get("id"), "resolved",
                "Traffic is back on the primary region.")
        ttl = regions.dns.record.ttl
        log.info("Waiting %d s (record TTL + 1) for resolvers to drop the DR answer", ttl + 1)
        time.sleep(ttl + 1)
        return change


def decommission_dr(run: dict[str, Any], run_id: str) -> dict[str, Any]:
    """After the final sync: stop the DR app, drop the DR database (skipped with decommission_dr false)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from resilience.platforms.types import Sandbox

    params, regions = _context(run, run_id)
    state = regions.state.get(params.environment)
    if not params.decommission_dr:
        regions.state.set(params.environment, dr_active=False)
        raise AirflowSkipException(f"decommission_dr is false: DR app and database {state['database']['name']} kept")
    with regions.record.step("decommission_dr", "cutover") as details:
        regions.dr_platform.regions.stop_dr_app()
        regions.dr_platform.sandboxes.drop_sandbox(Sandbox.from_dict(state["database"]))
        regions.state.set(params.environment, dr_active=False, database=None, app_url=None)
        details["dropped"] = state["database"]["name"]
        return details
