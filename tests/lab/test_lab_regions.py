"""Two regions and DNS against real servers: the Route53 zone on moto, the DR region started on demand,
the load generator following the weights, a lost entry point, a broken release and its rollback.

One module-scoped lab (see ``labkit``); the DR region runs against the lab's own read-write DSN.
Effects are checked from outside: boto3 straight to moto, each load balancer's and the load
generator's /metrics, HTTP through the entry points, /proc.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from resilience.lab import control
from resilience.lab.daemons import is_alive, read_cmdline
from resilience.lab.errors import LabError
from tests.lab.labkit import Lab, eventually, get, metric_sum, needs_lab_tools, run_cli, running_lab

pytestmark = [pytest.mark.integration, needs_lab_tools]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab() as lab:
        yield lab


def route53(state: dict[str, Any]) -> Any:
    s3 = state["s3"]
    return boto3.client("route53", endpoint_url=state["dns"]["aws_endpoint"], region_name=s3["region"],
                        aws_access_key_id=s3["access_key"], aws_secret_access_key=s3["secret_key"])


def weighted(state: dict[str, Any]) -> dict[str, tuple[str, int, int]]:
    """{set_identifier: (address, weight, ttl)} of the API record, read straight from moto."""
    dns = state["dns"]
    rrsets = route53(state).list_resource_record_sets(HostedZoneId=dns["zone_id"])["ResourceRecordSets"]
    return {r["SetIdentifier"]: (r["ResourceRecords"][0]["Value"], r["Weight"], r["TTL"])
            for r in rrsets if r["Name"] == dns["record"] and r["Type"] == "A"}


def set_weights(state: dict[str, Any], primary: int, dr: int) -> None:
    """UPSERT both weighted records, as a cutover does (this test's own client, not the lab's code)."""
    dns = state["dns"]
    changes = [{"Action": "UPSERT", "ResourceRecordSet": {
        "Name": dns["record"], "Type": "A", "SetIdentifier": region, "Weight": weight, "TTL": dns["ttl_s"],
        "ResourceRecords": [{"Value": dns["targets"][region]}]}} for region, weight in (("primary", primary),
                                                                                         ("dr", dr))]
    route53(state).change_resource_record_sets(HostedZoneId=dns["zone_id"], ChangeBatch={"Changes": changes})


def lb_requests(url: str) -> float:
    """Requests a load balancer answered (its own /metrics; 0 when it does not answer)."""
    try:
        return metric_sum(f"{url}/metrics", "http_requests_total")
    except OSError:
        return 0.0


def loadgen(state: dict[str, Any], region: str, outcome: str) -> float:
    return metric_sum(state["loadgen"]["metrics_url"], "loadgen_requests_total", region=region, outcome=outcome)


def grows(read: Any, by: float, timeout_s: float) -> bool:
    start = read()
    return bool(eventually(lambda: read() >= start + by, timeout_s))


def test_up_creates_the_zone_and_the_weighted_api_records(lab: Lab) -> None:
    state = lab.state
    dns = state["dns"]
    assert {k: v for k, v in dns.items() if k != "zone_id"} == {
        "zone_name": "resilience.lab.", "record": "api.resilience.lab.",
        "targets": {"primary": "127.0.0.1", "dr": "127.0.0.2"}, "port": state["app"]["port"],
        "aws_endpoint": state["s3"]["moto_endpoint"], "ttl_s": 1}
    assert dns["zone_id"] and not dns["zone_id"].startswith("/")
    zones = route53(state).list_hosted_zones_by_name(DNSName="resilience.lab.")["HostedZones"]
    assert [z["Id"] for z in zones if z["Name"] == "resilience.lab."] == [f"/hostedzone/{dns['zone_id']}"]
    assert weighted(state) == {"primary": ("127.0.0.1", 100, 1), "dr": ("127.0.0.2", 0, 1)}
    assert control.dns(state) == dns
    assert state["regions"]["dr"]["url"] == f"http://127.0.0.2:{dns['port']}"
    status, _ = get(f"{state['loadgen']['metrics_url']}")
    assert status == 200
    assert metric_sum(state["loadgen"]["metrics_url"], "loadgen_dns_weight", region="primary") == 100


def test_a_second_up_keeps_weights_a_cutover_set(lab: Lab) -> None:
    state = lab.state
    set_weights(state, 30, 70)
    proc = run_cli("up", env=lab.env)
    assert proc.returncode == 0, proc.stderr
    assert "weights primary=30, dr=70): left as it is" in proc.stderr
    assert lab.state["dns"]["zone_id"] == state["dns"]["zone_id"]
    assert weighted(lab.state) == {"primary": ("127.0.0.1", 30, 1), "dr": ("127.0.0.2", 70, 1)}
    set_weights(state, 100, 0)


def test_dr_region_starts_on_a_dsn_and_dns_moves_the_traffic_to_it(lab: Lab) -> None:
    state = lab.state
    dsn = state["app_db"]["read_write_dsn"]
    assert control.dr_region_status(state)["running"] is False
    assert control.region_health(state, "dr") == {"entry_point_up": False, "healthy_replicas": 0, "replicas": 0}
    dr = control.start_dr_region(state, dsn)  # waits for every replica, up to its own timeout
    port = state["dns"]["port"]
    assert dr["url"] == f"http://127.0.0.2:{port}"
    assert [(r["name"], r["port"], r["healthy"], r["release"]) for r in dr["replicas"]] == [
        ("dr-1", state["port_base"] + 21, True, "v1"), ("dr-2", state["port_base"] + 22, True, "v1")]
    assert control.start_dr_region(state, dsn) == dr  # idempotent: same processes
    status = control.dr_region_status(state)
    assert status["running"] and status["lb_pid"] and set(status["replicas"]) == {"dr-1", "dr-2"}
    for pid in (status["supervisor_pid"], status["lb_pid"], *(r["pid"] for r in status["replicas"].values())):
        assert state["app_db"]["password"] not in " ".join(read_cmdline(pid) or [])
    assert control.region_health(state, "dr") == {"entry_point_up": True, "healthy_replicas": 2, "replicas": 2}
    assert get(f"{dr['url']}/api/posts?limit=5")[0] == 200

    primary_url, dr_url = state["regions"]["primary"]["url"], dr["url"]
    set_weights(state, 0, 100)
    try:
        assert eventually(lambda: metric_sum(state["loadgen"]["metrics_url"], "loadgen_dns_weight",
                                             region="dr") == 100, 5)
        assert grows(lambda: lb_requests(dr_url), 10, 10), "the DR load balancer gets no traffic"
        time.sleep(1.5)  # requests already in flight to the primary finish
        before = lb_requests(primary_url)
        assert grows(lambda: lb_requests(dr_url), 20, 10)
        assert lb_requests(primary_url) == before, "the primary still gets traffic with weight 0"
        assert grows(lambda: loadgen(state, "dr", "2xx"), 10, 5)
    finally:
        set_weights(state, 100, 0)
    assert grows(lambda: lb_requests(primary_url), 10, 10), "traffic did not come back to the primary"


def test_a_dr_region_on_another_dsn_is_restarted(lab: Lab) -> None:
    state = lab.state
    before = control.dr_region_status(state)
    assert before["running"], "needs the DR region of the previous test"
    other = state["app_db"]["read_write_dsn"].replace("connect_timeout=2", "connect_timeout=3")
    control.start_dr_region(state, other)
    after = control.dr_region_status(state)
    assert after["supervisor_pid"] != before["supervisor_pid"] and not is_alive(before["supervisor_pid"])
    assert all(r["healthy"] for r in after["replicas"].values())


def test_isolating_the_primary_makes_its_clients_see_errors_until_restored(lab: Lab) -> None:
    state = lab.state
    assert control.isolate_region(state, "primary") is True
    try:
        health = control.region_health(state, "primary")
        assert health == {"entry_point_up": False, "healthy_replicas": 3, "replicas": 3}
        assert grows(lambda: loadgen(state, "primary", "error"), 10, 5), "no client error with the LB gone"
        assert control.isolate_region(state, "primary") is False  # idempotent
    finally:
        control.restore_region(state, "primary")
    assert control.region_health(state, "primary")["entry_point_up"] is True
    time.sleep(1)  # connections refused just before the restore are counted meanwhile
    errors = loadgen(state, "primary", "error")
    assert grows(lambda: loadgen(state, "primary", "2xx"), 10, 5)
    assert loadgen(state, "primary", "error") == errors
    assert control.restore_region(state, "primary") == control.restore_region(state, "primary")


def test_isolating_the_dr_region_darkens_only_its_entry_point(lab: Lab) -> None:
    state = lab.state
    assert control.isolate_region(state, "dr") is True
    assert control.region_health(state, "dr") == {"entry_point_up": False, "healthy_replicas": 2, "replicas": 2}
    assert control.region_health(state, "primary")["entry_point_up"] is True
    control.restore_region(state, "dr")
    assert control.region_health(state, "dr")["entry_point_up"] is True


def test_rollback_without_a_previous_release_names_the_region(lab: Lab) -> None:
    with pytest.raises(LabError, match=r"region primary: no previous release to roll back to \(current release v1"):
        control.rollback_release(lab.state, "primary")


def test_a_broken_release_answers_500_until_rolled_back(lab: Lab) -> None:
    state = lab.state
    url = state["app"]["url"]
    started = time.monotonic()
    doc = control.deploy_release(state, "primary", "v2", fail_rate=1.0)
    deploy_s = time.monotonic() - started
    assert (doc["current"]["release"], doc["current"]["fail_rate"], doc["previous"]["release"]) == ("v2", 1.0, "v1")
    assert {get(f"{url}/api/posts?limit=5")[0] for _ in range(9)} == {500}
    assert get(f"{url}/health")[0] == 200  # the bad release passes readiness
    assert {r["release"] for r in control.replicas(state).values()} <= {"v2", None}
    assert {r["release"] for r in control.dr_region_status(state)["replicas"].values()} == {"v1"}  # per region
    assert control.deploy_release(state, "primary", "v2", fail_rate=1.0)["history"] == doc["history"]

    doc = control.rollback_release(state, "primary")
    assert (doc["current"]["release"], doc["current"]["fail_rate"], doc["current"]["rollback_of"]) == ("v1", 0.0,
                                                                                                          "v2")
    assert doc["previous"] is None and [e["release"] for e in doc["history"]] == ["v1", "v2", "v1"]
    assert {get(f"{url}/api/posts?limit=5")[0] for _ in range(9)} == {200}
    assert control.app_release(state, "primary")["current"]["release"] == "v1"
    assert control.rollback_release(state, "primary")["history"] == doc["history"]  # a retry goes no further
    print(f"rolling 3 replicas took {deploy_s:.1f} s")  # a figure, not a bound: CI machines are loaded


def test_a_dr_release_rolls_out_in_the_dr_region_only(lab: Lab) -> None:
    state = lab.state
    dr_url = control.dr_region_status(state)["url"]
    control.deploy_release(state, "dr", "v3", fail_rate=1.0)
    assert {get(f"{dr_url}/api/posts?limit=5")[0] for _ in range(4)} == {500}
    assert get(f"{state['app']['url']}/api/posts?limit=5")[0] == 200
    assert control.rollback_release(state, "dr")["current"]["release"] == "v1"
    assert get(f"{dr_url}/api/posts?limit=5")[0] == 200


@pytest.mark.parametrize(("call", "message"), [
    (lambda s: control.deploy_release(s, "primary", "bad name"), r"release: 'bad name' is not"),
    (lambda s: control.deploy_release(s, "primary", "", 0.0), r"release: '' is not"),
    (lambda s: control.deploy_release(s, "primary", "v9", fail_rate=2), r"fail_rate: 2 is not a number in 0\.\.1"),
    (lambda s: control.deploy_release(s, "mars", "v9"), r"region: 'mars' is not one of primary, dr"),
    (lambda s: control.isolate_region(s, "mars"), r"region: 'mars' is not one of primary, dr"),
    (lambda s: control.region_health(s, "mars"), r"region: 'mars' is not one of primary, dr"),
    (lambda s: control.start_dr_region(s, "", 2), r"dsn: the DR region needs a PostgreSQL DSN"),
    (lambda s: control.start_dr_region(s, "postgresql://x@127.0.0.1:1/app", 0), r"replicas: 0 is not an integer"),
    (lambda s: control.start_dr_region(s, "postgresql://x@127.0.0.1:1/app", 2, timeout_s=0), r"timeout_s: 0"),
])
def test_bad_arguments_are_refused_naming_the_argument(lab: Lab, call: Any, message: str) -> None:
    state = lab.state
    before = control.app_release(state, "primary")["history"]
    with pytest.raises(LabError, match=message):
        call(state)
    assert control.app_release(state, "primary")["history"] == before
    assert control.dr_region_status(state)["running"]  # a refused start leaves the running region alone


def test_after_moto_restarts_up_recreates_the_zone_and_the_load_generator_follows(lab: Lab) -> None:
    state = lab.state
    moto_pid = lab.status["components"]["moto"]["pid"]
    set_weights(state, 100, 0)
    os.kill(moto_pid, signal.SIGKILL)
    assert eventually(lambda: not is_alive(moto_pid), 5)
    time.sleep(1.5)  # lookups fail meanwhile: the load generator keeps its last answer
    assert metric_sum(state["loadgen"]["metrics_url"], "loadgen_dns_weight", region="primary") == 100
    assert grows(lambda: loadgen(state, "primary", "2xx"), 5, 5)
    proc = run_cli("up", env=lab.env)
    assert proc.returncode == 0, proc.stderr
    assert "Created Route53 hosted zone resilience.lab." in proc.stderr
    assert lab.state["dns"]["zone_id"] != state["dns"]["zone_id"]
    assert weighted(lab.state) == {"primary": ("127.0.0.1", 100, 1), "dr": ("127.0.0.2", 0, 1)}
    set_weights(lab.state, 0, 100)  # the load generator found the new zone by name
    try:
        assert eventually(lambda: metric_sum(state["loadgen"]["metrics_url"], "loadgen_dns_weight",
                                             region="dr") == 100, 10)
    finally:
        set_weights(lab.state, 100, 0)


def test_status_shows_the_dr_region_apart(lab: Lab) -> None:
    doc = run_cli("status", env=lab.env)
    assert doc.returncode == 0
    assert "DR load balancer (DR entry point)" in doc.stdout and "all components up" in doc.stdout


def test_down_stops_the_dr_region_too(lab: Lab) -> None:
    state = lab.state
    status = control.dr_region_status(state)
    pids = [status["supervisor_pid"], status["lb_pid"], *(r["pid"] for r in status["replicas"].values())]
    assert all(pids)
    proc = run_cli("down", env=lab.env)
    assert proc.returncode == 0, proc.stderr
    assert [pid for pid in pids if is_alive(pid)] == []
    assert not (lab.lab_dir / "run" / "dr-region.json").exists()
    assert control.dr_region_status(state)["running"] is False
