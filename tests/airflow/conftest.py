"""Real Airflow (scheduler, triggerer, task processes) for the tests that need it.

One ``airflow standalone`` per session, started only when a test asks for ``real_airflow``,
through the product's own path (``resilience airflow up`` -> ``airflow_local.up``), in its own
AIRFLOW_HOME (temp) and on its own port, against the session's lab. It is always stopped
with ``resilience airflow down`` (every process of its home by PID, LocalExecutor task
processes included), and the session fails when one survives.

Port: ``$RESILIENCE_AIRFLOW_PORT`` or 28080 (the next two ports serve task and trigger logs).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from resilience import airflow_local
from tests.airflow.airflowkit import airflow_cli
from tests.fakes.slack import SlackWebhookServer

PORT = int(os.environ.get(airflow_local.PORT_ENV_VAR) or 28080)
TIMINGS: dict[str, float] = {}


@dataclass
class RealAirflow:
    """A running standalone: where it lives, the lab it runs against, an authenticated API client, and the
    local Slack webhook its lab runs post to (every message kept)."""

    sa: airflow_local.Standalone
    lab: dict[str, Any]
    up_output: str
    api: httpx.Client
    env: dict[str, str] = field(repr=False)
    slack: SlackWebhookServer = field(repr=False)

    def control_db(self, sql: str, args: tuple = ()) -> list[tuple]:
        """One query on the control DB (fault_ledger, run_locks, ...), as an operator would run it."""
        with psycopg.connect(self.lab["connections"]["resilience_control_db"]) as conn:
            return conn.execute(sql, args).fetchall()

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        return airflow_local.trigger(self.api, dag_id, conf)

    def wait_run(self, dag_id: str, run_id: str, timeout_s: float,
                 until: Callable[[dict[str, Any], dict[str, str]], bool] | None = None) -> dict[str, Any]:
        return airflow_local.wait_run(self.api, dag_id, run_id, timeout_s, until)

    def failure_logs(self, dag_id: str, run_id: str, tail_chars: int = 4000) -> str:
        """The logs of the run's failed tasks (their last ``tail_chars``), for an assertion message."""
        tis = self.api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
        logs = []
        for ti in tis:
            if ti["state"] in ("failed", "upstream_failed"):
                content = self.api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/"
                                       f"{max(ti['try_number'], 1)}").json().get("content", [])
                text = "\n".join(json.dumps(line, default=str) for line in content)
                logs.append(f"--- {ti['task_id']} ({ti['state']}) ---\n{text[-tail_chars:]}")
        return "\n".join(logs)

    @staticmethod
    def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.5) -> Any:
        return wait_for(condition, timeout_s, what, interval_s)


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.5) -> Any:
    """Poll ``condition`` until it returns something truthy (returned); fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s")
        time.sleep(interval_s)
    return value


@pytest.fixture(scope="session")
def real_airflow(lab) -> Iterator[RealAirflow]:
    from resilience.config import load_config

    home = Path(tempfile.mkdtemp(prefix="resilience-standalone-"))
    sa = airflow_local.Standalone(home, PORT)
    # the in-process tests' Airflow config (their own SQLite DB, no Connections) is not this instance's
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
    env.update({"AIRFLOW_HOME": str(home), airflow_local.PORT_ENV_VAR: str(PORT),
                "RESILIENCE_REPORT_DIR": str(home / "reports"), "RESILIENCE_LAB_DIR": lab["lab_dir"]})
    # the lab's Slack Connection (environments.yaml) on a local webhook, as an environment variable like the
    # lab's own Connections: a Connection in the metadata DB is read by a trigger through the triggerer's
    # in-process Execution API, whose first request built its app for minutes on a loaded 2-core machine
    slack = SlackWebhookServer().__enter__()
    env[f"AIRFLOW_CONN_{load_config().slack_conn_id_for('lab')}".upper()] = slack.connection_json()
    with standalone(sa, lab, env, slack, "start_s", "stop_s") as airflow:
        yield airflow


@contextmanager
def standalone(sa: airflow_local.Standalone, lab: dict[str, Any], env: dict[str, str], slack: SlackWebhookServer,
               start_timing: str, stop_timing: str) -> Iterator[RealAirflow]:
    """``resilience airflow up`` in ``sa``'s home with ``env`` (timed into ``TIMINGS``), then ``resilience airflow
    down``: no process of the home may survive; the home is removed when none did. Stops ``slack`` too."""
    home = sa.home
    if airflow_local.healthy(sa):
        slack.__exit__(None, None, None)
        pytest.fail(f"something already answers on {sa.base_url}: set {airflow_local.PORT_ENV_VAR} to a free port")
    started = time.monotonic()
    try:
        up = airflow_cli(env, "up", "--lab-dir", lab["lab_dir"], timeout_s=400)
        TIMINGS[start_timing] = time.monotonic() - started
        if up.returncode != 0:
            log_tail = sa.logfile.read_text(errors="replace")[-3000:] if sa.logfile.exists() else ""
            pytest.fail(f"resilience airflow up failed ({up.returncode}):\n{up.stdout}\n{up.stderr[-3000:]}\n{log_tail}")
        with airflow_local.client(sa) as api:
            yield RealAirflow(sa, lab, up.stdout + up.stderr, api, env, slack)
    finally:
        slack.__exit__(None, None, None)
        stopping = time.monotonic()
        down = airflow_cli(env, "down", timeout_s=120)
        TIMINGS[stop_timing] = time.monotonic() - stopping
        left = airflow_local.processes(sa)
        if down.returncode == 0 and not left:
            shutil.rmtree(home, ignore_errors=True)
        assert down.returncode == 0, f"resilience airflow down failed:\n{down.stdout}\n{down.stderr[-3000:]}"
        assert not left, f"Airflow processes {left} of {home} survived `resilience airflow down`"


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        start, stop = TIMINGS.get("start_s", float("nan")), TIMINGS.get("stop_s", float("nan"))
        terminalreporter.write_line(f"airflow standalone (tests/airflow): up in {start:.1f} s, down in {stop:.1f} s")
