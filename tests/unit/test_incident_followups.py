"""Which post-mortem reminders are due (pure): every stage at its mark, sent once, none once its items are done."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from resilience.incidents.followups import ITEMS, STAGES, Reminder, due_reminders, reminder_text

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
H, D = timedelta(hours=1), timedelta(days=1)
S = timedelta(seconds=1)
ALL_ITEMS = frozenset(ITEMS)
NONE: frozenset[str] = frozenset()


def stages(age, sent=NONE, done=NONE):
    return [r.stage for r in due_reminders(T0 + age, T0, sent, done)]


@pytest.mark.parametrize(("age", "sent", "done", "expected"), [
    (0 * H, NONE, NONE, []),  # just declared
    (24 * H - S, NONE, NONE, []),  # one second before the first mark
    (24 * H, NONE, NONE, ["24h"]),  # exactly at it
    (3 * D - S, {"24h"}, NONE, []),
    (3 * D, {"24h"}, NONE, ["3d"]),
    (7 * D, {"24h", "3d"}, NONE, ["1w"]),
    (30 * D - S, {"24h", "3d", "1w"}, NONE, []),
    (30 * D, {"24h", "3d", "1w"}, NONE, ["1m"]),
    (365 * D, {"24h", "3d", "1w", "1m"}, NONE, []),  # each sent once: nothing more, ever
    (3 * D, NONE, NONE, ["24h", "3d"]),  # the DAG was paused past two marks: both, oldest first
    (40 * D, NONE, NONE, ["24h", "3d", "1w", "1m"]),
    (24 * H, NONE, {"draft_report"}, []),  # done before its reminder: never sent
    (3 * D, NONE, {"draft_report"}, ["3d"]),
    (3 * D, {"24h"}, {"postmortem_meeting"}, ["3d"]),  # one of two items done: the other is reminded
    (3 * D, {"24h"}, {"postmortem_meeting", "action_items"}, []),
    (40 * D, NONE, ALL_ITEMS, []),  # closed incident
    (40 * D, NONE, ALL_ITEMS - {"followup_test"}, ["1m"]),
    (-1 * H, NONE, NONE, []),  # a clock behind the declaration
])
def test_due_stages(age, sent, done, expected):
    assert stages(age, frozenset(sent), frozenset(done)) == expected


def test_a_reminder_carries_its_due_time_title_and_only_the_open_items():
    assert due_reminders(T0 + 3 * D, T0, {"24h"}, {"action_items"}) == (
        Reminder("3d", T0 + 3 * D, "Short-term (within 3 days)", ("postmortem_meeting",)),)


def test_the_stages_follow_the_runbook_post_mortem_process():
    assert [(s.name, s.after, s.items) for s in STAGES] == [
        ("24h", 24 * H, ("draft_report",)),
        ("3d", 3 * D, ("postmortem_meeting", "action_items")),
        ("1w", 7 * D, ("fixes", "runbook_updates")),
        ("1m", 30 * D, ("action_items_closed", "followup_test")),
    ]
    assert sorted(i for s in STAGES for i in s.items) == sorted(ITEMS)


@pytest.mark.parametrize(("now", "declared", "sent", "done", "match"), [
    (datetime(2026, 11, 2), T0, NONE, NONE, "now: .* naive"),
    (T0, datetime(2026, 11, 1), NONE, NONE, "declared_at: .* naive"),
    (T0, T0, frozenset({"2d"}), NONE, r"unknown stage\(s\) or item\(s\) \['2d'\]"),
    (T0, T0, NONE, frozenset({"coffee"}), r"\['coffee'\]"),
])
def test_bad_input_is_refused_by_name(now, declared, sent, done, match):
    with pytest.raises(ValueError, match=match):
        due_reminders(now, declared, sent, done)


def test_reminder_text_names_each_open_item_with_the_command_that_closes_it():
    text = reminder_text("inc-1", "Service Disruption", "P0", due_reminders(T0 + 7 * D, T0, {"24h", "3d"}, NONE)[0],
                         "/r/run.incident.md")
    assert text.splitlines() == [
        ":memo: Post-mortem follow-up for P0 incident inc-1 (Service Disruption) — Medium-term (within 1 week):",
        "• Implement the immediate fixes (`resilience incident done inc-1 fixes` when done)",
        "• Update runbooks and procedures; communicate the learnings to the broader team "
        "(`resilience incident done inc-1 runbook_updates` when done)",
        "Incident report draft: /r/run.incident.md",
    ]
