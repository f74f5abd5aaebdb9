"""pod-kill's lab primitive against a real lab: graceful deletion loses no request, forced deletion is a SIGKILL.

One module-scoped lab (see ``labkit``). Load is POST /api/posts through the load balancer from a few
client threads, bounded in count and time; outcomes are read from the clients' answers, the
supervisor's state and /proc.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from resilience.lab import control
from tests.lab.labkit import Lab, needs_lab_tools, request, running_lab

pytestmark = [pytest.mark.integration, needs_lab_tools]

CLIENTS = 4
MAX_REQUESTS = 20_000  # per client: the load loop is bounded in count as well as in time
MAX_LOAD_S = 90.0


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab() as lab:
        yield lab


class PostLoad:
    """POST /api/posts through the load balancer from ``CLIENTS`` threads until stopped (or bounded out)."""

    def __init__(self, url: str) -> None:
        self.url, self.stop = f"{url}/api/posts", threading.Event()
        self.answers: Counter[str] = Counter()
        self.backends: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(CLIENTS)]

    def client(self, index: int) -> None:
        deadline = time.monotonic() + MAX_LOAD_S
        for n in range(MAX_REQUESTS):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            body = json.dumps({"body": f"pod-kill load {os.getpid()}-{index}-{n}"}).encode()
            try:
                status, _, headers = request(self.url, data=body, method="POST", timeout_s=10)
                answer, backend = str(status), headers.get("X-Backend", "?")
            except OSError as exc:
                answer, backend = type(exc).__name__, "?"
            with self.lock:
                self.answers[answer] += 1
                self.backends[backend] += 1

    def __enter__(self) -> PostLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)

    def served_by(self, backend: str) -> int:
        with self.lock:
            return self.backends[backend]

    def total(self) -> int:
        with self.lock:
            return sum(self.answers.values())

    def failures(self) -> dict[str, int]:
        with self.lock:
            return {answer: n for answer, n in self.answers.items() if answer != "201"}


def wait_until(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s waiting for {what}"
        time.sleep(0.05)


def test_graceful_deletion_under_post_load_loses_no_request(lab: Lab) -> None:
    """Twice in a row: the second deletion hits a replacement the balancer has just taken into rotation."""
    state = lab.state
    before = control.replicas(state)["app-1"]
    pids, outcomes, deleted_s = [before["pid"]], [], []
    with PostLoad(state["app"]["url"]) as load:
        wait_until(lambda: load.served_by("app-1") >= 20, 30, "app-1 to serve 20 POSTs through the LB")
        for _ in range(2):
            started = time.monotonic()
            outcomes.append(control.delete_replicas(state, ["app-1"], grace_period_s=30)["app-1"])
            deleted_s.append(time.monotonic() - started)
            pids.append(control.wait_replica_healthy(state, "app-1", timeout_s=30, not_pid=pids[-1]))
            served = load.served_by("app-1")  # the replacement is in rotation once it serves through the LB
            wait_until(lambda: load.served_by("app-1") > served, 30, "the new app-1 to serve through the LB")  # noqa: B023
        during = load.total()
    for pid, outcome in zip(pids, outcomes, strict=False):
        assert (outcome["pid"], outcome["outcome"], outcome["exit"], outcome["grace_period_s"]) == (
            pid, "exited within grace", "exit code 0", 30), outcome
        assert outcome["terminated_in_s"] < 30 and not Path(f"/proc/{pid}/cmdline").exists(), outcome
    assert len(set(pids)) == 3, (deleted_s, pids)
    print(f"graceful deletions took {deleted_s} s")  # a figure, not a bound (the grace period is the bound)
    assert control.replicas(state)["app-1"]["restarts"] == before["restarts"] + 2
    assert during >= 100, f"only {during} POSTs: the load did not cover the deletions"
    assert load.failures() == {}, f"{load.failures()} of {during} POSTs failed during graceful deletions"


def test_forced_deletion_is_a_sigkill_and_the_replica_comes_back(lab: Lab) -> None:
    state = lab.state
    before = control.replicas(state)["app-2"]
    ended = control.delete_replicas(state, ["app-2"], grace_period_s=30, force=True)
    assert ended == {"app-2": {"pid": before["pid"], "outcome": "SIGKILL", "exit": "signal 9", "grace_period_s": 0,
                               "terminated_in_s": 0.0}}
    new_pid = control.wait_replica_healthy(state, "app-2", timeout_s=30, not_pid=before["pid"])
    assert new_pid != before["pid"] and not Path(f"/proc/{before['pid']}/cmdline").exists()
    assert control.replicas(state)["app-2"]["restarts"] == before["restarts"] + 1


def test_replica_still_running_after_its_grace_period_is_sigkilled(lab: Lab) -> None:
    state = lab.state
    before = control.replicas(state)["app-3"]
    os.kill(before["pid"], signal.SIGSTOP)  # it cannot act on SIGTERM: only the SIGKILL after grace ends it
    try:
        ended = control.delete_replicas(state, ["app-3"], grace_period_s=1)
    finally:
        if Path(f"/proc/{before['pid']}").exists():
            os.kill(before["pid"], signal.SIGCONT)
    outcome = ended["app-3"]
    assert (outcome["pid"], outcome["outcome"], outcome["exit"]) == (before["pid"], "killed after grace",
                                                                     "signal 9"), outcome
    assert 1.0 <= outcome["terminated_in_s"] < 5, outcome
    control.wait_replica_healthy(state, "app-3", timeout_s=30, not_pid=before["pid"])
