"""What kube-controller-manager, the scheduler and the kubelet would do, in one reconcile pass.

`Controllers.run()` is an asyncio task on the server's loop thread, one pass every `tick_s`:

* Deployment controller: a ReplicaSet per pod-template revision, named `<deploy>-<pod-template-hash>`,
  annotated `deployment.kubernetes.io/revision`, owned by the Deployment. A template equal to an
  older ReplicaSet's (a `rollout undo`) reuses that ReplicaSet with the next revision number, as
  Kubernetes does. RollingUpdate: the new ReplicaSet gets all replicas at once, the old ones are scaled
  down as new pods become Ready (no surge/unavailable budget arithmetic); Recreate: old ones first.
  Status: replicas, updatedReplicas, readyReplicas, availableReplicas, unavailableReplicas,
  observedGeneration, conditions Available/Progressing.
  https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/deployment-v1/
* ReplicaSet controller: pods `<rs>-<5 chars>` with the template's labels, owned by the ReplicaSet;
  terminating pods do not count, so a deleted pod is replaced at once; surplus pods are deleted with
  their default grace period (not-ready ones first).
* StatefulSet controller: pods `<sts>-0..N-1`; OrderedReady creates one at a time after the previous
  is Ready and removes from the highest ordinal, waiting for each to be gone; Parallel does all at
  once. A template change rolls pods from the highest ordinal. Status: replicas, readyReplicas,
  currentReplicas, updatedReplicas, availableReplicas, currentRevision, updateRevision, observedGeneration.
  https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/stateful-set-v1/
* Scheduler + kubelet: binds a pod to node `kubeapi-node`, makes it Running and Ready `ready_delay_s`
  after it was created (annotation `kubeapi.test/crashloop: "true"` in the pod keeps it not Ready,
  in CrashLoopBackOff with a growing restartCount), and removes terminating pods when their grace
  period is over (`Store.deadlines`). Memory: a `stress` container (polinux/stress: `--vm N --vm-bytes
  SIZE`) asking for more than its `resources.limits.memory` is OOM-killed `ready_delay_s` after each
  start (state terminated, reason OOMKilled, exit code 137); with restartPolicy OnFailure/Always it is
  restarted `ready_delay_s` later (restartCount + 1, lastState the OOM kill), with Never the pod is Failed.
  `spec.activeDeadlineSeconds` (wall seconds from the pod's start) ends the pod: phase Failed, reason
  DeadlineExceeded, its containers terminated.
* Garbage collector: deletes objects whose owners are gone (Background propagation) and finishes
  Foreground deletions. https://kubernetes.io/docs/concepts/architecture/garbage-collection/
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import time
from typing import Any

from .store import DEPLOYMENTS, FOREGROUND, PODS, REPLICASETS, STATEFULSETS, Key, Obj, Store, now_rfc3339, random_suffix

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
CRASHLOOP = "kubeapi.test/crashloop"
NODE = "kubeapi-node"


def template_hash(template: dict[str, Any]) -> str:
    """A stable 10-character hash of a pod template (Kubernetes uses FNV + safe encoding)."""
    template = copy.deepcopy(template)
    ((template.get("metadata") or {}).get("labels") or {}).pop(HASH_LABEL, None)
    digest = hashlib.sha256(repr(_canonical(template)).encode()).digest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[b % len(alphabet)] for b in digest[:10])


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return sorted((k, _canonical(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def owner_ref(owner: Obj) -> dict[str, Any]:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def controlled_by(obj: Obj, owner: Obj) -> bool:
    return any(r.get("uid") == owner["metadata"]["uid"] and r.get("controller")
               for r in obj["metadata"].get("ownerReferences") or [])


def is_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def terminating(obj: Obj) -> bool:
    return "deletionTimestamp" in obj["metadata"]


class Controllers:
    """The reconcile loop; `tick_s` between passes, pods Ready `ready_delay_s` after creation."""

    def __init__(self, store: Store, tick_s: float = 0.1, ready_delay_s: float = 0.5):
        self.store, self.tick_s, self.ready_delay_s = store, tick_s, ready_delay_s
        self.born: dict[str, float] = {}  # pod uid -> time.monotonic() of its first sight
        self.errors: list[BaseException] = []

    async def run(self) -> None:
        while True:
            try:
                self.reconcile()
            except Exception as e:  # a bug in a controller must not stop the others; the harness reports it
                self.errors.append(e)
            await asyncio.sleep(self.tick_s)

    def reconcile(self) -> None:
        self.garbage_collect()
        for key, deploy in self.store.items(DEPLOYMENTS):
            if not terminating(deploy):
                self.deployment(key, deploy)
        for key, rs in self.store.items(REPLICASETS):
            if not terminating(rs):
                self.replicaset(key, rs)
        for key, sts in self.store.items(STATEFULSETS):
            if not terminating(sts):
                self.statefulset(key, sts)
        self.kubelet()

    # ---- helpers ----------------------------------------------------------------------------------

    def _owned(self, resource, owner: Obj, ns: str | None) -> list[tuple[Key, Obj]]:
        return [(k, o) for k, o in self.store.items(resource, ns) if controlled_by(o, owner)]

    def _set_status(self, key: Key, obj: Obj, status: dict[str, Any]) -> None:
        if obj.get("status") != status:
            self.store.update(key, {**obj, "status": status}, "status", check_rv=False)

    def _new_pod(self, owner: Obj, name: str, template: dict[str, Any], extra_labels: dict[str, str]) -> None:
        meta = copy.deepcopy(template.get("metadata") or {})
        meta.update(name=name, labels={**(meta.get("labels") or {}), **extra_labels},
                    ownerReferences=[owner_ref(owner)])
        self.store.create(PODS, owner["metadata"]["namespace"], {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                                                                 "spec": copy.deepcopy(template.get("spec") or {})})

    # ---- Deployment -------------------------------------------------------------------------------

    def deployment(self, key: Key, deploy: Obj) -> None:
        ns, spec = key[1], deploy["spec"]
        template = spec["template"]
        rses = self._owned(REPLICASETS, deploy, ns)
        h = template_hash(template)
        revisions = [int(rs["metadata"].get("annotations", {}).get(REVISION, "0")) for _, rs in rses]
        new = next(((k, rs) for k, rs in rses if rs["metadata"].get("labels", {}).get(HASH_LABEL) == h), None)
        top = max(revisions, default=0)
        if new is None:
            labels = {**(template.get("metadata") or {}).get("labels", {}), HASH_LABEL: h}
            tmpl = copy.deepcopy(template)
            tmpl.setdefault("metadata", {})["labels"] = labels
            selector = copy.deepcopy(spec["selector"])
            selector.setdefault("matchLabels", {})[HASH_LABEL] = h
            self.store.create(REPLICASETS, ns, {
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": f"{key[2]}-{h}", "labels": labels, "ownerReferences": [owner_ref(deploy)],
                             "annotations": {REVISION: str(top + 1),
                                             "deployment.kubernetes.io/desired-replicas": str(spec["replicas"])}},
                "spec": {"replicas": 0, "selector": selector, "template": tmpl}})
            return  # the next pass scales it
        new_key, new_rs = new
        new_rev = int(new_rs["metadata"].get("annotations", {}).get(REVISION, "0"))
        if new_rev < top:  # an older template came back (rollout undo): it becomes the newest revision
            new_rs["metadata"].setdefault("annotations", {})[REVISION] = str(top + 1)
            new_rs = self.store.update(new_key, new_rs, check_rv=False)
            new_rev = top + 1
        if deploy["metadata"].get("annotations", {}).get(REVISION) != str(new_rev):
            deploy["metadata"].setdefault("annotations", {})[REVISION] = str(new_rev)
            deploy = self.store.update(key, deploy, check_rv=False)
        old = [(k, rs) for k, rs in rses if k != new_key]
        want = spec["replicas"]
        pods = {k: self._owned(PODS, rs, ns) for k, rs in rses}
        active = {k: [p for _, p in ps if not terminating(p)] for k, ps in pods.items()}
        new_ready = sum(is_ready(p) for p in active[new_key])
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        if recreate:
            for k, rs in old:
                self._scale(k, rs, 0)
            old_left = sum(len(ps) for k, ps in pods.items() if k != new_key)
            self._scale(new_key, new_rs, want if old_left == 0 else 0)
        else:
            self._scale(new_key, new_rs, want)
            budget = max(0, want - new_ready)  # old pods still needed while new ones are not Ready
            for k, rs in sorted(old, key=lambda kr: -int(kr[1]["metadata"]["annotations"].get(REVISION, "0"))):
                keep = min(budget, rs["spec"]["replicas"])
                self._scale(k, rs, keep)
                budget -= keep
        all_active = [p for ps in active.values() for p in ps]
        ready = sum(is_ready(p) for p in all_active)
        status: dict[str, Any] = {
            "observedGeneration": deploy["metadata"]["generation"],
            "replicas": len(all_active), "updatedReplicas": len(active[new_key]),
            "readyReplicas": ready, "availableReplicas": ready,
        }
        # unavailableReplicas = sum of the ReplicaSets' spec.replicas - available (calculateStatus in the
        # deployment controller), so a stuck rollout shows its not-Ready new pods as unavailable.
        total = sum(rs["spec"]["replicas"] for _, rs in self._owned(REPLICASETS, deploy, ns))
        if total - ready > 0:
            status["unavailableReplicas"] = total - ready
        complete = len(active[new_key]) == want and len(all_active) == want and ready == want
        status["conditions"] = [
            {"type": "Available", "status": "True" if ready >= want - _max_unavailable(spec) else "False",
             "reason": "MinimumReplicasAvailable" if ready >= want - _max_unavailable(spec)
             else "MinimumReplicasUnavailable"},
            {"type": "Progressing", "status": "True",
             "reason": "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
             "message": f'ReplicaSet "{new_key[2]}" ' + ("has successfully progressed." if complete
                                                          else "is progressing.")},
        ]
        status = {k: v for k, v in status.items() if v != 0 or k == "observedGeneration"}  # omitempty, as served
        self._set_status(key, deploy, status)

    def _scale(self, key: Key, rs: Obj, replicas: int) -> None:
        if rs["spec"]["replicas"] != replicas:
            rs["spec"]["replicas"] = replicas
            self.store.update(key, rs, check_rv=False)

    # ---- ReplicaSet -------------------------------------------------------------------------------

    def replicaset(self, key: Key, rs: Obj) -> None:
        ns = key[1]
        owned = self._owned(PODS, rs, ns)
        active = [(k, p) for k, p in owned if not terminating(p)]
        want = rs["spec"]["replicas"]
        for _ in range(want - len(active)):
            while (name := f"{key[2]}-{random_suffix()}") and self.store.get((PODS, ns, name)) is not None:
                pass
            self._new_pod(rs, name, rs["spec"]["template"], {})
        if len(active) > want:
            # not-ready pods go first, then the youngest (controller.ActivePods ordering, simplified)
            victims = sorted(active, key=lambda kp: (is_ready(kp[1]), kp[1]["metadata"]["creationTimestamp"]))
            for k, _ in victims[: len(active) - want]:
                self.store.delete(k)
        active = [p for _, p in self.store.items(PODS, ns) if controlled_by(p, rs) and not terminating(p)]
        ready = sum(is_ready(p) for p in active)
        status = {"replicas": len(active), "fullyLabeledReplicas": len(active), "readyReplicas": ready,
                  "availableReplicas": ready, "observedGeneration": rs["metadata"]["generation"]}
        self._set_status(key, rs, {k: v for k, v in status.items() if v != 0 or k in ("replicas", "observedGeneration")})

    # ---- StatefulSet ------------------------------------------------------------------------------

    def statefulset(self, key: Key, sts: Obj) -> None:
        ns, name, spec = key[1], key[2], sts["spec"]
        revision = f"{name}-{template_hash(spec['template'])}"
        want, parallel = spec["replicas"], spec.get("podManagementPolicy") == "Parallel"
        pods = {p["metadata"]["name"]: (k, p) for k, p in self._owned(PODS, sts, ns)}
        for i in range(want):  # create missing ordinals
            pod_name = f"{name}-{i}"
            if pod_name in pods:
                if not parallel and not (is_ready(pods[pod_name][1]) and not terminating(pods[pod_name][1])):
                    break
                continue
            if self.store.get((PODS, ns, pod_name)) is not None:
                break  # a terminating namesake (or a stranger) holds the name: wait
            self._new_pod(sts, pod_name, spec["template"], {
                "controller-revision-hash": revision, "statefulset.kubernetes.io/pod-name": pod_name,
                "apps.kubernetes.io/pod-index": str(i)})
            if not parallel:
                break
        surplus = sorted((int(n.rsplit("-", 1)[1]), k, p) for n, (k, p) in pods.items()
                         if n.rsplit("-", 1)[1].isdigit() and int(n.rsplit("-", 1)[1]) >= want)
        for _, k, p in reversed(surplus):  # scale down from the highest ordinal
            if not terminating(p):
                self.store.delete(k)
            if not parallel:
                break
        live = [p for k, p in self._owned(PODS, sts, ns) if not terminating(p)]
        in_range = [p for p in live if int(p["metadata"]["name"].rsplit("-", 1)[1]) < want]
        outdated = [p for p in in_range if p["metadata"]["labels"].get("controller-revision-hash") != revision]
        if outdated and not surplus and len(in_range) == want and all(is_ready(p) for p in in_range):
            # RollingUpdate: replace the highest outdated ordinal; the loop above recreates it
            victim = max(outdated, key=lambda p: int(p["metadata"]["name"].rsplit("-", 1)[1]))
            self.store.delete((PODS, ns, victim["metadata"]["name"]))
        ready = sum(is_ready(p) for p in live)
        updated = sum(p["metadata"]["labels"].get("controller-revision-hash") == revision for p in live)
        status = {"observedGeneration": sts["metadata"]["generation"], "replicas": len(live),
                  "readyReplicas": ready, "availableReplicas": ready, "currentReplicas": updated if not outdated
                  else len(live) - updated, "updatedReplicas": updated,
                  "currentRevision": revision if not outdated else sts.get("status", {}).get("currentRevision",
                                                                                              revision),
                  "updateRevision": revision, "collisionCount": 0}
        self._set_status(key, sts, status)

    # ---- scheduler + kubelet ----------------------------------------------------------------------

    def kubelet(self) -> None:
        now = time.monotonic()
        for key, pod in self.store.items(PODS):
            if terminating(pod):
                self.store.finish_if_released(key)
                continue
            uid = pod["metadata"]["uid"]
            born = self.born.setdefault(uid, now)
            status = copy.deepcopy(pod.get("status") or {})
            spec = pod.get("spec") or {}
            if not spec.get("nodeName"):  # the scheduler binds it (spec.nodeName can be set once)
                pod["spec"]["nodeName"] = NODE
                pod = self.store.update(key, pod, check_rv=False)
                status.update(phase="Pending", conditions=[_cond("PodScheduled")], qosClass="BestEffort")
            if status.get("phase") in ("Succeeded", "Failed"):
                continue
            crashloop = (pod["metadata"].get("annotations") or {}).get(CRASHLOOP) == "true"
            oom = any(_oom_killed(c) for c in spec["containers"])
            active_deadline = spec.get("activeDeadlineSeconds")
            if active_deadline is not None and now - born >= active_deadline:
                status = _deadline_exceeded(status, spec)
            elif now - born >= self.ready_delay_s and (status.get("phase") != "Running" or crashloop or oom):
                started = status.get("startTime") or now_rfc3339()
                restarts = int((now - born) / self.ready_delay_s) - 1 if crashloop else 0
                since_start_s, policy = now - born - self.ready_delay_s, spec.get("restartPolicy", "Always")
                containers = [_oom_status(c, since_start_s, self.ready_delay_s, policy) if _oom_killed(c)
                              else _container_status(c, started, restarts, crashloop) for c in spec["containers"]]
                ready = "False" if crashloop or not all("running" in c["state"] for c in containers) else "True"
                status.update(
                    phase="Running", hostIP="10.0.0.1", podIP=_pod_ip(uid), startTime=started,
                    podIPs=[{"ip": _pod_ip(uid)}],
                    conditions=[_cond("PodReadyToStartContainers"), _cond("Initialized"),
                                _cond("Ready", ready), _cond("ContainersReady", ready), _cond("PodScheduled")],
                    containerStatuses=containers)
                if policy == "Never" and all("terminated" in c["state"] for c in containers):
                    status["phase"] = "Failed"  # every container ended in failure and none is restarted
            # a condition keeps its lastTransitionTime until its status flips
            before = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
            for cond in status.get("conditions") or []:
                if before.get(cond["type"], {}).get("status") == cond["status"]:
                    cond["lastTransitionTime"] = before[cond["type"]].get("lastTransitionTime")
            if status != (pod.get("status") or {}):
                self.store.update(key, {**pod, "status": status}, "status", check_rv=False)
        live = {pod["metadata"]["uid"] for _, pod in self.store.items(PODS)}
        self.born = {uid: t for uid, t in self.born.items() if uid in live}

    # ---- garbage collector ------------------------------------------------------------------------

    def garbage_collect(self) -> None:
        uids = {obj["metadata"]["uid"]: obj for res in self.store.info for _, obj in self.store.items(res)}
        for res in list(self.store.info):
            for key, obj in self.store.items(res):
                meta = obj["metadata"]
                refs = meta.get("ownerReferences") or []
                if refs and not terminating(obj) and all(r.get("uid") not in uids for r in refs):
                    self.store.delete(key)  # every owner is gone: Background propagation
                elif refs and not terminating(obj) and any(
                        FOREGROUND in (uids.get(r.get("uid"), {}).get("metadata", {}).get("finalizers") or [])
                        for r in refs):
                    self.store.delete(key, policy="Foreground")  # the owner waits for us: cascade
                if FOREGROUND in (meta.get("finalizers") or []) and not self.store.dependents(meta["uid"]):
                    meta["finalizers"] = [f for f in meta["finalizers"] if f != FOREGROUND]
                    self.store.update(key, obj, check_rv=False)  # releases it (Store.finish_if_released)


def _max_unavailable(spec: dict[str, Any]) -> int:
    value = ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return int(spec["replicas"] * int(value[:-1]) / 100)  # rounded down, as Kubernetes does
    return int(value)


def _cond(kind: str, status: str = "True") -> dict[str, str]:
    return {"type": kind, "status": status, "lastTransitionTime": now_rfc3339()}


def _pod_ip(uid: str) -> str:
    n = int(uid.replace("-", "")[:6], 16)
    return f"10.42.{(n >> 8) % 256}.{n % 254 + 1}"


def _container_status(container: dict[str, Any], started: str, restarts: int, crashloop: bool) -> dict[str, Any]:
    state = ({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}}
             if crashloop else {"running": {"startedAt": started}})
    return {"name": container["name"], "image": container.get("image", ""), "imageID": "", "containerID":
            f"containerd://{container['name']}", "ready": not crashloop, "started": not crashloop,
            "restartCount": max(0, restarts), "state": state}


# ---- memory: stress containers over their limit, activeDeadlineSeconds -----------------------------
# ContainerStatus (state / lastState: running{startedAt}, waiting{reason}, terminated{exitCode, reason,
# startedAt, finishedAt}; restartCount; ready) and PodStatus (phase, reason, message):
# https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#PodStatus
# An OOM kill as the kubelet reports it (terminated, reason OOMKilled, exit code 137; restarted under
# OnFailure): https://kubernetes.io/docs/tasks/configure-pod-container/assign-memory-resource/#exceed-a-container-s-memory-limit

OOM_EXIT_CODE = 137  # 128 + SIGKILL
_QUANTITY = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_STRESS_SIZE = {"b": 1, "k": 2**10, "m": 2**20, "g": 2**30}  # stress(1)'s --vm-bytes suffixes, powers of 1024


def memory_quantity(value: str | int) -> int:
    """Bytes of a Kubernetes quantity such as `64Mi`, `1G`, `134217728` (the suffixes memory limits use)."""
    text = str(value).strip()
    number = text.rstrip("".join({c for k in _QUANTITY for c in k}))
    return int(float(number) * _QUANTITY[text[len(number):]])


def stress_demand_bytes(container: dict[str, Any]) -> int | None:
    """What a polinux/stress container allocates: `--vm N` (`-m N`) workers of `--vm-bytes SIZE` each
    (default 256M); None when the container is not stress or starts no vm worker."""
    argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    if "stress" not in container.get("image", "") and not (argv and argv[0].rsplit("/", 1)[-1] == "stress"):
        return None
    workers, size = 0, 256 * 2**20
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag in ("--vm", "-m"):
            workers = int(value)
        elif flag == "--vm-bytes":
            suffix = value[-1].lower() if value[-1].isalpha() else "b"
            size = int(value.rstrip("bBkKmMgG")) * _STRESS_SIZE[suffix]
    return workers * size if workers else None


def _oom_killed(container: dict[str, Any]) -> bool:
    """A stress container asking for more memory than its limit: the kernel OOM-kills it in its cgroup."""
    demand, limit = stress_demand_bytes(container), ((container.get("resources") or {}).get("limits") or {}).get(
        "memory")
    return demand is not None and limit is not None and demand > memory_quantity(limit)


def _rfc3339(epoch_s: float) -> str:
    return now_rfc3339(epoch_s - time.time())


def _oom_status(container: dict[str, Any], since_start_s: float, delay_s: float, restart_policy: str) -> dict[str, Any]:
    """The container's status `since_start_s` after its first start: it runs `delay_s`, is OOM-killed, and (not
    under Never) is restarted `delay_s` later, again and again; Never: it stays terminated."""
    cycle_s = 2 * delay_s
    restarts = 0 if restart_policy == "Never" else int(since_start_s // cycle_s)
    started = time.time() - (since_start_s - restarts * cycle_s)  # this run's start (wall clock)

    def killed(run_started: float) -> dict[str, Any]:
        return {"terminated": {"exitCode": OOM_EXIT_CODE, "reason": "OOMKilled", "startedAt": _rfc3339(run_started),
                               "finishedAt": _rfc3339(run_started + delay_s)}}

    status: dict[str, Any] = {"name": container["name"], "image": container.get("image", ""), "imageID": "",
                              "containerID": f"containerd://{container['name']}-{restarts}",
                              "restartCount": restarts}
    if restarts:
        status["lastState"] = killed(started - cycle_s)
    if time.time() < started + delay_s:
        status.update(state={"running": {"startedAt": _rfc3339(started)}}, ready=True, started=True)
    else:
        status.update(state=killed(started), ready=False, started=False)
    return status


def _deadline_exceeded(status: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The kubelet ends a pod active longer than `activeDeadlineSeconds`: phase Failed, reason DeadlineExceeded,
    every container killed (https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/
    `PodSpec.activeDeadlineSeconds`)."""
    previous = {c["name"]: c for c in status.get("containerStatuses") or []}
    containers = []
    for c in spec["containers"]:
        was = previous.get(c["name"], {"name": c["name"], "image": c.get("image", ""), "imageID": "",
                                       "restartCount": 0, "state": {}})
        running = was.get("state", {}).get("running")
        terminated = was.get("state", {}).get("terminated") or {
            "exitCode": OOM_EXIT_CODE, "reason": "Error", "finishedAt": now_rfc3339(),
            **({"startedAt": running["startedAt"]} if running else {})}
        containers.append({**was, "state": {"terminated": terminated}, "ready": False, "started": False})
    return {**status, "phase": "Failed", "reason": "DeadlineExceeded",
            "message": "Pod was active on the node longer than the specified deadline",
            "conditions": [{**c, "status": "False"} if c["type"] in ("Ready", "ContainersReady") else c
                           for c in status.get("conditions") or []],
            "containerStatuses": containers}

