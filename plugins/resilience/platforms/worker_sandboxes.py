"""Sandboxes as PostgreSQL data directories on this machine: the lab's, and the Airflow worker's.

One implementation of the sandbox lifecycle (plan, create, restore with pgBackRest, start with
pg_ctl, pg_amcheck, list, drop), parameterised by where sandboxes live (``root``), the server's
binaries (``bindir``), the OS user they run as, the first port to try, and what restores them (a
:class:`SandboxRestorer`: the lab's pgbackrest.conf, or :class:`~resilience.platforms.worker_backups.WorkerBackups`
with no configuration file). The lab (``LocalPlatform``) and any environment with ``sandbox.root``
(:func:`worker_sandboxes`) use it.

Each sandbox is ``root/<name>/`` holding ``pgdata/``, ``sock/``, ``spool/``, ``postgres.log`` and a
marker file (name, port, database, creation time, the machine it is on). A sandbox lives on the
machine that created it: on a worker, every task of a run that touches it (restore, checks, drop)
must run on that worker; on another one it is reported missing, never silently recreated.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from resilience.errors import RefusedError
from resilience.platforms.types import RestoreRequest, Sandbox

if TYPE_CHECKING:
    from resilience.config import Environment

log = logging.getLogger(__name__)

MARKER = ".resilience-sandbox"
PORT_SPAN = 200  # ports tried from port_min
APP_PORT_OFFSET = 100  # the lab's sandbox apps take ports from port_min + this
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


class SandboxRestorer(Protocol):
    """What restoring a sandbox needs of pgBackRest."""

    def pgbackrest(self, args: list[str], timeout_s: float) -> str:
        """Run pgBackRest (as the sandbox's OS user); stdout, raise on failure."""

    def restore_command(self, request: RestoreRequest, pg_path: str, spool_path: str) -> str:
        """The ``restore_command`` the sandbox's recovery runs (no secret in it)."""

    def server_environment(self) -> dict[str, str]:
        """Environment variables the sandbox's server needs for that command (credentials; {} for none)."""


class SandboxApp(Protocol):
    """The application started next to a sandbox (the lab's demo app)."""

    def start(self, dsn: str, port: int, run_dir: Path) -> None: ...

    def stop(self, port: int, run_dir: Path) -> None: ...


class AppNotAvailableError(RuntimeError):
    """This platform runs no application next to its sandboxes: app connectivity is not checked."""


class DataDirSandboxes:
    """The ``sandboxes`` capability on this machine (see the module's docstring)."""

    def __init__(self, environment: str, default_dbname: str, root: Path, bindir: Path, os_user: str | None,
                 port_min: int, restorer: SandboxRestorer, app: SandboxApp | None = None,
                 no_app_reason: str = "") -> None:
        if os_user is None and os.geteuid() == 0:
            raise ValueError(f"environments.{environment}.sandbox.os_user is required when this process runs as "
                             "root (PostgreSQL refuses root): name the OS user the sandbox servers run as")
        self.environment = environment
        self.default_dbname = default_dbname
        self.root = root
        self.bindir = bindir
        self.os_user = os_user
        self.port_min = port_min
        self.restorer = restorer
        self.app = app
        self.no_app_reason = no_app_reason

    # -- processes -------------------------------------------------------------------------

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """PATH, locale and the OS user's HOME, plus ``extra``: nothing else of ours (Airflow's Connections)
        reaches a sandbox's server."""
        from resilience.lab.osuser import user_env

        env = {k: v for k, v in os.environ.items() if k in PASSED_ENV}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        return {**env, **(user_env(self.os_user) if self.os_user else {}), **(extra or {})}

    def _run(self, cmd: list[str], timeout_s: float, env: Mapping[str, str] | None = None) -> str:
        """Run as the sandbox OS user (initdb/pg_ctl refuse root); return stdout (stderr kept apart)."""
        from resilience.lab.osuser import as_user

        argv = as_user(cmd, self.os_user) if self.os_user else cmd
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, cwd="/", env=self._env(env))
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"{Path(cmd[0]).name} exited {result.returncode}: {' | '.join(tail)}")
        return result.stdout

    def _make_dir(self, path: Path, mode: int) -> Path:
        from resilience.lab.osuser import make_dir

        return make_dir(path, self.os_user, mode)

    # -- ports -----------------------------------------------------------------------------

    def _ports_in_use(self) -> set[int]:
        ports: set[int] = set()
        for marker in self.root.glob(f"*/{MARKER}"):
            try:
                meta = json.loads(marker.read_text())
                ports.update(int(meta[k]) for k in ("port", "app_port") if meta.get(k))
            except (ValueError, KeyError, OSError):
                continue
        return ports

    def _free_port(self, start: int) -> int:
        """The first port from ``start`` that no sandbox claims and that can be bound right now.

        Binding (not connecting) is the test: a port used as the local end of an outgoing
        connection refuses a bind although nothing listens on it.
        """
        taken = self._ports_in_use()
        for port in range(start, start + PORT_SPAN):
            if port in taken:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
        raise RuntimeError(f"no free port in {start}..{start + PORT_SPAN - 1} for a sandbox")

    def _here(self, sandbox: Sandbox, action: str) -> Path:
        """The sandbox's directory, which must be here: a sandbox made on another worker cannot be acted on."""
        root = Path(sandbox.data_dir).parent
        if not (root / MARKER).exists():
            raise RuntimeError(f"cannot {action} sandbox {sandbox.name}: {root} holds no sandbox on "
                               f"{socket.gethostname()} (created on another worker, or already dropped)")
        return root

    def requests_for(self, intent: str, arguments: Mapping[str, object]) -> list[str]:
        """Plan mode: what ``intent`` would run on this machine (``arguments``: the sandbox's ``sandbox`` name,
        ``data_dir``, ``port``; a restore's ``stanza``, ``method``, ``target_time`` (ISO), ``repo``)."""
        from resilience.dr.pgbackrest import restore_args
        from resilience.plan import ExplainsRequests

        name, data_dir, port = arguments.get("sandbox"), str(arguments.get("data_dir")), arguments.get("port")
        root = Path(data_dir).parent
        user = f" as {self.os_user}" if self.os_user else ""
        if intent == "create_sandbox":
            return [f"mkdir {root} (pgdata, sock) and write its {MARKER} (name {name}, port {port}){user}"]
        if intent == "restore_sandbox":
            target = arguments.get("target_time")
            request = RestoreRequest(str(arguments.get("stanza")), arguments.get("method"),  # type: ignore[arg-type]
                                     datetime.fromisoformat(str(target)) if target else None,
                                     arguments.get("repo"))  # type: ignore[arg-type]
            args = [*restore_args(request, data_dir), "--recovery-option=restore_command=<async archive-get from "
                    f"{'repo' + str(request.repo) if request.repo else 'the same repositories'} into {root / 'spool'}>"]
            restorer = self.restorer
            restore = (restorer.requests_for("pgbackrest", {"args": args}) if isinstance(restorer, ExplainsRequests)
                       else [f"pgbackrest {' '.join(args)}{user}"])
            return [*restore,
                    f"pg_ctl -D {data_dir} -o '-p {port} -c listen_addresses=127.0.0.1 -c archive_mode=off "
                    f"-c synchronous_standby_names=' -w start{user}"]
        if intent == "amcheck":
            return [f"pg_amcheck -h 127.0.0.1 -p {port} --all --install-missing --heapallindexed (reads)"]
        if intent == "start_app":
            if self.app is None:
                return [f"none: {self.no_app_reason}"]
            return [f"start the app on port {self.port_min + APP_PORT_OFFSET} or the next free one, against "
                    f"sandbox {name}"]
        if intent == "drop_sandbox":
            return [f"stop the sandbox's app if any; pg_ctl -D {data_dir} -m immediate -w stop{user}",
                    f"rm -r {root}"]
        return [f"{intent}: reads only"]

    # -- Sandboxes -------------------------------------------------------------------------

    def plan_sandbox(self, name: str, dbname: str) -> Sandbox:
        port = self._free_port(self.port_min)
        return Sandbox(name, self.environment, "127.0.0.1", port, dbname, str(self.root / name / "pgdata"))

    def create_sandbox(self, sandbox: Sandbox) -> Sandbox:
        name, root = sandbox.name, Path(sandbox.data_dir).parent
        if (root / MARKER).exists():
            log.warning("Sandbox %s exists from an earlier attempt of this run: dropping it first", name)
            self.drop_sandbox(sandbox)
        if root.exists():
            raise RefusedError(f"sandbox {name} refused: {root} exists and is not a sandbox (no {MARKER})")
        self._make_dir(root, 0o755)
        self._make_dir(root / "pgdata", 0o700)
        self._make_dir(root / "sock", 0o755)
        (root / MARKER).write_text(json.dumps({"name": name, "port": sandbox.port, "dbname": sandbox.dbname,
                                               "created_at": time.time(), "host": socket.gethostname()}))
        log.info("Created sandbox %s at %s on %s (port %d)", name, root, socket.gethostname(), sandbox.port)
        return sandbox

    def restore_sandbox(self, sandbox: Sandbox, request: RestoreRequest, timeout_s: float) -> int:
        from resilience.dr.pgbackrest import restore_args

        root = self._here(sandbox, "restore into")
        spool = self._make_dir(root / "spool", 0o700)
        # WAL comes from the repository the backup came from: never wait on another (maybe lost) region's
        command = self.restorer.restore_command(request, sandbox.data_dir, str(spool))
        self.restorer.pgbackrest([*restore_args(request, sandbox.data_dir),
                                  f"--recovery-option=restore_command={command}"], timeout_s)
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
            timeout_s + 10, env=self.restorer.server_environment(),
        )
        return _dir_size(data_dir)

    def amcheck(self, sandbox: Sandbox, user: str, password: str | None, timeout_s: float) -> tuple[bool, str]:
        cmd = [str(self.bindir / "pg_amcheck"), "-h", sandbox.host, "-p", str(sandbox.port), "-U", user,
               "--all", "--install-missing", "--heapallindexed", "--progress"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                env=self._env({"PGPASSWORD": password or "", "PGCONNECT_TIMEOUT": "5"}))
        lines = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
        return result.returncode == 0, (lines[-1] if lines else f"exit {result.returncode}")

    def start_app(self, sandbox: Sandbox, dsn: str) -> str:
        if self.app is None:
            raise AppNotAvailableError(f"app connectivity not checked on sandbox {sandbox.name}: {self.no_app_reason}")
        root = self._here(sandbox, "start the app of")
        port = self._free_port(self.port_min + APP_PORT_OFFSET)
        marker = json.loads((root / MARKER).read_text())
        (root / MARKER).write_text(json.dumps({**marker, "app_port": port}))
        self.app.start(dsn, port, root)
        return f"http://127.0.0.1:{port}"

    def list_sandboxes(self) -> list[tuple[Sandbox, float]]:
        """Every sandbox under the root with its creation time (epoch s), oldest first."""
        found = []
        for marker in self.root.glob(f"*/{MARKER}"):
            meta = json.loads(marker.read_text())
            app = f"http://127.0.0.1:{meta['app_port']}" if meta.get("app_port") else None
            box = Sandbox(meta["name"], self.environment, "127.0.0.1", int(meta["port"]),
                          meta.get("dbname", self.default_dbname), str(marker.parent / "pgdata"), app)
            found.append((box, float(meta.get("created_at", 0))))
        return sorted(found, key=lambda item: item[1])

    def drop_sandbox(self, sandbox: Sandbox) -> None:
        root = Path(sandbox.data_dir).parent
        if not (root / MARKER).exists():
            log.warning("Not dropping %s: no sandbox there on %s (already dropped?)", root, socket.gethostname())
            return
        app_port = json.loads((root / MARKER).read_text()).get("app_port")
        if app_port and self.app is not None:
            self.app.stop(int(app_port), root)
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


NO_APP_ON_WORKER = ("the Airflow worker runs no application binary; deploy the app against the sandbox to check "
                    "it (never reported as passed)")


def worker_sandboxes(environment: Environment) -> DataDirSandboxes:
    """The ``sandboxes`` capability of an environment with ``sandbox.root``: restored on the Airflow worker
    from the environment's repositories (:class:`WorkerBackups`, run as the sandbox OS user)."""
    from resilience.platforms.worker_backups import WorkerBackups

    settings = environment.worker_sandbox
    if settings is None:
        raise ValueError(f"environments.{environment.name}.sandbox: root and pg_bindir are needed for sandboxes on "
                         "the Airflow worker")
    backups = WorkerBackups(environment, os_user=settings.os_user)
    return DataDirSandboxes(environment.name, environment.dbname, Path(settings.root), Path(settings.pg_bindir),
                            settings.os_user, settings.port_min, backups, app=None, no_app_reason=NO_APP_ON_WORKER)
