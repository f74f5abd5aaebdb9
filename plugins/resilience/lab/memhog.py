"""Memory pressure: ``stress-ng --vm`` inside a memory-limited child cgroup (cgroups v1).

The hog runs in a new child of *our own* memory cgroup (path from ``/proc/self/cgroup``) with
``memory.limit_in_bytes`` set, so the kernel's OOM killer acts inside that cgroup only: the
app replicas (in the parent) are untouched, as only a test pod would be killed in a cluster.
stress-ng reports success even when its workers are OOM-killed, so the outcome is read from
the cgroup: ``memory.oom_control`` (``oom_kill``, ``under_oom``) and ``memory.failcnt``.
A record per hog (``run/memhog-<name>.json``) lets ``lab down`` find and remove it from any process.
The cgroup's name comes from the lab and the hog's name alone (:func:`cgroup_of`), so a hog whose
starter died before writing its record is still found, killed and removed by :func:`stop`.

Dead-man switch: given a deadline, stress-ng runs with ``--timeout`` and ends by itself then, even when
nobody reverts the fault; the (empty) cgroup is left for revert, sweep or ``lab down`` to remove.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from resilience.lab.daemons import wait_for
from resilience.lab.errors import LabError
from resilience.lab.jsonfile import write_json
from resilience.lab.layout import LabLayout

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def own_memory_cgroup(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = CGROUP_ROOT) -> Path:
    """Our cgroups-v1 memory cgroup directory, or LabError saying why there is none."""
    for line in proc_cgroup.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            directory = root / path.lstrip("/")
            if (directory / "memory.limit_in_bytes").exists():
                return directory
            raise LabError(f"memory cgroup {directory} has no memory.limit_in_bytes: is {root} the cgroups v1 "
                           f"memory controller mounted read-write?")
    raise LabError("the cgroups v1 memory controller is not available (no memory line in /proc/self/cgroup; "
                   "cgroups v2 or no memory controller): memory-pressure faults need cgroups v1")


def record_file(layout: LabLayout, name: str) -> Path:
    return layout.run_dir / f"memhog-{name}.json"


def cgroup_of(layout: LabLayout, name: str) -> Path:
    """The hog's cgroup: a child of our own memory cgroup named from the lab's port base and the hog's name."""
    return own_memory_cgroup() / f"resilience-lab-{layout.port_base}-{name}"


def timeout_s(deadline_epoch_s: float, now_s: float) -> int:
    """stress-ng's ``--timeout``: whole seconds until the deadline, rounded down (ending early is safe,
    late is not), at least 1; ValueError naming the field when the deadline is not in the future."""
    if deadline_epoch_s <= now_s:
        raise ValueError(f"deadline_epoch_s: {deadline_epoch_s:.3f} is not in the future (now {now_s:.3f})")
    return max(1, math.floor(deadline_epoch_s - now_s))


