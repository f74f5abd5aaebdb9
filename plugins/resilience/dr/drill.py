"""The monthly DR drill's steps. The DAG file wires them; each step records itself.

Every step takes the validated params dict (from ``start_drill``) and the run id, so a
step can be cleared and re-run on its own.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from resilience.checks import Check, summary
from resilience.config import Config, Environment, load_config
from resilience.dr import integrity, pgbackrest
from resilience.dr.params import DrillParams, parse_drill_params
from resilience.dr.record import DrillRecord
from resilience.dr.sandbox import sandbox_name
from resilience.errors import ChecksFailedError
from resilience.platforms.base import Platform, Sandbox, get_platform

log = logging.getLogger(__name__)

RESTORE_TIMEOUT_S = 3600
WRITABLE_TIMEOUT_S = 600
APP_TIMEOUT_S = 60


@dataclass
class Drill:
    """Everything a step needs, rebuilt from the validated params in every task."""

    params: DrillParams
    run_id: str
    config: Config

    @classmethod
    def from_xcom(cls, params: dict[str, Any], run_id: str) -> Drill:
        config = load_config()
        return cls(parse_drill_params(params, config, now=datetime.now(UTC)),
                   run_id, config)

    @property
    def source(self) -> Environment:
        return self.config.environment(self.params.environment)

    @property
    def target(self) -> Environment:
        return self.config.environment(self.params.dr_environment)

    @cached_property
    def platform(self) -> Platform:
        """The DR environment's platform: it hosts the sandbox and reaches the repository."""
        return get_platform(self.target)

    @cached_property
    def record(self) -> DrillRecord:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        hook = PostgresHook(postgres_conn_id=self.config.control_db_conn_id)
        return DrillRecord(hook.get_conn, self.run_id)

    @cached_property
    def source_credentials(self) -> tuple[str, str | None]:
        """Login and password of the source database (the restore has the same roles)."""
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(self.source.database_conn_id)
        return conn.login or "postgres", conn.password

    def source_conn(self) -> Any:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=self.source.database_conn_id).get_conn()

    def sandbox_conn(self, sandbox: Sandbox) -> Any:
        import psycopg

        user, password = self.source_credentials
        return psycopg.connect(host=sandbox.host, port=sandbox.port, dbname=sandbox.dbname, user=user,
                               password=password, connect_timeout=5, autocommit=True)


def _require_connection(conn_id: str, field: str) -> None:
    from airflow.sdk import BaseHook

    try:
        BaseHook.get_connection(conn_id)
    except Exception:
        raise ValueError(f"{field}: Airflow Connection {conn_id!r} is not defined") from None


def start_drill(raw_params: dict[str, Any], run_id: str, dag_id: str, started_at: datetime) -> dict[str, Any]:
    """Validate params, config and connections (no side effect before this passes), then open the record."""
    config = load_config()
    params = parse_drill_params(raw_params, config, now=datetime.now(UTC))
    source = config.environment(params.environment)
    target = config.environment(params.dr_environment)
    get_platform(source)
    get_platform(target)
    _require_connection(config.control_db_conn_id, "defaults.control_db_conn_id")
    _require_connection(source.database_conn_id, f"environments.{source.name}.database.conn_id")
    log.info(
        "DR drill %s: %s -> sandbox in %s, %s restore, RTO target %g min, RPO target %g min%s",
        run_id, source.name, target.name,
        f"point-in-time ({params.pitr_target.isoformat()})" if params.pitr_target else "latest",
        params.rto_target_min, params.rpo_target_min, ", full drill" if params.full_drill else "",
    )
    drill = Drill(params, run_id, config)
    drill.record.start(dag_id, source.name, target.name, params.to_dict(), started_at)
    return params.to_dict()


def _archiver_status(drill: Drill) -> pgbackrest.ArchiverStatus:
    conn = drill.source_conn()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT last_archived_wal, last_archived_time, last_failed_wal, last_failed_time"
                        " FROM pg_stat_archiver")
            return pgbackrest.ArchiverStatus(*cur.fetchone())
    finally:
        conn.close()


