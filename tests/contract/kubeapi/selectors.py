"""Label and field selectors, parsed and matched the way the API server does.

Label selector syntax (string form, used by `?labelSelector=`):
https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors
Equality-based `a=b`, `a==b`, `a!=b`; set-based `a in (x,y)`, `a notin (x)`, `a`, `!a`.
A comma is a logical AND. `a!=b` and `a notin (...)` also match objects WITHOUT the label `a`.

The structured form (`spec.selector` of Deployments/ReplicaSets/StatefulSets, a `LabelSelector`
with `matchLabels` and `matchExpressions`) is matched by `label_selector_matches`:
https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/label-selector/

Field selectors (`?fieldSelector=`) support `=`, `==`, `!=` on the fields the API server
indexes: every resource knows `metadata.name` and `metadata.namespace`; Pods also a few
spec/status fields. Any other field is a 400, as on a real server:
https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# Label keys: an optional DNS-subdomain prefix and a name of up to 63 characters.
_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")

# Fields a Pod LIST can be filtered on (kube-apiserver pkg/registry/core/pod/strategy.go, ToSelectableFields).
_POD_FIELDS = {
    "metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
    "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName",
}


class SelectorError(ValueError):
    """A selector the API server would refuse with 400 BadRequest."""


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector: `key op values`."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if self.op == "exists":
            return present
        return not present  # "!"


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside `( ... )`."""
    terms, depth, current = [], 0, []
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unable to parse requirement: unbalanced ')' in {selector!r}")
        if ch == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth:
        raise SelectorError(f"unable to parse requirement: unbalanced '(' in {selector!r}")
    terms.append("".join(current))
    return [t.strip() for t in terms]


def _check_key(key: str, selector: str) -> str:
    if not _KEY.match(key):
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r} in {selector!r}")
    return key


def _check_value(value: str, selector: str) -> str:
    if not _VALUE.match(value):
        raise SelectorError(f"unable to parse requirement: invalid label value {value!r} in {selector!r}")
    return value


_SET_TERM = re.compile(r"^(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQ_TERM = re.compile(r"^(?P<key>[^\s!=()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$")


def parse_label_selector(selector: str | None) -> list[Requirement]:
    """Parse the string form; an empty selector selects everything."""
    if selector is None or not selector.strip():
        return []
    requirements = []
    for term in _split_terms(selector):
        if not term:
            raise SelectorError(f"unable to parse requirement: empty term in {selector!r}")
        if m := _SET_TERM.match(term):
            values = tuple(_check_value(v.strip(), selector) for v in m["values"].split(",") if v.strip())
            if not values:
                raise SelectorError(f"unable to parse requirement: {m['op']!r} needs values in {selector!r}")
            requirements.append(Requirement(_check_key(m["key"], selector), m["op"], values))
        elif m := _EQ_TERM.match(term):
            op = "=" if m["op"] == "==" else m["op"]
            requirements.append(Requirement(_check_key(m["key"], selector), op, (_check_value(m["value"], selector),)))
        elif term.startswith("!"):
            requirements.append(Requirement(_check_key(term[1:].strip(), selector), "!"))
        else:
            requirements.append(Requirement(_check_key(term, selector), "exists"))
    return requirements


def labels_match(labels: Mapping[str, str] | None, selector: str | None) -> bool:
    """Whether `labels` satisfy every term of the string selector."""
    return all(r.matches(labels or {}) for r in parse_label_selector(selector))


def label_selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """Match a structured `LabelSelector`. An empty (non-null) selector matches everything."""
    labels = labels or {}
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], tuple(expr.get("values") or ())
        ok = {
            "In": lambda k=key, v=values: k in labels and labels[k] in v,
            "NotIn": lambda k=key, v=values: k not in labels or labels[k] not in v,
            "Exists": lambda k=key: k in labels,
            "DoesNotExist": lambda k=key: k not in labels,
        }.get(op)
        if ok is None:
            raise SelectorError(f"{op!r} is not a valid label selector operator")
        if not ok():
            return False
    return True


def label_selector_string(selector: Mapping[str, Any]) -> str:
    """The string form of a structured selector (what `Scale.status.selector` carries)."""
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr["operator"], expr["key"], ",".join(expr.get("values") or ())
        terms.append({"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})",
                      "Exists": key, "DoesNotExist": f"!{key}"}[op])
    return ",".join(terms)


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def field_selector_matcher(selector: str | None, plural: str) -> Callable[[Mapping[str, Any]], bool]:
    """Compile `?fieldSelector=`; raise SelectorError for unsupported fields (400 on a real server)."""
    if selector is None or not selector.strip():
        return lambda obj: True
    allowed = _POD_FIELDS if plural == "pods" else {"metadata.name", "metadata.namespace"}
    terms = []
    for term in (t.strip() for t in selector.split(",")):
        m = re.match(r"^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$", term)
        if not m:
            raise SelectorError(f"invalid selector: {term!r}; can't understand {term!r}")
        field, op, value = m[1], m[2], m[3].strip()
        if field not in allowed:
            raise SelectorError(f'field label not supported: {field}')
        terms.append((field, op != "!=", value))
    return lambda obj: all((_field_value(obj, f) == v) == eq for f, eq, v in terms)
