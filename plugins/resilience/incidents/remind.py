"""postmortem_followups' work: send each due post-mortem reminder to its incident's channel, once."""

from __future__ import annotations

import logging
from datetime import datetime

from resilience.config import load_config
from resilience.incidents.followups import due_reminders, reminder_text
from resilience.incidents.store import IncidentStore

log = logging.getLogger(__name__)


def send_due_reminders(now: datetime) -> dict[str, list[str]]:
    """Every open incident's due reminders (claimed in the control DB first, so each goes out once); returns
    incident id -> stages sent. A missing Slack Connection is logged and the reminder retried next run; a
    failed post is retried next run too, and fails this task once the others are sent."""
    from resilience.notify import post_slack

    config = load_config()
    store = IncidentStore.for_conn(config.control_db_conn_id)
    sent: dict[str, list[str]] = {}
    errors = []
    incidents = store.incidents()
    log.info("%d incident(s) with post-mortem items open", len(incidents))
    for incident in incidents:
        done = frozenset(i.item for i in store.items(incident.id) if i.done_at)
        for reminder in due_reminders(now, incident.declared_at, store.sent_stages(incident.id), done):
            if not store.claim_reminder(incident.id, reminder.stage, incident.slack_channel):
                log.warning("Not reminding %s of %s: another run sent it", incident.id, reminder.stage)
                continue
            text = reminder_text(incident.id, incident.name, incident.severity, reminder, incident.report_path)
            try:
                posted = post_slack(config.escalation.slack_conn_ids.get(incident.slack_channel), text)
            except Exception as exc:
                posted = False
                errors.append(f"{incident.id} {reminder.stage}: {type(exc).__name__}: {exc}")
                log.error("Reminder %s of %s not posted to %s (%s: %s)", reminder.stage, incident.id,
                          incident.slack_channel, type(exc).__name__, exc)
            if not posted:
                store.release_reminder(incident.id, reminder.stage)
                continue
            log.info("Reminded %s of incident %s (%s due %s): %s", incident.slack_channel, incident.id,
                     reminder.stage, reminder.due_at.isoformat(), ", ".join(reminder.open_items))
            sent.setdefault(incident.id, []).append(reminder.stage)
    if errors:
        raise RuntimeError(f"{len(errors)} reminder(s) not posted (retried next run): {'; '.join(errors)}")
    return sent
