"""Deferrable triggers that watch Prometheus during chaos (they run in the triggerer).

Each trigger measures and yields exactly one event: ``{"status": "ok" | "breach" | "timeout",
...values}``. Deadlines are absolute UTC datetimes so a restarted triggerer keeps them.
The guard reverts the fault itself on a breach (revert first, then report): going back
through the scheduler to a teardown task would add seconds to every abort.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from resilience.slo import Baseline, Reading, SloPolicy, breached_time, halt, slo_verdict


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None: Prometheus answers NaN for 0/0 (no traffic),
    and a trigger event is stored as JSON(B) in the metadata DB, which refuses NaN (PostgreSQL: the
    triggerer dies on the write and the deferred task never resumes)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _event(payload: dict[str, Any]) -> TriggerEvent:
    return TriggerEvent(json_safe(payload))


def _aware(moment: datetime | str, name: str) -> datetime:
    moment = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    if moment.tzinfo is None:
        raise ValueError(f"{name}: naive datetimes are refused; pass an aware UTC time")
    return moment.astimezone(UTC)


def _positive(value: float, name: str) -> float:
    if not value > 0:
        raise ValueError(f"{name}: {value!r} must be > 0 seconds")
    return float(value)


class _PrometheusWatch(BaseTrigger):
    """What the guard and the recovery watch share: where and how to read the SLOs."""

    def __init__(self, prometheus_conn_id: str, queries: dict[str, str], window: str, baseline: dict[str, float],
                 policy: dict[str, Any], until: datetime | str, poll_interval_s: float = 1.0,
                 query_timeout_s: float = 0.8) -> None:
        super().__init__()
        if not queries:
            raise ValueError("queries: at least one SLO query is required")
        self.prometheus_conn_id = prometheus_conn_id
        self.queries = dict(queries)
        self.window = window
        self.baseline = dict(baseline)
        self.policy = dict(policy)
        self.until = _aware(until, "until")
        self.poll_interval_s = _positive(poll_interval_s, "poll_interval_s")
        self.query_timeout_s = _positive(query_timeout_s, "query_timeout_s")
        Baseline(**self.baseline)  # reject a malformed baseline or policy here, not in the triggerer
        SloPolicy(**self.policy)

    def _kwargs(self) -> dict[str, Any]:
        return {"prometheus_conn_id": self.prometheus_conn_id, "queries": self.queries, "window": self.window,
                "baseline": self.baseline, "policy": self.policy, "until": self.until.isoformat(),
                "poll_interval_s": self.poll_interval_s, "query_timeout_s": self.query_timeout_s}

    async def _readings(self) -> AsyncIterator[tuple[float, Any, Any]]:
        """(epoch s, reading, verdict) every poll interval until ``until``."""
        import aiohttp

        from resilience.prometheus import PrometheusAsyncHook, read_slo_async

        hook = PrometheusAsyncHook(self.prometheus_conn_id)
        baseline, policy = Baseline(**self.baseline), SloPolicy(**self.policy)
        async with aiohttp.ClientSession() as session:
            while True:
                started = time.monotonic()
                reading = await read_slo_async(hook, session, self.queries, self.window, self.query_timeout_s)
                yield time.time(), reading, slo_verdict(reading, baseline, policy)
                await asyncio.sleep(max(0.0, self.poll_interval_s - (time.monotonic() - started)))


INCOMPLETE_FIRST_READINGS = 5  # the guard reads again this many times when a first reading lacks a metric


class SloGuardTrigger(_PrometheusWatch):
    """Poll the SLOs while a fault is active; on the first breach revert the fault and report.

    With ``apply_fault`` the trigger also applies the fault (ledger entry ``revert_ledger_id``)
    once its first reading is in and healthy, and reverts it itself when ``duration_s`` has passed:
    the fault is never on while nothing watches it. A restarted trigger does not apply twice: the
    window is measured from the ledger's ``injected_at``.
    """

    def __init__(self, *args: Any, revert_ledger_id: int | None = None, control_conn_id: str | None = None,
                 apply_fault: bool = False, duration_s: float | None = None,
                 latest_start_epoch_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if revert_ledger_id is not None and not control_conn_id:
            raise ValueError("control_conn_id: required to revert ledger entries on a breach")
        if apply_fault and (revert_ledger_id is None or duration_s is None or latest_start_epoch_s is None):
            raise ValueError("apply_fault: needs revert_ledger_id, duration_s and latest_start_epoch_s")
        self.revert_ledger_id = revert_ledger_id
        self.control_conn_id = control_conn_id
        self.apply_fault = bool(apply_fault)
        self.duration_s = None if duration_s is None else _positive(duration_s, "duration_s")
        self.latest_start_epoch_s = None if latest_start_epoch_s is None else float(latest_start_epoch_s)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("resilience.triggers.SloGuardTrigger",
                {**self._kwargs(), "revert_ledger_id": self.revert_ledger_id, "control_conn_id": self.control_conn_id,
                 "apply_fault": self.apply_fault, "duration_s": self.duration_s,
                 "latest_start_epoch_s": self.latest_start_epoch_s})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        count = 0
        worst: dict[str, float] = {}
        window_end: datetime | None = self.until
        applied: dict[str, Any] = {}
        policy = SloPolicy(**self.policy)
        breached_s = 0.0  # the SLOs' breached time in this window so far (cumulative: see slo.breached_time)
        last_at: float | None = None  # the previous reading of the window
        # no tolerance for a guard that did not see the whole window (resumed after a triggerer restart, or a
        # stretch unwatched): what it tolerated before is unknown, so the first breach it sees halts
        strict = False
        incomplete = 0  # first readings with a metric missing, read again before refusing
        if self.apply_fault:
            injected_at = await self._injected_at()
            window_end = None if injected_at is None else self._window_end(injected_at)
            if injected_at is not None:
                applied, strict = {"injected_at": injected_at, "resumed": True}, True
                self.log.info("Resuming the guard of ledger #%s (applied at %s)", self.revert_ledger_id,
                              datetime.fromtimestamp(injected_at, UTC))
        async for at, reading, verdict in self._readings():
            count += 1
            for metric, value in reading.to_dict().items():
                if isinstance(value, float):
                    worst[metric] = value if metric not in worst else _worse(metric, worst[metric], value)
            closed, gap_s = await self._watch_ledger(at)
            if gap_s is not None and gap_s > self._max_gap_s() and window_end is not None:
                # the triggerer died or stalled with the fault on: that stretch was not watched
                applied["unguarded_s"] = max(gap_s, applied.get("unguarded_s", 0.0))
                strict = True
                self.log.warning("The guard did not watch ledger #%s for %.1f s (triggerer restarted or stalled)",
                                 self.revert_ledger_id, gap_s)
            if closed:  # an abort, a sweep, or this guard before a triggerer restart: the ledger has the truth
                self.log.warning("Ledger #%s was reverted by %s (%s): the guard stops", self.revert_ledger_id,
                                 closed["reverted_by"], closed["revert_reason"])
                yield _event({"status": "reverted", "at": at, "readings": count, "worst": worst, **applied,
                                    **closed})
                return
            if window_end is None:  # the fault is not on yet: this is the first reading
                refusal = self._start_refusal(at, verdict)
                if refusal and reading.missing and incomplete < INCOMPLETE_FIRST_READINGS and \
                        (self.latest_start_epoch_s is None or at <= self.latest_start_epoch_s):
                    # no data is not bad data: a slow Prometheus (a loaded machine) is read again before the
                    # fault is refused; nothing is on yet, and the latest start still bounds the wait
                    incomplete += 1
                    self.log.warning("First reading incomplete (%s): reading again before applying", refusal)
                    continue
                if refusal:
                    self.log.warning("Not injecting: %s", refusal)
                    await self._revert(refusal, by="guard_steady_state")
                    yield _event({"status": "not_injected", "at": at, "reason": refusal,
                                        "reading": reading.to_dict(), "readings": count})
                    return
                try:
                    applied = await asyncio.to_thread(_apply, *self._entry())
                except Exception as exc:  # apply_entry reverted what it did before raising
                    yield _event({"status": "inject_failed", "at": at, "error": f"{type(exc).__name__}: {exc}",
                                        "readings": count})
                    return
                applied["first_reading_at"] = at
                window_end = self._window_end(applied["injected_at"])
                last_at = time.time()  # applying took a while: the next gap, and the breach clock, start now
                await self._watch_ledger(last_at)
                self.log.info("Steady state held (%s); fault applied, guarding until %s", verdict.reason,
                              window_end.isoformat(timespec="seconds"))
                continue
            interval = self.poll_interval_s if last_at is None else min(max(0.0, at - last_at), self._max_gap_s())
            last_at, was_breached = at, breached_s > 0
            breached_s = breached_time(verdict.passed, breached_s, interval)
            if breached_s:
                applied["breached_s"] = round(breached_s, 1)
            if halt(verdict.passed, breached_s, policy) or (strict and not verdict.passed):
                reason = verdict.reason if not policy.max_breach_s else \
                    f"{verdict.reason} (SLOs broken {breached_s:.0f} s of the {policy.max_breach_s:g} s tolerated" \
                    + ("; none after a gap in the guard's watch)" if strict else ")")
                self.log.warning("Halt: %s; reverting now", reason)
                reverted = await self._revert(reason)
                yield _event({"status": "breach", "at": at, "reading": reading.to_dict(),
                                    "verdict": verdict.to_dict(), "readings": count, "worst": worst,
                                    "reverted": reverted, "max_breach_s": policy.max_breach_s, **applied})
                return
            if not verdict.passed and not was_breached:
                self.log.warning("SLO broken (%s): tolerated for up to %g s in all (max_breach_s) before halting",
                                 verdict.reason, policy.max_breach_s)
            if datetime.now(UTC) >= window_end:
                tolerated = f"; broken {breached_s:.0f} s in all, tolerated" if breached_s else ""
                self.log.info("SLOs held for the whole fault window (%d readings%s)", count, tolerated)
                reverted = await self._revert("the fault window ended", by="guard_window_end") \
                    if self.apply_fault else None
                # still broken as the window ends: the verdict adds the recovery to the breached time
                yield _event({"status": "ok", "at": at, "readings": count, "worst": worst,
                                    "verdict": verdict.to_dict(), "window_reverted": reverted,
                                    "max_breach_s": policy.max_breach_s, "breached_at_end": not verdict.passed,
                                    **applied})
                return

    def _start_refusal(self, at: float, verdict: Any) -> str | None:
        """Why the fault must not go on now (None: apply it): Chaos Toolkit's steady state before the method."""
        if not verdict.passed:
            return f"steady state not met before the fault: {verdict.reason}"
        if self.latest_start_epoch_s is not None and at > self.latest_start_epoch_s:
            return (f"the guard started {at - self.latest_start_epoch_s:.0f} s after the fault's latest start: its "
                    "planned window (and the platform's dead-man switch) no longer fits")
        return None

    async def _injected_at(self) -> float | None:
        from resilience.ledger import ledger_for

        control_conn_id, ledger_id = self._entry()
        entry = await asyncio.to_thread(ledger_for(control_conn_id).get, ledger_id)
        return entry.injected_at.timestamp() if entry.state != "injecting" and entry.injected_at else None

    def _entry(self) -> tuple[str, int]:
        """(control_conn_id, revert_ledger_id): the ledger entry this guard applies, watches and reverts."""
        if not self.control_conn_id or self.revert_ledger_id is None:
            raise ValueError("revert_ledger_id and control_conn_id: required to apply, watch or revert a fault")
        return self.control_conn_id, self.revert_ledger_id

    def _window_end(self, injected_at: float) -> datetime:
        """When the fault applied at ``injected_at`` (epoch s) has been on for ``duration_s``."""
        if self.duration_s is None:
            raise ValueError("duration_s: required with apply_fault")
        return datetime.fromtimestamp(injected_at + self.duration_s, UTC)

    def _max_gap_s(self) -> float:
        """Longest pause between two readings that still counts as watched (a slow query, a busy loop)."""
        return max(3 * self.poll_interval_s, 3.0)

    async def _watch_ledger(self, at: float) -> tuple[dict[str, Any] | None, float | None]:
        """Record this reading in the ledger; (who reverted the fault if it is closed, seconds since the
        previous reading of any guard of it). (None, None) when the ledger cannot be read."""
        if self.revert_ledger_id is None:
            return None, None
        try:
            return await asyncio.to_thread(ledger_watch, *self._entry(), at)
        except Exception as exc:  # the guard goes on: the Prometheus readings still protect the system
            self.log.warning("Could not read ledger #%s: %s", self.revert_ledger_id, exc)
            return None, None

    async def _revert(self, reason: str, by: str = "guard_slo") -> dict[str, Any] | None:
        if self.revert_ledger_id is None:
            return None
        from resilience.faults.revert import revert_entry

        try:
            closed = await asyncio.to_thread(revert_entry, *self._entry(), by, reason)
            return {"ledger_id": self.revert_ledger_id, "reverted_at": time.time(), "closed_here": closed}
        except Exception as exc:  # reported in the event; the revert teardown tries again
            return {"ledger_id": self.revert_ledger_id, "error": f"{type(exc).__name__}: {exc}"}


