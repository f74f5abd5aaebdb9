"""`ClusterEmulator`: kmock's KubernetesEmulator with the API server's REST semantics.

kmock provides the HTTP server, request parsing, the discovery documents, `Status` error
bodies and the versioned object array. kmock 0.8's own emulator does not stamp metadata,
ignores label/field selectors, misses `?watch=True` (what kubernetes-python sends), and
changes state before any injected failure. So every request on a resource URL is served
here, by `Store` (store.py); discovery (`/api`, `/apis/...`, `/version`) stays kmock's.

Served: LIST (labelSelector, fieldSelector), WATCH (`watch=true|True|1`, resourceVersion,
timeoutSeconds), GET, POST, PUT, PATCH (json/merge/strategic), DELETE and deletecollection,
the `status` and `scale` subresources, `pods/{name}/eviction`, `pods/{name}/log`, `dryRun`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
from typing import Any

import aiohttp.web
import kmock

from . import resources
from .patching import PatchError, apply_patch
from .selectors import SelectorError, field_selector_matcher, label_selector_string, labels_match
from .store import PODS, Key, Obj, Store, api_error

_TRUE = ("true", "True", "1")


class ClusterEmulator(kmock.KubernetesEmulator):
    """The API server. Configure with `setup()` before serving."""

    def setup(self, grace_scale: float) -> None:
        resources.declare(self)
        self.store = Store(self, grace_scale)
        self.store.on_event = self._wake
        self.request_log: list[tuple[str, str]] = []
        self.failures: list[tuple[str, re.Pattern[str], int]] = []
        self.closing = False
        self._tick: asyncio.Event | None = None

    # ---- plumbing ---------------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._tick is not None:
            self._tick.set()
        self._tick = asyncio.Event()

    async def _changed(self, timeout: float) -> None:
        """Wait until the next write (or `timeout` seconds)."""
        if self._tick is None:
            self._tick = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tick.wait(), timeout)

    def close(self) -> None:
        """End the open watch streams."""
        self.closing = True
        self._wake()

    def fail_next(self, method: str, path_regex: str, status: int) -> None:
        self.failures.append((method.upper(), re.compile(path_regex), status))

    def _take_failure(self, method: str, path_qs: str) -> int | None:
        for i, (m, pattern, status) in enumerate(self.failures):
            if m == method and pattern.search(path_qs):
                del self.failures[i]
                return status
        return None

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        method, path_qs = str(request.method.value).upper(), request.url.path_qs
        self.request_log.append((method, path_qs))
        status = self._take_failure(method, path_qs)
        if status is not None:  # an injected failure: answer it, change nothing
            reason = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict", 429: "TooManyRequests",
                      500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}.get(status, "InternalError")
            raise api_error(status, reason, f"injected failure ({method} {path_qs})")
        res = request.resource
        if res is None or not res.version or not res.plural:
            return await super()._handle(request)  # discovery, /version, non-Kubernetes paths
        if res not in self.store.info:
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        return await self._serve(request, res)

    # ---- routing ----------------------------------------------------------------------------------

    async def _serve(self, request: kmock.Request, res: kmock.resource) -> aiohttp.web.StreamResponse:
        info, store = self.store.info[res], self.store
        method, ns, name, sub = str(request.method.value).upper(), request.namespace, request.name, request.subresource
        params = request.params
        dry_run = "dryRun" in params
        if info.namespaced is False:
            ns = None
        elif ns is None and (name is not None or method != "GET"):
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        if sub is not None and sub not in info.subresources and sub not in ("log",):
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        key: Key = (res, ns, name or "")
        if method == "GET" and (params.get("watch") in _TRUE):
            return await self._watch(request, res, ns, name)
        if method == "GET" and name is None:
            return _json(self._list(res, ns, params))
        if method == "GET" and sub == "scale":
            return _json(self._scale(key, store.require(key)))
        if method == "GET" and sub == "log":
            store.require(key)
            return aiohttp.web.Response(text="", content_type="text/plain")
        if method == "GET":
            return _json(store.require(key))
        if method == "POST" and name is None:
            return _json(store.create(res, ns, _body(request), dry_run), 201)
        if method == "POST" and res == PODS and sub == "eviction":
            # PodDisruptionBudgets are not evaluated: an eviction is a delete with its deleteOptions.
            options = (_body(request) or {}).get("deleteOptions") or {}
            store.delete(key, options.get("gracePeriodSeconds"), options.get("propagationPolicy"),
                         options.get("preconditions"), dry_run)
            return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}, 201)
        if method in ("PATCH", "PUT") and name is not None:
            return _json(self._modify(request, key, sub, dry_run))
        if method == "DELETE" and name is not None:
            return _json(self._delete(request, key, dry_run))
        if method == "DELETE":
            return _json(self._delete_collection(request, res, ns, dry_run))
        raise api_error(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    # ---- verbs ------------------------------------------------------------------------------------

    def _selectors(self, res: kmock.resource, params: Any):
        try:
            label = params.get("labelSelector")
            labels_match({}, label)  # parse once: a bad selector is a 400 even with no objects
            fields = field_selector_matcher(params.get("fieldSelector"), res.plural)
        except SelectorError as e:
            raise api_error(400, "BadRequest", str(e)) from None
        return lambda obj: labels_match(obj["metadata"].get("labels"), label) and fields(obj)

    def _list(self, res: kmock.resource, ns: str | None, params: Any) -> Obj:
        match = self._selectors(res, params)
        items = [obj for _, obj in self.store.items(res, ns) if match(obj)]
        return {"kind": f"{self.store.kind(res)}List", "apiVersion": resources.api_version(res),
                "metadata": {"resourceVersion": str(self.store.rv)}, "items": items}

    def _scale(self, key: Key, obj: Obj) -> Obj:
        """The autoscaling/v1 Scale view of a Deployment/ReplicaSet/StatefulSet."""
        meta = obj["metadata"]
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                             if k in meta},
                "spec": {"replicas": obj["spec"].get("replicas", 1)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                           "selector": label_selector_string(obj["spec"].get("selector") or {})}}

    def _modify(self, request: kmock.Request, key: Key, sub: str | None, dry_run: bool) -> Obj:
        store, body = self.store, _body(request)
        current = store.require(key)
        base = self._scale(key, current) if sub == "scale" else current
        if str(request.method.value).upper() == "PATCH":
            content_type = next((v for k, v in request.headers.items() if k.lower() == "content-type"), "")
            try:
                new = apply_patch(base, body, content_type, resources.is_custom(key[0]))
            except PatchError as e:
                raise api_error(e.status, e.reason, e.message) from None
        else:
            if not isinstance(body, dict):
                raise api_error(400, "BadRequest", "the body of the request is not a JSON object")
            new = copy.deepcopy(body)
        if sub == "scale":
            replicas = (new.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise api_error(422, "Invalid", f"Scale.autoscaling \"{key[2]}\" is invalid: spec.replicas: "
                                                f"Invalid value: {replicas!r}: must be greater than or equal to 0")
            rv = (new.get("metadata") or {}).get("resourceVersion")
            updated = {**current, "spec": {**current["spec"], "replicas": replicas}}
            updated["metadata"] = {**current["metadata"], "resourceVersion": rv}
            return self._scale(key, store.update(key, updated, None, dry_run))
        return store.update(key, new, sub, dry_run)

    def _delete_options(self, request: kmock.Request) -> dict[str, Any]:
        body = request.data if isinstance(request.data, dict) else {}
        params = request.params
        grace = body.get("gracePeriodSeconds", params.get("gracePeriodSeconds"))
        return {"grace": None if grace is None else int(grace),
                "policy": body.get("propagationPolicy", params.get("propagationPolicy")),
                "preconditions": body.get("preconditions")}

    def _delete(self, request: kmock.Request, key: Key, dry_run: bool) -> Obj:
        obj, gone = self.store.delete(key, dry_run=dry_run, **self._delete_options(request))
        if key[0] == PODS or not gone:
            return obj  # pods answer the Pod; a pending deletion answers the object with deletionTimestamp
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": key[2], "group": key[0].group, "kind": key[0].plural,
                            "uid": obj["metadata"]["uid"]}}

    def _delete_collection(self, request: kmock.Request, res: kmock.resource, ns: str | None, dry_run: bool) -> Obj:
        match = self._selectors(res, request.params)
        options = self._delete_options(request)
        for key, obj in list(self.store.items(res, ns)):
            if match(obj):
                self.store.delete(key, dry_run=dry_run, **options)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}

    async def _watch(self, request: kmock.Request, res: kmock.resource, ns: str | None,
                     name: str | None) -> aiohttp.web.StreamResponse:
        """A watch stream: https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes

        Without resourceVersion (or "0"): ADDED for every current object, then the changes.
        With one: the changes after it (410 Gone when it is older than the event log).
        With a label/field selector, an object that stops matching is sent as DELETED, one
        that starts matching as ADDED (as the watch cache does).
        """
        store, params = self.store, request.params
        matches = self._selectors(res, params)

        def match(obj: Obj | None) -> bool:
            return (obj is not None and (ns is None or obj["metadata"].get("namespace") == ns)
                    and (name is None or obj["metadata"]["name"] == name) and matches(obj))

        loop = asyncio.get_running_loop()
        timeout = float(params.get("timeoutSeconds") or 0)
        deadline = loop.time() + timeout if timeout else None
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request._raw_request)
        since, lines = params.get("resourceVersion") or "0", []
        if since == "0":
            lines = [{"type": "ADDED", "object": obj} for _, obj in store.items(res, ns) if match(obj)]
            since = store.rv
        else:
            since = int(since)
            if store.events and since < store.events[0][0] - 1:
                lines = [{"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                                      "status": "Failure", "code": 410, "reason": "Expired",
                                                      "message": f"too old resource version: {since}"}}]
                deadline = loop.time()
        try:
            while True:
                for line in lines:
                    await response.write(json.dumps(line).encode() + b"\n")
                lines = []
                if self.closing or (deadline is not None and loop.time() >= deadline):
                    break
                await self._changed(min(1.0, deadline - loop.time()) if deadline else 1.0)
                for rv, eres, etype, obj, previous in list(store.events):
                    if rv <= since or eres != res:
                        continue
                    since = rv
                    now, before = match(obj), etype == "MODIFIED" and match(previous)
                    if etype == "MODIFIED" and now and not before:
                        etype = "ADDED"
                    elif etype == "MODIFIED" and before and not now:
                        etype = "DELETED"
                    elif not now:
                        continue
                    lines.append({"type": etype, "object": obj})
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        return response


def _body(request: kmock.Request) -> Any:
    return request.data


def _json(obj: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.json_response(obj, status=status)
