"""Test-wide set-up: an isolated Airflow home (SQLite) before airflow is imported, and the lab.

Airflow reads its configuration at import time, so the environment is set here, at
collection, before any test module imports airflow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="resilience-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "RESILIENCE_REPORT_DIR": str(_AIRFLOW_HOME / "reports"),
    }
)
# Connections the DAG-integrity tests must not need: anything read at parse time fails.
for key in [k for k in os.environ if k.startswith("AIRFLOW_CONN_")]:
    del os.environ[key]

LAB_PORT_BASE = int(os.environ.get("RESILIENCE_TEST_PORT_BASE", "27320"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``leaves_alerts_firing`` run after every other test (a stable move to the end).

    A real outage of the shared lab (a crashed database leader) fires the runbook's alerts for
    minutes after it has healed (``error_rate_high`` is a 5-minute rate held for 3 minutes), and
    preflight rightly refuses chaos while an alert fires: any campaign after it would be refused."""
    items.sort(key=lambda item: item.get_closest_marker("leaves_alerts_firing") is not None)


@pytest.fixture(scope="session")
def airflow_db():
    """A fresh Airflow metadata DB for the session (~1 s)."""
    from airflow.utils import db

    db.resetdb()
    return _AIRFLOW_HOME


def _resilience(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "resilience.cli", *args], capture_output=True, text=True,
                          check=check, timeout=300)


def _postgres_logs(lab_dir: Path, tail_lines: int = 40) -> str:
    """The last lines of every PostgreSQL log of the lab, for a failure message."""
    parts = []
    for log in sorted(lab_dir.glob("pg/*/postgres.log")):
        lines = log.read_text(errors="replace").splitlines()[-tail_lines:]
        parts.append(f"--- {log} (last {len(lines)} lines)\n" + "\n".join(lines))
    return "\n".join(parts)


@pytest.fixture(scope="session")
def lab():
    """The local lab, up for the whole session in its own directory and ports; down (purged) after.

    Exports its Connections as AIRFLOW_CONN_* and RESILIENCE_LAB_DIR so the DAGs reach it as
    they would in a deployment.
    """
    lab_dir = Path(tempfile.mkdtemp(prefix="resilience-lab-", dir="/tmp"))
    lab_dir.chmod(0o755)
    common = ["--lab-dir", str(lab_dir), "--port-base", str(LAB_PORT_BASE)]
    up = _resilience("lab", "up", *common, check=False)
    if up.returncode != 0:
        logs = _postgres_logs(lab_dir)  # read before the purge: why a node stopped is only there
        _resilience("lab", "down", "--purge", *common, check=False)
        pytest.fail(f"lab up failed:\n{up.stdout}\n{up.stderr}\n{logs}")
    state = json.loads((lab_dir / "lab.json").read_text())
    saved = dict(os.environ)
    os.environ["RESILIENCE_LAB_DIR"] = str(lab_dir)
    for conn_id, uri in state["connections"].items():
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = uri
    try:
        yield state
    finally:
        os.environ.clear()
        os.environ.update(saved)
        _resilience("lab", "down", "--purge", *common, check=False)
