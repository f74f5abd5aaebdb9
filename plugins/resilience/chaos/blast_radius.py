"""The blast radius: may one more fault be opened now, or must it wait? A pure decision, no I/O.

The ledger (:meth:`resilience.ledger.Ledger.admit`) reads every open entry inside its admitting transaction,
under one advisory lock, and asks :func:`decide`. The rules, in the order they refuse:

1. an open entry that failed to revert (``revert_failed``), in any environment, stops every inject until
   someone reverts it: something is broken that nobody has looked at;
2. an entry still open in another environment refuses too (one chaos/DR lock for all environments: an
   entry open elsewhere belongs to a run that no longer holds it);
3. at most ``blast_radius`` (K) entries of the environment are open at once, whichever runs opened them;
4. never two open faults on the same service;
5. never two open faults on services that share a dependency (``depends_on``: both would hit it).

A caller that names no service (the single-service campaign) is :data:`DEFAULT_SERVICE` with no
dependencies: with K = 1 (the default) it is admitted exactly when nothing is open, as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_SERVICE = "app"  # the environment's one app: what a campaign that names no service targets
DEFAULT_BLAST_RADIUS = 1
# the Airflow pool of chaos_services' guards (K slots, deferred tasks count): it spreads the work; the ledger is
# the bound, so a pool set larger than K cannot exceed it
POOL = "resilience_blast_radius"


@dataclass(frozen=True)
class OpenFault:
    """A ledger entry not yet reverted, as admission sees it."""

    ledger_id: int
    run_id: str
    environment: str
    scenario: str
    service: str
    depends_on: tuple[str, ...]
    state: str

    def describe(self) -> str:
        return f"ledger #{self.ledger_id} ({self.scenario}, service {self.service}, run {self.run_id}, {self.state})"


@dataclass(frozen=True)
class Admission:
    """The decision: ``admitted``, or why not (``reason``) and which open entries stand in the way."""

    admitted: bool
    reason: str
    blocking: tuple[OpenFault, ...] = ()


def _names(open_faults: Iterable[OpenFault]) -> str:
    return ", ".join(f.describe() for f in open_faults)


def decide(environment: str, service: str, depends_on: Sequence[str], blast_radius: int,
           open_faults: Sequence[OpenFault]) -> Admission:
    """Admit a fault on ``service`` of ``environment`` (which depends on ``depends_on``), given every open
    entry of every environment, or refuse it and say why."""
    if isinstance(blast_radius, bool) or not isinstance(blast_radius, int) or blast_radius < 1:
        raise ValueError(f"blast_radius: {blast_radius!r} must be an integer >= 1")
    if not service:
        raise ValueError("service: must be a non-empty name")
    failed = [f for f in open_faults if f.state == "revert_failed"]
    if failed:
        first = failed[0]
        return Admission(False, f"ledger #{first.ledger_id} ({first.scenario}, run {first.run_id}) is still "
                                "revert_failed: no fault is injected on top of an open one (a failed revert stops "
                                "every inject until it is reverted)", tuple(failed))
    elsewhere = [f for f in open_faults if f.environment != environment]
    if elsewhere:
        return Admission(False, f"{_names(elsewhere)} is still open in environment {elsewhere[0].environment}: no "
                                f"fault is injected in {environment} while another environment has one open",
                         tuple(elsewhere))
    here = [f for f in open_faults if f.environment == environment]
    if len(here) >= blast_radius:
        return Admission(False, f"the blast radius of {environment} is {blast_radius} fault(s) at once and "
                                f"{len(here)} are open: {_names(here)}; {service} waits for one to be reverted",
                         tuple(here))
    same = [f for f in here if f.service == service]
    if same:
        return Admission(False, f"service {service} already has a fault open: {_names(same)}", tuple(same))
    wanted = set(depends_on)
    shared = [f for f in here if wanted & set(f.depends_on)]
    if shared:
        common = sorted(wanted.intersection(*(set(f.depends_on) for f in shared[:1])))
        return Admission(False, f"service {service} shares {', '.join(common)} with a service that has a fault "
                                f"open: {_names(shared)}", tuple(shared))
    return Admission(True, f"{len(here)} of {blast_radius} fault(s) open in {environment}, none on {service} "
                           f"or on what it depends on ({', '.join(sorted(wanted)) or 'nothing'})")


def first_in_line(run_id: str, environment: str, service: str, scenario: str | None, queue: Sequence[Mapping[str, Any]],
                  blast_radius: int, open_faults: Sequence[OpenFault], taken: set[tuple[str, str]]) -> bool:
    """Would ``service``/``scenario`` get a slot free now if its run's targets not yet admitted (``taken``: the
    run's ledger rows) asked in ``queue`` order? Every waiter of the run computes the same answer from the same
    ledger, so a freed slot wakes the one target it goes to instead of every waiter (each wake-up is a task run
    that asks, is refused, defers)."""
    mine = (service, scenario)
    if not any((t["service"], t["scenario"]) == mine for t in queue):
        return True
    opened = list(open_faults)
    for target in queue:
        key = (target["service"], target["scenario"])
        if key in taken or not decide(environment, key[0], target["depends_on"], blast_radius, opened).admitted:
            continue
        if key == mine:
            return True
        opened.append(OpenFault(0, run_id, environment, key[1], key[0], tuple(target["depends_on"]), "injecting"))
    return False
