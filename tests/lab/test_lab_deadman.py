"""Dead-man switches on the real lab: each fault ends by itself at its deadline when nobody reverts it.

The S3 fault proxy's expiry, stress-ng's ``--timeout`` and the detached Redis watchdog
(``resilience.lab.deadman``) are armed a few seconds ahead, nothing reverts, and the test waits (with
a bound) until the component is back at its baseline; the revert afterwards is a clean no-op.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from resilience.lab import control, deadman, memhog
from resilience.lab.state import layout_of
from tests.lab.labkit import Lab, cgroups_v1_memory, eventually, needs_lab_tools, request, running_lab

pytestmark = [pytest.mark.integration, needs_lab_tools]

AHEAD_S = 3.0  # how far ahead each deadline is set
SLACK_S = 15.0  # bound on "by itself" past the deadline (a loaded 2-core machine)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab() as lab:
        yield lab


def put_object(state: dict) -> int:
    return request(f"{state['s3']['endpoint']}/uploads/deadman-{uuid.uuid4().hex}", data=b"abc", method="PUT")[0]


def test_s3_fault_ends_at_its_expiry_with_nobody_reverting_it(lab: Lab) -> None:
    state = lab.state
    deadline = time.time() + AHEAD_S
    try:
        assert control.set_s3_fault(state, 1.0, 503, expires_at=deadline)["expires_at"] == deadline
        assert put_object(state) == 503
        assert control.s3_fault(state)["error_rate"] == 1.0
        assert eventually(lambda: put_object(state) == 200, AHEAD_S + SLACK_S, 0.1)
        healed_at = time.time()
        fault = control.s3_fault(state)
        assert (fault["error_rate"], fault["expires_at"], fault["expired_at"]) == (0.0, None, deadline)
        assert deadline <= healed_at < deadline + SLACK_S
    finally:
        revert = control.set_s3_fault(state, 0.0)  # the revert: a clean no-op now
    assert (revert["error_rate"], revert["expires_at"]) == (0.0, None)
    assert put_object(state) == 200


def test_s3_fault_without_expiry_stays_and_a_past_expiry_is_refused(lab: Lab) -> None:
    state = lab.state
    with pytest.raises(ValueError, match=r"expires_at: .* is not in the future"):
        control.set_s3_fault(state, 1.0, 503, expires_at=time.time() - 1)
    assert put_object(state) == 200  # nothing was set
    try:
        control.set_s3_fault(state, 1.0, 503)
        assert control.s3_fault(state)["expires_at"] is None and put_object(state) == 503
    finally:
        control.set_s3_fault(state, 0.0)


ARM_AND_DIE = """
import json, os, signal, sys
from resilience.lab import control
control.stop_redis(json.loads(sys.argv[1]), float(sys.argv[2]))
os.kill(os.getpid(), signal.SIGKILL)  # the caller (an Airflow task) dies with the fault on
"""


def test_redis_starts_by_itself_at_the_deadline_after_its_stopper_died(lab: Lab) -> None:
    state, layout = lab.state, layout_of(lab.state)
    deadline = time.time() + AHEAD_S
    try:
        died = subprocess.run([sys.executable, "-c", ARM_AND_DIE, json.dumps(state), repr(deadline)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert died.returncode == -9, died.stderr
        assert not control.redis_ping(state)
        record = deadman.read_record(layout, "redis")
        assert record and record["at_epoch_s"] == deadline and record["action"] == "start-redis"
        assert eventually(lambda: control.redis_ping(state), AHEAD_S + SLACK_S, 0.1)
        assert time.time() >= deadline
        assert eventually(lambda: deadman.read_record(layout, "redis") is None, 5)  # fired, then disarmed
        assert eventually(lambda: not Path(f"/proc/{record['pid']}").exists()
                          or Path(f"/proc/{record['pid']}/stat").read_text().split(") ")[1][0] == "Z", 5)
        pid = control.redis_server.is_running(layout)
    finally:
        control.start_redis(state)  # the revert: a clean no-op now
    assert control.redis_server.is_running(layout) == pid and control.redis_ping(state)


def test_a_revert_disarms_the_redis_switch(lab: Lab) -> None:
    state, layout = lab.state, layout_of(lab.state)
    control.stop_redis(state, time.time() + 600)
    control.stop_redis(state, time.time() + 600)  # a retried inject: still one switch, still down
    record = deadman.read_record(layout, "redis")
    assert record and not control.redis_ping(state)
    control.start_redis(state)
    assert control.redis_ping(state) and deadman.read_record(layout, "redis") is None
    assert eventually(lambda: not Path(f"/proc/{record['pid']}/cmdline").exists()
                      or not Path(f"/proc/{record['pid']}/cmdline").read_bytes(), 5), "the switch still runs"
    with pytest.raises(ValueError, match=r"at_epoch_s: .* is not in the future"):
        control.stop_redis(state, time.time() - 1)
    assert control.redis_ping(state)  # refused before stopping anything


needs_memhog = pytest.mark.skipif(not cgroups_v1_memory(), reason="needs the cgroups v1 memory controller and stress-ng")


def procs(cgroup: str) -> list[int]:
    try:
        return [int(p) for p in Path(cgroup, "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


@needs_memhog
def test_memory_hog_ends_by_itself_at_the_deadline(lab: Lab) -> None:
    state = lab.state
    deadline = time.time() + AHEAD_S
    hog = control.start_memory_hog(state, "deadman-test", 64, 16, deadline_epoch_s=deadline)
    try:
        assert procs(hog["cgroup"])
        assert eventually(lambda: not procs(hog["cgroup"]), AHEAD_S + SLACK_S, 0.1)
        assert time.time() >= deadline - 1  # --timeout rounds down to whole seconds: never late
        assert Path(hog["cgroup"]).exists()  # the cgroup waits for the revert (or the sweep)
    finally:
        control.stop_memory_hog(state, "deadman-test")  # the revert: removes the empty cgroup
    assert not Path(hog["cgroup"]).exists()
    control.stop_memory_hog(state, "deadman-test")  # idempotent
    with pytest.raises(ValueError, match=r"deadline_epoch_s: .* is not in the future"):
        control.start_memory_hog(state, "deadman-test", 64, 16, deadline_epoch_s=time.time() - 1)
    assert not Path(hog["cgroup"]).exists()  # refused before anything


@needs_memhog
def test_a_hog_whose_record_was_never_written_is_still_stopped(lab: Lab) -> None:
    state, layout = lab.state, layout_of(lab.state)
    hog = control.start_memory_hog(state, "unrecorded", 64, 16)
    memhog.record_file(layout, "unrecorded").unlink()  # as if its starter died before writing it
    try:
        assert procs(hog["cgroup"])
        assert control.memory_hog_counters(state, "unrecorded")["oom_kill"] == 0
    finally:
        control.stop_memory_hog(state, "unrecorded")
    assert not procs(hog["cgroup"]) and not Path(hog["cgroup"]).exists()
    assert not Path(f"/proc/{hog['pid']}/cmdline").exists() or not Path(f"/proc/{hog['pid']}/cmdline").read_bytes()


@needs_memhog
def test_lab_down_finds_a_hog_left_without_its_record(lab: Lab) -> None:
    state, layout = lab.state, layout_of(lab.state)
    hog = control.start_memory_hog(state, "orphan", 64, 16)
    memhog.record_file(layout, "orphan").unlink()
    try:
        assert memhog.stop_all(layout) >= 1
    finally:
        control.stop_memory_hog(state, "orphan")
    assert not Path(hog["cgroup"]).exists()


def test_deadman_refuses_bad_arguments_before_starting_anything(lab: Lab) -> None:
    layout = layout_of(lab.state)
    for kwargs, message in ((dict(action="rm -rf"), r"action: 'rm -rf' is not one of \['start-redis'\]"),
                            (dict(name="../x"), r"name: '../x' must be"),
                            (dict(at_epoch_s=float("nan")), r"at_epoch_s: nan must be UTC epoch seconds")):
        args = {"name": "probe", "action": "start-redis", "at_epoch_s": time.time() + 60, **kwargs}
        with pytest.raises(ValueError, match=message):
            deadman.arm(layout, **args)
    assert not list(layout.run_dir.glob("deadman-probe*"))
