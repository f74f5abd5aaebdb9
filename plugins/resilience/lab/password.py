"""The lab's generated PostgreSQL password, kept in the lab dir with mode 0600."""

from __future__ import annotations

import os
import secrets
import string
from pathlib import Path

from resilience.lab.osuser import PG_OS_USER, chown_to

_ALPHABET = string.ascii_letters + string.digits


def ensure_password(path: Path, length: int = 24) -> str:
    """Read the password at ``path``, generating it first if missing.

    The file belongs to the postgres OS user (initdb reads it with ``--pwfile``), mode 0600.
    The alphabet is letters and digits so the password is safe in URIs and shell quotes.
    """
    if path.exists():
        return read_password(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    value = "".join(secrets.choice(_ALPHABET) for _ in range(length))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    chown_to(path, PG_OS_USER)
    return value


def read_password(path: Path) -> str:
    return path.read_text().strip()
