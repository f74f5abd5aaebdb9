"""pod-kill's plan (validated options, graceful or forced deletion) and the replica's drain decision."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from resilience.faults.pod_kill import PodKill
from resilience.lab.app_drain import Drain, still_routing
from resilience.platforms.types import Replica


class Replicas:
    """The one platform call plan() makes: three replicas, ``down`` of them unhealthy."""

    def __init__(self, down: tuple[str, ...] = ()) -> None:
        self.down = down

    def replicas(self) -> list[Replica]:
        return [Replica(n, n not in self.down, str(100 + i)) for i, n in enumerate(("app-1", "app-2", "app-3"))]


def plan(options: dict, down: tuple[str, ...] = ()) -> dict:
    return PodKill().plan(SimpleNamespace(workloads=Replicas(down)), options)


@pytest.mark.parametrize(("options", "expected"), [
    ({}, {"replicas": ["app-1"], "grace_period_s": 30, "force": False, "restart_timeout_s": 60, "expected_ready": 3}),
    ({"count": 1, "grace_period_s": 30, "force": False},
     {"replicas": ["app-1"], "grace_period_s": 30, "force": False, "restart_timeout_s": 60, "expected_ready": 3}),
    ({"count": 2, "grace_period_s": 1}, {"replicas": ["app-1", "app-2"], "grace_period_s": 1, "force": False,
                                         "restart_timeout_s": 60, "expected_ready": 3}),
    ({"grace_period_s": 300}, {"replicas": ["app-1"], "grace_period_s": 300, "force": False,
                               "restart_timeout_s": 60, "expected_ready": 3}),
    # kubectl: a grace period of 0 is a forced deletion; force ignores the grace period
    ({"grace_period_s": 0}, {"replicas": ["app-1"], "grace_period_s": 0, "force": True, "restart_timeout_s": 60, "expected_ready": 3}),
    ({"force": True}, {"replicas": ["app-1"], "grace_period_s": 0, "force": True, "restart_timeout_s": 60, "expected_ready": 3}),
    ({"force": True, "grace_period_s": 45}, {"replicas": ["app-1"], "grace_period_s": 0, "force": True,
                                             "restart_timeout_s": 60, "expected_ready": 3}),
    ({"percent": 100}, {"replicas": ["app-1", "app-2", "app-3"], "grace_period_s": 30, "force": False,
                        "restart_timeout_s": 60, "expected_ready": 3}),
])
def test_plan_keeps_how_the_replicas_are_deleted(options: dict, expected: dict) -> None:
    assert plan(options) == expected


def test_plan_picks_healthy_replicas_only() -> None:
    assert plan({"count": 2}, down=("app-1",))["replicas"] == ["app-2", "app-3"]


@pytest.mark.parametrize(("options", "error"), [
    ({"grace_period_s": -1}, r"options\.grace_period_s: -1 must be an integer in 0\.\.300 \(seconds\)"),
    ({"grace_period_s": 301}, r"options\.grace_period_s: 301 must be an integer in 0\.\.300"),
    ({"grace_period_s": 2.5}, r"options\.grace_period_s: 2\.5 must be an integer in 0\.\.300"),
    ({"grace_period_s": "30"}, r"options\.grace_period_s: '30' must be an integer in 0\.\.300"),
    ({"grace_period_s": True}, r"options\.grace_period_s: True must be an integer in 0\.\.300"),
    ({"grace_period_s": None}, r"options\.grace_period_s: None must be an integer in 0\.\.300"),
    ({"force": "yes"}, r"options\.force: 'yes' must be true or false"),
    ({"force": 1}, r"options\.force: 1 must be true or false"),
    ({"force": None}, r"options\.force: None must be true or false"),
    ({"grace": 30}, r"options: \['grace'\] not allowed for pod-kill \(allowed: \['count', 'percent', "
                    r"'grace_period_s', 'force'\]\)"),
    ({"count": 4}, r"options\.count: 4 must be an integer in 1\.\.3 \(healthy replicas\)"),
    ({"count": 0}, r"options\.count: 0 must be an integer in 1\.\.3"),
    ({"percent": 0}, r"options\.percent: 0 must be > 0 and <= 100"),
    ({"percent": "50"}, r"options\.percent: '50' must be > 0 and <= 100"),
])
def test_plan_refuses_bad_options_naming_the_field(options: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        plan(options)


def test_bad_options_are_refused_before_the_platform_is_asked() -> None:
    class Unreachable:
        def replicas(self) -> list[dict]:
            raise AssertionError("plan() asked the platform before validating its options")

    with pytest.raises(ValueError, match=r"options\.force"):
        PodKill().plan(SimpleNamespace(workloads=Unreachable()), {"force": "no"})


@pytest.mark.parametrize(("views", "now", "expected"), [
    ({}, 10.0, []),  # no balancer ever probed this replica (a sandbox app): nothing to wait for
    ({"lb@a": (9.5, True)}, 10.0, ["lb@a"]),
    ({"lb@a": (9.5, False)}, 10.0, []),
    ({"lb@a": (7.0, True)}, 10.0, []),  # silent for exactly 3 s: gone, not waited for
    ({"lb@a": (7.01, True)}, 10.0, ["lb@a"]),
    ({"lb@a": (9.9, False), "lb@b": (9.9, True)}, 10.0, ["lb@b"]),
])
def test_still_routing(views: dict, now: float, expected: list[str]) -> None:
    assert still_routing(views, now) == expected


def test_drain_waits_for_the_balancer_to_say_off_then_for_in_flight_requests() -> None:
    clock = [100.0]
    drain = Drain(clock=lambda: clock[0])
    assert drain.probe("lb@a", routing=True) is True
    drain.request_started()
    drain.start()
    assert drain.wait_unrouted(timeout_s=0) == ["lb@a"]
    assert drain.probe("lb@a", routing=True) is False  # answered 503: the balancer will stop routing here
    assert drain.wait_unrouted(timeout_s=0) == ["lb@a"]  # ... but has not said so yet
    assert drain.probe("lb@a", routing=False) is False
    assert drain.wait_unrouted(timeout_s=0) == []
    assert drain.wait_idle(timeout_s=0) == 1
    drain.request_finished()
    assert drain.wait_idle(timeout_s=0) == 0


def test_a_ready_answer_to_an_off_probe_means_the_balancer_routes_here_next() -> None:
    """A replica just (re)started is probed with "off" and answers 200: the balancer routes to it from then on."""
    drain = Drain(clock=lambda: 100.0)
    assert drain.probe("lb@a", routing=False) is True
    drain.start()
    assert drain.wait_unrouted(timeout_s=0) == ["lb@a"]


def test_a_balancer_gone_silent_is_not_waited_for() -> None:
    clock = [100.0]
    drain = Drain(clock=lambda: clock[0])
    drain.probe("lb@a", routing=True)
    drain.start()
    clock[0] += 3.0
    assert drain.wait_unrouted(timeout_s=0) == []
