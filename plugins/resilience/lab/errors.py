"""The lab's one exception type: a refusal or failure the CLI prints as a single line."""

from __future__ import annotations


class LabError(RuntimeError):
    """The lab cannot be brought up, queried or stopped; the message says why and what to do."""


class CommandError(LabError):
    """An external command (initdb, pg_ctl, pgbackrest ...) failed."""

    def __init__(self, argv: list[str], returncode: int, output: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-15:])
        super().__init__(f"`{' '.join(argv)}` exited {returncode}:\n{tail}")


class PreflightError(LabError):
    """Refused before anything was started (port taken, lab dir unreachable, tool missing)."""
