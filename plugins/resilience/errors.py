"""The project's own exceptions: refusals by a safety rule, and failed checks."""

from __future__ import annotations


class RefusedError(RuntimeError):
    """A safety rule of the runbook refused the action; nothing was changed."""


class ChecksFailedError(RuntimeError):
    """A step ran and its checks failed (the message lists which, with their values)."""
