"""PATCH bodies, by Content-Type, as the API server applies them.

* `application/json-patch+json`: RFC 6902, the body is a list of operations.
* `application/merge-patch+json`: RFC 7386, dicts merge recursively, `null` removes a key, lists are replaced.
* `application/strategic-merge-patch+json`: like a merge patch, except that lists of objects
  with a patch merge key (e.g. `containers` by `name`) are merged item by item. Only built-in
  types support it; custom resources answer 415 (https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/).
  Simplification: the merge keys below are the common ones, directives like `$patch` are not supported.

The official Python client sends a dict body as strategic merge (its rest.py rewrites
json-patch to strategic-merge for non-list bodies), and `CustomObjectsApi` sends merge-patch.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

# Patch merge keys of the lists tests touch (from the OpenAPI x-kubernetes-patch-merge-key).
_MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
    "volumes": "name", "volumeMounts": "mountPath", "ports": "containerPort", "imagePullSecrets": "name",
    "tolerations": None, "conditions": "type", "ownerReferences": "uid", "hostAliases": "ip",
}


class PatchError(ValueError):
    """A patch the API server refuses: `status` is the HTTP status it would answer."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def merge_patch(base: Any, patch: Any, strategic: bool = False, field: str | None = None) -> Any:
    """RFC 7386 merge (optionally strategic); returns a new value, `base` is not modified."""
    if isinstance(patch, dict) and isinstance(base, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merge_patch(out.get(key), value, strategic, key)
        return out
    if strategic and isinstance(patch, list) and isinstance(base, list) and _MERGE_KEYS.get(field or ""):
        key = _MERGE_KEYS[field or ""]
        out = copy.deepcopy(base)
        for item in patch:
            match = next((i for i, cur in enumerate(out) if isinstance(cur, dict) and isinstance(item, dict)
                          and cur.get(key) == item.get(key)), None)
            if match is None:
                out.append(copy.deepcopy(item))
            else:
                out[match] = merge_patch(out[match], item, strategic, None)
        return out
    if isinstance(patch, dict):
        return merge_patch({}, patch, strategic, field)  # drops nulls inside a new dict
    return copy.deepcopy(patch)


def apply_patch(obj: dict[str, Any], body: Any, content_type: str, custom: bool) -> dict[str, Any]:
    """Apply a PATCH body to a copy of `obj`; raise PatchError as the API server would."""
    content_type = (content_type or "").split(";")[0].strip().lower()
    if content_type == JSON_PATCH:
        if not isinstance(body, list):
            raise PatchError(400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        try:
            return jsonpatch.apply_patch(copy.deepcopy(obj), body)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
            raise PatchError(422, "Invalid", f"the server rejected our request due to an error in our request: {e}") from None
    if content_type == STRATEGIC_MERGE_PATCH and custom:
        # https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
        # ("strategic merge patch is not supported" for custom resources)
        raise PatchError(415, "UnsupportedMediaType",
                         f"the body of the request was in an unknown format - accepted media types include: "
                         f"{JSON_PATCH}, {MERGE_PATCH}, application/apply-patch+yaml")
    if content_type not in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        raise PatchError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}")
    if not isinstance(body, dict):
        # A JSON list sent as a merge patch: the real server fails to decode it into the object.
        raise PatchError(422, "Invalid", "couldn't get version/kind; json parse error: "
                         "json: cannot unmarshal array into Go value of type struct")
    return merge_patch(obj, body, strategic=content_type == STRATEGIC_MERGE_PATCH)
