"""``<lab_dir>/lab.json``: the contract other code (tests, Makefile, platforms, DAGs) reads.

Written at the end of a successful ``resilience lab up``. It holds every endpoint and DSN,
passwords included (it is the local lab; the file is mode 0600).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from resilience.lab.layout import (
    APP_DBNAME,
    CONTROL_DBNAME,
    HOST,
    PG_SUPERUSER,
    REPLICA_SLOT,
    STANZA,
    ClusterPaths,
    LabLayout,
    default_lab_dir,
)


class LabNotUpError(FileNotFoundError):
    """lab.json is missing: the lab was never brought up (or was purged)."""


def pg_uri(password: str, port: int | str, dbname: str, host: str = HOST, **params: str) -> str:
    """``postgresql://postgres:PW@host:port/dbname[?params]``; ``port`` may be ``"p1,p2"`` hosts."""
    hosts = ",".join(f"{host}:{p}" for p in str(port).split(","))
    query = "&".join(f"{k}={quote(v)}" for k, v in params.items())
    return f"postgresql://{PG_SUPERUSER}:{quote(password, safe='')}@{hosts}/{dbname}" + (f"?{query}" if query else "")


def app_read_write_dsn(layout: LabLayout, password: str) -> str:
    """Multi-host DSN of the app database that always lands on the writable node."""
    return pg_uri(password, f"{layout.primary.port},{layout.replica.port}", APP_DBNAME,
                  target_session_attrs="read-write", connect_timeout="2")


def _node(cluster: ClusterPaths) -> dict[str, Any]:
    return {"host": HOST, "port": cluster.port, "data_dir": str(cluster.data_dir),
            "socket_dir": str(cluster.socket_dir), "log_file": str(cluster.log_file)}


def build_state(layout: LabLayout, password: str, pg_bindir: Path, os_user: str) -> dict[str, Any]:
    """The lab.json document for ``layout`` (pure: computed, not probed)."""
    control = layout.control
    app_url = f"http://{HOST}:{layout.port('app')}"
    prometheus_url = f"http://{HOST}:{layout.port('prometheus')}"
    run = layout.run_dir
    return {
        "lab_dir": str(layout.lab_dir),
        "port_base": layout.port_base,
        "os_user": os_user,
        "pg_bindir": str(pg_bindir),
        "control_db": {"host": HOST, "port": control.port, "user": PG_SUPERUSER, "password": password,
                       "dbname": CONTROL_DBNAME, "data_dir": str(control.data_dir),
                       "socket_dir": str(control.socket_dir), "log_file": str(control.log_file)},
        "app_db": {"user": PG_SUPERUSER, "password": password, "dbname": APP_DBNAME,
                   "primary": _node(layout.primary), "replica": _node(layout.replica),
                   "replication_slot": REPLICA_SLOT,
                   "read_write_dsn": app_read_write_dsn(layout, password)},
        "pgbackrest": {"config": str(layout.pgbackrest_conf), "stanza": STANZA,
                       "repo_path": str(layout.pgbackrest_repo),
                       "log_path": str(layout.pgbackrest_dir / "log")},
        "app": {"url": app_url, "port": layout.port("app"), "pid_file": str(run / f"app-{layout.port('app')}.pid"),
                "log_file": str(run / f"app-{layout.port('app')}.log")},
        "writer": {"pid_file": str(run / "writer.pid"), "log_file": str(run / "writer.log")},
        "prometheus": {"url": prometheus_url, "port": layout.port("prometheus"),
                       "config": str(layout.prometheus_dir / "prometheus.yml")},
        "run_dir": str(run),
        "sandbox_root": str(layout.sandbox_root),
        "sandbox_port_min": layout.sandbox_port_min,
        "connections": {
            "resilience_control_db": pg_uri(password, control.port, CONTROL_DBNAME),
            "resilience_lab_app_db": pg_uri(password, layout.primary.port, APP_DBNAME),
            "resilience_lab_prometheus": prometheus_url,
        },
    }


def write_lab_state(layout: LabLayout, state: dict[str, Any]) -> Path:
    """Write lab.json atomically, mode 0600 (it holds passwords)."""
    tmp = layout.lab_file.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle, indent=2)
        handle.write("\n")
    tmp.replace(layout.lab_file)
    return layout.lab_file


def load_lab_state(lab_dir: Path | None = None) -> dict[str, Any]:
    """Read ``<lab_dir>/lab.json`` (default lab dir: ``$RESILIENCE_LAB_DIR`` or ``<project>/.lab``).

    Raises LabNotUpError (a FileNotFoundError) when the lab has not been brought up.
    """
    path = Path(lab_dir or default_lab_dir()).absolute() / "lab.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LabNotUpError(f"lab is not up: run `resilience lab up` (no {path})") from None


def airflow_env_lines(state: dict[str, Any]) -> list[str]:
    """``export AIRFLOW_CONN_<ID>='<uri>'`` for every entry of ``connections``."""
    lines = []
    for conn_id, uri in state["connections"].items():
        quoted = "'" + str(uri).replace("'", "'\\''") + "'"
        lines.append(f"export AIRFLOW_CONN_{conn_id.upper()}={quoted}")
    return lines