def verify_backups(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Runbook step 1: the backups exist, are sound, and the WAL archive is fresh enough."""
    drill = Drill.from_xcom(params, run_id)
    stanza = drill.source.pgbackrest_stanza
    with drill.record.phase("verify_backups") as details:
        info = pgbackrest.parse_info(drill.platform.pgbackrest(["info", "--output=json", f"--stanza={stanza}"],
                                                               timeout_s=120), stanza)
        archiver = _archiver_status(drill)
        now = datetime.now(UTC)
        checks = pgbackrest.backup_checks(info, archiver, now, drill.params.rpo_target_min)
        if drill.params.pitr_target:
            checks += _pitr_window_checks(drill.params.pitr_target, info, archiver)
        if drill.params.full_drill:
            checks.append(_verify_repository(drill, stanza))
        for check in checks:
            log.info("%s", check)
        details["checks"] = [c.to_dict() for c in checks]
        if info.latest:
            details["latest_backup"] = {"label": info.latest.label, "type": info.latest.type,
                                        "stop": info.latest.stop.isoformat(), "size_bytes": info.latest.size_bytes,
                                        "repo_size_bytes": info.latest.repo_size_bytes}
        details["backups"] = len(info.backups)
        if not all(c.passed for c in checks):
            raise ChecksFailedError(f"backup verification failed for stanza {stanza}: {summary(checks)}")
        log.info("Backups verified for stanza %s: %s", stanza, summary(checks))
        return {"latest_backup": details.get("latest_backup")}


def _pitr_window_checks(target: datetime, info: pgbackrest.StanzaInfo, archiver: pgbackrest.ArchiverStatus
                        ) -> list[Check]:
    oldest = info.backups[0].stop if info.backups else None
    return [
        Check("a backup precedes pitr_target", oldest is not None and oldest <= target,
              f"oldest backup finished {oldest.isoformat() if oldest else 'never'}, target {target.isoformat()}"),
        Check("WAL archived past pitr_target",
              archiver.last_archived_at is not None and archiver.last_archived_at > target,
              f"newest WAL archived at {archiver.last_archived_at}, target {target.isoformat()}"),
    ]


def _verify_repository(drill: Drill, stanza: str) -> Check:
    started = time.monotonic()
    try:
        output = drill.platform.pgbackrest(["verify", f"--stanza={stanza}", "--log-level-console=info"],
                                           timeout_s=RESTORE_TIMEOUT_S)
    except Exception as exc:
        return Check("pgbackrest verify", False, str(exc))
    return pgbackrest.verify_check(output, time.monotonic() - started)


def create_sandbox(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Runbook step 2: an empty sandbox that is provably not the source."""
    drill = Drill.from_xcom(params, run_id)
    with drill.record.phase("create_sandbox") as details:
        source_platform = get_platform(drill.source)
        sources = source_platform.database_endpoints()
        name = sandbox_name("drill", run_id, datetime.now(UTC))
        sandbox = drill.platform.create_sandbox(name, drill.source.dbname, sources)
        details.update(sandbox.to_dict())
        return sandbox.to_dict()


def restore(params: dict[str, Any], run_id: str, sandbox: dict[str, Any]) -> dict[str, Any]:
    """Runbook step 3: restore latest or point-in-time into the sandbox; wait until it takes writes."""
    drill = Drill.from_xcom(params, run_id)
    box = Sandbox.from_dict(sandbox)
    target = drill.params.pitr_target
    with drill.record.phase("restore") as details:
        conn = drill.source_conn()
        try:
            tables = integrity.timestamped_tables(conn)
            details["source_latest_write"] = integrity.latest_write(conn, tables)
        finally:
            conn.close()
        args = pgbackrest.restore_args(drill.source.pgbackrest_stanza, box.data_dir, target)
        log.info("Restoring %s into sandbox %s (%s)", drill.source.pgbackrest_stanza, box.name,
                 f"PITR to {target.isoformat()}" if target else "latest")
        started = time.monotonic()
        size = drill.platform.restore_sandbox(box, args, timeout_s=RESTORE_TIMEOUT_S)
        details["restore_s"] = round(time.monotonic() - started, 3)
        details["restored_bytes"] = size
        details["restore_mb_per_s"] = round(size / 1e6 / max(details["restore_s"], 1e-6), 1)
        _wait_writable(drill, box, details)
        details["total_s"] = round(time.monotonic() - started, 3)
        log.info("Sandbox %s writable after %.1f s (%d MB restored, %.1f MB/s copy)", box.name,
                 details["total_s"], size / 1e6, details["restore_mb_per_s"])
        point = details.get("recovery_point")
        return {"restore_s": details["restore_s"], "total_s": details["total_s"],
                "recovery_point": point.isoformat() if point else None}


def _wait_writable(drill: Drill, box: Sandbox, details: dict[str, Any]) -> None:
    """Poll until recovery has ended and the server accepts writes, logging progress."""
    started = time.monotonic()
    last_log = started
    while True:
        try:
            with drill.sandbox_conn(box) as conn:
                in_recovery, replay_at = conn.execute(
                    "SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp()").fetchone()
                if not in_recovery:
                    conn.execute("CREATE TEMP TABLE resilience_write_probe (x int)")
                    details["recovery_point"] = replay_at
                    details["writable_after_s"] = round(time.monotonic() - started, 3)
                    return
        except Exception as exc:  # the server may still be starting: retried until the timeout
            replay_at = f"not reachable yet ({type(exc).__name__})"
        if time.monotonic() - started > WRITABLE_TIMEOUT_S:
            raise TimeoutError(f"sandbox {box.name} not writable after {WRITABLE_TIMEOUT_S} s")
        if time.monotonic() - last_log >= 5:
            log.info("Sandbox %s still recovering (replayed up to %s)", box.name, replay_at)
            last_log = time.monotonic()
        time.sleep(0.1)


def check_integrity(params: dict[str, Any], run_id: str, sandbox: dict[str, Any], restored: dict[str, Any]
                    ) -> dict[str, Any]:
    """Runbook step 4: pg_amcheck, the SQL checks, and row counts against the source."""
    drill = Drill.from_xcom(params, run_id)
    box = Sandbox.from_dict(sandbox)
    with drill.record.phase("integrity") as details:
        user, password = drill.source_credentials
        clean, amcheck_summary = drill.platform.amcheck(box, user, password, timeout_s=RESTORE_TIMEOUT_S)
        checks = [Check("pg_amcheck (heap and B-tree indexes)", clean, amcheck_summary)]
        with drill.sandbox_conn(box) as conn:
            checks += integrity.run_sql_checks(conn)
            tables = integrity.timestamped_tables(conn)
            latest = integrity.latest_write(conn, tables)
            checks += _row_count_checks(drill, conn, tables, restored, latest)
        details["restored_latest_write"] = latest
        details["tables"] = tables
        for check in checks:
            log.info("%s", check)
        details["checks"] = [c.to_dict() for c in checks]
        if not all(c.passed for c in checks):
            raise ChecksFailedError(f"integrity of sandbox {box.name}: {summary(checks)}")
        log.info("Integrity of sandbox %s: %s", box.name, summary(checks))
        return {"restored_latest_write": latest.isoformat() if latest else None}


def _row_count_checks(drill: Drill, conn: Any, tables: list[str], restored: dict[str, Any],
                      latest: datetime | None) -> list[Check]:
    """Counts up to the recovery point equal the source's; after PITR, nothing newer than the target."""
    target = drill.params.pitr_target
    point = restored.get("recovery_point")
    upto = target or (datetime.fromisoformat(point) if point else latest)
    if upto is None:
        return [Check("recovery point known", False, "the restore replayed no transaction and holds no rows")]
    upto -= integrity.IN_FLIGHT_ALLOWANCE
    checks = []
    if target is not None:
        checks += integrity.pitr_checks(integrity.count_rows(conn, tables, target, None), target)
    restored_counts = integrity.count_rows(conn, tables, None, upto)
    source = drill.source_conn()
    try:
        source_counts = integrity.count_rows(source, tables, None, upto)
    finally:
        source.close()
    return checks + integrity.row_count_checks(source_counts, restored_counts, upto)


def check_app(params: dict[str, Any], run_id: str, sandbox: dict[str, Any]) -> dict[str, Any]:
    """Runbook step 5: start the application on the sandbox; its health endpoints must answer."""
    drill = Drill.from_xcom(params, run_id)
    box = Sandbox.from_dict(sandbox)
    with drill.record.phase("app_connectivity") as details:
        user, password = drill.source_credentials
        from psycopg.conninfo import make_conninfo

        dsn = make_conninfo(host=box.host, port=box.port, dbname=box.dbname, user=user, password=password or "",
                            connect_timeout=2)
        url = drill.platform.start_app(box, dsn)
        details["app_url"] = url
        checks = [_http_check(url, path) for path in ("/health", "/api/health/database")]
        for check in checks:
            log.info("%s", check)
        details["checks"] = [c.to_dict() for c in checks]
        if not all(c.passed for c in checks):
            raise ChecksFailedError(f"application on sandbox {box.name}: {summary(checks)}")
        details["app_healthy_at"] = datetime.now(UTC)
        log.info("Application healthy on sandbox %s at %s", box.name, url)
        return {"app_url": url}


def _http_check(base_url: str, path: str, timeout_s: float = APP_TIMEOUT_S) -> Check:
    """GET until a 200 or the timeout; the check carries the last status and latency."""
    import httpx

    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            response = httpx.get(base_url + path, timeout=5)
            elapsed_ms = (time.monotonic() - started) * 1000
            last = f"HTTP {response.status_code} in {elapsed_ms:.0f} ms: {response.text[:120]}"
            if response.status_code == 200:
                return Check(f"GET {path}", True, last)
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}"
        time.sleep(0.2)
    return Check(f"GET {path}", False, f"{last} (gave up after {timeout_s:g} s)")


