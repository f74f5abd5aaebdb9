"""The runbook's Incident Report Template, drafted from a DR operation's own record (pure).

Every time comes from the run's journal (``Journal.load``): the run's start, each step's start and end
(``Journal.step``); what the record cannot know (root cause, lessons) is left for
the post-mortem to fill in, marked as such.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from resilience.dr.timing import rto_seconds
from resilience.incidents.followups import ITEMS, STAGES

TO_FILL = "_(to fill in at the post-mortem)_"
# the step whose success put the service back on its feet, per path
MITIGATION_STEPS = ("dns_cutover", "regional_failover")


def _moment(value: object) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _utc(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def _step(steps: Sequence[Mapping[str, Any]], names: tuple[str, ...], status: str = "success"
          ) -> Mapping[str, Any] | None:
    """The last record of the first of ``names`` that ended with ``status``."""
    for name in names:
        found = [s for s in steps if s["step"] == name and s["status"] == status]
        if found:
            return found[-1]
    return None


def _end(step: Mapping[str, Any] | None) -> datetime | None:
    return _moment(step["end"]) if step else None


def _decision(details: Mapping[str, Any]) -> list[str]:
    path = details.get("path")
    if not path:
        return ["- The run recorded no decision path."]
    lines = []
    for question, given in (details.get("answers") or {}).items():
        source = "detected" if given.get("param") == "auto" else f"param {given.get('param')}"
        lines.append(f"- {question.replace('_', ' ').capitalize()}? **{'YES' if given['answer'] else 'NO'}** "
                     f"({source}: {given.get('evidence', '')})")
    restore = f", restore **{path['restore']}**" if path.get("restore") else ""
    lines.append(f"- Path: **{path['kind']}**{restore} — {path['reason']}")
    return lines


def _impact(record: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> str:
    details = record["details"]
    parts = [f"environment {record['environment']}"]
    accessible = (details.get("answers") or {}).get("primary_accessible")
    if accessible:
        parts.append(f"primary region {'accessible' if accessible['answer'] else 'NOT accessible'} "
                     f"({accessible.get('evidence', '')})")
    change = details.get("dns_change")
    if change:
        parts.append(f"API traffic moved from {change['before']} to {change['after']} ({change['record']})")
    restored = next((s for s in steps if s["step"].startswith("restore_") and s["status"] == "success"), None)
    if restored and restored["details"].get("newest_write"):
        parts.append(f"data restored up to {restored['details']['newest_write']}: writes after it on the lost "
                     "primary are not in DR until failback")
    return "; ".join(parts)


def _escalation(details: Mapping[str, Any]) -> list[str]:
    escalated = details.get("escalation") or {}
    lines = [f"- Slack {c['channel']}: {'posted' if c['posted'] else 'NOT posted (see the run log)'}"
             for c in escalated.get("channels") or []]
    if escalated.get("pagerduty"):
        lines.append(f"- PagerDuty: on-call paged (dedup key `{escalated['pagerduty']}`)")
    statuspage = details.get("incident") or {}
    if statuspage.get("id"):
        lines.append(f"- Statuspage incident {statuspage['id']} {statuspage.get('shortlink') or ''}".rstrip())
    lines += [f"- Error: {e}" for e in escalated.get("errors") or []]
    return lines or ["- No escalation was recorded."]


def incident_report_markdown(record: Mapping[str, Any], incident_id: str, now: datetime) -> str:
    """The Incident Report Template filled from ``record`` (a DR operation's journal as loaded); ``now`` stands
    for the end of a run that has not finished."""
    details, steps = record["details"], record["steps"]
    started = _moment(record["started_at"])
    severity = details.get("severity") or {}
    declared = _step(steps, ("declare_incident",))
    mitigated = _step(steps, MITIGATION_STEPS)
    restored = _end(_step(steps, ("final_validation",)))
    name = record["params"].get("incident_name") or "DR activation"
    if restored:
        end, duration = _utc(restored), _minutes(rto_seconds(started, restored))  # the report's RTO, same ends
    else:
        end = f"not restored by this run (status {record.get('status', 'running')})"
        duration = f"ongoing: {_minutes((now - started).total_seconds())} when this draft was written"
    timeline = [
        (started, "First detection: the activation assessed the primary region (an alert that led to it is "
                  "earlier: add it)"),
        (_moment(declared["start"]) if declared else None,
         "Initial response: incident declared, Statuspage and Slack, escalation"),
        (None, f"Root cause identified {TO_FILL}"),
        (_end(mitigated), f"Mitigation deployed: {mitigated['step'] if mitigated else 'no mitigation step succeeded'}"),
        (restored, "Service restored: recovery validation checklist passed" if restored else
         "Service restored: not by this run"),
        (None, "Incident closed: once the post-mortem's action items are done (`resilience incident list`)"),
    ]
    steps_table = [f"| {_utc(_moment(s['start']))} | {s['step']} | {s['phase']} | {s['status']} | "
                   f"{s['duration_s']:.1f} s | {s.get('error') or ''} |" for s in steps]
    items = [f"- [ ] {ITEMS[item]} - Assignee: {TO_FILL} - Due: {_utc(started + stage.after)}"
             for stage in STAGES for item in stage.items]
    return "\n".join([
        f"# Incident Report - {started:%Y-%m-%d} - {name} ({record['environment']})",
        "",
        f"Incident `{incident_id}`, drafted by {record['dag_id']} run `{record['run_id']}` from its own record.",
        "",
        "## Summary",
        f"- **Start Time**: {_utc(started)}",
        f"- **End Time**: {end}",
        f"- **Duration**: {duration}",
        f"- **Severity**: {severity.get('level', 'unknown')} ({severity.get('reason', 'not recorded')})",
        f"- **Impact**: {_impact(record, steps)}",
        "",
        "## Timeline",
        *[f"- **[{_utc(at) if at else 'time?'}]**: {what}" for at, what in timeline],
        "",
        "## Decision tree",
        *_decision(details),
        "",
        "## Escalation",
        *_escalation(details),
        "",
        "## Root Cause",
        TO_FILL,
        "",
        "## Resolution",
        f"Recovery steps as the run recorded them (status {record.get('status', 'running')}):",
        "",
        "| started | step | phase | status | duration | error |",
        "|---|---|---|---|---|---|",
        *steps_table,
        "",
        "## Lessons Learned",
        TO_FILL,
        "",
        "## Action Items",
        *items,
        "",
    ])
