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


CACHE_KINDS = ("Deployment", "StatefulSet")


@dataclass(frozen=True)
class KubernetesTarget:
    """The cluster Connection, the namespace, the app's Deployment and pod selector, and the cache's
    workload (``cache``: absent when the environment has none to stop)."""

    conn_id: str
    namespace: str
    app_deployment: str
    app_selector: str
    cache_kind: str | None = None
    cache_name: str | None = None
    object_store_host: str | None = None  # the S3 endpoint the app calls, as the mesh routes it (egress host)
    app_url: str | None = None  # the region's entry point (its load balancer's URL): region_url, region_health


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


def parse_target(raw: Mapping[str, Any] | None, where: str) -> KubernetesTarget:
    """``environments.<name>.kubernetes`` -> KubernetesTarget; raises ValueError naming the field."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: missing (conn_id, namespace, app.deployment, app.selector)")
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
    return KubernetesTarget(_text(raw, "conn_id", where), namespace, deployment, selector.replace(" ", ""), kind, name,
                            host, _entry_point(app, f"{where}.app"))
