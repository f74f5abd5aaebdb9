"""pgBackRest on the Airflow worker, for any environment: its repositories from ``environments.yaml``,
its credentials from Amazon Connections, no configuration file.

The worker image carries pgBackRest and the PostgreSQL server binaries. Every command runs as
``pgbackrest --no-config`` with the environment's repositories as command-line options
(``--repoN-type=s3 --repoN-s3-bucket ... --repoN-path``), as the lab's generated pgbackrest.conf has
them (:mod:`resilience.lab.pgbackrest_s3`: path-style URIs on a custom endpoint, the endpoint's CA).
Secrets never reach a command line, a log line or an error: pgBackRest refuses ``repoN-s3-key`` on
the command line, so each repository's keys travel as ``PGBACKREST_REPON_S3_KEY`` /
``_KEY_SECRET`` / ``_TOKEN`` environment variables of the process alone, taken from
``AwsBaseHook(aws_conn_id).get_credentials()`` (fresh per command: temporary keys of an assumed
role are renewed). A repository whose Connection holds no keys (nor a role to assume), or that names
no Connection, lets pgBackRest fetch its own temporary credentials, which it renews by itself:
``web-id`` on EKS with IRSA (``AWS_ROLE_ARN`` and ``AWS_WEB_IDENTITY_TOKEN_FILE`` are set), ``auto``
(the instance's role) elsewhere.

Not handled: encrypted repositories (``repoN-cipher-pass`` would be one more secret of the
Connection) and a ``repo-path`` other than the one each repository sets (``path``; pgBackRest's
default ``/var/lib/pgbackrest`` otherwise), which must match the database servers' configuration.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from resilience.config import Environment
from resilience.dr.backup_repos import BackupRepo, environment_repos
from resilience.errors import RefusedError
from resilience.platforms.types import DatabaseEndpoint, RestoreRequest

log = logging.getLogger(__name__)

DEFAULT_REPO_PATH = "/var/lib/pgbackrest"  # pgBackRest's own default repo-path
ARCHIVE_GET_QUEUE_BYTES = 1 << 30  # as dr.pgbackrest.async_restore_command: async prefetch into a private spool
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")  # what a pgbackrest or sandbox server process gets of ours
WEB_IDENTITY_ENV = ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_SESSION_NAME")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}
# A remote server's data directory is on another machine: this path is no directory on any Linux
# machine (/dev/null is a file), so no sandbox data directory here can be, contain or sit inside it.
REMOTE_DATA_DIR = "/dev/null/remote-data-directory-of/{host}:{port}"


@dataclass(frozen=True)
class RepoAccess:
    """How pgBackRest reaches one repository: its command-line options and its secret environment."""

    options: tuple[str, ...]
    secret_env: Mapping[str, str]
    how: str  # for logs: where the credentials come from (never the credentials)


def s3_endpoint(repo: BackupRepo) -> tuple[str, int | None]:
    """(host, port) of the repository's S3 endpoint: ``endpoint`` (``https://host:port``, ``host:port`` or
    ``host``), else AWS's ``s3.<region>.amazonaws.com``. pgBackRest speaks TLS only: ``http://`` is refused."""
    where = f"pgbackrest.repos[repo {repo.repo}].endpoint"
    if repo.endpoint is None:
        return f"s3.{repo.s3_region}.amazonaws.com", None
    if repo.endpoint == "lab":
        raise ValueError(f"{where}: 'lab' names the lab's own endpoint, which only the lab platform knows; "
                         "give the URL (https://host:port) on the worker")
    parts = urlsplit(repo.endpoint if "://" in repo.endpoint else f"https://{repo.endpoint}")
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"{where}: {repo.endpoint!r} must be https://host[:port], host:port or host "
                         "(pgBackRest reaches S3 over TLS only)")
    return parts.hostname, parts.port


