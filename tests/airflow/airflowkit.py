"""What the tests under real Airflow share besides their fixtures: the ``resilience airflow`` CLI as users run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def airflow_cli(env: dict[str, str], *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """``resilience airflow <args>`` in a process of its own, from the repository root."""
    return subprocess.run([sys.executable, "-m", "resilience.cli", "airflow", *args], env=env, capture_output=True,
                          text=True, timeout=timeout_s, cwd=Path(__file__).resolve().parents[2])
