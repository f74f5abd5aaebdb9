"""The runbook's Post-Mortem Process as data, and which reminders are due (pure).

Each stage reminds the incident's Slack channel once, at its mark after the declaration, of
its items not yet done; a stage whose items are all done is never sent.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from datetime import datetime, timedelta

ITEMS = {
    "draft_report": "Draft the incident report, collect logs and evidence, reconstruct the timeline",
    "postmortem_meeting": "Hold the blameless post-mortem meeting: root cause and contributing factors",
    "action_items": "Define the action items",
    "fixes": "Implement the immediate fixes",
    "runbook_updates": "Update runbooks and procedures; communicate the learnings to the broader team",
    "action_items_closed": "Complete all action items; update monitoring and alerting",
    "followup_test": "Conduct the follow-up test",
}


@dataclass(frozen=True)
class Stage:
    name: str
    after: timedelta
    title: str
    items: tuple[str, ...]


STAGES = (
    Stage("24h", timedelta(hours=24), "Immediate (within 24 hours)", ("draft_report",)),
    Stage("3d", timedelta(days=3), "Short-term (within 3 days)", ("postmortem_meeting", "action_items")),
    Stage("1w", timedelta(weeks=1), "Medium-term (within 1 week)", ("fixes", "runbook_updates")),
    Stage("1m", timedelta(days=30), "Long-term (within 1 month)", ("action_items_closed", "followup_test")),
)
STAGE_OF_ITEM = {item: stage.name for stage in STAGES for item in stage.items}


@dataclass(frozen=True)
class Reminder:
    stage: str
    due_at: datetime
    title: str
    open_items: tuple[str, ...]


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name}: {value!r} is naive; pass a timezone-aware datetime")
    return value


def due_reminders(now: datetime, declared_at: datetime, sent: Set[str], done: Set[str]) -> tuple[Reminder, ...]:
    """The reminders to send now, oldest stage first: each stage whose mark has passed, not sent yet, with at
    least one item not done. A run after several marks (the DAG was paused) sends each of them once."""
    _aware(now, "now")
    _aware(declared_at, "declared_at")
    unknown = sorted((set(done) - set(ITEMS)) | (set(sent) - {s.name for s in STAGES}))
    if unknown:
        raise ValueError(f"unknown stage(s) or item(s) {unknown}; stages {[s.name for s in STAGES]}, "
                         f"items {list(ITEMS)}")
    due = []
    for stage in STAGES:
        due_at = declared_at + stage.after
        open_items = tuple(i for i in stage.items if i not in done)
        if now >= due_at and stage.name not in sent and open_items:
            due.append(Reminder(stage.name, due_at, stage.title, open_items))
    return tuple(due)


def reminder_text(incident_id: str, name: str, severity: str, reminder: Reminder, report: str | None) -> str:
    """The Slack message of one reminder."""
    lines = [f":memo: Post-mortem follow-up for {severity} incident {incident_id} ({name}) — {reminder.title}:"]
    lines += [f"• {ITEMS[item]} (`resilience incident done {incident_id} {item}` when done)"
              for item in reminder.open_items]
    if report:
        lines.append(f"Incident report draft: {report}")
    return "\n".join(lines)
