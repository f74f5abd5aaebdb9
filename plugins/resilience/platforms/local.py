"""The local lab as a platform: real PostgreSQL/pgBackRest processes on this machine.

Everything it knows about the lab comes from the lab's ``lab.json`` (written by
``resilience lab up``); sandboxes live under the lab's ``sandbox_root``, one directory each.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from resilience.config import Environment
from resilience.errors import RefusedError
from resilience.platforms.local_chaos import LocalChaos
from resilience.platforms.local_regions import LocalRegions
from resilience.platforms.types import DatabaseEndpoint, RestoreRequest, Sandbox

log = logging.getLogger(__name__)

MARKER = ".resilience-sandbox"


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

    def _sandbox_ports_in_use(self) -> set[int]:
        ports = set()
        for marker in self.sandbox_root.glob(f"*/{MARKER}"):
            try:
                ports.add(int(json.loads(marker.read_text())["port"]))
            except (ValueError, KeyError, OSError):
                continue
        return ports

    def _free_port(self, start: int) -> int:
        """The first port from ``start`` that no sandbox claims and that can be bound right now.

        Binding (not connecting) is the test: a port used as the local end of an outgoing
        connection refuses a bind although nothing listens on it.
        """
        taken = self._sandbox_ports_in_use()
        for port in range(start, start + 200):
            if port in taken:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
        raise RuntimeError(f"no free port in {start}..{start + 199} for a sandbox")

    def plan_sandbox(self, name: str, dbname: str) -> Sandbox:
        port = self._free_port(int(self.lab["sandbox_port_min"]))
        return Sandbox(name, self.environment.name, "127.0.0.1", port, dbname, str(self.sandbox_root / name / "pgdata"))

    def create_sandbox(self, sandbox: Sandbox) -> Sandbox:
        from resilience.lab.osuser import make_dir

        name, root = sandbox.name, Path(sandbox.data_dir).parent
        if (root / MARKER).exists():
            log.warning("Sandbox %s exists from an earlier attempt of this run: dropping it first", name)
            self.drop_sandbox(sandbox)
        if root.exists():
            raise RefusedError(f"sandbox {name} refused: {root} exists and is not a sandbox (no {MARKER})")
        port, dbname = sandbox.port, sandbox.dbname
        make_dir(root, self.os_user, 0o755)
        make_dir(root / "pgdata", self.os_user, 0o700)
        make_dir(root / "sock", self.os_user, 0o755)
        (root / MARKER).write_text(json.dumps({"name": name, "port": port, "dbname": dbname,
                                               "created_at": time.time()}))
        log.info("Created sandbox %s at %s (port %d)", name, root, port)
        return sandbox

    def restore_sandbox(self, sandbox: Sandbox, request: RestoreRequest, timeout_s: float) -> int:
        from resilience.dr.pgbackrest import async_restore_command, restore_args
        from resilience.lab.osuser import make_dir

        root = Path(sandbox.data_dir).parent
        spool = make_dir(root / "spool", self.os_user, 0o700)
        # WAL comes from the repository the backup came from: never wait on another (maybe lost) region's
        command = async_restore_command(self.lab["pgbackrest"]["config"], request.stanza, sandbox.data_dir,
                                        str(spool), repo=request.repo)
        self.pgbackrest([*restore_args(request, sandbox.data_dir), f"--recovery-option=restore_command={command}"],
                        timeout_s)
        # The restored postgresql.conf is the source node's (written by Patroni): it archives into the source's
        # repository, waits for the source's synchronous standby on every commit (a sandbox has none: every
        # write would hang), and reads pg_hba.conf from the source's data dir. The copy uses its own.
        data_dir = Path(sandbox.data_dir)
        options = (
            f"-p {sandbox.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root / 'sock'}"
            f" -c archive_mode=off -c synchronous_standby_names= -c hba_file={data_dir / 'pg_hba.conf'}"
            f" -c ident_file={data_dir / 'pg_ident.conf'}"
        )
        log.info("Starting sandbox PostgreSQL %s on %s:%d", sandbox.name, sandbox.host, sandbox.port)
        self._run(
            [str(self.bindir / "pg_ctl"), "-D", sandbox.data_dir, "-l", str(root / "postgres.log"),
             "-o", options, "-w", "-t", str(int(timeout_s)), "start"],
            timeout_s + 10,
        )
        return _dir_size(Path(sandbox.data_dir))

    def amcheck(self, sandbox: Sandbox, user: str, password: str | None, timeout_s: float) -> tuple[bool, str]:
        cmd = [str(self.bindir / "pg_amcheck"), "-h", sandbox.host, "-p", str(sandbox.port), "-U", user,
               "--all", "--install-missing", "--heapallindexed", "--progress"]
        result = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s,
            env={**os.environ, "PGPASSWORD": password or "", "PGCONNECT_TIMEOUT": "5"},
        )
        lines = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
        return result.returncode == 0, (lines[-1] if lines else f"exit {result.returncode}")

    def start_app(self, sandbox: Sandbox, dsn: str) -> str:
        from resilience.lab.app_process import start_app

        root = Path(sandbox.data_dir).parent
        port = self._free_port(int(self.lab["sandbox_port_min"]) + 100)
        marker = json.loads((root / MARKER).read_text())
        (root / MARKER).write_text(json.dumps({**marker, "app_port": port}))
        start_app(dsn, port, run_dir=root)
        return f"http://127.0.0.1:{port}"

    def list_sandboxes(self) -> list[tuple[Sandbox, float]]:
        """Every sandbox in the lab with its creation time (epoch s), oldest first."""
        found = []
        for marker in self.sandbox_root.glob(f"*/{MARKER}"):
            meta = json.loads(marker.read_text())
            app = f"http://127.0.0.1:{meta['app_port']}" if meta.get("app_port") else None
            box = Sandbox(meta["name"], self.environment.name, "127.0.0.1", int(meta["port"]),
                          meta.get("dbname", self.environment.dbname), str(marker.parent / "pgdata"), app)
            found.append((box, float(meta.get("created_at", 0))))
        return sorted(found, key=lambda item: item[1])

    def drop_sandbox(self, sandbox: Sandbox) -> None:
        root = Path(sandbox.data_dir).parent
        if not (root / MARKER).exists():
            log.warning("Not dropping %s: no sandbox there (already dropped?)", root)
            return
        app_port = json.loads((root / MARKER).read_text()).get("app_port")
        if app_port:
            from resilience.lab.app_process import stop_app

            stop_app(int(app_port), root)
        if (Path(sandbox.data_dir) / "postmaster.pid").exists():
            log.info("Stopping sandbox PostgreSQL %s", sandbox.name)
            try:
                self._run([str(self.bindir / "pg_ctl"), "-D", sandbox.data_dir, "-m", "immediate", "-w", "stop"], 60)
            except RuntimeError as exc:
                log.warning("pg_ctl stop for sandbox %s failed (%s); removing it anyway", sandbox.name, exc)
        shutil.rmtree(root)
        log.info("Dropped sandbox %s (%s)", sandbox.name, root)


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
