"""Numbers as people read them in reports and messages: one formatter for every report."""

from __future__ import annotations


def fmt(value: float, unit: str) -> str:
    """``12.3 ms`` / ``1.25 s``, ``99.987 %``, ``20.02 req/s``, ``1.44 min`` / ``0.180 min (10.8 s)``,
    ``12.4 s``, and a count (unit ``""``) as ``3`` or ``2.4``."""
    if unit == "ms":
        return f"{value:.1f} ms" if abs(value) < 1000 else f"{value / 1000:.2f} s"
    if unit == "%":
        return f"{value:.3f} %"
    if unit == "req/s":
        return f"{value:.2f} req/s"
    if unit == "min":
        return f"{value:.2f} min" if abs(value) >= 1 else f"{value:.3f} min ({value * 60:.1f} s)"
    if unit == "s":
        return f"{value:.1f} s" if abs(value) < 100 else f"{value:.0f} s"
    if unit == "":
        return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"
    return f"{value:g} {unit}"