def measure_rto_rpo(params: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Runbook step 6: RTO (start to app healthy) and RPO (data-loss window) against the targets."""
    from resilience.dr.outcome import drill_outcome

    drill = Drill.from_xcom(params, run_id)
    outcome = drill_outcome(drill.record.load(), datetime.now(UTC))
    for row in outcome["phases"]:
        log.info("Phase %-17s %8.2f s  (%4.1f %%)  %s", row["phase"], row["duration_s"], row["share_pct"],
                 row["status"])
    rto, rpo = outcome["rto"], outcome["rpo"]
    targets = [c for c in outcome["checks"] if c["name"] in ("RTO within target", "RPO within target")]
    for check in targets:
        log.info("%s", Check(**check))
    if not all(c["passed"] for c in targets):
        raise ChecksFailedError("; ".join(f"{c['name']}: {c['detail']}" for c in targets if not c["passed"]))
    return {"rto_s": rto["measured_s"], "rpo_s": rpo["measured_s"]}


def write_drill_report(params: dict[str, Any] | None, run_id: str, sandbox: dict[str, Any] | None
                       ) -> dict[str, Any]:
    """Runbook step 7: complete the record and write the JSON + HTML report (runs whatever failed)."""
    from resilience.dr.outcome import drill_outcome
    from resilience.dr.report import build_report, write_report

    if params is None:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException("No report: the drill did not start (its parameters were refused)")
    drill = Drill.from_xcom(params, run_id)
    record = drill.record.load()
    outcome = drill_outcome(record, datetime.now(UTC))
    box = dict(sandbox) if sandbox else None
    if box:
        box["dsn"] = Sandbox.from_dict(sandbox).dsn(drill.source_credentials[0])
        box["app_url"] = next((p["details"].get("app_url") for p in record["phases"]
                               if p["phase"] == "app_connectivity"), None)
    report = build_report(record, outcome, drill.record.history(record["environment"]), box,
                          kept=drill.params.no_cleanup)
    json_path, html_path = write_report(report, drill.config.report_dir / "dr_monthly_drill")
    drill.record.finish(outcome["status"], outcome["rto"]["measured_s"], outcome["rpo"]["measured_s"],
                        {"checks": outcome["checks"], "report_html": str(html_path)})
    log.info("DR drill %s: %s. Report: %s (JSON %s)", run_id, outcome["status"].upper(), html_path, json_path)
    return {"status": outcome["status"], "report_json": str(json_path), "report_html": str(html_path)}


def notify_slack(params: dict[str, Any] | None, run_id: str, written: dict[str, Any] | None) -> bool:
    """Runbook step 8: the summary to Slack (logged instead when the Connection is absent)."""
    import json

    from resilience.notify import drill_message, post_slack

    if not written:
        log.warning("Not posting to Slack: no report was written")
        return False
    from pathlib import Path

    report = json.loads(Path(written["report_json"]).read_text())
    return post_slack(load_config().slack_conn_id, drill_message(report, written["report_html"]))


def cleanup_sandbox(params: dict[str, Any] | None, run_id: str, sandbox: dict[str, Any]) -> None:
    """Runbook step 9 (teardown): drop the sandbox, unless the run asked to keep it."""
    from airflow.sdk.exceptions import AirflowSkipException

    drill = Drill.from_xcom(params, run_id) if params else None
    box = Sandbox.from_dict(sandbox)
    if drill and drill.params.no_cleanup:
        raise AirflowSkipException(f"no_cleanup is set: sandbox {box.name} kept at {box.dsn('postgres')}")
    config = load_config()
    get_platform(config.environment(box.environment)).drop_sandbox(box)


def final_verdict(written: dict[str, Any] | None) -> str:
    """Fail the run when the drill failed, so the Airflow UI shows the verdict."""
    if not written:
        raise ChecksFailedError("the drill did not complete: no report was written (see the failed task)")
    if written["status"] != "passed":
        raise ChecksFailedError(f"DR drill failed; see {written['report_html']}")
    return written["status"]