def repo_options(repo: BackupRepo) -> list[str]:
    """The ``--repoN-*`` options of one repository, without credentials (as the lab's pgbackrest.conf)."""
    prefix = f"--repo{repo.repo}"
    if repo.type == "posix":
        return [f"{prefix}-type=posix", f"{prefix}-path={repo.path}"]
    host, port = s3_endpoint(repo)
    options = [f"{prefix}-type=s3", f"{prefix}-path={repo.path or DEFAULT_REPO_PATH}",
               f"{prefix}-s3-bucket={repo.bucket}", f"{prefix}-s3-region={repo.s3_region}",
               f"{prefix}-s3-endpoint={host}"]
    if repo.endpoint is not None:  # an S3-compatible store (the lab's moto): path-style URIs, as the lab has them
        options.append(f"{prefix}-s3-uri-style=path")
    if port is not None:
        options.append(f"{prefix}-storage-port={port}")
    if repo.ca_file is not None:
        if repo.ca_file == "lab":
            raise ValueError(f"pgbackrest.repos[repo {repo.repo}].ca_file: 'lab' names the lab's CA, which only "
                             "the lab platform knows; give its path on the worker")
        options.append(f"{prefix}-storage-ca-file={repo.ca_file}")
    return options


def credentials_env(index: int, key: str, secret: str, token: str | None) -> dict[str, str]:
    """pgBackRest's environment variables for one repository's keys (never options: they would show in ps)."""
    env = {f"PGBACKREST_REPO{index}_S3_KEY": key, f"PGBACKREST_REPO{index}_S3_KEY_SECRET": secret}
    if token:
        env[f"PGBACKREST_REPO{index}_S3_TOKEN"] = token
    return env


def self_fetched_key_type(environ: Mapping[str, str]) -> str:
    """How pgBackRest fetches its own temporary credentials here: ``web-id`` with IRSA, else ``auto``."""
    return "web-id" if environ.get("AWS_ROLE_ARN") and environ.get("AWS_WEB_IDENTITY_TOKEN_FILE") else "auto"


def redact(text: str, secrets: Mapping[str, str]) -> str:
    """``text`` with every secret value replaced (pgBackRest does not print keys; this makes sure)."""
    for value in secrets.values():
        if value:
            text = text.replace(value, "***")
    return text


def _plain(value: str, what: str) -> str:
    """A value that goes unquoted into a ``restore_command`` (postgresql.auto.conf) as one argument."""
    if any(c.isspace() or c in "'\"\\%" for c in value):
        raise ValueError(f"{what}: {value!r} must hold no whitespace, quote, backslash or % (it goes into the "
                         "sandbox's restore_command)")
    return value


def is_local_host(host: str) -> bool:
    """The host is this machine (the worker): by name, loopback address or our own hostname."""
    return host in LOCAL_HOSTS or host.startswith("127.") or host in {socket.gethostname(), socket.getfqdn()}


def connection_servers(host: str | None, port: int | None, extra: Mapping[str, Any]) -> list[tuple[str, int]]:
    """Every server of a database Connection: ``extra.host`` / ``extra.port`` (libpq's comma-separated lists,
    which override host/port) or the Connection's own; one port applies to every host."""
    hosts = [h.strip() for h in str(extra.get("host") or host or "").split(",") if h.strip()]
    ports = [int(p) for p in str(extra.get("port") or port or 5432).split(",") if p.strip()]
    if not hosts:
        raise ValueError("the database Connection has no host")
    if len(ports) == 1:
        ports = ports * len(hosts)
    if len(ports) != len(hosts):
        raise ValueError(f"the database Connection lists {len(hosts)} hosts but {len(ports)} ports")
    return list(zip(hosts, ports, strict=True))


