"""A dead-man switch for the lab: "at epoch T, run this lab action unless cancelled".

A fault whose platform has no expiry of its own (a stopped Redis does not start itself) arms one
when it is injected: a small detached process (own session, so it outlives the task process that
armed it, and Airflow itself) that sleeps until T and then runs the action. Reverting cancels it.

``python -m resilience.lab.deadman --lab-dir D --name N --action start-redis --at T --token X``

The record ``run/deadman-<name>.json`` (``{"pid", "argv", "action", "at_epoch_s", "token"}``) is the
switch: it is written before the process starts, and the process acts only while the record still
carries its token. Cancelling removes the record (then SIGTERMs the process), so a cancel that races
the process's start, or a signal that cannot be sent, still wins. Arming again with the same action
and moment keeps the running switch (idempotent); another moment replaces it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resilience.lab import redis_server
from resilience.lab.daemons import pid_matches, start_daemon
from resilience.lab.jsonfile import write_json
from resilience.lab.layout import LabLayout

log = logging.getLogger("resilience.lab.deadman")

# The actions a switch may run, by name (argv carries the name, never code).
ACTIONS: dict[str, Callable[[LabLayout], object]] = {
    "start-redis": redis_server.start,
}
POLL_S = 1.0  # how often a sleeping switch checks that it was not cancelled


def record_file(layout: LabLayout, name: str) -> Path:
    return layout.run_dir / f"deadman-{name}.json"


def read_record(layout: LabLayout, name: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(record_file(layout, name).read_text()))
    except (FileNotFoundError, ValueError):
        return None


def _write_record(layout: LabLayout, name: str, record: dict[str, Any]) -> None:
    write_json(record_file(layout, name), record)


def _check(name: str, action: str, at_epoch_s: float, now_s: float) -> None:
    if not name or not name.replace("-", "").isalnum():
        raise ValueError(f"name: {name!r} must be letters, digits and '-'")
    if action not in ACTIONS:
        raise ValueError(f"action: {action!r} is not one of {sorted(ACTIONS)}")
    if isinstance(at_epoch_s, bool) or not isinstance(at_epoch_s, int | float) or not math.isfinite(at_epoch_s):
        raise ValueError(f"at_epoch_s: {at_epoch_s!r} must be UTC epoch seconds")
    if at_epoch_s <= now_s:
        raise ValueError(f"at_epoch_s: {at_epoch_s:.3f} is not in the future (now {now_s:.3f})")


def _running(record: dict[str, Any] | None) -> bool:
    return bool(record and record.get("pid") and pid_matches(int(record["pid"]), record["argv"]))


def arm(layout: LabLayout, name: str, action: str, at_epoch_s: float) -> int:
    """Arm switch ``name``: run ``action`` at ``at_epoch_s`` unless cancelled first; return its PID."""
    _check(name, action, at_epoch_s, time.time())
    current = read_record(layout, name)
    if _running(current) and current and (current["action"], current["at_epoch_s"]) == (action, at_epoch_s):
        log.info("Dead-man switch %s already armed: %s at %.3f (pid %d)", name, action, at_epoch_s, current["pid"])
        return int(current["pid"])
    cancel(layout, name)
    token = uuid.uuid4().hex
    argv = [sys.executable, "-m", "resilience.lab.deadman", "--lab-dir", str(layout.lab_dir),
            "--port-base", str(layout.port_base), "--name", name, "--action", action, "--at", repr(at_epoch_s),
            "--token", token]
    record = {"pid": None, "argv": argv, "action": action, "at_epoch_s": at_epoch_s, "token": token,
              "armed_at": time.time()}
    _write_record(layout, name, record)  # before the process: it acts only while this names its token
    pid = start_daemon(argv, layout.run_dir / f"deadman-{name}.pid", layout.log_file(f"deadman-{name}"))
    _write_record(layout, name, {**record, "pid": pid})
    log.info("Armed dead-man switch %s: %s at %.3f (%.1f s from now, pid %d)", name, action, at_epoch_s,
             at_epoch_s - time.time(), pid)
    return pid


def cancel(layout: LabLayout, name: str) -> bool:
    """Disarm switch ``name`` (idempotent); True if one was armed. Its action is not run."""
    record = read_record(layout, name)
    record_file(layout, name).unlink(missing_ok=True)
    (layout.run_dir / f"deadman-{name}.pid").unlink(missing_ok=True)
    if record is None:
        return False
    if _running(record):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(record["pid"]), signal.SIGTERM)
    log.info("Cancelled dead-man switch %s (%s at %.3f)", name, record.get("action"), record.get("at_epoch_s", 0))
    return True


def cancel_all(layout: LabLayout) -> int:
    """Disarm every switch of the lab (``lab down``); return how many were armed."""
    if not layout.run_dir.is_dir():
        return 0
    names = [p.name[len("deadman-"):-len(".json")] for p in layout.run_dir.glob("deadman-*.json")]
    return sum(cancel(layout, name) for name in names)


def _still_mine(layout: LabLayout, name: str, token: str) -> bool:
    record = read_record(layout, name)
    return record is not None and record.get("token") == token


def wait_and_fire(layout: LabLayout, name: str, action: str, at_epoch_s: float, token: str,
                  clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                  before_action: Callable[[], object] = lambda: None) -> bool:
    """Sleep until ``at_epoch_s`` and run ``action``, unless the record stops naming ``token``; True if fired."""
    while (left := at_epoch_s - clock()) > 0:
        if not _still_mine(layout, name, token):
            log.info("Dead-man switch %s was cancelled before %.3f: %s not run", name, at_epoch_s, action)
            return False
        sleep(min(left, POLL_S))
    if not _still_mine(layout, name, token):
        log.info("Dead-man switch %s was cancelled at its deadline: %s not run", name, action)
        return False
    if not layout.lab_file.exists():
        log.info("Dead-man switch %s: the lab in %s is down; %s not run", name, layout.lab_dir, action)
        return False
    log.warning("Dead-man switch %s: nobody reverted the fault by %.3f; running %s now", name, at_epoch_s, action)
    before_action()
    ACTIONS[action](layout)
    if _still_mine(layout, name, token):
        record_file(layout, name).unlink(missing_ok=True)
    log.info("Dead-man switch %s: %s done", name, action)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resilience.lab.deadman", description=__doc__.split("\n")[0])
    parser.add_argument("--lab-dir", type=Path, required=True)
    parser.add_argument("--port-base", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--action", required=True, choices=sorted(ACTIONS))
    parser.add_argument("--at", type=float, required=True, help="UTC epoch seconds")
    parser.add_argument("--token", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # cancelled: exit quietly, run nothing
    layout = LabLayout(args.lab_dir, args.port_base)
    # A cancel that comes once the action has begun must not cut it in half (a Redis started without
    # its pid file): from then on SIGTERM is ignored, and the revert's own start waits on Redis' lock.
    wait_and_fire(layout, args.name, args.action, args.at, args.token,
                  before_action=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
