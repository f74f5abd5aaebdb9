"""A Kubernetes environment's capabilities, from the sections of ``environments.yaml`` that configure them.

The cluster (``kubernetes``) provides the app's workloads, memory hogs and releases, the cache and the
mesh's object-store faults where those are named; the database comes from Patroni
(``database.patroni_conn_id``). What is not configured is absent, and :class:`Platform` refuses a
run that needs it with the setting that would provide it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resilience.dr.backup_repos import environment_repos
from resilience.platforms.base import UPLOAD_AUDIT_HOW, Capability, Provider, connection_capabilities

if TYPE_CHECKING:
    from resilience.config import Environment
    from resilience.platforms.kubernetes.target import KubernetesTarget

HOW_TO_CONFIGURE: dict[Capability, str] = {
    "workloads": "kubernetes.app: deployment, selector",
    "cache": "kubernetes.cache: kind (Deployment or StatefulSet), name",
    "object_store": "kubernetes.object_store.host: the S3 egress host the mesh routes",
    "memory": "kubernetes.namespace",
    "database": "database.patroni_conn_id: an HTTP Connection to every Patroni member",
    "database_hosts": "losing a database host is done only in the lab; on a cluster use the switchover variant",
    "write_probe": "acknowledged writes are counted only by the lab's writer",
    "backups": "pgbackrest.repos",
    "sandboxes": "sandbox: allowed: true, root and pg_bindir on the Airflow worker; and pgbackrest.repos",
    "regions": "kubernetes.app.url: the region's entry point (its load balancer's URL)",
    "releases": "kubernetes.app.deployment",
    "upload_audit": UPLOAD_AUDIT_HOW,
}


def kubernetes_capabilities(environment: Environment) -> tuple[dict[Capability, Provider], dict[Capability, str]]:
    """Capability -> provider for a ``platform: kubernetes`` environment, and how to configure the rest."""
    target = environment.kubernetes
    if target is None:  # parse_environment requires the section for this platform
        raise ValueError(f"environments.{environment.name}.kubernetes: missing")
    where = (f"namespace {target.namespace} of EKS cluster {target.eks.cluster} through Connection "
             f"{target.eks.aws_conn_id}" if target.eks else f"namespace {target.namespace} through Connection "
             f"{target.conn_id}")
    provided: dict[Capability, Provider] = {
        "workloads": Provider(f"Deployment {target.app_deployment} ({where})", lambda: _workloads(target)),
    }
    provided["memory"] = Provider(f"stress pods with a memory limit ({where})", lambda: _memory(target))
    if target.cache_kind and target.cache_name:
        provided["cache"] = Provider(f"{target.cache_kind} {target.cache_name} ({where})", lambda: _cache(target))
    if target.object_store_host:
        provided["object_store"] = Provider(f"Istio VirtualService on {target.object_store_host} ({where})",
                                            lambda: _object_store(target))
    region = "dr" if environment.tier == "dr" else "primary"  # a DR environment (tier dr) is region dr
    provided["releases"] = Provider(f"rollout undo / helm rollback of Deployment {target.app_deployment} ({where})",
                                    lambda: _releases(target, region))
    if target.app_url:
        provided["regions"] = Provider(f"region {region}: Deployment {target.app_deployment} behind "
                                       f"{target.app_url} ({where})", lambda: _regions(target, region))
    repos = environment_repos(environment)
    if repos:
        provided["backups"] = Provider(f"pgBackRest on the Airflow worker, stanza {environment.pgbackrest_stanza}: "
                                       + ", ".join(r.label for r in repos), lambda: _backups(environment))
    sandbox = environment.worker_sandbox
    if environment.sandbox_allowed and sandbox is not None and repos:
        provided["sandboxes"] = Provider(f"PostgreSQL data directories under {sandbox.root} on the Airflow worker",
                                         lambda: _sandboxes(environment))
    if environment.patroni_conn_id:
        conn_id = environment.patroni_conn_id
        provided["database"] = Provider(f"Patroni (Connection {conn_id})", lambda: _database(conn_id))
    provided |= connection_capabilities(environment)
    return provided, {c: how for c, how in HOW_TO_CONFIGURE.items() if c not in provided}


def _workloads(target: KubernetesTarget) -> object:
    from resilience.platforms.kubernetes.workloads import KubernetesWorkloads

    return KubernetesWorkloads(target)


def _cache(target: KubernetesTarget) -> object:
    from resilience.platforms.kubernetes.cache import KubernetesCache

    return KubernetesCache(target)


def _releases(target: KubernetesTarget, region: str) -> object:
    from resilience.platforms.kubernetes.releases import KubernetesReleases

    return KubernetesReleases(target, region)


def _regions(target: KubernetesTarget, region: str) -> object:
    from resilience.platforms.kubernetes.regions import KubernetesRegions

    return KubernetesRegions(target, region)


def _backups(environment: Environment) -> object:
    from resilience.platforms.worker_backups import WorkerBackups

    sandbox = environment.worker_sandbox  # restores run as the sandbox servers' OS user
    return WorkerBackups(environment, os_user=sandbox.os_user if sandbox else None)


def _sandboxes(environment: Environment) -> object:
    from resilience.platforms.worker_sandboxes import worker_sandboxes

    return worker_sandboxes(environment)


def _memory(target: KubernetesTarget) -> object:
    from resilience.platforms.kubernetes.memory import KubernetesMemory

    return KubernetesMemory(target)


def _object_store(target: KubernetesTarget) -> object:
    from resilience.platforms.kubernetes.object_store import KubernetesObjectStore

    return KubernetesObjectStore(target)


def _database(conn_id: str) -> object:
    from resilience.platforms.patroni_database import PatroniDatabase

    return PatroniDatabase.from_connection(conn_id)
