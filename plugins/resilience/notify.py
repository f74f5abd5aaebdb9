"""Slack (incoming webhook through the Slack provider) and, later, Statuspage.

A missing Slack Connection is not an error: the message is logged and the run goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    return post_slack(load_config().slack_conn_id, message(report, written["report_html"]))


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


async def deadline_missed(slack_conn_id: str, what: str, target_min: float, context: dict | None = None) -> None:
    """Deadline Alert callback (runs in the triggerer): a run has outrun its time target."""
    run = (context or {}).get("dag_run", {})
    text = (
        f":alarm_clock: {what} {run.get('dag_id', '')} run {run.get('dag_run_id', run.get('run_id', ''))} "
        f"is still running past its RTO target of {target_min:g} min"
    )
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    try:
        await SlackWebhookHook(slack_webhook_conn_id=slack_conn_id).async_send(text=text)
    except Exception as exc:  # the alert must never crash the triggerer; say why it was not sent
        log.warning("Deadline missed but Slack post through %r failed (%s): %s", slack_conn_id,
                    type(exc).__name__, text)


async def drill_deadline_missed(slack_conn_id: str, rto_target_min: float, context: dict | None = None) -> None:
    """The DR drill's Deadline Alert."""
    await deadline_missed(slack_conn_id, "DR drill", rto_target_min, context)


async def activation_deadline_missed(slack_conn_id: str, rto_target_min: float, context: dict | None = None) -> None:
    """The DR activation's Deadline Alert: service not restored within the RTO target."""
    await deadline_missed(slack_conn_id, ":rotating_light: DR activation", rto_target_min, context)