def _check(name: str, limit_mb: int, hog_mb: int) -> None:
    if not NAME_RE.match(name):
        raise ValueError(f"name: {name!r} must be 1..40 of a-z, 0-9 and '-', starting with a letter or digit")
    for field, value in (("limit_mb", limit_mb), ("hog_mb", hog_mb)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 64 * 1024:
            raise ValueError(f"{field}: {value!r} is not an integer number of MiB in 1..65536")


def _procs(cgroup: Path) -> list[int]:
    try:
        return [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def read_record(layout: LabLayout, name: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(record_file(layout, name).read_text()))
    except FileNotFoundError:
        return None


def start(layout: LabLayout, name: str, limit_mb: int, hog_mb: int,
          deadline_epoch_s: float | None = None) -> dict[str, Any]:
    """Start a hog of ``hog_mb`` MiB in a cgroup limited to ``limit_mb`` MiB; idempotent by name.

    With ``deadline_epoch_s`` the hog ends by itself at that moment (stress-ng ``--timeout``)."""
    _check(name, limit_mb, hog_mb)
    timeout = None if deadline_epoch_s is None else timeout_s(deadline_epoch_s, time.time())
    existing = read_record(layout, name)
    if existing and (running := _procs(Path(existing["cgroup"]))):
        pid = existing.get("pid") or running[0]
        log.info("Memory hog %s already runs (pid %d, cgroup %s)", name, pid, existing["cgroup"])
        return {"pid": pid, "cgroup": existing["cgroup"]}
    stress = shutil.which("stress-ng")
    if not stress:
        raise LabError("stress-ng not found: apt-get install stress-ng")
    cgroup = cgroup_of(layout, name)
    argv = [stress, "--vm", "1", "--vm-bytes", f"{hog_mb}M", "--vm-keep"]
    if timeout is not None:
        argv += ["--timeout", f"{timeout}s"]
    # The record names the cgroup before the cgroup exists: whatever happens next, stop() finds it.
    record = {"pid": None, "cgroup": str(cgroup), "argv": argv, "limit_mb": limit_mb, "hog_mb": hog_mb,
              "deadline_epoch_s": deadline_epoch_s, "started_at": time.time()}
    _write_record(layout, name, record)
    cgroup.mkdir(exist_ok=True)
    (cgroup / "memory.limit_in_bytes").write_text(str(limit_mb * 1024 * 1024))
    log_file = layout.run_dir / f"memhog-{name}.log"
    with open(log_file, "ab") as out:  # the shell joins the cgroup, then becomes stress-ng (same PID)
        proc = subprocess.Popen(["sh", "-c", f'echo $$ > "{cgroup}/cgroup.procs" && exec "$@"', "sh", *argv],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd="/",
                                start_new_session=True)
    if not wait_for(lambda: proc.pid in _procs(cgroup) or proc.poll() is not None, 5) or proc.poll() is not None:
        raise LabError(f"memory hog {name} did not start in cgroup {cgroup} (see {log_file})")
    _write_record(layout, name, {**record, "pid": proc.pid})
    log.info("Started memory hog %s: stress-ng %d MiB (pid %d) in cgroup %s limited to %d MiB, %s", name, hog_mb,
             proc.pid, cgroup, limit_mb, "no deadline" if timeout is None else f"ends by itself in {timeout} s")
    return {"pid": proc.pid, "cgroup": str(cgroup)}


def _write_record(layout: LabLayout, name: str, record: dict[str, Any]) -> None:
    write_json(record_file(layout, name), record)


def _cgroup(layout: LabLayout, name: str) -> Path | None:
    """The hog's cgroup from its record, else from its name (a starter that died before its record)."""
    record = read_record(layout, name)
    if record is not None:
        return Path(record["cgroup"])
    try:
        cgroup = cgroup_of(layout, name)
    except LabError:
        return None
    return cgroup if cgroup.exists() else None


def counters(layout: LabLayout, name: str) -> dict[str, Any]:
    """``{"oom_kill": n, "failcnt": n, "under_oom": bool}`` of the hog's cgroup."""
    cgroup = _cgroup(layout, name)
    if cgroup is None:
        raise LabError(f"no memory hog named {name!r} in {layout.run_dir}")
    fields = dict(line.split() for line in (cgroup / "memory.oom_control").read_text().splitlines())
    return {"oom_kill": int(fields.get("oom_kill", 0)), "failcnt": int((cgroup / "memory.failcnt").read_text()),
            "under_oom": fields.get("under_oom") == "1"}


def stop(layout: LabLayout, name: str) -> bool:
    """SIGKILL everything in the hog's cgroup and remove it; True if a hog was there (idempotent).

    Found by its record or, when the record was never written, by its cgroup's name."""
    _check(name, 1, 1)
    record = read_record(layout, name)
    cgroup = _cgroup(layout, name)
    if cgroup is None:
        return False
    if record is None:
        log.warning("Memory hog %s has no record (its starter died before writing it): stopping it by its cgroup %s",
                    name, cgroup)
    for pid in _procs(cgroup):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if not wait_for(lambda: not _procs(cgroup), 5):
        raise LabError(f"processes {_procs(cgroup)} in cgroup {cgroup} survived SIGKILL")
    if record and record.get("pid"):
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(int(record["pid"]), os.WNOHANG)  # reap our own child, if it is one
    if cgroup.exists() and not wait_for(lambda: _rmdir(cgroup), 5):
        raise LabError(f"cgroup {cgroup} could not be removed (still busy after 5 s)")
    record_file(layout, name).unlink(missing_ok=True)
    log.info("Stopped memory hog %s and removed cgroup %s", name, cgroup)
    return True


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
        return True
    except FileNotFoundError:
        return True
    except OSError:  # EBUSY for a moment after the last task exits
        return False


def stop_all(layout: LabLayout) -> int:
    """Stop every hog of the lab, recorded in the lab dir or only left as a cgroup (``lab down``); return how many."""
    names = {p.name[len("memhog-"):-len(".json")] for p in layout.run_dir.glob("memhog-*.json")}
    prefix = f"resilience-lab-{layout.port_base}-"
    with contextlib.suppress(LabError, OSError):
        names |= {p.name[len(prefix):] for p in own_memory_cgroup().glob(prefix + "*")
                  if p.is_dir() and NAME_RE.match(p.name[len(prefix):])}
    return sum(stop(layout, name) for name in sorted(names))
