"""Deferrable triggers that watch Prometheus during chaos (they run in the triggerer).

Each trigger measures and yields exactly one event: ``{"status": "ok" | "breach" | "timeout",
...values}``. Deadlines are absolute UTC datetimes so a restarted triggerer keeps them.
The guard reverts the fault itself on a breach (revert first, then report): going back
through the scheduler to a teardown task would add seconds to every abort.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from resilience.slo import Baseline, SloPolicy, slo_verdict


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


class SloGuardTrigger(_PrometheusWatch):
    """Poll the SLOs while a fault is active; on the first breach revert the fault and report."""

    def __init__(self, *args: Any, revert_ledger_id: int | None = None, control_conn_id: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if revert_ledger_id is not None and not control_conn_id:
            raise ValueError("control_conn_id: required to revert ledger entries on a breach")
        self.revert_ledger_id = revert_ledger_id
        self.control_conn_id = control_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("resilience.triggers.SloGuardTrigger",
                {**self._kwargs(), "revert_ledger_id": self.revert_ledger_id, "control_conn_id": self.control_conn_id})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        count, worst = 0, {}
        async for at, reading, verdict in self._readings():
            count += 1
            for metric, value in reading.to_dict().items():
                if isinstance(value, float):
                    worst[metric] = value if metric not in worst else _worse(metric, worst[metric], value)
            if not verdict.passed:
                self.log.warning("Halt: %s; reverting now", verdict.reason)
                reverted = await self._revert()
                yield TriggerEvent({"status": "breach", "at": at, "reading": reading.to_dict(),
                                    "verdict": verdict.to_dict(), "readings": count, "worst": worst,
                                    "reverted": reverted})
                return
            if datetime.now(UTC) >= self.until:
                self.log.info("SLOs held for the whole fault window (%d readings)", count)
                yield TriggerEvent({"status": "ok", "at": at, "readings": count, "worst": worst,
                                    "verdict": verdict.to_dict()})
                return

    async def _revert(self) -> dict[str, Any] | None:
        if self.revert_ledger_id is None:
            return None
        from resilience.faults.revert import revert_entry

        try:
            closed = await asyncio.to_thread(revert_entry, self.control_conn_id, self.revert_ledger_id, "guard_slo")
            return {"ledger_id": self.revert_ledger_id, "reverted_at": time.time(), "closed_here": closed}
        except Exception as exc:  # reported in the event; the revert teardown tries again
            return {"ledger_id": self.revert_ledger_id, "error": f"{type(exc).__name__}: {exc}"}


class SloRecoveryTrigger(_PrometheusWatch):
    """After the revert: wait for the first all-green reading, or time out at ``until``."""

    def __init__(self, *args: Any, reverted_at: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reverted_at = float(reverted_at)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("resilience.triggers.SloRecoveryTrigger", {**self._kwargs(), "reverted_at": self.reverted_at})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        count, last = 0, None
        async for at, reading, verdict in self._readings():
            count += 1
            last = verdict
            if verdict.passed:
                self.log.info("SLOs green again %.1f s after the revert", at - self.reverted_at)
                yield TriggerEvent({"status": "ok", "at": at, "recovery_s": max(0.0, at - self.reverted_at),
                                    "readings": count, "reading": reading.to_dict()})
                return
            if datetime.now(UTC) >= self.until:
                yield TriggerEvent({"status": "timeout", "at": at, "readings": count, "reading": reading.to_dict(),
                                    "verdict": last.to_dict()})
                return


def _worse(metric: str, a: float, b: float) -> float:
    return min(a, b) if metric == "availability_pct" else max(a, b)
