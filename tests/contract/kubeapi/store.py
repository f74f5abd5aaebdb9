"""The object store with the API server's write semantics, on top of kmock's `objects` array.

Everything here is synchronous and runs on the server's event loop thread only (HTTP handlers
and the controllers), so no write interleaves with another.

What a write does (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/object-meta/):
* create stamps `metadata.namespace` (from the URL), `uid`, `resourceVersion`, `creationTimestamp`,
  `generation: 1`; a duplicate name is 409 AlreadyExists, `generateName` gets a random suffix;
* every write bumps one cluster-wide `resourceVersion` counter; `generation` grows when `spec` changes;
* a missing object is 404 NotFound; a stale `metadata.resourceVersion` in a PUT/PATCH is 409 Conflict;
* delete honours `gracePeriodSeconds`, `propagationPolicy`, `preconditions` and finalizers (`delete`).

Each write is appended to an event log (for watches) and stored as a new version in
kmock's history (`emulator.objects[resource, ns, name].history`).
"""

from __future__ import annotations

import collections
import copy
import datetime
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import kmock

from .resources import api_version

Key = tuple[kmock.resource, str | None, str]
Obj = dict[str, Any]

PODS = kmock.resource("", "v1", "pods")
DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
REPLICASETS = kmock.resource("apps", "v1", "replicasets")
STATEFULSETS = kmock.resource("apps", "v1", "statefulsets")
WORKLOADS = (DEPLOYMENTS, REPLICASETS, STATEFULSETS)

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
POLICIES = ("Foreground", "Background", "Orphan")


def now_rfc3339(offset_s: float = 0) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=offset_s)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(n: int = 5) -> str:
    return "".join(random.choice(_SUFFIX_ALPHABET) for _ in range(n))


def api_error(status: int, reason: str, message: str, details: dict[str, Any] | None = None) -> kmock.KubernetesError:
    """A failure that kmock renders as a `Status` body (kind Status, status Failure, code, reason, message)."""
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details or {})


