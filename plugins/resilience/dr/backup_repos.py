"""An environment's pgBackRest repositories, from ``environments.<name>.pgbackrest.repos``.

Each entry is one pgBackRest repository (``repoN`` of the environment's pgbackrest.conf) and
the region it lives in. Losing a region loses its repository: a DR-region restore reads the
repository whose ``region`` is ``dr``. The shape is the same for the lab and for AWS::

    pgbackrest:
      stanza: app
      repos:
        - repo: 1                # pgBackRest's repo index
          region: primary        # primary | dr
          type: s3
          bucket: resilience-backups-us-east-1
          s3_region: us-east-1
          endpoint: lab          # "lab": the lab's TLS endpoint of that region (lab.json); else a URL/host
          ca_file: lab           # "lab": the lab CA; else a path; omit on AWS (system CAs)
        - repo: 2
          region: dr
          ...
          aws_conn_id: aws_dr    # on AWS: the Connection whose credentials reach the bucket

pgBackRest itself reads the repositories from its own configuration; this is what the DAGs
know of them: which index to pass as ``--repo``, and what to name in logs and reports.
Pure: parsing and validation only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # config validates repos with this module: no import cycle at run time
    from resilience.config import Environment

REGIONS = ("primary", "dr")
TYPES = ("s3", "posix")
MAX_REPOS = 4  # pgBackRest 2.45 supports repo1..repo4
KNOWN_KEYS = {"repo", "region", "type", "bucket", "s3_region", "endpoint", "ca_file", "aws_conn_id", "path"}


@dataclass(frozen=True)
class BackupRepo:
    repo: int
    region: str
    type: str
    bucket: str | None = None
    s3_region: str | None = None
    endpoint: str | None = None
    ca_file: str | None = None
    aws_conn_id: str | None = None
    path: str | None = None

    @property
    def label(self) -> str:
        """``repo2 (s3://bucket, us-west-2, dr region)``: for logs and reports."""
        where = f"s3://{self.bucket}, {self.s3_region}" if self.type == "s3" else f"posix {self.path}"
        return f"repo{self.repo} ({where}, {self.region} region)"

    def to_dict(self) -> dict[str, Any]:
        """What a report shows (no secrets live here: credentials are a Connection id at most)."""
        return {"repo": self.repo, "name": f"repo{self.repo}", "region": self.region, "type": self.type,
                "bucket": self.bucket, "s3_region": self.s3_region, "label": self.label}


def _str(raw: Mapping[str, Any], key: str, where: str, required: bool = False) -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise ValueError(f"{where}.{key} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}.{key}: {value!r} must be a non-empty string")
    return value


def parse_repo(raw: Any, where: str) -> BackupRepo:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} (known: {sorted(KNOWN_KEYS)})")
    index = raw.get("repo")
    if isinstance(index, bool) or not isinstance(index, int) or not 1 <= index <= MAX_REPOS:
        raise ValueError(f"{where}.repo: {index!r} must be an integer from 1 to {MAX_REPOS} (pgBackRest's repo index)")
    region = raw.get("region")
    if region not in REGIONS:
        raise ValueError(f"{where}.region: {region!r} is not one of {list(REGIONS)}")
    kind = raw.get("type", "s3")
    if kind not in TYPES:
        raise ValueError(f"{where}.type: {kind!r} is not one of {list(TYPES)}")
    s3 = kind == "s3"
    return BackupRepo(repo=index, region=region, type=kind,
                      bucket=_str(raw, "bucket", where, required=s3),
                      s3_region=_str(raw, "s3_region", where, required=s3),
                      endpoint=_str(raw, "endpoint", where), ca_file=_str(raw, "ca_file", where),
                      aws_conn_id=_str(raw, "aws_conn_id", where), path=_str(raw, "path", where, required=not s3))


def parse_repos(pgbackrest: Mapping[str, Any], where: str) -> tuple[BackupRepo, ...]:
    """``<where>.repos`` validated: indexes unique, at most one repository per region; () when absent."""
    raw = pgbackrest.get("repos")
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise ValueError(f"{where}.repos must be a non-empty list of repositories")
    repos = tuple(parse_repo(item, f"{where}.repos[{i}]") for i, item in enumerate(raw))
    indexes = [r.repo for r in repos]
    if len(set(indexes)) != len(indexes):
        raise ValueError(f"{where}.repos: repo indexes {indexes} must be unique")
    regions = [r.region for r in repos]
    if len(set(regions)) != len(regions):
        raise ValueError(f"{where}.repos: regions {regions} must be unique (one repository per region)")
    return tuple(sorted(repos, key=lambda r: r.repo))


def environment_repos(environment: Environment) -> tuple[BackupRepo, ...]:
    """The environment's repositories (() when its pgbackrest section lists none: pgBackRest's default)."""
    section = environment.settings.get("pgbackrest") or {}
    return parse_repos(section, f"environments.{environment.name}.pgbackrest")


def repo_by_index(environment: Environment, index: int | None) -> BackupRepo | None:
    """The configured repository ``index``; None for index None. Raises ValueError for an unknown index."""
    if index is None:
        return None
    repos = environment_repos(environment)
    if not repos:
        if index == 1:
            return None  # no repos listed: pgBackRest's repo1 is the only one
        raise ValueError(f"repo: {index} is not configured (environments.{environment.name}.pgbackrest has no "
                         "repos list: only repository 1)")
    found = next((r for r in repos if r.repo == index), None)
    if found is None:
        raise ValueError(f"repo: {index} is not one of environments.{environment.name}.pgbackrest.repos "
                         f"{[r.repo for r in repos]}")
    return found


def dr_repo(environment: Environment) -> BackupRepo | None:
    """The repository in the DR region (what survives the primary region's loss); None if none is listed."""
    return next((r for r in environment_repos(environment) if r.region == "dr"), None)


def repo_arg(repo: BackupRepo | int | None) -> list[str]:
    """``["--repo=N"]``, or nothing (pgBackRest's default) for None."""
    if repo is None:
        return []
    return [f"--repo={repo.repo if isinstance(repo, BackupRepo) else int(repo)}"]