class WorkerBackups:
    """The ``backups`` capability of any environment with ``pgbackrest.repos``, run on the Airflow worker
    as ``os_user`` (None: the worker's own user; the sandbox's OS user when the worker restores into one)."""

    def __init__(self, environment: Environment, os_user: str | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.environment = environment
        self.repos = environment_repos(environment)
        if not self.repos:
            raise ValueError(f"environments.{environment.name}.pgbackrest.repos is missing: pgBackRest on the "
                             "worker has no configuration file and needs the repositories listed")
        for repo in self.repos:
            repo_options(repo)  # a bad endpoint or CA refuses here, before any command
        self.os_user = os_user
        self._environ = os.environ if environ is None else environ

    # -- credentials -------------------------------------------------------------------------

    def _access(self, repo: BackupRepo) -> RepoAccess:
        options = repo_options(repo)
        if repo.type != "s3":
            return RepoAccess(tuple(options), {}, "a path on the worker")
        key_type = f"--repo{repo.repo}-s3-key-type"
        if repo.aws_conn_id is None:
            kind = self_fetched_key_type(self._environ)
            return RepoAccess((*options, f"{key_type}={kind}"), {}, f"pgBackRest's own {kind} credentials")
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        hook = AwsBaseHook(aws_conn_id=repo.aws_conn_id, client_type="s3")
        hook.get_connection(repo.aws_conn_id)  # a missing Connection fails here, never falls back to a role
        config = hook.conn_config
        if not (config.aws_access_key_id or config.role_arn or config.profile_name):
            kind = self_fetched_key_type(self._environ)
            return RepoAccess((*options, f"{key_type}={kind}"), {},
                              f"Connection {repo.aws_conn_id} holds no keys: pgBackRest's own {kind} credentials")
        creds = hook.get_credentials(region_name=repo.s3_region)
        return RepoAccess((*options, f"{key_type}=shared"),
                          credentials_env(repo.repo, creds.access_key, creds.secret_key, creds.token),
                          f"keys of Connection {repo.aws_conn_id}")

    def _accesses(self) -> list[RepoAccess]:
        return [self._access(repo) for repo in self.repos]

    def _lock_path(self) -> str:
        from resilience.lab.osuser import effective_user

        user = effective_user(self.os_user) if self.os_user else _current_user()
        return f"/tmp/resilience-pgbackrest-{user}"  # pgBackRest's /tmp/pgbackrest may belong to another user

    @staticmethod
    def _common(accesses: list[RepoAccess]) -> list[str]:
        return ["--no-config", "--log-level-file=off", *(o for a in accesses for o in a.options)]

    def _process_env(self, accesses: list[RepoAccess]) -> dict[str, str]:
        """A process environment of its own: PATH and locale, the OS user's HOME, the repositories' keys
        (and the web identity pgBackRest reads itself); nothing else of the worker's (its Connections)."""
        from resilience.lab.osuser import user_env

        env = {k: v for k, v in self._environ.items() if k in PASSED_ENV}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update({k: v for k, v in self._environ.items() if k in WEB_IDENTITY_ENV})
        if self.os_user:
            env.update(user_env(self.os_user))
        for access in accesses:
            env.update(access.secret_env)
        return env

    def requests_for(self, intent: str, arguments: Mapping[str, object]) -> list[str]:
        """Plan mode: the pgBackRest command ``pgbackrest`` would run (``arguments["args"]``), with the
        repositories' options and without their keys (those go in the process environment)."""
        if intent != "pgbackrest":
            return [f"{intent}: reads only"]
        options = " ".join(o for repo in self.repos for o in repo_options(repo))
        args = " ".join(str(a) for a in arguments.get("args") or [])  # type: ignore[attr-defined]
        user = f" as {self.os_user}" if self.os_user else ""
        return [f"pgbackrest --no-config --log-level-file=off {options} {args}{user}"]

    # -- Backups -----------------------------------------------------------------------------

    def database_endpoints(self) -> list[DatabaseEndpoint]:
        """The servers of ``database.conn_id``. A remote server's data directory is unknown here: it gets
        :data:`REMOTE_DATA_DIR` (a path no directory can have on this machine), so what keeps a sandbox on
        the worker from being the source is its address: a sandbox listens on this machine, the source is
        another host (``dr.sandbox.sandbox_conflicts`` compares host and port). A server on this machine
        is asked for its ``data_directory``; refused if it does not say (the path rule cannot be proven)."""
        from airflow.sdk import BaseHook

        conn_id = self.environment.database_conn_id
        conn = BaseHook.get_connection(conn_id)
        where = f"environments.{self.environment.name}.database.conn_id ({conn_id})"
        try:
            servers = connection_servers(conn.host, conn.port, conn.extra_dejson)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        endpoints = []
        for host, port in servers:
            if not is_local_host(host):
                endpoints.append(DatabaseEndpoint(host, port, REMOTE_DATA_DIR.format(host=host, port=port)))
                continue
            endpoints.append(DatabaseEndpoint(host, port, self._local_data_dir(conn, host, port, where)))
        return endpoints

    def _local_data_dir(self, conn: Any, host: str, port: int, where: str) -> str:
        import psycopg

        try:
            with psycopg.connect(host=host, port=port, user=conn.login, password=conn.password,
                                 dbname=conn.schema or self.environment.dbname, connect_timeout=5) as db:
                row = db.execute("SELECT current_setting('data_directory')").fetchone()
        except psycopg.Error as exc:
            row, error = None, type(exc).__name__
        else:
            error = "no answer"
        if row is None:
            raise RefusedError(f"{where}: server {host}:{port} is on this machine and did not give its data "
                               f"directory ({error}): cannot prove a sandbox here is not it")
        return str(row[0])

    def pgbackrest(self, args: list[str], timeout_s: float) -> str:
        """``pgbackrest --no-config <repositories> <args>`` as :attr:`os_user`; stdout, RuntimeError on failure
        (its last lines, secrets removed)."""
        accesses = self._accesses()
        cmd = ["pgbackrest", *self._common(accesses), f"--lock-path={self._lock_path()}", *args]
        log.info("Running pgbackrest %s on the worker (repositories %s; credentials: %s)", " ".join(args),
                 ", ".join(f"repo{r.repo}" for r in self.repos), "; ".join(a.how for a in accesses))
        env = self._process_env(accesses)
        from resilience.lab.osuser import as_user

        argv = as_user(cmd, self.os_user) if self.os_user else cmd
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, cwd="/", env=env)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"pgbackrest {' '.join(args[:1])} timed out after {timeout_s:g} s") from None
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"pgbackrest exited {result.returncode}: {redact(' | '.join(tail), env)}")
        return result.stdout

    # -- what a sandbox's recovery needs (worker_sandboxes.DataDirSandboxes) -------------------

    def restore_command(self, request: RestoreRequest, pg_path: str, spool_path: str) -> str:
        """The sandbox's ``restore_command``: async ``archive-get`` (as ``dr.pgbackrest.async_restore_command``)
        from ``request.repo`` when set, into the sandbox's own spool (its lock there too). No secret in it:
        the server's environment (:meth:`server_environment`) carries the keys."""
        accesses = self._accesses()  # options only: the keys stay in the server's environment
        parts = ["pgbackrest", *self._common(accesses), f"--stanza={request.stanza}",
                 *([f"--repo={request.repo}"] if request.repo is not None else []), f"--pg1-path={pg_path}",
                 f"--spool-path={spool_path}", f"--lock-path={spool_path}", "--archive-async",
                 f"--archive-get-queue-max={ARCHIVE_GET_QUEUE_BYTES}", f"--process-max={request.process_max}"]
        return " ".join(_plain(p, "restore_command argument") for p in parts) + ' archive-get %f "%p"'

    def server_environment(self) -> dict[str, str]:
        """The environment a sandbox's PostgreSQL server runs with: its restore_command's keys (the server
        process and its archive-get children hold them; /proc/PID/environ is readable by that user and
        root only), and nothing else of the worker's."""
        return self._process_env(self._accesses())


def _current_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
