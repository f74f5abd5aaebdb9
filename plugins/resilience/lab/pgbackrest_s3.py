"""pgbackrest.conf for S3 repositories in two regions (repo1 = primary region, repo2 = DR region).

Pure: these functions only render text. TLS is always verified against the lab CA
(``repoN-storage-ca-file``); this module never renders ``repoN-storage-verify-tls=n``.
``archive-push`` writes every WAL segment to each repository; ``archive-get`` reads from the
first repository that answers, so a restore from repo2 still replays WAL when repo1's endpoint
is down. The keys are written into the file: write it readable by the postgres OS user only
(:func:`write_config`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from resilience.lab.lab_ca import CaFiles, write_file
from resilience.lab.layout import S3_ACCESS_KEY, S3_SECRET_KEY, STANZA, ClusterPaths, LabLayout
from resilience.lab.osuser import PG_OS_USER
from resilience.lab.s3_tls import RegionEndpoint, region_endpoints

CONFIG_MODE = 0o600  # the file holds the S3 keys
REPO_PATH = "/pgbackrest"  # the repository's prefix inside its bucket


@dataclass(frozen=True)
class S3Repo:
    """One pgBackRest repository in an S3 bucket.

    ``endpoint`` is what pgBackRest connects to and verifies the certificate against. ``storage_host``
    (``repoN-storage-host``), when set, is connected to instead, and pgBackRest 2.45 then verifies the
    certificate against ``storage_host``, not ``endpoint``: the certificate must name it.
    """

    bucket: str
    region: str
    endpoint: str
    port: int
    ca_file: Path
    key: str = S3_ACCESS_KEY
    secret: str = S3_SECRET_KEY
    path: str = REPO_PATH
    storage_host: str | None = None
    retention_full: int = 2
    bundle: bool = True  # small files bundled into few objects: 4x faster backups, 7x faster restores on moto


@dataclass(frozen=True)
class GlobalOptions:
    """The non-repository options of ``[global]`` (as the lab's POSIX configuration has them)."""

    log_path: Path
    lock_path: Path
    spool_path: Path
    process_max: int = 2
    # zst level 1 against lz4 (bench/drill.py's sweep, 1 GB of posts compressing 2x): half the repository
    # (269 vs 504 MB), a faster backup (9.5 vs 11.8 s) and restore (2.9 vs 3.4 s): fewer bytes through S3
    compress_type: str = "zst"
    compress_level: int | None = 1
    archive_async: bool = False
    log_level_console: str = "warn"
    log_level_file: str = "info"
    io_timeout_s: int | None = None  # pgBackRest's default is 60 s per request


def s3_repo(endpoint: RegionEndpoint, ca: CaFiles, *, key: str = S3_ACCESS_KEY, secret: str = S3_SECRET_KEY,
            retention_full: int = 2) -> S3Repo:
    """The repository of one lab region's endpoint, by its address (the lab certificate names both)."""
    return S3Repo(bucket=endpoint.bucket, region=endpoint.aws_region, endpoint=endpoint.host,
                  port=endpoint.port, ca_file=ca.ca_cert, key=key, secret=secret, retention_full=retention_full)


def render_repo(index: int, repo: S3Repo) -> list[str]:
    """The ``repoN-*`` lines of one S3 repository."""
    prefix = f"repo{index}"
    lines = [
        f"{prefix}-type=s3",
        f"{prefix}-path={repo.path}",
        f"{prefix}-s3-bucket={repo.bucket}",
        f"{prefix}-s3-region={repo.region}",
        f"{prefix}-s3-endpoint={repo.endpoint}",
        f"{prefix}-s3-uri-style=path",
        f"{prefix}-s3-key={repo.key}",
        f"{prefix}-s3-key-secret={repo.secret}",
        f"{prefix}-storage-port={repo.port}",
        f"{prefix}-storage-ca-file={repo.ca_file}",
    ]
    if repo.storage_host:
        lines.append(f"{prefix}-storage-host={repo.storage_host}")
    if repo.bundle:
        lines.append(f"{prefix}-bundle=y")
    lines.append(f"{prefix}-retention-full={repo.retention_full}")
    return lines


def render_global(repos: Sequence[S3Repo], options: GlobalOptions) -> str:
    """The ``[global]`` section: ``repos`` as repo1, repo2, ... then the common options."""
    if not repos:
        raise ValueError("repos: at least one S3 repository is needed")
    lines = ["[global]"]
    for index, repo in enumerate(repos, start=1):
        lines += render_repo(index, repo)
    lines += [
        f"log-path={options.log_path}",
        f"lock-path={options.lock_path}",
        f"spool-path={options.spool_path}",
        f"log-level-console={options.log_level_console}",
        f"log-level-file={options.log_level_file}",
        "start-fast=y",
        f"process-max={options.process_max}",
        f"compress-type={options.compress_type}",
    ]
    if options.compress_level is not None:
        lines.append(f"compress-level={options.compress_level}")
    if options.archive_async:
        lines.append("archive-async=y")
    if options.io_timeout_s is not None:
        lines.append(f"io-timeout={options.io_timeout_s}")
    return "\n".join(lines) + "\n"


def render_stanza(clusters: Sequence[ClusterPaths], stanza: str = STANZA) -> str:
    """The stanza section: the clusters pgBackRest backs up as pg1, pg2, ... (over their Unix sockets,
    peer auth); with several, pgBackRest finds the primary itself."""
    lines = [f"[{stanza}]"]
    for index, cluster in enumerate(clusters, start=1):
        lines += [f"pg{index}-path={cluster.data_dir}", f"pg{index}-port={cluster.port}",
                  f"pg{index}-socket-path={cluster.socket_dir}", f"pg{index}-user=postgres"]
    return "\n".join(lines) + "\n"


def render_config(repos: Sequence[S3Repo], options: GlobalOptions, clusters: Sequence[ClusterPaths],
                  stanza: str = STANZA) -> str:
    return "\n".join(["# Written by resilience.lab (pgBackRest on S3, two regions).",
                      render_global(repos, options), render_stanza(clusters, stanza)])


def lab_options(layout: LabLayout, *, archive_async: bool = False) -> GlobalOptions:
    """The lab's log/lock/spool dirs (under ``pgbackrest/``, as the POSIX configuration has them)."""
    root = layout.pgbackrest_dir
    return GlobalOptions(log_path=root / "log", lock_path=root / "lock", spool_path=root / "spool",
                         archive_async=archive_async)


def lab_repos(layout: LabLayout, ca: CaFiles) -> list[S3Repo]:
    """repo1 in the primary region, repo2 in the DR region (see :func:`s3_tls.region_endpoints`)."""
    return [s3_repo(endpoint, ca) for endpoint in region_endpoints(layout)]


def write_config(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` readable by the postgres OS user only (it holds the S3 keys)."""
    return write_file(path, text.encode(), CONFIG_MODE, PG_OS_USER)
