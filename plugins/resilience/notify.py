"""Slack (incoming webhook through the Slack provider), PagerDuty (the PagerDuty provider) and escalation.

A missing Slack Connection is not an error: the message is logged and the run goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resilience.config import Config, Escalation

log = logging.getLogger(__name__)


def connection_defined(conn_id: str) -> bool:
    from airflow.sdk import BaseHook

    try:
        BaseHook.get_connection(conn_id)
    except Exception:
        return False
    return True


def require_connection(conn_id: str, field: str) -> None:
    """Refuse, naming the config field, when an Airflow Connection the run needs is missing."""
    if not connection_defined(conn_id):
        raise ValueError(f"{field}: Airflow Connection {conn_id!r} is not defined")


def post_slack(conn_id: str | None, text: str, blocks: list[dict[str, Any]] | None = None) -> bool:
    """Post to Slack through the webhook Connection ``conn_id``; False (logged) when it is absent."""
    if not conn_id or not connection_defined(conn_id):
        log.warning("Not posting to Slack: Connection %r is not defined. Message was:\n%s", conn_id, text)
        return False
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    SlackWebhookHook(slack_webhook_conn_id=conn_id).send(text=text, blocks=blocks)
    log.info("Posted to Slack through Connection %s", conn_id)
    return True


def post_report(written: dict[str, Any] | None, message: Callable[[dict[str, Any], str], str]) -> bool:
    """Post the Slack summary of a written report (``written``: the write-report task's result)."""
    if not written:
        log.warning("Not posting to Slack: no report was written")
        return False
    from resilience.config import load_config

    report = json.loads(Path(written["report_json"]).read_text())
    return post_slack(load_config().slack_conn_id_for(str(report.get("environment", ""))),
                      message(report, written["report_html"]))


def drill_message(report: dict[str, Any], html_path: str) -> str:
    """One Slack message for a drill report."""
    icon = ":white_check_mark:" if report["status"] == "passed" else ":rotating_light:"
    rto, rpo = report["rto"], report["rpo"]

    def minutes(value: float | None) -> str:
        return "n/a" if value is None else f"{value / 60:.1f} min"

    failed = [c["name"] for c in report["checks"] if not c["passed"]]
    lines = [
        f"{icon} DR drill *{report['status'].upper()}* — {report['environment']} -> {report['dr_environment']}",
        f"RTO {minutes(rto['measured_s'])} (target {rto['target_min']:g} min), "
        f"RPO {minutes(rpo['measured_s'])} (target {rpo['target_min']:g} min)",
    ]
    if failed:
        lines.append("Failed: " + ", ".join(failed))
    lines.append(f"Run {report['run_id']} · report {html_path}")
    return "\n".join(lines)


@dataclass(frozen=True)
class MissedDeadline:
    """Who hears of a run past its RTO target, and what: from the run the scheduler hands the callback."""

    dag_id: str
    run_id: str
    environment: str
    target_min: float
    slack_conn_id: str | None

    def text(self, what: str) -> str:
        return (f":alarm_clock: {what} {self.dag_id} run {self.run_id} ({self.environment}) is still running past "
                f"its RTO target of {self.target_min:g} min")


def missed_deadline(run: Mapping[str, Any], param_defaults: Mapping[str, Any], config: Config) -> MissedDeadline:
    """Pure: the run's environment (its conf over the form's defaults; a scheduled run's from ``schedules``),
    that environment's Slack Connection and the run's RTO target, as the deadline reference computed it."""
    from resilience.deadlines import RTO_PARAM, target_minutes
    from resilience.schedules import scheduled_environments

    dag_id, conf = str(run.get("dag_id", "")), run.get("conf") or {}
    # where the run acts (or was meant to, should its start refuse the environment)
    run_type = run.get("run_type") or ""  # a str enum compares equal to its value; str() of it would not
    params = {**param_defaults, **conf, **scheduled_environments(dag_id, run_type, config)}
    environment = str(params.get("environment", ""))
    return MissedDeadline(dag_id, str(run.get("dag_run_id", run.get("run_id", ""))), environment,
                          target_minutes(conf, RTO_PARAM, float(param_defaults[RTO_PARAM])),
                          config.slack_conn_id_for(environment))


async def deadline_missed(what: str, param_defaults: Mapping[str, Any], context: Mapping[str, Any] | None) -> None:
    """Deadline Alert callback (runs in the triggerer): a run is still going past its RTO target.

    Posts to the Slack Connection of the run's environment (environments.yaml); an absent Connection, or a
    file that does not load, is logged with the message, never raised: the alert must not crash the triggerer."""
    import asyncio

    from resilience.config import load_config
    from resilience.deadlines import ended_before_deadline

    run = (context or {}).get("dag_run") or {}
    deadline = (context or {}).get("deadline") or {}
    if ended_before_deadline(run.get("end_date"), deadline.get("deadline_time")):
        log.info("Not alerting: %s run %s ended %s at %s, before its deadline %s", run.get("dag_id"),
                 run.get("dag_run_id"), run.get("state"), run.get("end_date"), deadline.get("deadline_time"))
        return
    try:
        config = await asyncio.to_thread(load_config)
    except Exception as exc:
        log.error("Deadline missed for %s run %s, but environments.yaml does not load (%s: %s): no Slack post",
                  run.get("dag_id"), run.get("dag_run_id"), type(exc).__name__, exc)
        return
    missed = missed_deadline(run, param_defaults, config)
    text = missed.text(what)
    if not missed.slack_conn_id:
        log.warning("Deadline missed, not posting to Slack: no slack_conn_id for %s. Message was: %s",
                    missed.environment, text)
        return
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    try:
        await SlackWebhookHook(slack_webhook_conn_id=missed.slack_conn_id).async_send(text=text)
    except Exception as exc:  # the alert must never crash the triggerer; say why it was not sent
        log.warning("Deadline missed but Slack post through %r failed (%s): %s", missed.slack_conn_id,
                    type(exc).__name__, text)
        return
    log.info("Deadline missed: posted to Slack through Connection %s: %s", missed.slack_conn_id, text)


async def drill_deadline_missed(param_defaults: dict[str, Any], context: dict | None = None) -> None:
    """The DR drill's Deadline Alert."""
    await deadline_missed("DR drill", param_defaults, context)


async def activation_deadline_missed(param_defaults: dict[str, Any], context: dict | None = None) -> None:
    """The DR activation's Deadline Alert: service not restored within the RTO target."""
    await deadline_missed(":rotating_light: DR activation", param_defaults, context)


# -- escalation of a declared incident (runbook "Severity Levels", "Escalation", "PagerDuty Escalation") ----------

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com"


def page_pagerduty(conn_id: str | None, summary: str, dedup_key: str, source: str,
                   details: dict[str, str]) -> str | None:
    """Trigger a critical PagerDuty alert (Events API v2) through the PagerDuty provider; the dedup key
    PagerDuty answered, or None (logged) when the Connection is absent. The dedup key makes a retried
    task update the same alert instead of paging twice."""
    if not conn_id or not connection_defined(conn_id):
        log.warning("Not paging PagerDuty: Connection %r is not defined. Alert was: %s", conn_id, summary)
        return None
    import asyncio

    from airflow.providers.pagerduty.hooks.pagerduty_events import PagerdutyEventsAsyncHook
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    hook = PagerdutyEventsAsyncHook(integration_key=conn.password)
    # The sync PagerdutyEventsHook builds pagerduty.EventsApiV2Client on the fixed events URL (its setter refuses
    # anything but https://); the async hook's base_url is an attribute: the Connection's host overrides it.
    hook.base_url = (conn.host or PAGERDUTY_EVENTS_URL).rstrip("/")
    answered = asyncio.run(hook.send_event(summary=summary, severity="critical", source=source, dedup_key=dedup_key,
                                           custom_details=details))
    log.info("Paged the on-call through PagerDuty (Connection %s): dedup key %s", conn_id, answered)
    return str(answered)


@dataclass(frozen=True)
class Escalated:
    """What the escalation of one incident reached: each channel (posted or not) and PagerDuty's dedup key."""

    severity: str
    channels: dict[str, bool]
    pagerduty: str | None
    errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        # a list, not a mapping: a jsonb object would reorder the channels (the first is the incident's own)
        channels = [{"channel": c, "posted": ok} for c, ok in self.channels.items()]
        return {"severity": self.severity, "channels": channels, "pagerduty": self.pagerduty,
                "errors": list(self.errors)}


def escalate(escalation: Escalation, severity: str, text: str, dedup_key: str, source: str,
             details: dict[str, str]) -> Escalated:
    """The runbook's escalation ladder for a declared incident: every Slack channel of its severity, and
    PagerDuty when the severity pages (P0). Recovery never waits on it: failures are logged and returned."""
    route = escalation.route(severity)
    channels: dict[str, bool] = {}
    errors: list[str] = []
    for channel in route.channels:
        try:
            channels[channel] = post_slack(escalation.slack_conn_ids.get(channel), f"[{severity}] {text}")
        except Exception as exc:
            log.error("Slack post to %s failed (%s: %s)", channel, type(exc).__name__, exc)
            channels[channel] = False
            errors.append(f"{channel}: {type(exc).__name__}: {exc}")
    paged = None
    if route.pagerduty:
        try:
            paged = page_pagerduty(escalation.pagerduty_conn_id, f"[{severity}] {text}", dedup_key, source, details)
        except Exception as exc:
            log.error("PagerDuty alert failed (%s: %s)", type(exc).__name__, exc)
            errors.append(f"pagerduty: {type(exc).__name__}: {exc}")
    log.info("Escalated %s: %s; PagerDuty %s", severity,
             ", ".join(f"{c} {'posted' if ok else 'not posted'}" for c, ok in channels.items()),
             paged or ("not paged" if route.pagerduty else "not for this severity"))
    return Escalated(severity, channels, paged, tuple(errors))
