"""Named pass/fail checks: the unit every verdict, log line and report row is made of."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    """One named condition, whether it held, and the values that say why."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"[{'PASS' if self.passed else 'FAIL'}] {self.name}: {self.detail}"


def failed(checks: Iterable[Check]) -> list[Check]:
    return [c for c in checks if not c.passed]


def summary(checks: Iterable[Check]) -> str:
    """``"2 of 5 checks failed: a (why); b (why)"`` or ``"all 5 checks passed"``."""
    checks = list(checks)
    bad = failed(checks)
    if not bad:
        return f"all {len(checks)} checks passed"
    return f"{len(bad)} of {len(checks)} checks failed: " + "; ".join(f"{c.name} ({c.detail})" for c in bad)
