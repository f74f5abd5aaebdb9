"""pod-kill: delete app replicas like Kubernetes does; the platform replaces them (ReplicaSet / lab supervisor).

Graceful by default, as ``kubectl delete pod``: the replica leaves the load balancer, gets SIGTERM,
drains its in-flight requests and exits; still running after ``grace_period_s`` (Kubernetes'
``terminationGracePeriodSeconds``, default 30) it is SIGKILLed. ``force`` (or ``grace_period_s: 0``,
as with kubectl) is the harsh variant: SIGKILL at once, in-flight requests lost.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any, ClassVar

from resilience.chaos.expectations import Measurement
from resilience.plan import PlannedCall

if TYPE_CHECKING:
    from resilience.platforms.base import Platform
    from resilience.platforms.types import Replica

log = logging.getLogger(__name__)

RESTART_TIMEOUT_S = 60
READY_SINCE_WAIT_S = 5  # for the readiness times of replicas just seen ready (the lab's probe runs every 0.5 s)
DEFAULT_GRACE_PERIOD_S = 30
MAX_GRACE_PERIOD_S = 300
OPTIONS = ("count", "percent", "grace_period_s", "force")


def termination_options(options: dict[str, Any]) -> tuple[int, bool]:
    """``(grace_period_s, force)`` from the scenario options, validated; grace period 0 means force."""
    grace = options.get("grace_period_s", DEFAULT_GRACE_PERIOD_S)
    if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= MAX_GRACE_PERIOD_S:
        raise ValueError(f"options.grace_period_s: {grace!r} must be an integer in 0..{MAX_GRACE_PERIOD_S} (seconds)")
    force = options.get("force", False)
    if not isinstance(force, bool):
        raise ValueError(f"options.force: {force!r} must be true or false")
    return grace, force or grace == 0


class PodKill:
    scenario: ClassVar[str] = "pod-kill"

    def plan(self, platform: Platform, options: dict[str, Any]) -> dict[str, Any]:
        """Pick ``count`` replicas (or ``percent`` of them, at least one) among the healthy ones, and how
        they are deleted (``grace_period_s``, ``force``). Options are checked before the platform is asked."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"options: {unknown} not allowed for pod-kill (allowed: {list(OPTIONS)})")
        grace_period_s, force = termination_options(options)
        healthy = sorted(r.name for r in platform.workloads.replicas() if r.ready)
        if not healthy:
            raise ValueError("pod-kill: no healthy replica to kill")
        if "percent" in options:
            percent = options["percent"]
            if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 < percent <= 100:
                raise ValueError(f"options.percent: {percent!r} must be > 0 and <= 100")
            count = max(1, math.floor(len(healthy) * percent / 100))
        else:
            count = options.get("count", 1)
            if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(healthy):
                raise ValueError(f"options.count: {count!r} must be an integer in 1..{len(healthy)} (healthy replicas)")
        return {"replicas": healthy[:count], "grace_period_s": 0 if force else grace_period_s, "force": force,
                "restart_timeout_s": RESTART_TIMEOUT_S, "expected_ready": len(healthy)}

    def planned_calls(self, plan: dict[str, Any]) -> list[PlannedCall]:
        return [PlannedCall("inject", "workloads", "delete_replicas", {
                    "names": plan["replicas"], "grace_period_s": plan["grace_period_s"], "force": plan["force"]}),
                PlannedCall("revert", "workloads", "wait_ready", {
                    "expected": plan["expected_ready"], "timeout_s": plan["restart_timeout_s"]})]

    def inject(self, platform: Platform, plan: dict[str, Any]) -> dict[str, Any]:
        """Delete the replicas and wait until they are gone; report how each one ended."""
        force = bool(plan.get("force", True))  # a plan from before graceful deletion existed was a SIGKILL
        grace_period_s = int(plan.get("grace_period_s", 0))
        variant = "forced" if force else "graceful"
        if force:
            log.info("Injecting pod-kill (forced): SIGKILL %s at once, in-flight requests are lost",
                     ", ".join(plan["replicas"]))
        else:
            log.info("Injecting pod-kill (graceful): deleting %s; each leaves the load balancer, drains on SIGTERM "
                     "and is SIGKILLed if still running after %d s", ", ".join(plan["replicas"]), grace_period_s)
        before = sorted(str(r.instance) for r in platform.workloads.replicas() if r.instance)
        deleted_at = time.time()
        ended = platform.workloads.delete_replicas(plan["replicas"], grace_period_s=grace_period_s, force=force)
        log.info("pod-kill (%s) done: %s", variant, "; ".join(
            f"{e.name} ({e.instance}) {e.outcome}" + (f" in {e.terminated_in_s:.2f} s" if not force and
                                                     e.terminated_in_s is not None else "") for e in ended))
        return {"variant": variant, "grace_period_s": grace_period_s, "deleted_at": deleted_at,
                "instances_before": before, "killed": {e.name: e.instance for e in ended},
                "ended": {e.name: e.to_dict() for e in ended}}

    def revert(self, platform: Platform, plan: dict[str, Any], revert_info: dict[str, Any]) -> dict[str, Any]:
        """Nothing to undo by hand: wait until the workload is back to the ready count it had, with new
        replicas in place of the deleted ones (their instances, when the inject recorded them, never count)."""
        killed = revert_info.get("killed") or {}
        gone = {str(instance) for instance in killed.values() if instance}
        expected = int(plan.get("expected_ready") or len(plan["replicas"]))  # plans written before it: a floor
        ready = platform.workloads.wait_ready(expected, gone, timeout_s=plan["restart_timeout_s"])
        try:
            replaced_in_s = self._replaced_in_s(platform, revert_info, ready.replicas)
        except Exception:  # measuring must never fail the revert: unmeasured, the runbook check fails instead
            log.exception("pod-kill: the replacements' readiness times could not be read")
            replaced_in_s = None
        log.info("pod-kill reverted: %d replica(s) ready %.1f s after the wait began; the replacements were ready "
                 "%s after the deletion", len(ready.replicas), ready.seconds,
                 "(unknown)" if replaced_in_s is None else f"{replaced_in_s:.1f} s")
        return {"ready_after_s": ready.seconds, "replicas": ready.instances(), "replacements_ready_s": replaced_in_s}

    @staticmethod
    def _replaced_in_s(platform: Platform, revert_info: dict[str, Any], ready: tuple[Replica, ...]) -> float | None:
        """When the last replacement became ready, from the deletion: the replacements are the ready instances
        that did not exist before it (a survivor that flapped after it is not one)."""
        before = set(revert_info.get("instances_before") or [])
        if not before:
            return None  # an inject from before instances were recorded, or killed before it recorded them
        new = tuple(r for r in ready if r.instance not in before)
        settle_until = time.monotonic() + READY_SINCE_WAIT_S
        while any(r.ready_since is None for r in new) and time.monotonic() < settle_until:
            time.sleep(0.2)  # the platform records a readiness time a moment after readiness (the lab's probe)
            new = tuple(r for r in platform.workloads.replicas() if r.ready and r.instance not in before)
        return replacements_ready_s(revert_info.get("deleted_at"), new)

    @staticmethod
    def measurements(observed: dict[str, Any]) -> dict[str, Measurement]:
        return {"replacements_ready_s": Measurement(observed.get("replacements_ready_s"),
                                                    "" if observed.get("replacements_ready_s") is not None else
                                                    "the deletion time or a replacement's readiness time is unknown")}


def replacements_ready_s(deleted_at: float | None, replacements: tuple[Replica, ...]) -> float | None:
    """Seconds from the deletion until the last of ``replacements`` became ready; None when the deletion time,
    any replacement or any of their readiness times is unknown (not measured is never 0)."""
    if deleted_at is None or not replacements or any(r.ready_since is None for r in replacements):
        return None
    return round(max(0.0, max(float(r.ready_since or 0) for r in replacements) - float(deleted_at)), 2)
