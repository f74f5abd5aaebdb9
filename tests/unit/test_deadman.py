"""Dead-man deadlines: the plan's ``deadline_epoch_s`` checked at every bound, stress-ng's timeout from it,
and the lab watchdog's wait (fake clock, no sleeping): cancelled means the action never runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from resilience.faults.deadline import plan_deadline
from resilience.lab import deadman
from resilience.lab.layout import LabLayout
from resilience.lab.memhog import timeout_s

NOW = 1_700_000_000.0


@pytest.mark.parametrize(("plan", "expected"), [
    ({}, None),  # an old ledger row: no dead-man switch
    ({"deadline_epoch_s": None}, None),
    ({"deadline_epoch_s": NOW + 0.001}, NOW + 0.001),
    ({"deadline_epoch_s": int(NOW) + 90}, NOW + 90),
])
def test_plan_deadline(plan, expected):
    assert plan_deadline(plan, NOW) == expected


@pytest.mark.parametrize(("value", "message"), [
    (NOW, r"plan\.deadline_epoch_s: 1700000000\.000 is 0\.0 s in the past .* refusing to inject"),  # at the bound
    (NOW - 30, r"plan\.deadline_epoch_s: 1699999970\.000 is 30\.0 s in the past"),
    ("soon", r"plan\.deadline_epoch_s: 'soon' must be UTC epoch seconds"),
    (True, r"plan\.deadline_epoch_s: True must be UTC epoch seconds"),
    (float("inf"), r"plan\.deadline_epoch_s: inf must be UTC epoch seconds"),
])
def test_plan_deadline_refuses(value, message):
    with pytest.raises(ValueError, match=message):
        plan_deadline({"deadline_epoch_s": value}, NOW)


@pytest.mark.parametrize(("deadline", "expected"), [
    (NOW + 0.2, 1),  # under a second: at least 1 (stress-ng reads 0 as "no timeout")
    (NOW + 1.0, 1),
    (NOW + 59.9, 59),  # rounded down: ending early is safe, late is not
    (NOW + 60, 60),
])
def test_stress_ng_timeout(deadline, expected):
    assert timeout_s(deadline, NOW) == expected


def test_stress_ng_timeout_refuses_a_past_deadline():
    with pytest.raises(ValueError, match=r"deadline_epoch_s: 1700000000\.000 is not in the future"):
        timeout_s(NOW, NOW)


class FakeTime:
    def __init__(self, now: float) -> None:
        self.now, self.sleeps = now, []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def armed(tmp_path: Path, monkeypatch):
    """A lab dir with a switch record for ``probe`` (token ``t1``) and a fake action that records its calls."""
    layout = LabLayout(tmp_path / "lab", 41000)
    layout.lab_dir.mkdir()
    layout.lab_file.write_text("{}")
    calls: list[Path] = []
    monkeypatch.setitem(deadman.ACTIONS, "probe-action", lambda lab: calls.append(lab.lab_dir))
    deadman._write_record(layout, "probe", {"pid": None, "argv": [], "action": "probe-action",
                                            "at_epoch_s": NOW + 2.5, "token": "t1"})
    return layout, calls


def test_the_switch_fires_at_its_deadline_and_disarms(armed):
    layout, calls = armed
    fake = FakeTime(NOW)
    assert deadman.wait_and_fire(layout, "probe", "probe-action", NOW + 2.5, "t1", fake.clock, fake.sleep)
    assert (calls, fake.sleeps, fake.now) == ([layout.lab_dir], [1.0, 1.0, 0.5], NOW + 2.5)
    assert deadman.read_record(layout, "probe") is None


def test_a_cancelled_switch_never_runs_its_action(armed):
    layout, calls = armed
    fake = FakeTime(NOW)

    def sleep_then_cancel(seconds: float) -> None:
        fake.sleep(seconds)
        deadman.cancel(layout, "probe")  # the revert, while the switch sleeps

    assert not deadman.wait_and_fire(layout, "probe", "probe-action", NOW + 2.5, "t1", fake.clock, sleep_then_cancel)
    assert (calls, fake.sleeps) == ([], [1.0])


def test_a_replaced_switch_does_not_run_the_old_one(armed):
    layout, calls = armed
    fake = FakeTime(NOW + 10)  # already past: only the token decides
    assert not deadman.wait_and_fire(layout, "probe", "probe-action", NOW + 2.5, "stale-token", fake.clock, fake.sleep)
    assert calls == [] and deadman.read_record(layout, "probe")["token"] == "t1"


def test_a_switch_of_a_lab_that_is_down_does_nothing(armed):
    layout, calls = armed
    layout.lab_file.unlink()
    fake = FakeTime(NOW + 10)
    assert not deadman.wait_and_fire(layout, "probe", "probe-action", NOW + 2.5, "t1", fake.clock, fake.sleep)
    assert calls == []
