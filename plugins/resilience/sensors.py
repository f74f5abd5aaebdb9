"""Sensors that defer to the Prometheus triggers: the SLO guard during a fault, recovery after it.

Both take a ``spec`` (where and how to read the SLOs, the baseline and the policy, built by
the baseline task) and decide in ``execute_complete`` with the pure functions of ``slo``.
The trigger's event is pushed to XCom under ``event`` before the task passes or fails, so
the verdict and the report read it either way.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator, BaseSensorOperator

from resilience.errors import ChecksFailedError

GRACE_S = 30  # the trigger ends itself at `until`; the sensor's timeout is only a backstop
# how long the recovery reads in its task before it defers (a task process on a loaded 2-core machine took
# 5-10 s to its first reading: with 1 s it deferred, and the trigger fired at once, into Airflow's race)
FIRST_READING_BUDGET_S = 15.0


def _watch_kwargs(spec: dict[str, Any], until: datetime) -> dict[str, Any]:
    return {
        "prometheus_conn_id": spec["prometheus_conn_id"], "queries": spec["queries"], "window": spec["window"],
        "baseline": spec["baseline"], "policy": spec["policy"], "until": until,
        "poll_interval_s": spec["poll_interval_s"], "query_timeout_s": spec["query_timeout_s"],
    }


def _first_event(trigger: Any, within_s: float) -> dict[str, Any] | None:
    """The event ``trigger`` yields within ``within_s`` when run here, in the task (None: it has none yet, or
    it failed here: the deferred trigger then reads as it always did)."""
    import asyncio
    import logging

    async def first() -> dict[str, Any] | None:
        async for event in trigger.run():
            return event.payload
        return None

    try:
        return asyncio.run(asyncio.wait_for(first(), within_s))
    except TimeoutError:
        return None
    except Exception:
        logging.getLogger(__name__).warning("First reading in the task failed; deferring", exc_info=True)
        return None


class SloGuardSensor(BaseSensorOperator):
    """Watch the SLOs for ``duration_s``; the trigger applies the fault after a healthy first reading,
    reverts it at once on a breach and at the end of the window. Fails unless the window held."""

    template_fields = ("spec", "fault", "duration_s")

    def __init__(self, *, spec: Any, fault: Any, duration_s: Any, **kwargs: Any) -> None:
        """``fault`` is what the inject task returned (its planned ``ledger_id`` and latest start)."""
        super().__init__(**kwargs)
        self.spec = spec
        self.fault = fault
        self.duration_s = duration_s

    def execute(self, context: Any) -> None:
        from resilience.chaos.timeline import REVERT_BUDGET_S
        from resilience.triggers import SloGuardTrigger

        ledger_id = int(self.fault["ledger_id"])
        duration_s = float(self.duration_s)
        latest_start = float(self.fault["latest_start_epoch_s"])
        until = datetime.fromtimestamp(max(latest_start, datetime.now(UTC).timestamp()) + duration_s, UTC)
        self.log.info("Guarding SLOs every %g s: ledger #%d is applied after a healthy first reading, guarded for "
                      "%g s, reverted at once on a breach", self.spec["poll_interval_s"], ledger_id, duration_s)
        trigger = SloGuardTrigger(**_watch_kwargs(self.spec, until), revert_ledger_id=ledger_id,
                                  control_conn_id=self.spec["control_conn_id"], apply_fault=True,
                                  duration_s=duration_s, latest_start_epoch_s=latest_start)
        budget_s = (until - datetime.now(UTC)).total_seconds() + REVERT_BUDGET_S + GRACE_S
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timedelta(seconds=budget_s))

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        context["ti"].xcom_push(key="event", value=event)
        if event.get("injected_at"):
            self._record_fault(context, event)
        status = event["status"]
        if status == "reverted":
            if event["reverted_by"] == "guard_slo":
                raise ChecksFailedError(f"SLO breached: {event['revert_reason']} (reverted by this guard before "
                                        "the triggerer restarted)")
            raise ChecksFailedError(f"the fault was reverted early by {event['reverted_by']}: "
                                    f"{event['revert_reason']}; the experiment did not complete")
        if status == "not_injected":
            raise ChecksFailedError(f"fault not injected: {event['reason']}")
        if status == "inject_failed":
            raise ChecksFailedError(f"inject failed (reverted): {event['error']}")
        if status == "breach":
            revert = event.get("reverted") or {}
            how = f"fault reverted (ledger #{revert.get('ledger_id')})" if "reverted_at" in revert else \
                f"revert in the guard failed: {revert.get('error')}; the revert teardown retries"
            raise ChecksFailedError(f"SLO breached: {event['verdict']['reason']}; {how}")
        self.log.info("SLOs held: %d readings, worst %s", event["readings"], event["worst"])
        return event

    def _record_fault(self, context: Any, event: dict[str, Any]) -> None:
        """The fault step of the campaign record (its window shades the report's charts)."""
        from resilience.journal import Journal

        Journal.for_conn(self.spec["control_conn_id"], context["run_id"]).put(self.fault["scenario"], "fault", {
            "ledger_id": self.fault["ledger_id"], "plan": self.fault["plan"], "injected_at": event["injected_at"],
            "first_reading_at": event.get("first_reading_at"), "revert_info": event.get("revert_info", {})})


class SloRecoverySensor(BaseSensorOperator):
    """After the revert, wait until the SLOs are green again; fail past ``policy.max_recovery_s``."""

    template_fields = ("spec", "reverted")

    def __init__(self, *, spec: Any, reverted: Any, **kwargs: Any) -> None:
        """``reverted`` is what the revert task returned (its ``reverted_at``, epoch s, starts the clock)."""
        super().__init__(**kwargs)
        self.spec = spec
        self.reverted = reverted

    def execute(self, context: Any) -> dict[str, Any] | None:
        from resilience.triggers import SloRecoveryTrigger

        limit_s = float(self.spec["policy"]["max_recovery_s"])
        reverted_at = float(self.reverted["reverted_at"])
        until = datetime.fromtimestamp(reverted_at, UTC) + timedelta(seconds=limit_s)
        trigger = SloRecoveryTrigger(**_watch_kwargs(self.spec, until), reverted_at=reverted_at)
        # the trigger's first reading, taken here: SLOs already green (the common case) end the task without
        # deferring. A trigger that fires within seconds of the deferral races the executor's report of the
        # deferring attempt, and Airflow 3.3 fails the task for it ("finished with state success, but the task
        # instance's state attribute is queued": apache/airflow#67287, #72716)
        event = _first_event(trigger, within_s=float(self.spec["query_timeout_s"]) + FIRST_READING_BUDGET_S)
        if event is not None:
            return self.execute_complete(context, event)
        self.log.info("Waiting for the SLOs to be green again (limit %g s after the revert)", limit_s)
        self.defer(trigger=trigger, method_name="execute_complete", timeout=timedelta(seconds=limit_s + GRACE_S))
        return None

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        context["ti"].xcom_push(key="event", value=event)
        if event["status"] != "ok":
            raise ChecksFailedError(
                f"not recovered within {self.spec['policy']['max_recovery_s']:g} s: {event['verdict']['reason']}")
        self.log.info("Recovered in %.1f s", event["recovery_s"])
        return event


class PrimaryStableSensor(BaseSensorOperator):
    """Failback's first gate: the primary stable for the whole window (Prometheus), deferred while it is not."""

    template_fields = ("spec",)

    def __init__(self, *, spec: Any, **kwargs: Any) -> None:
        """``spec``: ``stability`` of what start_failback returned (queries, window, bounds, timeout)."""
        super().__init__(**kwargs)
        self.spec = spec

    def execute(self, context: Any) -> None:
        from resilience.triggers import PrimaryStableTrigger

        spec = self.spec
        until = datetime.now(UTC) + timedelta(seconds=float(spec["timeout_s"]))
        self.log.info("Waiting until the primary has been stable for %s (checked every %g s, give up at %s)",
                      spec["window"], spec["poll_interval_s"], until.isoformat(timespec="seconds"))
        trigger = PrimaryStableTrigger(
            prometheus_conn_id=spec["prometheus_conn_id"], queries=spec["queries"], window=spec["window"],
            expected_samples=spec["expected_samples"], max_error_rate_pct=spec["max_error_rate_pct"], until=until,
            poll_interval_s=spec["poll_interval_s"], query_timeout_s=spec["query_timeout_s"])
        self.defer(trigger=trigger, method_name="execute_complete",
                   timeout=timedelta(seconds=float(spec["timeout_s"]) + GRACE_S))

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        from resilience.dr import failback

        context["ti"].xcom_push(key="event", value=event)
        failback.record_stability({"params": dict(context["params"])}, context["run_id"], event)
        for check in event["checks"]:
            self.log.info("[%s] %s: %s", "PASS" if check["passed"] else "FAIL", check["name"], check["detail"])
        if event["status"] != "stable":
            raise ChecksFailedError(f"primary not stable for {self.spec['window']} before the timeout: "
                                    + "; ".join(c["detail"] for c in event["checks"] if not c["passed"]))
        return event


class CanaryRampSensor(BaseSensorOperator):
    """The canary ramp back to the primary (the trigger sets weights, analyses, rolls back)."""

    template_fields = ("spec",)

    def __init__(self, *, spec: Any, **kwargs: Any) -> None:
        """``spec``: ``canary`` of what start_failback returned (the trigger's arguments)."""
        super().__init__(**kwargs)
        self.spec = spec

    def execute(self, context: Any) -> None:
        from resilience.triggers import CanaryRampTrigger

        spec = dict(self.spec)
        budget_s = spec.pop("budget_s")
        spec.pop("meta", None)
        self.log.info("Canary ramp %s %% to the primary, %g s per step, rollback after %d failed check(s); "
                      "Route53 zone %s record %s", spec["plan"], spec["interval_s"], spec["threshold"],
                      spec["record"]["zone_id"], spec["record"]["name"])
        self.defer(trigger=CanaryRampTrigger(**spec), method_name="execute_complete",
                   timeout=timedelta(seconds=float(budget_s) + GRACE_S))

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        from resilience.dr import failback

        context["ti"].xcom_push(key="event", value=event)
        failback.record_ramp(dict(context["params"]), context["run_id"], event)
        if event["status"] == "rolled_back":
            raise ChecksFailedError(f"canary rolled back at {event['step']} %: {event['reason']}; "
                                    "all traffic is on DR (weights 0/100)")
        if event["status"] != "completed":
            raise ChecksFailedError(f"canary stopped at {event.get('step')} %: {event.get('error')}")
        self.log.info("Canary ramp completed: all traffic on the primary after %.0f s",
                      event["ended"] - event["started"])
        return event


ADMISSION_WAIT_S = 6 * 3600  # a backstop: the wait ends when a slot frees or the run loses the chaos/DR lock


class InjectFault(BaseOperator):
    """A campaign across services: plan ``scenario`` on ``service`` and write its ledger row when the blast
    radius admits it; while it does not (K faults open, or one on the service or on what it depends on),
    wait in the triggerer holding no worker slot (``BlastRadiusTrigger``), then plan and ask again: another
    fault may have taken the slot first. Once admitted, measure the service's baseline in the same task (one
    scheduling hop less between the slot taken and the guard started). Returns what
    ``chaos.scenario_steps.inject`` returns; the guard's spec is its XCom ``spec``."""

    template_fields = ("run", "scenario", "service")

    def __init__(self, *, run: Any, scenario: Any, service: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run = run
        self.scenario = scenario
        self.service = service

    def execute(self, context: Any) -> dict[str, Any]:
        return self._admit(context, waited_s=0.0)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        self.log.info("Blast-radius wait for %s ended after %.1f s: %s", self.service, event.get("waited_s", 0.0),
                      event.get("reason"))
        return self._admit(context, waited_s=float(event.get("waited_s", 0.0)))

    def _admit(self, context: Any, waited_s: float) -> dict[str, Any]:
        from resilience.chaos import steps
        from resilience.ledger import BlastRadiusRefused
        from resilience.triggers import BlastRadiusTrigger

        run_id = context["run_id"]
        try:
            result = steps.inject(self.run, run_id, context["dag"].dag_id, self.scenario, service=self.service)
        except BlastRadiusRefused as exc:
            self.log.info("%s/%s waits for the blast radius: %s", self.service, self.scenario, exc)
            wait = steps.blast_radius_wait(self.run, run_id, self.service, self.scenario)
            self.defer(trigger=BlastRadiusTrigger(**wait), method_name="execute_complete",
                       timeout=timedelta(seconds=ADMISSION_WAIT_S))
        try:
            spec = steps.baseline(self.run, run_id, self.scenario, self.service)
        except BaseException:
            # a failed setup's teardown does not run: give the slot back here (the fault was never applied)
            steps.revert(self.run, run_id, self.scenario, result, by="inject", service=self.service)
            raise
        context["ti"].xcom_push(key="spec", value=spec)
        return {**result, "admission_wait_s": waited_s}
