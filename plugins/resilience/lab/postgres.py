"""One lab PostgreSQL cluster: initdb, configuration, start/stop, databases, replica clone.

Server-side commands run as the postgres OS user (via :mod:`resilience.lab.osuser`);
SQL goes over TCP on 127.0.0.1 with scram-sha-256 password auth.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.abc import Params, QueryNoTemplate
from psycopg.rows import Row

from resilience.lab.daemons import is_alive, log_tail, read_cmdline
from resilience.lab.errors import CommandError, LabError, PreflightError
from resilience.lab.layout import ENV_PG_BINDIR, HOST, PG_SUPERUSER, ClusterPaths
from resilience.lab.osuser import PG_OS_USER, make_dir, run_as_postgres

log = logging.getLogger(__name__)

CONF_INCLUDE = "include_if_exists = 'lab.conf'"
HBA = """\
# Written by resilience.lab. TYPE DATABASE USER ADDRESS METHOD
local   all          postgres                 peer
local   replication  postgres                 peer
host    all          all       127.0.0.1/32   scram-sha-256
host    replication  all       127.0.0.1/32   scram-sha-256
"""


def pg_bindir() -> Path:
    """``$RESILIENCE_PG_BINDIR``, else the newest /usr/lib/postgresql/*/bin, else initdb on PATH."""
    env = os.environ.get(ENV_PG_BINDIR)
    if env:
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise PreflightError(f"PostgreSQL server binaries not found: install postgresql or set {ENV_PG_BINDIR}")


def pg_bin(name: str) -> str:
    return str(pg_bindir() / name)


def is_initialized(cluster: ClusterPaths) -> bool:
    return (cluster.data_dir / "PG_VERSION").is_file()


def postmaster_pid_of(data_dir: Path) -> int | None:
    """PID of the postmaster running on ``data_dir`` (checked against /proc), else None."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError, PermissionError, NotADirectoryError):
        return None
    cmdline = read_cmdline(pid) or []
    if is_alive(pid) and cmdline and str(data_dir) in cmdline and "postgres" in Path(cmdline[0]).name:
        return pid
    return None


def postmaster_pid(cluster: ClusterPaths) -> int | None:
    """PID of the cluster's running postmaster, else None."""
    return postmaster_pid_of(cluster.data_dir)


def render_settings(settings: Mapping[str, object]) -> str:
    lines = ["# Written by resilience.lab on every `resilience lab up`."]
    for key, value in settings.items():
        if isinstance(value, bool):
            text = "on" if value else "off"
        elif isinstance(value, int):
            text = str(value)
        else:
            text = "'" + str(value).replace("'", "''") + "'"
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def base_settings(cluster: ClusterPaths) -> dict[str, object]:
    """Settings every lab cluster gets: 127.0.0.1 only, its port, its socket dir, replication-ready."""
    return {
        "listen_addresses": HOST,
        "port": cluster.port,
        "unix_socket_directories": str(cluster.socket_dir),
        "max_connections": 120,  # the control-plane server also holds the Airflow metadata DB of `airflow up`
        "shared_buffers": "32MB",
        "password_encryption": "scram-sha-256",
        "wal_level": "replica",
        "wal_log_hints": True,
        "max_wal_senders": 10,
        "max_replication_slots": 10,
        "hot_standby": True,
        "timezone": "UTC",
        "log_timezone": "UTC",
        "log_line_prefix": "%m [%p] %q%u@%d ",
    }


def _write_owned(path: Path, text: str, mode: int = 0o600) -> None:
    path.write_text(text)
    os.chmod(path, mode)
    if os.geteuid() == 0:
        shutil.chown(path, PG_OS_USER, PG_OS_USER)


def configure(cluster: ClusterPaths, settings: Mapping[str, object]) -> None:
    """Write ``lab.conf`` (included from postgresql.conf) and ``pg_hba.conf`` into the data dir."""
    _write_owned(cluster.data_dir / "lab.conf", render_settings(settings))
    _write_owned(cluster.data_dir / "pg_hba.conf", HBA)
    main_conf = cluster.data_dir / "postgresql.conf"
    if CONF_INCLUDE not in main_conf.read_text():
        with open(main_conf, "a") as handle:
            handle.write(f"\n{CONF_INCLUDE}\n")


def prepare_dirs(cluster: ClusterPaths) -> None:
    """The cluster's root and socket dirs, owned by the postgres OS user."""
    make_dir(cluster.root, PG_OS_USER, 0o750)
    make_dir(cluster.socket_dir, PG_OS_USER, 0o755)


def initdb(cluster: ClusterPaths, password_file: Path) -> None:
    """Create the cluster's data dir with a scram-sha-256 password for ``postgres``."""
    prepare_dirs(cluster)
    log.info("Initialising %s data dir %s", cluster.title, cluster.data_dir)
    run_as_postgres([
        pg_bin("initdb"), "-D", str(cluster.data_dir), "-U", PG_SUPERUSER, "--pwfile", str(password_file),
        "--auth-local=peer", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
        "--no-instructions",
    ])


def start(cluster: ClusterPaths) -> None:
    """Start the cluster and wait until it accepts connections (read-only for a standby)."""
    log.info("Starting %s on %s:%d (data %s)", cluster.title, HOST, cluster.port, cluster.data_dir)
    try:
        run_as_postgres([pg_bin("pg_ctl"), "start", "-D", str(cluster.data_dir), "-l", str(cluster.log_file),
                         "-w", "-t", "60", "-s"])
    except CommandError as exc:
        raise LabError(f"{cluster.title} did not start: {exc}\n--- {cluster.log_file}:\n"
                       f"{log_tail(cluster.log_file)}") from exc


def ensure_cluster(cluster: ClusterPaths, password_file: Path, settings: Mapping[str, object]) -> None:
    """initdb if needed, (re)write its configuration, start it unless it already runs."""
    pid = postmaster_pid(cluster)
    if pid is not None:
        log.info("%s already up on %s:%d (pid %d)", cluster.title, HOST, cluster.port, pid)
        return
    if not is_initialized(cluster):
        initdb(cluster, password_file)
    configure(cluster, settings)
    start(cluster)


def reload(cluster: ClusterPaths) -> None:
    """``pg_ctl reload``: re-read the configuration (``primary_conninfo`` is reloadable)."""
    run_as_postgres([pg_bin("pg_ctl"), "reload", "-D", str(cluster.data_dir), "-s"])


def stop_data_dir(data_dir: Path, title: str, timeout_s: int = 60) -> bool:
    """``pg_ctl stop -m fast`` on any data dir (lab cluster or sandbox); True if one was running."""
    pid = postmaster_pid_of(data_dir)
    if pid is None:
        log.info("%s is not running (data %s)", title, data_dir)
        return False
    log.info("Stopping %s (pid %d, fast shutdown, data %s)", title, pid, data_dir)
    try:
        run_as_postgres([pg_bin("pg_ctl"), "stop", "-D", str(data_dir), "-m", "fast", "-w", "-t", str(timeout_s),
                         "-s"])
    except CommandError as exc:  # a backend that never ends (a commit waiting on a standby): stop it anyway
        log.warning("%s did not stop within %d s (%s): immediate shutdown", title, timeout_s,
                    exc.output.strip().splitlines()[-1:] or "no output")
        run_as_postgres([pg_bin("pg_ctl"), "stop", "-D", str(data_dir), "-m", "immediate", "-w", "-t", "30", "-s"])
    return True


def stop(cluster: ClusterPaths, timeout_s: int = 60) -> bool:
    """Stop one of the lab's clusters; True if it was running."""
    return stop_data_dir(cluster.data_dir, f"{cluster.title} on {HOST}:{cluster.port}", timeout_s)


def connect(port: int, password: str, dbname: str = "postgres") -> psycopg.Connection:
    """An autocommit connection as ``postgres`` to 127.0.0.1:``port`` (5 s connect timeout)."""
    try:
        return psycopg.connect(host=HOST, port=port, user=PG_SUPERUSER, password=password, dbname=dbname,
                               connect_timeout=5, autocommit=True)
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise LabError(f"cannot connect to database {dbname} on {HOST}:{port} as {PG_SUPERUSER}: {first} "
                       f"(is the password in the lab dir the one the cluster was created with?)") from exc


def fetch_one(conn: psycopg.Connection[Row], query: QueryNoTemplate, params: Params | None = None) -> Row:
    """The row of a query that always returns one (``SELECT f()``, ``INSERT ... RETURNING``): psycopg types
    ``fetchone()`` as maybe None, and a missing row is a clear error here rather than a TypeError later."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise LabError(f"no row from {query!r}")
    return row


def ensure_database(cluster: ClusterPaths, password: str, dbname: str) -> bool:
    """Create ``dbname`` if missing; True if it was created."""
    with connect(cluster.port, password) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            return False
        log.info("Creating database %s on %s (%s:%d)", dbname, cluster.title, HOST, cluster.port)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return True


def apply_sql_file(cluster: ClusterPaths, password: str, dbname: str, sql_file: Path) -> None:
    """Run an (idempotent) SQL script in one transaction."""
    log.info("Applying %s to database %s on %s:%d", sql_file.name, dbname, HOST, cluster.port)
    with connect(cluster.port, password, dbname) as conn, conn.transaction():
        conn.execute(sql_file.read_text())