def _apply(control_conn_id: str, ledger_id: int) -> dict[str, Any]:
    from resilience.faults.apply import apply_entry

    return apply_entry(control_conn_id, ledger_id, "guard_slo")


def ledger_watch(control_conn_id: str, ledger_id: int, at: float) -> tuple[dict[str, Any] | None, float | None]:
    """Mark the fault watched now; (``{"reverted_by", "revert_reason", "reverted_at"}`` once it is
    reverted else None, seconds since the previous reading or None for the first)."""
    from resilience.ledger import ledger_for

    state, reverted_by, reason, reverted_at, previous = ledger_for(control_conn_id).guard_seen(ledger_id)
    closed = {"reverted_by": reverted_by, "revert_reason": reason, "reverted_at": reverted_at} \
        if state == "reverted" else None
    return closed, None if previous is None else max(0.0, at - previous)


class SloRecoveryTrigger(_PrometheusWatch):
    """After the revert: wait for the first all-green reading, or time out at ``until``."""

    def __init__(self, *args: Any, reverted_at: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reverted_at = float(reverted_at)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("resilience.triggers.SloRecoveryTrigger", {**self._kwargs(), "reverted_at": self.reverted_at})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if (recorded := await self._green_since_revert()) is not None:
            at, reading = recorded
            self.log.info("SLOs green again %.1f s after the revert (from Prometheus' record: this watch started "
                          "%.0f s after the revert)", at - self.reverted_at, time.time() - self.reverted_at)
            yield _event({"status": "ok", "at": at, "recovery_s": max(0.0, at - self.reverted_at), "readings": 0,
                          "reading": reading.to_dict(), "from_record": True})
            return
        count, last = 0, None
        async for at, reading, verdict in self._readings():
            count += 1
            last = verdict
            if verdict.passed:
                self.log.info("SLOs green again %.1f s after the revert", at - self.reverted_at)
                yield _event({"status": "ok", "at": at, "recovery_s": max(0.0, at - self.reverted_at),
                                    "readings": count, "reading": reading.to_dict()})
                return
            if datetime.now(UTC) >= self.until:
                yield _event({"status": "timeout", "at": at, "readings": count, "reading": reading.to_dict(),
                                    "verdict": last.to_dict()})
                return


    async def _green_since_revert(self) -> tuple[float, Reading] | None:
        """The first green reading Prometheus recorded between the revert and now, when this watch starts
        late (a busy scheduler, a restarted triggerer): the recovery is when the service recovered, not
        when Airflow got round to looking. None: none recorded (or not late), the live readings decide."""
        import aiohttp

        from resilience.prometheus import PrometheusAsyncHook, read_slo_history_async

        now = time.time()
        if now - self.reverted_at < 2 * self.poll_interval_s:
            return None
        start, end = self.reverted_at + self.poll_interval_s, min(now, self.until.timestamp())
        if end <= start:
            return None
        baseline, policy = Baseline(**self.baseline), SloPolicy(**self.policy)
        async with aiohttp.ClientSession() as session:
            history = await read_slo_history_async(
                PrometheusAsyncHook(self.prometheus_conn_id), session, self.queries, self.window, start, end,
                self.poll_interval_s, max(self.query_timeout_s, 5.0))
        return next(((at, reading) for at, reading in history if slo_verdict(reading, baseline, policy).passed),
                    None)


def resume_plan(plan: list[int], current_primary: int) -> list[int]:
    """The steps still to run: from the first one at or above the primary's current weight.

    A fresh ramp (primary at 0) runs the whole plan; a trigger restarted mid-ramp (the triggerer
    was replaced) re-analyses the step it was on instead of dropping the primary back to 10 %.
    """
    return plan[next((i for i, w in enumerate(plan) if w >= current_primary), len(plan) - 1):]


ROLLBACK_REASON = "rollback at step {step} %: {reason}"  # how a canary rollback reads in dns_changes


def _rolled_back_before(changes: list[dict[str, Any]], current_primary: int) -> dict[str, Any] | None:
    """This run's earlier rollback, from its audited weight changes (pure): the change whose reason says
    so, or, when the run moved the weights and the primary is at 0 again, a rollback whose audit row was
    lost (or an operator's move back to DR). A re-ramp would undo either."""
    prefix = ROLLBACK_REASON.partition("{")[0]
    for change in reversed(changes):
        if change["reason"].startswith(prefix):
            step, _, reason = change["reason"][len(prefix):].partition(" %: ")
            return {"step": int(step) if step.isdigit() else None, "reason": reason, "at": change["at"]}
    if changes and current_primary == 0:
        return {"step": changes[-1]["after"].get("primary"), "at": changes[-1]["at"],
                "reason": f"this run moved traffic ({changes[-1]['reason']}) and the primary is at 0 again"}
    return None


def _dns_log(control_conn_id: str) -> Any:
    from resilience.dr.region_state import DnsLog

    return DnsLog.for_conn(control_conn_id)


def _worse(metric: str, a: float, b: float) -> float:
    return min(a, b) if metric == "availability_pct" else max(a, b)


# -- failback: the primary's stability, then the canary ramp ----------------------------------


class PrimaryStableTrigger(BaseTrigger):
    """Poll until Prometheus shows the primary stable over the whole window, or time out at ``until``."""

    def __init__(self, prometheus_conn_id: str, queries: dict[str, str], window: str, expected_samples: float,
                 max_error_rate_pct: float, until: datetime | str, poll_interval_s: float = 30.0,
                 query_timeout_s: float = 10.0) -> None:
        super().__init__()
        if set(queries) != {"up_min", "samples", "error_rate_max"}:
            raise ValueError(f"queries: {sorted(queries)} must be up_min, samples and error_rate_max")
        self.prometheus_conn_id = prometheus_conn_id
        self.queries = dict(queries)
        self.window = window
        self.expected_samples = float(expected_samples)
        self.max_error_rate_pct = float(max_error_rate_pct)
        self.until = _aware(until, "until")
        self.poll_interval_s = _positive(poll_interval_s, "poll_interval_s")
        self.query_timeout_s = _positive(query_timeout_s, "query_timeout_s")

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("resilience.triggers.PrimaryStableTrigger", {
            "prometheus_conn_id": self.prometheus_conn_id, "queries": self.queries, "window": self.window,
            "expected_samples": self.expected_samples, "max_error_rate_pct": self.max_error_rate_pct,
            "until": self.until.isoformat(), "poll_interval_s": self.poll_interval_s,
            "query_timeout_s": self.query_timeout_s})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import aiohttp

        from resilience.canary import stability_checks
        from resilience.prometheus import PrometheusAsyncHook, read_values_async

        hook = PrometheusAsyncHook(self.prometheus_conn_id)
        polls = 0
        async with aiohttp.ClientSession() as session:
            while True:
                polls += 1
                values, errors = await read_values_async(hook, session, self.queries, self.query_timeout_s)
                checks = stability_checks(values, self.expected_samples, self.max_error_rate_pct, self.window)
                result = {"at": time.time(), "polls": polls, "values": values, "errors": errors,
                          "checks": [c.to_dict() for c in checks]}
                if all(c.passed for c in checks):
                    self.log.info("Primary stable over %s after %d poll(s)", self.window, polls)
                    yield _event({"status": "stable", **result})
                    return
                if datetime.now(UTC) >= self.until:
                    yield _event({"status": "timeout", **result})
                    return
                self.log.info("Primary not yet stable over %s: %s", self.window,
                              "; ".join(c.detail for c in checks if not c.passed))
                await asyncio.sleep(self.poll_interval_s)


class CanaryRampTrigger(BaseTrigger):
    """Move traffic back to the primary step by step, analysing each step (Flagger's loop).

    Per step: UPSERT the weights, then for ``interval_s`` read both regions every poll; each
    reading is a gate check. The error rate counts at every reading; the other metrics (p95) count
    once per interval, at its end (Flagger's schedule; ``canary.PER_POLL_METRICS``): a broken release
    is rolled back within seconds, a cold primary's first slow requests do not roll back a healthy one.
    During ``warmup_s`` (one rate window and two scrapes: the new weight must reach the metrics) a
    reading with no data is not counted, but a bad value is. A step advances at the end of its
    interval if its last check passed; a failed check holds it; ``threshold`` failed checks roll all
    traffic back to DR at once, here, before the event is yielded. Every weight change is in the event
    for the audit trail and, with ``audit`` (``control_conn_id``, ``run_id``, ``dag_id``, ``zone``,
    ``record``), written to ``dns_changes`` the moment Route53 accepted it. A restarted trigger resumes
    at the step the weights show (:func:`resume_plan`), unless this run already rolled back: then it
    stays rolled back and yields ``rolled_back`` again (a fresh ramp also starts with the primary at 0,
    so the weights alone cannot tell).
    """

    def __init__(self, aws_conn_id: str, record: dict[str, Any], plan: list[int], interval_s: float,
                 warmup_s: float, threshold: int, prometheus_conn_id: str, primary_queries: dict[str, str],
                 dr_queries: dict[str, str], policy: dict[str, float], poll_interval_s: float = 1.0,
                 query_timeout_s: float = 0.8, audit: dict[str, str] | None = None) -> None:
        super().__init__()
        from resilience.canary import FailbackPolicy, ramp_plan
        from resilience.dns import WeightedRecord

        self.record = WeightedRecord.from_dict(record).to_dict()  # checked, and JSON-safe for serialize()
        self.plan = list(ramp_plan(plan))
        self.interval_s = _positive(interval_s, "interval_s")
        self.warmup_s = float(warmup_s)
        if not 0 <= self.warmup_s < self.interval_s:
            raise ValueError(f"warmup_s: {warmup_s!r} must be >= 0 and shorter than interval_s ({interval_s})")
        if threshold < 1:
            raise ValueError(f"threshold: {threshold!r} must be >= 1")
        self.threshold = int(threshold)
        self.aws_conn_id = aws_conn_id
        self.prometheus_conn_id = prometheus_conn_id
        self.primary_queries = dict(primary_queries)
        self.dr_queries = dict(dr_queries)
        self.policy = dict(policy)
        FailbackPolicy(**self.policy)
        self.poll_interval_s = _positive(poll_interval_s, "poll_interval_s")
        self.query_timeout_s = _positive(query_timeout_s, "query_timeout_s")
        audit_keys = {"control_conn_id", "run_id", "dag_id", "zone", "record"}
        if audit is not None and (set(audit) != audit_keys
                                  or not all(isinstance(v, str) and v for v in audit.values())):
            raise ValueError(f"audit: {audit!r} must give {sorted(audit_keys)} as non-empty strings")
        self.audit = dict(audit) if audit is not None else None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("resilience.triggers.CanaryRampTrigger", {"audit": self.audit,
            "aws_conn_id": self.aws_conn_id, "record": self.record, "plan": self.plan, "interval_s": self.interval_s,
            "warmup_s": self.warmup_s, "threshold": self.threshold, "prometheus_conn_id": self.prometheus_conn_id,
            "primary_queries": self.primary_queries, "dr_queries": self.dr_queries, "policy": self.policy,
            "poll_interval_s": self.poll_interval_s, "query_timeout_s": self.query_timeout_s})

    def _current_primary_weight(self) -> int:
        from resilience.dns import Route53Weights, WeightedRecord

        return Route53Weights(self.aws_conn_id, WeightedRecord.from_dict(self.record)).weights()["primary"]

    async def _set_weights(self, primary: int, reason: str, changes: list[dict[str, Any]]) -> None:
        from resilience.dns import Route53Weights, WeightedRecord

        dns = Route53Weights(self.aws_conn_id, WeightedRecord.from_dict(self.record))
        before = await asyncio.to_thread(dns.weights)
        after = await asyncio.to_thread(dns.set_weights, primary, 100 - primary)
        change = {"at": time.time(), "before": before, "after": after, "reason": reason, "audited": False}
        changes.append(change)
        if self.audit:  # at the moment it happened: a restarted trigger reads it back
            a = self.audit
            try:
                await asyncio.to_thread(_dns_log(a["control_conn_id"]).record, a["run_id"], a["dag_id"], a["zone"],
                                        a["record"], before, after, reason)
                change["audited"] = True
            except Exception as exc:  # the weights did change: the task audits it from the event instead
                self.log.error("Auditing the weight change in dns_changes failed: %s: %s", type(exc).__name__, exc)

    async def _earlier_rollback(self, current_primary: int) -> dict[str, Any] | None:
        if not self.audit:
            return None
        changes = await asyncio.to_thread(_dns_log(self.audit["control_conn_id"]).for_run, self.audit["run_id"])
        return _rolled_back_before(changes, current_primary)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import aiohttp

        from resilience.canary import PER_POLL_METRICS, FailbackPolicy, canary_gate, failback_ranges, only_no_data
        from resilience.prometheus import PrometheusAsyncHook, read_values_async

        hook, policy = PrometheusAsyncHook(self.prometheus_conn_id), FailbackPolicy(**self.policy)
        changes: list[dict[str, Any]] = []
        samples: list[dict[str, Any]] = []
        analyses: list[dict[str, Any]] = []
        failed = 0
        started = time.time()

        def event(status: str, **extra: Any) -> TriggerEvent:
            return _event({"status": status, "started": started, "ended": time.time(), "plan": self.plan,
                           "failed_checks": failed, "changes": changes, "samples": samples,
                           "analyses": analyses, **extra})

        try:
            current = await asyncio.to_thread(self._current_primary_weight)
            earlier = await self._earlier_rollback(current)
        except Exception as exc:
            yield event("error", step=None, error=f"reading the weights or this run's DNS changes failed: "
                                                  f"{type(exc).__name__}: {exc}")
            return
        if earlier is not None:
            self.log.warning("This run already rolled back at %s %% (%s): staying rolled back, primary at %d %%",
                             earlier["step"], earlier["reason"], current)
            if current != 0:  # someone moved traffic since: the rollback still stands
                try:
                    await self._set_weights(0, ROLLBACK_REASON.format(step=earlier["step"], reason=earlier["reason"]),
                                            changes)
                except Exception as exc:
                    yield event("error", step=earlier["step"], reason=earlier["reason"],
                                error=f"rollback to DR failed: {type(exc).__name__}: {exc}")
                    return
            yield event("rolled_back", step=earlier["step"], reason=earlier["reason"], resumed=True)
            return
        steps = resume_plan(self.plan, current)
        if steps != self.plan:
            self.log.info("Resuming the ramp at %d %% (the weights say an earlier run got there)", steps[0])
        async with aiohttp.ClientSession() as session:
            for weight in steps:
                try:
                    await self._set_weights(weight, f"canary step {weight} %", changes)
                except Exception as exc:  # no weights, no analysis: stop where DR still has the rest
                    yield event("error", step=weight, error=f"setting weights failed: {type(exc).__name__}: {exc}")
                    return
                self.log.info("Canary step: primary %d %%, DR %d %%; analysing for %g s", weight, 100 - weight,
                              self.interval_s)
                step_start = time.monotonic()
                last_action = "hold"
                full_check_at = self.interval_s  # the step's next check of every metric (elapsed s)
                while True:
                    await asyncio.sleep(self.poll_interval_s)
                    elapsed = time.monotonic() - step_start
                    primary, dr = await asyncio.gather(
                        read_values_async(hook, session, self.primary_queries, self.query_timeout_s),
                        read_values_async(hook, session, self.dr_queries, self.query_timeout_s))
                    samples.append({"at": time.time(), "weight": weight, "primary": primary[0], "dr": dr[0]})
                    full = elapsed >= full_check_at
                    decision = canary_gate(failback_ranges(dr[0], policy), primary[0], failed, self.threshold,
                                           None if full else PER_POLL_METRICS)
                    if elapsed < self.warmup_s and decision.action != "advance" and only_no_data(decision):
                        continue  # the new weight has not reached the rate window yet: no data is expected
                    if full:
                        full_check_at += self.interval_s
                    failed, last_action = decision.failed_checks, decision.action
                    analyses.append({"at": time.time(), "weight": weight, "action": decision.action,
                                     "failed_checks": failed, "checks": [c.to_dict() for c in decision.checks]})
                    if decision.action == "rollback":
                        self.log.warning("Halt at %d %%: %s; rolling all traffic back to DR", weight,
                                         decision.reason)
                        try:
                            await self._set_weights(0, ROLLBACK_REASON.format(step=weight, reason=decision.reason),
                                                    changes)
                        except Exception as exc:
                            yield event("error", step=weight, reason=decision.reason,
                                        error=f"rollback to DR failed: {type(exc).__name__}: {exc}")
                            return
                        yield event("rolled_back", step=weight, reason=decision.reason)
                        return
                    if decision.action == "hold":
                        self.log.warning("Check failed at %d %% (%d of %d): %s", weight, failed, self.threshold,
                                         decision.reason)
                    if elapsed >= self.interval_s and last_action == "advance":
                        break
        yield event("completed", step=self.plan[-1])


# a waiter admissible now but behind others of its run that the blast radius would admit first still fires
# after this long: one of those may never ask (its inject failed before it wrote its row)
QUEUE_GRACE_S = 60.0
# a wait never ends sooner than this after it started: an event within a second or two of the deferral races
# the executor's report of the deferring attempt, and Airflow 3.3 then fails the resumed task ("finished with
# state success, but the task instance's state attribute is queued": apache/airflow#67287, #72716)
DEFERRAL_SETTLE_S = 5.0


def _slot_now(control_conn_id: str, run_id: str, environment: str, service: str, depends_on: list[str],
              blast_radius: int, scenario: str | None = None,
              queue: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The blast-radius wait's one poll: an event when the fault may be admitted now, or must never be (the
    run lost the chaos/DR lock); ``{"status": "behind"}`` when a slot is free but goes to a target ahead in
    ``queue``; None while it must wait."""
    from resilience.chaos.blast_radius import decide, first_in_line
    from resilience.ledger import ledger_for

    ledger = ledger_for(control_conn_id)
    stop = ledger.still_admitted(run_id)
    if stop:
        return {"status": "stopped", "reason": stop}
    opened = ledger.open_faults()  # one read per poll, for the admission and for the queue
    admission = decide(environment, service, depends_on, blast_radius, opened)
    if not admission.admitted:
        return None
    if queue:
        taken = {(e.service, e.scenario) for e in ledger.entries(run_id)}
        if not first_in_line(run_id, environment, service, scenario, queue, blast_radius, opened, taken):
            return {"status": "behind", "reason": admission.reason}
    return {"status": "free", "reason": admission.reason}


class BlastRadiusTrigger(BaseTrigger):
    """Wait, holding no worker slot, until the ledger would admit a fault on ``service``: fewer than
    ``blast_radius`` faults open in ``environment``, none on the service or on what it depends on. Read
    only: the inject admits (in its own transaction) when the task resumes, and waits again when another
    run took the slot first. With ``queue`` (the run's targets in order: service, scenario, depends_on) a
    free slot goes to the first target of the run it would admit, and only that waiter fires (the others
    after ``QUEUE_GRACE_S`` of a slot free for them but taken by nobody). Yields ``free`` or ``stopped`` (the
    run no longer holds the chaos/DR lock)."""

    def __init__(self, control_conn_id: str, run_id: str, environment: str, service: str,
                 depends_on: list[str], blast_radius: int, poll_interval_s: float, scenario: str | None = None,
                 queue: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.control_conn_id = control_conn_id
        self.run_id = run_id
        self.environment = environment
        self.service = service
        self.depends_on = list(depends_on)
        self.blast_radius = int(blast_radius)
        self.poll_interval_s = _positive(poll_interval_s, "poll_interval_s")
        self.scenario = scenario
        self.queue = [{"service": t["service"], "scenario": t["scenario"], "depends_on": list(t["depends_on"])}
                      for t in queue or []]

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("resilience.triggers.BlastRadiusTrigger",
                {"control_conn_id": self.control_conn_id, "run_id": self.run_id, "environment": self.environment,
                 "service": self.service, "depends_on": self.depends_on, "blast_radius": self.blast_radius,
                 "poll_interval_s": self.poll_interval_s, "scenario": self.scenario, "queue": self.queue})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        started = time.monotonic()
        behind_since: float | None = None
        while True:
            try:
                found = await asyncio.to_thread(_slot_now, self.control_conn_id, self.run_id, self.environment,
                                                self.service, self.depends_on, self.blast_radius, self.scenario,
                                                self.queue)
            except Exception as exc:  # the control database blinked: keep waiting, the inject decides anyway
                self.log.warning("Blast-radius wait for %s: the ledger could not be read (%s); retrying", self.service,
                                 exc)
                found = None
            if found is not None and found["status"] == "behind":
                behind_since = behind_since or time.monotonic()
                found = None if time.monotonic() - behind_since < QUEUE_GRACE_S else {**found, "status": "free"}
            elif found is None:
                behind_since = None
            if found is not None:
                await asyncio.sleep(max(0.0, started + DEFERRAL_SETTLE_S - time.monotonic()))
                yield _event({**found, "waited_s": round(time.monotonic() - started, 3)})
                return
            await asyncio.sleep(self.poll_interval_s)
