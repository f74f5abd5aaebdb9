"""Run commands as another OS user when we are root (PostgreSQL refuses to run as root).

``setpriv`` execs the command directly (no wrapper process is left behind, unlike
``runuser``), so the PID a caller gets is the PID of the real program.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from resilience.lab.errors import CommandError, PreflightError

log = logging.getLogger(__name__)

PG_OS_USER = "postgres"
NOBODY = "nobody"


def is_root() -> bool:
    return os.geteuid() == 0


def current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def effective_user(user: str) -> str:
    """The OS user a command for ``user`` really runs as: ``user`` when root, else ourselves."""
    return user if is_root() else current_user()


def user_prefix(user: str) -> list[str]:
    """argv prefix that drops to ``user`` when we are root; empty otherwise."""
    if not is_root():
        return []
    entry = pwd.getpwnam(user)
    group = grp.getgrgid(entry.pw_gid).gr_name
    groups = "--clear-groups" if user == NOBODY else "--init-groups"
    return ["setpriv", f"--reuid={user}", f"--regid={group}", groups]


def user_env(user: str) -> dict[str, str]:
    """HOME/USER/LOGNAME of ``user`` when we switch to it (setpriv keeps our environment)."""
    if not is_root():
        return {}
    entry = pwd.getpwnam(user)
    return {"HOME": entry.pw_dir, "USER": user, "LOGNAME": user}


def as_user(argv: Sequence[str], user: str) -> list[str]:
    return [*user_prefix(user), *argv]


def as_postgres(argv: Sequence[str]) -> list[str]:
    """``argv`` run as the postgres OS user when we are root."""
    return as_user(argv, PG_OS_USER)


def run_as(
    argv: Sequence[str],
    user: str,
    *,
    check: bool = True,
    timeout_s: float | None = 120,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``user`` (when root), capture stdout+stderr, raise CommandError on failure."""
    full = as_user(argv, user)
    try:
        proc = subprocess.run(
            full,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout_s,
            cwd="/",
            env={**os.environ, **user_env(user), **(env or {})},
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.output.decode(errors="replace") if isinstance(exc.output, bytes) else (exc.output or "")
        raise CommandError(list(argv), -1, f"timed out after {timeout_s} s\n{output}") from exc
    if check and proc.returncode != 0:
        raise CommandError(list(argv), proc.returncode, proc.stdout)
    return proc


def run_as_postgres(
    argv: Sequence[str], *, check: bool = True, timeout_s: float | None = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as the postgres OS user (when root); see :func:`run_as`."""
    return run_as(argv, PG_OS_USER, check=check, timeout_s=timeout_s)


def chown_to(path: Path, user: str) -> None:
    """Give ``path`` to ``user`` (and its primary group) when we are root."""
    if is_root():
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def make_dir(path: Path, user: str | None = None, mode: int = 0o755) -> Path:
    """Create ``path`` (and parents), set its mode, and give it to ``user`` when root."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    if user:
        chown_to(path, user)
    return path


def blocking_dir(path: Path, user: str) -> Path | None:
    """The first existing directory on the way to ``path`` that ``user`` cannot traverse."""
    entry = pwd.getpwnam(user)
    gids = {entry.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
    for directory in [*reversed(path.absolute().parents), path.absolute()]:
        try:
            st = directory.stat()
        except FileNotFoundError:
            return None
        if entry.pw_uid == 0:
            continue
        if st.st_uid == entry.pw_uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid in gids:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed:
            return directory
    return None


def check_traversable(path: Path, user: str, env_var: str, *, include_self: bool = True) -> None:
    """Refuse a path the server user (postgres, nobody) could not reach.

    ``include_self=False`` checks only the parents (for a directory we create or chmod ourselves).
    """
    blocked = blocking_dir(path if include_self else path.parent, user)
    if blocked is not None:
        mode = stat.S_IMODE(blocked.stat().st_mode)
        raise PreflightError(
            f"the {user} OS user cannot traverse {blocked} (mode {mode:o}) on the way to the lab dir "
            f"{path}: the lab's servers run as {user}. Choose a lab dir it can reach with --lab-dir or "
            f"{env_var} (e.g. /tmp/resilience-lab), or `chmod o+x {blocked}`"
        )
