"""An environment's ``kubernetes`` section, validated: where the app runs and how its pods are found."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# RFC 1123 label (namespaces) and subdomain (object names): what the API server accepts
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# equality-based selector terms, comma-separated (the form the runbook's `kubectl -l` uses)
_SELECTOR = re.compile(r"^[A-Za-z0-9./_-]+(!?={1,2})[A-Za-z0-9._-]*(,[A-Za-z0-9./_-]+(!?={1,2})[A-Za-z0-9._-]*)*$")


def selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy an equality-based label selector (``a=b``, ``a==b``, ``a!=b``, comma-joined),
    as the API server decides it: ``a!=b`` also holds where ``a`` is absent."""
    for term in selector.replace(" ", "").split(","):
        matched = re.match(r"^([^!=]+)(!=|==|=)(.*)$", term)
        if matched is None:
            raise ValueError(f"selector {selector!r}: {term!r} is not key=value, key==value or key!=value")
        key, op, value = matched.groups()
        if (labels.get(key) == value) != (op != "!="):
            return False
    return True
# what EKS's CreateCluster accepts as a name, and an AWS region code (us-west-2, us-gov-west-1)
_EKS_CLUSTER = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")


CACHE_KINDS = ("Deployment", "StatefulSet")


@dataclass(frozen=True)
class EksCluster:
    """``kubernetes.eks``: an EKS cluster reached with the Amazon provider's EksHook (the runbook's
    ``aws eks update-kubeconfig --name <cluster> --region <region>``)."""

    cluster: str
    aws_conn_id: str  # an Amazon Connection allowed eks:DescribeCluster and mapped to a Kubernetes user
    region: str | None = None  # None: the Connection's region (region_name extra) or boto3's default


@dataclass(frozen=True)
class KubernetesTarget:
    """The cluster Connection, the namespace, the app's Deployment and pod selector, and the cache's
    workload (``cache``: absent when the environment has none to stop).

    The cluster is reached in one of two exclusive ways (the configuration sets ``conn_id`` or ``eks``,
    never both): ``conn_id`` is a Kubernetes Connection holding a kubeconfig (or in-cluster); with ``eks``
    set, the clients come from EksHook's kubeconfig for ``eks.cluster`` and ``conn_id`` is the Amazon
    Connection (``eks.aws_conn_id``), kept for messages only. Build clients with
    ``resilience.platforms.kubernetes.api.kubernetes_hook(target)``, never from ``conn_id`` alone."""

    conn_id: str
    namespace: str
    app_deployment: str
    app_selector: str
    cache_kind: str | None = None
    cache_name: str | None = None
    object_store_host: str | None = None  # the S3 endpoint the app calls, as the mesh routes it (egress host)
    app_url: str | None = None  # the region's entry point (its load balancer's URL): region_url, region_health
    eks: EksCluster | None = None  # set: the API is reached through EKS (EksHook), not a kubeconfig Connection


def _text(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}.{key}: {value!r} must be a non-empty string")
    return value


def _entry_point(app: Mapping[str, Any], where: str) -> str | None:
    """``app.url``: an http(s) URL with a host and no credentials, query or fragment (None when absent)."""
    from urllib.parse import urlsplit

    if app.get("url") is None:
        return None
    url = _text(app, "url", where)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError as exc:
        raise ValueError(f"{where}.url: {url!r} is not a URL ({exc})") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password \
            or parts.query or parts.fragment:
        raise ValueError(f"{where}.url: {url!r} must be http(s)://host[:port][/path], without credentials, query "
                         f"or fragment (the region's entry point, e.g. its load balancer's URL)")
    return url.rstrip("/")


def _eks(raw: Mapping[str, Any], where: str) -> EksCluster | None:
    """``eks: {cluster, aws_conn_id, region?}`` (None when absent); exclusive with ``conn_id``."""
    eks = raw.get("eks")
    if eks is None:
        return None
    if not isinstance(eks, Mapping):
        raise ValueError(f"{where}.eks: must map cluster, aws_conn_id and optionally region")
    if raw.get("conn_id") is not None:
        raise ValueError(f"{where}: conn_id {raw.get('conn_id')!r} and eks are exclusive: eks reaches the cluster "
                         f"through its Amazon Connection (eks.aws_conn_id), conn_id through a kubeconfig; keep one")
    unknown = sorted(set(eks) - {"cluster", "aws_conn_id", "region"})
    if unknown:
        raise ValueError(f"{where}.eks: unknown keys {unknown}; allowed: ['aws_conn_id', 'cluster', 'region']")
    cluster = _text(eks, "cluster", f"{where}.eks")
    if not _EKS_CLUSTER.match(cluster):
        raise ValueError(f"{where}.eks.cluster: {cluster!r} is not an EKS cluster name ([A-Za-z0-9_-], starting "
                         f"with a letter or digit, at most 100)")
    aws_conn_id = _text(eks, "aws_conn_id", f"{where}.eks")
    region = None
    if eks.get("region") is not None:
        region = _text(eks, "region", f"{where}.eks")
        if not _AWS_REGION.match(region):
            raise ValueError(f"{where}.eks.region: {region!r} is not an AWS region such as 'us-west-2'")
    return EksCluster(cluster, aws_conn_id, region)


def parse_target(raw: Mapping[str, Any] | None, where: str) -> KubernetesTarget:
    """``environments.<name>.kubernetes`` -> KubernetesTarget; raises ValueError naming the field."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: missing (conn_id or eks, namespace, app.deployment, app.selector)")
    eks = _eks(raw, where)
    namespace = _text(raw, "namespace", where)
    if not _LABEL.match(namespace):
        raise ValueError(f"{where}.namespace: {namespace!r} is not a DNS label ([a-z0-9-], at most 63)")
    app = raw.get("app")
    if not isinstance(app, Mapping):
        raise ValueError(f"{where}.app: missing (deployment: the app's Deployment, selector: its pods' labels)")
    deployment = _text(app, "deployment", f"{where}.app")
    if not _SUBDOMAIN.match(deployment):
        raise ValueError(f"{where}.app.deployment: {deployment!r} is not a Kubernetes object name")
    selector = _text(app, "selector", f"{where}.app")
    if not _SELECTOR.match(selector.replace(" ", "")):
        raise ValueError(f"{where}.app.selector: {selector!r} is not a label selector such as 'app=ofm-social-os'")
    cache = raw.get("cache")
    kind = name = None
    if cache is not None:
        if not isinstance(cache, Mapping):
            raise ValueError(f"{where}.cache: must map kind ({' or '.join(CACHE_KINDS)}) and name")
        kind, name = _text(cache, "kind", f"{where}.cache"), _text(cache, "name", f"{where}.cache")
        if kind not in CACHE_KINDS:
            raise ValueError(f"{where}.cache.kind: {kind!r} is not one of {list(CACHE_KINDS)}")
        if not _SUBDOMAIN.match(name):
            raise ValueError(f"{where}.cache.name: {name!r} is not a Kubernetes object name")
    store = raw.get("object_store")
    host = None
    if store is not None:
        host = _text(store if isinstance(store, Mapping) else {}, "host", f"{where}.object_store")
        if not _SUBDOMAIN.match(host):
            raise ValueError(f"{where}.object_store.host: {host!r} is not a host name (s3.us-east-1.amazonaws.com)")
    conn_id = eks.aws_conn_id if eks else _text(raw, "conn_id", where)
    return KubernetesTarget(conn_id, namespace, deployment, selector.replace(" ", ""), kind, name,
                            host, _entry_point(app, f"{where}.app"), eks)
