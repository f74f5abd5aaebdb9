"""memory-pressure: a memory hog in its own memory limit next to the app; revert kills it and removes what holds it.

The lab runs stress-ng in a memory-limited cgroup; Kubernetes a stress pod with a memory limit in the app's
namespace, labelled with its experiment. The runbook expects "OOM killer terminates only test pods; application
pods remain stable": the inject records every app replica's instance and restart count before the hog starts,
and the revert reads the hog's OOM kills (the platform's own counters: the cgroup's ``oom_kill``, the pod's
``OOMKilled`` terminations) and the replicas again before stopping it. :func:`measurements` feeds the
scenario's checks (scenarios.yaml): the hog was OOM-killed at least once AND every replica is the same instance
with the same restart count (a replica restarted or replaced during the fault was hit too).

Dead-man switch: with the plan's ``deadline_epoch_s`` the hog ends by itself then (stress-ng ``--timeout``;
the pod's ``activeDeadlineSeconds``); revert still removes what is left. The hog is found by its name (from
the plan), so a hog whose record was never written is still stopped.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, ClassVar

from resilience.chaos.expectations import Measurement
from resilience.faults.deadline import plan_deadline
from resilience.faults.experiment import experiment_of
from resilience.plan import PlannedCall

if TYPE_CHECKING:
    from resilience.platforms.base import Platform
    from resilience.platforms.types import Replica

log = logging.getLogger(__name__)

HOG_NAME = "chaos-memory-hog"


def replica_restarts(replicas: list[Replica]) -> dict[str, dict[str, Any]]:
    """``{name: {"instance", "restarts"}}``: what must not change while only the hog is OOM-killed."""
    return {r.name: {"instance": r.instance, "restarts": r.restarts} for r in replicas}


def disturbed_replicas(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The app replicas that restarted, were replaced or are gone between ``before`` and ``after``."""
    disturbed = []
    for name, was in sorted(before.items()):
        now = after.get(name)
        if now is None:
            disturbed.append(f"{name} is gone (evicted or replaced)")
        elif now.get("instance") != was.get("instance"):
            disturbed.append(f"{name} was replaced ({was.get('instance')} -> {now.get('instance')})")
        elif (now.get("restarts") or 0) != (was.get("restarts") or 0):
            disturbed.append(f"{name} restarted ({was.get('restarts')} -> {now.get('restarts')})")
    return disturbed


def measurements(observed: dict[str, Any]) -> dict[str, Measurement]:
    """The runbook's expectations as measured by revert: the hog's OOM kills (it must have been killed, or
    the limit did not bite and nothing was tested) and the app replicas disturbed (must be none)."""
    hog = observed.get("hog")
    kills = (Measurement(hog.get("oom_kills"), f"{hog.get('hog_mb')} MiB in a {hog.get('limit_mb')} MiB limit")
             if isinstance(hog, dict) else Measurement(None, "the hog was gone before the revert read it"))
    before, after = observed.get("app_before"), observed.get("app_after")
    if not isinstance(before, dict) or not before:
        disturbed = Measurement(None, "restart counts before the fault not recorded")
    elif not isinstance(after, dict):
        disturbed = Measurement(None, "restart counts after the fault not measured")
    else:
        names = disturbed_replicas(before, after)
        disturbed = Measurement(len(names), "; ".join(names) or f"{len(before)} replica(s), restart counts unchanged")
    return {"hog_oom_kills": kills, "app_replicas_disturbed": disturbed}


class MemoryPressure:
    scenario: ClassVar[str] = "memory-pressure"
    measurements = staticmethod(measurements)

    def plan(self, platform: Platform, options: dict[str, Any]) -> dict[str, Any]:
        limit_mb, hog_mb = options.get("limit_mb", 128), options.get("hog_mb", 256)
        for name, value in (("limit_mb", limit_mb), ("hog_mb", hog_mb)):
            if isinstance(value, bool) or not isinstance(value, int) or not 16 <= value <= 4096:
                raise ValueError(f"options.{name}: {value!r} must be an integer in 16..4096 (MB)")
        return {"name": HOG_NAME, "limit_mb": limit_mb, "hog_mb": hog_mb}

    def planned_calls(self, plan: dict[str, Any]) -> list[PlannedCall]:
        name = plan["name"]
        return [PlannedCall("inject", "workloads", "replicas", {}),
                PlannedCall("inject", "memory", "start_memory_hog", {
                    "name": name, "limit_mb": plan["limit_mb"], "hog_mb": plan["hog_mb"],
                    "deadline_epoch_s": plan.get("deadline_epoch_s"), "experiment": experiment_of(plan)}),
                PlannedCall("revert", "memory", "memory_hog", {"name": name}),
                PlannedCall("revert", "memory", "stop_memory_hog", {"name": name}),
                PlannedCall("revert", "workloads", "replicas", {})]

    def inject(self, platform: Platform, plan: dict[str, Any]) -> dict[str, Any]:
        """Record the app replicas' instances and restart counts, then start the hog."""
        deadline = plan_deadline(plan, time.time())
        if deadline is None:
            log.warning("memory-pressure: the plan has no deadline_epoch_s: the hog runs until reverted")
        before = replica_restarts(platform.workloads.replicas())
        experiment = experiment_of(plan)
        log.info("Injecting memory-pressure: %s, %d MiB in a %d MiB limit, next to %d app replica(s) (ledger #%s)",
                 plan["name"], plan["hog_mb"], plan["limit_mb"], len(before), experiment)
        hog = platform.memory.start_memory_hog(plan["name"], plan["limit_mb"], plan["hog_mb"], deadline, experiment)
        return {"hog": hog.to_dict(), "app_before": before}

    def revert(self, platform: Platform, plan: dict[str, Any], revert_info: dict[str, Any]) -> dict[str, Any]:
        """Read the hog's OOM kills before removing it, and every app replica's restart count."""
        hog = platform.memory.memory_hog(plan["name"])
        if hog is None:
            log.warning("Not stopping memory hog %s: nothing of it is left (already reverted?)", plan["name"])
        else:
            log.info("Reverting memory-pressure: stopping %s", hog.describe())
            platform.memory.stop_memory_hog(plan["name"])
        replicas = platform.workloads.replicas()
        observed = {"hog": hog.to_dict() if hog else None, "app_before": revert_info.get("app_before"),
                    "app_after": replica_restarts(replicas), "replicas_ready": sum(r.ready for r in replicas),
                    "replicas_total": len(replicas)}
        measured = measurements(observed)
        observed["only_hog_killed"] = bool(measured["hog_oom_kills"].value) and \
            measured["app_replicas_disturbed"].value == 0
        if not observed["only_hog_killed"]:
            log.warning("memory-pressure: not only the hog was OOM-killed, or it was not: %s",
                        "; ".join(f"{k} {m.value} ({m.detail})" for k, m in measured.items()))
        return observed
