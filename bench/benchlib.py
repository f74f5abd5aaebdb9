"""What the benchmarks share: an isolated Airflow home, a lab of their own, quiet stdout."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def isolated_airflow_home() -> Path:
    """A throw-away AIRFLOW_HOME (SQLite); call before anything imports airflow."""
    home = Path(tempfile.mkdtemp(prefix="resilience-bench-airflow-"))
    os.environ.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "RESILIENCE_REPORT_DIR": str(home / "reports"),
    })
    return home


def _lab(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "resilience.cli", "lab", *args], check=True, capture_output=True,
                   timeout=600)


def lab_arguments(parser: argparse.ArgumentParser, port_base: int) -> None:
    """``--lab-dir``, ``--port-base`` (each benchmark its own default, so two can run at once) and
    ``--keep-lab``: what :func:`own_lab` takes."""
    parser.add_argument("--lab-dir", help="reuse or keep the lab in this directory (default: a temporary one)")
    parser.add_argument("--port-base", type=int, default=port_base, help=f"the lab's first port (default {port_base})")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab up afterwards")


@contextlib.contextmanager
def own_lab(lab_dir: str | None, port_base: int, keep: bool = False) -> Iterator[dict]:
    """A lab for the benchmark (up, Connections exported) and down afterwards unless ``keep``."""
    directory = Path(lab_dir or tempfile.mkdtemp(prefix="resilience-bench-lab-", dir="/tmp"))
    directory.chmod(0o755)
    common = ["--lab-dir", str(directory), "--port-base", str(port_base)]
    _lab("up", *common)
    try:
        lab = json.loads((directory / "lab.json").read_text())
        os.environ["RESILIENCE_LAB_DIR"] = str(directory)
        for conn_id, uri in lab["connections"].items():
            os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = uri
        yield lab
    finally:
        if not keep:
            _lab("down", "--purge", *common)


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Airflow logs to stdout: send them to stderr so stdout carries only the figures."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    """Poll ``condition`` until it returns something truthy (returned); TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s:g} s")
        time.sleep(interval_s)
    return value


@dataclass(frozen=True)
class SummaryRow:
    """One row of ``make bench``'s summary: our figure next to its reference measured in the same run."""

    measure: str  # what is measured, with its unit: "breach onset -> fault off, median s"
    ours: float
    reference: float
    reference_name: str  # what the reference is: "Chaos Toolkit 1.21", "raw cp -a + sync"

    @property
    def ratio(self) -> float:
        return self.ours / self.reference if self.reference else float("inf")

    def markdown(self, bench: str) -> str:
        ratio = "n/a" if self.ours == self.reference == 0 else f"{self.ratio:.2f}"  # 0 of 0: nothing to compare
        return (f"| {bench} | {self.measure} | {self.ours:.3g} | {self.reference_name}: {self.reference:.3g} | "
                f"{ratio} |")


SUMMARY_HEADER = "| bench | measure | ours | reference | ratio ours / reference |\n|---|---|---|---|---|"


def summary_dir() -> Path:
    return Path(os.environ.get("RESILIENCE_BENCH_SUMMARY_DIR") or ROOT / ".bench")


def record_summary(bench: str, rows: list[SummaryRow]) -> None:
    """Print ``rows`` as markdown and keep them in ``summary_dir()/<bench>.json`` for ``bench/summary.py``
    (``make bench``'s closing table), with when and under what load they were measured."""
    print(f"\n{SUMMARY_HEADER}")
    print("\n".join(row.markdown(bench) for row in rows))
    directory = summary_dir()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{bench}.json").write_text(json.dumps({
        "bench": bench, "at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "load": os.getloadavg()[0],
        "rows": [asdict(row) for row in rows]}, indent=1))
