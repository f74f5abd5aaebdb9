"""s3-5xx: the object store answers 5xx at a rate; revert sets the rate back to what it was.

Dead-man switch: the fault is set with an expiry at the plan's ``deadline_epoch_s``, after which the
object store serves no fault even if nobody reverts it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, ClassVar

from resilience.faults.deadline import plan_deadline
from resilience.faults.experiment import experiment_of
from resilience.plan import PlannedCall

if TYPE_CHECKING:
    from resilience.chaos.expectations import Measurement
    from resilience.platforms.base import Platform

log = logging.getLogger(__name__)


class S35xx:
    scenario: ClassVar[str] = "s3-5xx"

    def plan(self, platform: Platform, options: dict[str, Any]) -> dict[str, Any]:
        rate, status = options.get("error_rate", 0.3), options.get("status", 503)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 1:
            raise ValueError(f"options.error_rate: {rate!r} must be > 0 and <= 1")
        if isinstance(status, bool) or not isinstance(status, int) or not 500 <= status <= 599:
            raise ValueError(f"options.status: {status!r} must be an HTTP status in 500..599")
        return {"error_rate": float(rate), "status": status}

    def planned_calls(self, plan: dict[str, Any]) -> list[PlannedCall]:
        experiment = experiment_of(plan)
        return [PlannedCall("inject", "object_store", "fail_object_store", {
                    "error_rate": plan["error_rate"], "status": plan["status"], "experiment": experiment}),
                PlannedCall("revert", "object_store", "clear_object_store_fault", {"experiment": experiment})]

    def inject(self, platform: Platform, plan: dict[str, Any]) -> dict[str, Any]:
        from resilience.platforms.types import ObjectStoreFault

        deadline = plan_deadline(plan, time.time())
        before = platform.object_store.object_store_fault()
        if deadline is None:
            log.warning("s3-5xx: the plan has no deadline_epoch_s: this fault has no expiry of its own")
        served = platform.object_store.fail_object_store(ObjectStoreFault(plan["error_rate"], plan["status"], deadline,
                                                             experiment_of(plan)))
        return {"previous_error_rate": before.error_rate, "expires_at": deadline, "served": served.to_dict()}

    def revert(self, platform: Platform, plan: dict[str, Any], revert_info: dict[str, Any]) -> dict[str, Any]:
        return {"fault": platform.object_store.clear_object_store_fault(experiment_of(plan)).to_dict()}

    @staticmethod
    def measurements(observed: dict[str, Any]) -> dict[str, Measurement]:
        return {}  # its expectations are measured over the fault window (Prometheus)
