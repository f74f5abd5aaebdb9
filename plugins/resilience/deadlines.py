"""Deadline Alerts that follow the run: Slack hears of a run still going at queued_at + its own RTO target.

Airflow's ``DAGRUN_QUEUED_AT`` reference adds one fixed ``interval``, set at parse time, so a drill run
with ``rto_target: 10`` was alerted at the default 30 min. ``QueuedAtPlusParamMinutes`` is a custom
deadline reference (Airflow 3.3's ``BaseDeadlineReference``, registered through the plugin's
``deadline_references``): when the run is created (by the scheduler, or by the API server for a triggered
run) it evaluates to the run's ``queued_at`` plus the minutes its conf gives the Param (the Param's default
when the conf has none), and the alert's interval is 0. The deadline row then holds an absolute UTC time;
the scheduler fires it and drops it when the run ends in time, exactly as for the built-in references.

Why not a watchdog task deferred until queued_at + target: the run could not end before its watchdog
(a run is done when all its tasks are), so every run in time would need the watchdog cancelled, and a
cleared or failed watchdog would lose the alert; the deadline table is what the scheduler already owns.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk.definitions.deadline import REFERENCE_TYPE_FIELD, BaseDeadlineReference

if TYPE_CHECKING:
    from airflow.sdk import Param
    from airflow.sdk.definitions.deadline import DeadlineAlert
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

RTO_PARAM = "rto_target"


def target_minutes(conf: Mapping[str, Any] | None, param: str, default_min: float) -> float:
    """The run's target in minutes: its conf's ``param`` when a number > 0, else the Param's default.

    The run's Params were validated against their schema when it was created; anything else (an old conf,
    a hand-edited row) falls back to the default rather than leaving the run without a deadline."""
    value = (conf or {}).get(param)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return float(default_min)
    return float(value)


def deadline_at(queued_at: datetime, minutes: float) -> datetime:
    """When a run queued at ``queued_at`` with a target of ``minutes`` has missed it."""
    return queued_at + timedelta(minutes=minutes)


def _moment(value: object) -> datetime | None:
    """A time the scheduler hands a callback: a datetime, or its ISO 8601 text in the JSON dump of the run."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None


def ended_before_deadline(end_date: object, deadline_time: object) -> bool:
    """Whether a run whose deadline the scheduler reports missed had in fact ended before it.

    Airflow drops the deadline of a run that *succeeded* in time but fires a failed run's anyway: that run
    was not "still running past its target", and its own failure report has gone out already."""
    end, due = _moment(end_date), _moment(deadline_time)
    return end is not None and due is not None and end <= due


@dataclass(frozen=True)  # hashable: Airflow hashes the references it wraps
class QueuedAtPlusParamMinutes(BaseDeadlineReference):
    """Deadline reference: the run's ``queued_at`` + its ``param`` in minutes (``default_min`` when unset).

    Used with ``interval=timedelta(0)``. Fields have defaults: Airflow builds a registered reference with no
    arguments to check it."""

    param: str = RTO_PARAM
    default_min: float = 30.0
    required_kwargs: ClassVar[set[str]] = {"dag_id", "run_id"}  # what the scheduler passes to _evaluate_with

    def serialize_reference(self) -> dict[str, Any]:
        return {REFERENCE_TYPE_FIELD: self.reference_name, "param": self.param, "default_min": self.default_min}

    @classmethod
    def deserialize_reference(cls, reference_data: dict[str, Any]) -> QueuedAtPlusParamMinutes:
        return cls(param=str(reference_data["param"]), default_min=float(reference_data["default_min"]))

    def _evaluate_with(self, *, session: Session, dag_id: str, run_id: str, **_: object) -> datetime | None:
        """Runs in the scheduler / API server, in the session that is creating the run."""
        from airflow.models import DagRun
        from sqlalchemy import select

        row = session.execute(select(DagRun.queued_at, DagRun.conf)
                              .where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).one_or_none()
        if row is None or row.queued_at is None:
            log.warning("No deadline for %s run %s: the run has no queued_at yet", dag_id, run_id)
            return None
        minutes = target_minutes(row.conf, self.param, self.default_min)
        log.info("Deadline of %s run %s: queued %s + %s %g min", dag_id, run_id, row.queued_at, self.param, minutes)
        return deadline_at(row.queued_at, minutes)


# What the alert's callback needs of the form: where the run acts and its target (the defaults, for a run
# whose conf leaves them out).
ALERT_PARAMS = ("environment", RTO_PARAM)


def rto_deadline_alert(callback_path: str, params: Mapping[str, Param]) -> DeadlineAlert:
    """The DAG's Deadline Alert: ``callback_path`` (a coroutine in the library, run by the triggerer) fires
    when a run is still going at its queued_at + its ``rto_target`` Param; ``params`` is the DAG's form."""
    from airflow.sdk import AsyncCallback, DeadlineAlert  # type: ignore[attr-defined]  # not in the sdk's .pyi

    defaults = {name: params[name].value for name in ALERT_PARAMS}
    return DeadlineAlert(
        reference=QueuedAtPlusParamMinutes(RTO_PARAM, float(defaults[RTO_PARAM])),
        interval=timedelta(0),
        callback=AsyncCallback(callback_path, kwargs={"param_defaults": defaults}),
    )
