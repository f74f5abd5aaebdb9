"""get_platform composes an environment's capabilities from its configuration, and refuses what it lacks by name."""

from __future__ import annotations

import pytest

from resilience.config import load_config
from resilience.faults.base import needed_capabilities
from resilience.platforms.base import MissingCapabilityError, get_platform


def test_staging_composes_the_cluster_patroni_and_the_capabilities_it_names() -> None:
    provided = get_platform(load_config().environment("staging")).describe()
    assert provided["workloads"] == "Deployment ofm-social-os-api (namespace ofm-staging through Connection kubernetes_staging)"
    assert provided["cache"].startswith("Deployment redis ")
    assert provided["object_store"].startswith("Istio VirtualService on s3.us-east-1.amazonaws.com ")
    assert provided["database"] == "Patroni (Connection ofm_staging_patroni)"
    assert "database_hosts" not in provided and "write_probe" not in provided


def test_a_missing_capability_is_refused_naming_it_and_the_setting_that_provides_it() -> None:
    platform = get_platform(load_config().environment("dr-sandbox"))
    with pytest.raises(MissingCapabilityError, match=r"^environments\.dr-sandbox: scenario redis-unavailable needs "
                       r"capability 'cache', which this environment does not provide \(kubernetes\.cache: kind"):
        platform.require(needed_capabilities("redis-unavailable", {}), "scenario redis-unavailable")
    with pytest.raises(MissingCapabilityError, match=r"capability 'cache'"):
        platform.cache  # noqa: B018 (reaching for it is refused the same way)


def test_building_a_platform_reaches_no_endpoint() -> None:
    """Capabilities are built on first use: composing staging needs no Connection to resolve."""
    platform = get_platform(load_config().environment("production"))
    assert platform._built == {}


def test_the_crash_variant_also_needs_a_database_host_to_lose() -> None:
    assert needed_capabilities("postgres-failover", {"mode": "switchover"}) == ("database", "write_probe")
    assert needed_capabilities("postgres-failover", {"mode": "crash"}) == ("database", "write_probe", "database_hosts")
