"""The DNS safety net after a failed or unfinished DR operation (regions and Route53 faked in memory)."""

from __future__ import annotations

from resilience.dr.validation import ensure_healthy_traffic, return_home


class FakeDns:
    def __init__(self, weights):
        self.current = dict(weights)

    def weights(self):
        return dict(self.current)


class FakeRegions:
    """The part of Regions the safety net uses: DNS weights, region health, set_traffic."""

    def __init__(self, weights, healthy):
        self.dns = FakeDns(weights)
        self._healthy = healthy
        self.changes = []

    def healthy(self, region):
        return self._healthy[region], {"region": region}

    def serving_region(self):
        w = self.dns.weights()
        return max(("primary", "dr"), key=lambda r: (w[r], r == "primary"))

    def set_traffic(self, primary, reason):
        before = self.dns.weights()
        self.dns.current = {"primary": primary, "dr": 100 - primary}
        self.changes.append(reason)
        return {"before": before, "after": self.dns.weights(), "reason": reason}


def test_traffic_on_an_unhealthy_region_moves_to_the_healthy_one():
    regions = FakeRegions({"primary": 0, "dr": 100}, {"primary": True, "dr": False})
    outcome = ensure_healthy_traffic(regions)
    assert outcome["moved"] and regions.dns.weights() == {"primary": 100, "dr": 0}
    assert regions.changes == ["safety: dr unhealthy, primary healthy"]


def test_traffic_stays_when_both_regions_are_down():
    regions = FakeRegions({"primary": 100, "dr": 0}, {"primary": False, "dr": False})
    assert not ensure_healthy_traffic(regions)["moved"] and regions.changes == []


def test_traffic_stays_on_a_healthy_region():
    regions = FakeRegions({"primary": 75, "dr": 25}, {"primary": True, "dr": True})
    assert not ensure_healthy_traffic(regions)["moved"]


def test_an_unfinished_ramp_returns_all_traffic_home():
    regions = FakeRegions({"primary": 50, "dr": 50}, {"primary": True, "dr": True})
    outcome = return_home(regions, "dr")
    assert outcome["moved"] and regions.dns.weights() == {"primary": 0, "dr": 100}


def test_home_is_not_forced_when_it_is_unhealthy_or_already_home():
    sick = FakeRegions({"primary": 50, "dr": 50}, {"primary": True, "dr": False})
    assert not return_home(sick, "dr")["moved"] and sick.changes == []
    home = FakeRegions({"primary": 0, "dr": 100}, {"primary": True, "dr": True})
    assert not return_home(home, "dr")["moved"] and home.changes == []
