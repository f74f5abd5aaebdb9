"""Plan mode: what a run would change, call by call, worked out without changing anything.

A fault lists the capability calls its inject and revert make (:class:`PlannedCall`), from its plan
alone; the capability that would serve each call says which requests it would send (the Kubernetes
API paths, verbs and bodies' gist; the lab's processes). A run in plan mode writes both into its
report, so a production run can be reviewed before it is allowed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypedDict, runtime_checkable

if TYPE_CHECKING:
    from resilience.platforms.base import Capability, Platform

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedCall:
    """One call a step would make through the platform: ``capability.intent(**arguments)``."""

    step: str  # inject | revert
    capability: Capability
    intent: str
    arguments: Mapping[str, object]

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        return f"{self.capability}.{self.intent}({args})"


@runtime_checkable
class ExplainsRequests(Protocol):
    """A capability that can say which requests an intent would send, sending none."""

    def requests_for(self, intent: str, arguments: Mapping[str, object]) -> list[str]: ...


def planned_requests(platform: Platform, call: PlannedCall) -> list[str]:
    """The requests ``call`` would send on ``platform`` (building a capability's client sends nothing)."""
    implementation = platform.capability(call.capability)
    if isinstance(implementation, ExplainsRequests):
        return implementation.requests_for(call.intent, call.arguments)
    return [f"{call.describe()} ({type(implementation).__name__} lists no requests for it)"]


class PlannedStep(TypedDict):
    """One call of a plan as the log and the report show it: the step that would make it, where, the call,
    and the requests it would send."""

    step: str
    where: str
    call: str
    requests: list[str]


def plan_document(platform: Platform, calls: list[PlannedCall], where: str) -> list[PlannedStep]:
    """The plan as the report shows it: each call, its step, and the requests it would send."""
    return [PlannedStep(step=c.step, where=where, call=c.describe(), requests=planned_requests(platform, c))
            for c in calls]


def log_plan(what: str, calls: list[PlannedStep]) -> None:
    log.info("Plan mode: %s would make %d call(s); none is made", what, len(calls))
    for number, call in enumerate(calls, start=1):
        log.info("Plan %d. [%s] %s: %s", number, call["step"], call["where"], call["call"])
        for request in call["requests"]:
            log.info("Plan %d.    %s", number, request)
