"""Graceful shutdown of a demo-app replica: leave the load balancers first, then finish in-flight work.

Kubernetes removes a terminating pod from its Service's endpoints while the pod gets SIGTERM; the
two race, so a pod that closes its listener at once still loses requests routed to it. The lab
makes the order explicit instead of sleeping: each load balancer's readiness probe says whether it
routes new requests to this replica (``X-LB-Routing: on|off``, from the balancer named in
``X-LB-Name``). On SIGTERM the replica answers ``/health`` 503 while still serving, and closes its
listener only once every balancer that probed it recently says ``off`` (bounded). Then it waits
for the requests it already accepted to finish (bounded), and exits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

LB_NAME_HEADER = "X-LB-Name"
LB_ROUTING_HEADER = "X-LB-Routing"  # "on": this balancer sends new requests here; "off": it stopped
LB_GONE_AFTER_S = 3.0  # a balancer silent this long (6 of its 0.5 s probes) is gone: not waited for


def still_routing(views: dict[str, tuple[float, bool]], now: float, gone_after_s: float = LB_GONE_AFTER_S) -> list[str]:
    """Balancers that, at their last probe, still routed new requests here and probed recently.

    ``views``: balancer name -> (monotonic time of its last probe, routing flag it sent)."""
    return sorted(lb for lb, (seen_at, routing) in views.items() if routing and now - seen_at < gone_after_s)


class Drain:
    """What the replica knows about its balancers and its in-flight requests (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._views: dict[str, tuple[float, bool]] = {}
        self._in_flight = 0
        self.draining = False

    def probe(self, lb: str, routing: bool) -> bool:
        """A readiness probe from balancer ``lb`` saying whether it routes here: answer ready (True) or not.

        A ready answer makes the balancer route here from now on, whatever the probe said, so the view
        is ``routing or ready``; decided under the lock, so a SIGTERM cannot fall between the two."""
        with self._cond:
            ready = not self.draining
            self._views[lb] = (self._clock(), routing or ready)
            self._cond.notify_all()
            return ready

    def start(self) -> None:
        """Readiness goes to 503 from now on (the replica still serves)."""
        with self._cond:
            self.draining = True
            self._cond.notify_all()

    def request_started(self) -> None:
        with self._cond:
            self._in_flight += 1

    def request_finished(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def wait_unrouted(self, timeout_s: float) -> list[str]:
        """Wait until no balancer routes here any more; return those still routing at the timeout."""
        deadline = self._clock() + timeout_s
        with self._cond:
            while (routing := still_routing(self._views, self._clock())) and self._clock() < deadline:
                # woken by each probe; re-checked at least every 0.1 s for a balancer going silent
                self._cond.wait(min(0.1, max(0.0, deadline - self._clock())))
            return routing

    def wait_idle(self, timeout_s: float) -> int:
        """Wait until no accepted request is in flight; return how many still are at the timeout."""
        deadline = self._clock() + timeout_s
        with self._cond:
            while self._in_flight and self._clock() < deadline:
                self._cond.wait(min(0.1, max(0.0, deadline - self._clock())))
            return self._in_flight
