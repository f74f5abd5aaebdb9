"""The local lab as a platform: real PostgreSQL/pgBackRest processes on this machine.

Everything it knows about the lab comes from the lab's ``lab.json`` (written by
``resilience lab up``); sandboxes live under the lab's ``sandbox_root``, one directory each, run by
the lifecycle the Airflow worker's sandboxes share (:class:`~resilience.platforms.worker_sandboxes.DataDirSandboxes`).
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from resilience.config import Environment
from resilience.platforms.local_chaos import LocalChaos
from resilience.platforms.local_regions import LocalRegions
from resilience.platforms.types import DatabaseEndpoint, RestoreRequest, Sandbox
from resilience.platforms.worker_sandboxes import DataDirSandboxes

log = logging.getLogger(__name__)


class LocalPlatform(LocalRegions, LocalChaos):
    """Drives the lab described by ``lab.json`` (see ``resilience.lab.state``)."""

    def __init__(self, environment: Environment, lab_dir: Path | None = None) -> None:
        from resilience.lab.state import load_lab_state

        self.environment = environment
        configured = lab_dir or environment.settings.get("lab_dir")
        self.lab: dict[str, Any] = load_lab_state(Path(configured) if configured else None)
        self.lab_dir = Path(self.lab["lab_dir"])
        self.bindir = Path(self.lab["pg_bindir"])
        self.os_user = self.lab["os_user"]
        self.sandbox_root = Path(self.lab["sandbox_root"])
        self._sandboxes = DataDirSandboxes(environment.name, environment.dbname, self.sandbox_root, self.bindir,
                                           self.os_user, int(self.lab["sandbox_port_min"]), self, _LabApp())

    # -- processes -------------------------------------------------------------------------

    def _run(self, cmd: list[str], timeout_s: float) -> str:
        """Run as the lab's PostgreSQL OS user (initdb/pg_ctl/pgBackRest refuse root); return stdout.

        stdout and stderr stay apart so JSON on stdout is never mixed with warnings.
        """
        from resilience.lab.osuser import as_user

        result = subprocess.run(as_user(cmd, self.os_user), capture_output=True, text=True, timeout=timeout_s,
                                cwd="/")
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"{Path(cmd[0]).name} exited {result.returncode}: {' | '.join(tail)}")
        return result.stdout

    # -- plan mode ---------------------------------------------------------------------------

    def requests_for(self, intent: str, arguments: Mapping[str, object]) -> list[str]:
        """Plan mode: what the lab would do for ``intent``: its DR region, releases, pgBackRest and sandboxes
        here, its chaos primitives in :meth:`LocalChaos.requests_for`."""
        if intent == "pgbackrest":
            args = " ".join(str(a) for a in arguments.get("args") or [])  # type: ignore[attr-defined]
            return [f"pgbackrest --config={self.lab['pgbackrest']['config']} {args} (as {self.os_user})"]
        if intent in ("create_sandbox", "restore_sandbox", "amcheck", "start_app", "drop_sandbox"):
            return self._sandboxes.requests_for(intent, arguments)
        if intent == "start_dr_app":
            return [f"start {arguments.get('replicas')} app replica(s) and the DR load balancer on "
                    f"{self.region_url('dr')} against {arguments.get('dsn')} (the DSN in their environment), "
                    "then GET /health of each until it answers"]
        if intent == "stop_dr_app":
            return ["stop the DR region's load balancer and app replicas"]
        if intent == "rollback_app":
            return [f"deploy release {arguments.get('to_release')} again to region {arguments.get('region')}, one "
                    "replica at a time (each restarted and waited for on /health), and record the rollback"]
        return LocalChaos.requests_for(self, intent, arguments)

    # -- Platform --------------------------------------------------------------------------

    def database_endpoints(self) -> list[DatabaseEndpoint]:
        from resilience.lab.state import with_current_roles

        app_db = with_current_roles(self.lab)["app_db"]
        return [
            DatabaseEndpoint(app_db[role]["host"], int(app_db[role]["port"]), app_db[role]["data_dir"])
            for role in ("primary", "replica")
            if role in app_db
        ]

    def pgbackrest(self, args: list[str], timeout_s: float) -> str:
        cmd = ["pgbackrest", f"--config={self.lab['pgbackrest']['config']}", *args]
        log.info("Running %s", " ".join(cmd[:1] + cmd[2:]))
        return self._run(cmd, timeout_s)

    def restore_command(self, request: RestoreRequest, pg_path: str, spool_path: str) -> str:
        """A sandbox's ``restore_command``: async archive-get with the lab's pgbackrest.conf."""
        from resilience.dr.pgbackrest import async_restore_command

        return async_restore_command(self.lab["pgbackrest"]["config"], request.stanza, pg_path, spool_path,
                                     repo=request.repo)

    def server_environment(self) -> dict[str, str]:
        return {}  # the lab's pgbackrest.conf holds the S3 keys (readable by the lab's OS user only)

    # -- Sandboxes: the lab's data directories (worker_sandboxes.DataDirSandboxes) ----------

    def plan_sandbox(self, name: str, dbname: str) -> Sandbox:
        return self._sandboxes.plan_sandbox(name, dbname)

    def create_sandbox(self, sandbox: Sandbox) -> Sandbox:
        return self._sandboxes.create_sandbox(sandbox)

    def restore_sandbox(self, sandbox: Sandbox, request: RestoreRequest, timeout_s: float) -> int:
        return self._sandboxes.restore_sandbox(sandbox, request, timeout_s)

    def amcheck(self, sandbox: Sandbox, user: str, password: str | None, timeout_s: float) -> tuple[bool, str]:
        return self._sandboxes.amcheck(sandbox, user, password, timeout_s)

    def start_app(self, sandbox: Sandbox, dsn: str) -> str:
        return self._sandboxes.start_app(sandbox, dsn)

    def list_sandboxes(self) -> list[tuple[Sandbox, float]]:
        return self._sandboxes.list_sandboxes()

    def drop_sandbox(self, sandbox: Sandbox) -> None:
        self._sandboxes.drop_sandbox(sandbox)


class _LabApp:
    """The lab's demo app, started next to a sandbox (the drill's app-connectivity check)."""

    def start(self, dsn: str, port: int, run_dir: Path) -> None:
        from resilience.lab.app_process import start_app

        start_app(dsn, port, run_dir=run_dir)

    def stop(self, port: int, run_dir: Path) -> None:
        from resilience.lab.app_process import stop_app

        stop_app(port, run_dir)