class Store:
    """The cluster state: objects by (resource, namespace, name), the resourceVersion counter, the event log."""

    def __init__(self, emulator: kmock.KubernetesEmulator, grace_scale: float):
        self.objects = emulator.objects
        self.info = {res: emulator.resources[res] for res in emulator.resources}
        self.grace_scale = grace_scale  # wall seconds per grace-period second
        self.rv = 0
        # (resourceVersion, resource, type, object, previous object) of the last writes, for watches.
        self.events: collections.deque[tuple[int, kmock.resource, str, Obj, Obj | None]] = collections.deque(
            maxlen=10_000)
        self.deadlines: dict[Key, float] = {}  # graceful deletions in progress: key -> time.monotonic() deadline
        self.on_event: Callable[[], None] = lambda: None  # wakes the watchers

    # ---- reading ----------------------------------------------------------------------------------

    def kind(self, resource: kmock.resource) -> str:
        return self.info[resource].kind or resource.plural.capitalize()

    def qualified(self, resource: kmock.resource) -> str:
        """`deployments.apps`, `pods`: how the API server names a resource in messages."""
        return f"{resource.plural}.{resource.group}" if resource.group else resource.plural

    def resource_for(self, api_version_: str, kind_or_plural: str) -> kmock.resource:
        group, _, version = api_version_.rpartition("/")
        for res, info in self.info.items():
            if res.group == group and res.version == version and kind_or_plural in (res.plural, info.kind):
                return res
        raise api_error(404, "NotFound", f"the server could not find the requested resource ({api_version_}, "
                                         f"{kind_or_plural})")

    def get(self, key: Key) -> Obj | None:
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def require(self, key: Key) -> Obj:
        obj = self.get(key)
        if obj is None:
            raise api_error(404, "NotFound", f'{self.qualified(key[0])} "{key[2]}" not found',
                            {"name": key[2], "group": key[0].group, "kind": key[0].plural})
        return obj

    def items(self, resource: kmock.resource, namespace: str | None = None) -> Iterator[tuple[Key, Obj]]:
        """Live objects of a resource, in creation order; namespace None = all namespaces."""
        for key, obj in list(self.objects.items()):
            if key[0] == resource and (namespace is None or key[1] == namespace) and not obj.deleted:
                yield key, copy.deepcopy(obj.raw)

    def dependents(self, uid: str) -> list[tuple[Key, Obj]]:
        return [(key, obj) for res in self.info for key, obj in self.items(res)
                if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])]

    def uid_exists(self, uid: str) -> bool:
        return any(obj["metadata"].get("uid") == uid for res in self.info for _, obj in self.items(res))

    # ---- writing ----------------------------------------------------------------------------------

    def _write(self, key: Key, obj: Obj, event: str, previous: Obj | None) -> Obj:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        if event == "DELETED":
            self.objects[key].delete()
            self.deadlines.pop(key, None)
        elif key in self.objects:
            self.objects[key].create(copy.deepcopy(obj))  # a new full version in kmock's history
        else:
            self.objects[key] = copy.deepcopy(obj)
        self.events.append((self.rv, key[0], event, copy.deepcopy(obj), previous))
        self.on_event()
        return obj

    def _validate(self, resource: kmock.resource, obj: Obj, old: Obj | None) -> None:
        name = obj["metadata"].get("name", "")
        if len(name) > 253 or not _NAME.match(name):
            raise api_error(422, "Invalid", f'{self.kind(resource)} "{name}" is invalid: metadata.name: Invalid value: '
                                            f'"{name}": a lowercase RFC 1123 subdomain must consist of lower case '
                                            f"alphanumeric characters, '-' or '.'")
        spec = obj.get("spec") or {}
        if resource == PODS and not spec.get("containers"):
            raise api_error(422, "Invalid", f'Pod "{name}" is invalid: spec.containers: Required value')
        if resource in WORKLOADS:
            from .selectors import label_selector_matches  # local: selectors has no store dependency

            selector = spec.get("selector")
            labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
            if not selector:
                raise api_error(422, "Invalid", f'{self.kind(resource)}.apps "{name}" is invalid: spec.selector: '
                                                f"Required value")
            # https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/deployment-v1/#DeploymentSpec
            # ("It must match the pod template's labels.")
            if not label_selector_matches(selector, labels):
                raise api_error(422, "Invalid", f'{self.kind(resource)}.apps "{name}" is invalid: '
                                                f"spec.template.metadata.labels: Invalid value: {labels!r}: "
                                                "`selector` does not match template `labels`")
            if old is not None and old["spec"].get("selector") != selector:
                raise api_error(422, "Invalid", f'{self.kind(resource)}.apps "{name}" is invalid: spec.selector: '
                                                "Invalid value: field is immutable")

    @staticmethod
    def _default(resource: kmock.resource, obj: Obj) -> None:
        """The defaults the API server fills in that the controllers and clients read."""
        spec = obj.setdefault("spec", {}) if resource in (*WORKLOADS, PODS) else obj.get("spec")
        if resource in WORKLOADS:
            spec.setdefault("replicas", 1)
        if resource == DEPLOYMENTS:
            spec.setdefault("strategy", {"type": "RollingUpdate",
                                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
        if resource == STATEFULSETS:
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        if resource == PODS:
            spec.setdefault("restartPolicy", "Always")
            spec.setdefault("terminationGracePeriodSeconds", 30)
            spec.setdefault("schedulerName", "default-scheduler")
            obj.setdefault("status", {}).setdefault("phase", "Pending")

    def create(self, resource: kmock.resource, namespace: str | None, body: Obj, dry_run: bool = False) -> Obj:
        obj = copy.deepcopy(body)
        if not isinstance(obj, dict):
            raise api_error(400, "BadRequest", "the body of the request is not a JSON object")
        meta = obj.setdefault("metadata", {})
        if meta.get("namespace") and namespace and meta["namespace"] != namespace:
            raise api_error(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                                               "sent on the request")
        kind = self.kind(resource)
        if obj.get("kind") and obj["kind"] != kind:
            raise api_error(400, "BadRequest", f"the kind {obj['kind']!r} does not match the URL ({kind})")
        obj["apiVersion"], obj["kind"] = api_version(resource), kind
        if not meta.get("name") and meta.get("generateName"):
            while True:
                meta["name"] = meta["generateName"] + random_suffix()
                if self.get((resource, namespace, meta["name"])) is None:
                    break
        if not meta.get("name"):
            raise api_error(422, "Invalid", f"{kind} is invalid: metadata.name: Required value: name or "
                                            "generateName is required")
        self._default(resource, obj)
        self._validate(resource, obj, None)
        key = (resource, namespace, meta["name"])
        if self.get(key) is not None:
            raise api_error(409, "AlreadyExists", f'{self.qualified(resource)} "{meta["name"]}" already exists',
                            {"name": meta["name"], "group": resource.group, "kind": resource.plural})
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
        if namespace is not None:
            meta["namespace"] = namespace
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), generation=1)
        if dry_run:
            meta["resourceVersion"] = str(self.rv)
            return obj
        return self._write(key, obj, "ADDED", None)

    def update(self, key: Key, new: Obj, subresource: str | None = None, dry_run: bool = False,
               check_rv: bool = True) -> Obj:
        """Store `new` as the object's next version (a PUT, or the result of a PATCH)."""
        old = self.require(key)
        meta = new.setdefault("metadata", {})
        if check_rv and meta.get("resourceVersion") not in (None, "", old["metadata"]["resourceVersion"]):
            raise api_error(409, "Conflict", f'Operation cannot be fulfilled on {self.qualified(key[0])} "{key[2]}": '
                                             "the object has been modified; please apply your changes to the latest "
                                             "version and try again")
        if meta.get("name", key[2]) != key[2]:
            raise api_error(400, "BadRequest", "the name of the object does not match the name on the URL")
        has_status = "status" in self.info[key[0]].subresources
        if subresource == "status":  # only .status changes through /status
            new = {**old, "status": new.get("status")}
            meta = new["metadata"] = copy.deepcopy(old["metadata"])
        elif has_status:  # and .status does not change through the main resource
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        # Fields the server owns.
        for field in ("uid", "creationTimestamp", "namespace", "deletionTimestamp", "deletionGracePeriodSeconds",
                      "generation"):
            if field in old["metadata"]:
                meta[field] = old["metadata"][field]
            else:
                meta.pop(field, None)
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        self._default(key[0], new)
        self._validate(key[0], new, old)
        if key[0] != PODS and new.get("spec") != old.get("spec"):
            meta["generation"] = old["metadata"].get("generation", 1) + 1
        if dry_run:
            return new
        obj = self._write(key, new, "MODIFIED", old)
        self.finish_if_released(key)
        return obj

    # ---- deleting ---------------------------------------------------------------------------------

    def delete(self, key: Key, grace: int | None = None, policy: str | None = None,
               preconditions: dict[str, Any] | None = None, dry_run: bool = False) -> tuple[Obj, bool]:
        """Delete with DeleteOptions; returns (the object as left, whether it is gone now).

        https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/delete-options/
        """
        obj = self.require(key)
        meta = obj["metadata"]
        for field, value in (preconditions or {}).items():
            if value is not None and meta.get(field) != value:
                raise api_error(409, "Conflict", f"Precondition failed: {field} in precondition: {value}, "
                                                 f"{field} in object meta: {meta.get(field)}")
        if policy is not None and policy not in POLICIES:
            raise api_error(422, "Invalid", f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                                            '"Foreground", "Background", "Orphan"')
        if grace is not None and grace < 0:
            grace = 1  # the API server turns a negative grace period into 1 s
        if dry_run:
            return obj, False
        resource = key[0]
        if policy == "Orphan":
            # https://kubernetes.io/docs/concepts/architecture/garbage-collection/#orphaned-dependents
            for dep_key, dep in self.dependents(meta["uid"]):
                refs = [r for r in dep["metadata"]["ownerReferences"] if r.get("uid") != meta["uid"]]
                dep["metadata"]["ownerReferences"] = refs
                if not refs:
                    del dep["metadata"]["ownerReferences"]
                self.update(dep_key, dep, check_rv=False)
        if resource == PODS:
            return self._delete_pod(key, obj, grace)
        if policy == "Foreground" and self.dependents(meta["uid"]):
            # The owner stays, with deletionTimestamp and the foregroundDeletion finalizer, until the
            # garbage collector has deleted its dependents (controllers.GarbageCollector).
            # https://kubernetes.io/docs/concepts/architecture/garbage-collection/#foreground-deletion
            meta.setdefault("finalizers", [])
            if FOREGROUND not in meta["finalizers"]:
                meta["finalizers"].append(FOREGROUND)
        if meta.get("finalizers"):
            return self._mark_deleting(key, obj, 0), False
        return self._write(key, obj, "DELETED", obj), True

    def _mark_deleting(self, key: Key, obj: Obj, grace: int) -> Obj:
        meta = obj["metadata"]
        if "deletionTimestamp" not in meta:
            meta["deletionTimestamp"] = now_rfc3339(grace)
            meta["deletionGracePeriodSeconds"] = grace
            if meta.get("generation") is not None and key[0] != PODS:
                meta["generation"] += 1  # the API server bumps generation when it sets deletionTimestamp
        self.deadlines.setdefault(key, time.monotonic() + grace * self.grace_scale)
        previous = self.get(key)
        return self._write(key, obj, "MODIFIED", previous)

    def _delete_pod(self, key: Key, pod: Obj, grace: int | None) -> tuple[Obj, bool]:
        """Graceful pod deletion (https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/
        `DeleteOptions.gracePeriodSeconds`; https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination).

        No grace given: the pod's spec.terminationGracePeriodSeconds (default 30). Pods that are not
        scheduled to a node yet, or have terminated (Succeeded/Failed), are deleted at once. A second
        delete may only shorten the grace period; 0 removes the pod at once (a force delete).
        """
        meta, spec = pod["metadata"], pod.get("spec") or {}
        if grace is None:
            grace = int(spec.get("terminationGracePeriodSeconds", 30))
        if not spec.get("nodeName") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            grace = 0
        if "deletionTimestamp" in meta:
            current = meta.get("deletionGracePeriodSeconds", 0)
            if grace < current:
                meta["deletionGracePeriodSeconds"] = grace
                meta["deletionTimestamp"] = now_rfc3339(grace)
                self.deadlines[key] = min(self.deadlines.get(key, float("inf")),
                                          time.monotonic() + grace * self.grace_scale)
                self._write(key, pod, "MODIFIED", self.get(key))
            return self.finish_if_released(key) or (pod, False)
        if grace > 0 or meta.get("finalizers"):
            return self._mark_deleting(key, pod, grace), False
        return self._write(key, pod, "DELETED", pod), True

    def finish_if_released(self, key: Key) -> tuple[Obj, bool] | None:
        """Remove an object marked for deletion once its finalizers are gone and its grace period is over."""
        obj = self.get(key)
        if obj is None or "deletionTimestamp" not in obj["metadata"] or obj["metadata"].get("finalizers"):
            return None
        if time.monotonic() < self.deadlines.get(key, 0):
            return None
        return self._write(key, obj, "DELETED", obj), True
