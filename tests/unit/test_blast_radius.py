"""The blast radius: the admission decision at every bound, and the services / chaos.blast_radius config."""

from __future__ import annotations

import pytest
import yaml

from resilience.chaos.blast_radius import Admission, OpenFault, decide
from resilience.config import DEFAULT_CONFIG_PATH, Service, parse_config


def fault(ledger_id: int, service: str = "app", depends_on: tuple[str, ...] = (), state: str = "active",
          environment: str = "staging", scenario: str = "pod-kill", run_id: str = "run-a") -> OpenFault:
    return OpenFault(ledger_id, run_id, environment, scenario, service, depends_on, state)


CHECKOUT = fault(7, "checkout", ("postgres", "redis"), run_id="run-a")
SEARCH = fault(8, "search", ("elasticsearch",), scenario="s3-5xx", run_id="run-b")


@pytest.mark.parametrize(("service", "depends_on", "k", "open_faults", "expected"), [
    # nothing open: admitted, whatever K
    ("app", (), 1, [], Admission(True, "0 of 1 fault(s) open in staging, none on app or on what it depends on "
                                       "(nothing)")),
    # the single-service campaign (app, K = 1): one open entry refuses, as before the blast radius
    ("app", (), 1, [fault(3)],
     Admission(False, "the blast radius of staging is 1 fault(s) at once and 1 are open: ledger #3 (pod-kill, "
                      "service app, run run-a, active); app waits for one to be reverted", (fault(3),))),
    # one slot left (K - 1 open, no overlap): admitted
    ("cart", ("kafka",), 3, [CHECKOUT, SEARCH],
     Admission(True, "2 of 3 fault(s) open in staging, none on cart or on what it depends on (kafka)")),
    # exactly K open: refused, naming the limit, every open entry and its run
    ("cart", ("kafka",), 2, [CHECKOUT, SEARCH],
     Admission(False, "the blast radius of staging is 2 fault(s) at once and 2 are open: ledger #7 (pod-kill, "
                      "service checkout, run run-a, active), ledger #8 (s3-5xx, service search, run run-b, active); "
                      "cart waits for one to be reverted", (CHECKOUT, SEARCH))),
    # the same service, with slots to spare
    ("checkout", (), 5, [CHECKOUT],
     Admission(False, "service checkout already has a fault open: ledger #7 (pod-kill, service checkout, run "
                      "run-a, active)", (CHECKOUT,))),
    # a shared dependency, with slots to spare
    ("cart", ("redis", "kafka"), 5, [CHECKOUT, SEARCH],
     Admission(False, "service cart shares redis with a service that has a fault open: ledger #7 (pod-kill, "
                      "service checkout, run run-a, active)", (CHECKOUT,))),
    # dependencies that do not overlap: admitted
    ("cart", ("kafka", "rabbitmq"), 5, [CHECKOUT, SEARCH],
     Admission(True, "2 of 5 fault(s) open in staging, none on cart or on what it depends on (kafka, rabbitmq)")),
    # a failed revert stops everything, K or not (the message the campaign has always given)
    ("cart", (), 5, [fault(4, "search", state="revert_failed", scenario="s3-5xx")],
     Admission(False, "ledger #4 (s3-5xx, run run-a) is still revert_failed: no fault is injected on top of an open "
                      "one (a failed revert stops every inject until it is reverted)",
               (fault(4, "search", state="revert_failed", scenario="s3-5xx"),))),
    # an entry open in another environment refuses (one chaos/DR lock for all of them)
    ("cart", (), 5, [fault(5, environment="lab", state="injecting")],
     Admission(False, "ledger #5 (pod-kill, service app, run run-a, injecting) is still open in environment lab: "
                      "no fault is injected in staging while another environment has one open",
               (fault(5, environment="lab", state="injecting"),))),
])
def test_admission(service, depends_on, k, open_faults, expected):
    assert decide("staging", service, depends_on, k, open_faults) == expected


def test_the_limit_is_checked_before_the_service_and_counts_every_run():
    """Two runs' entries on other services fill K = 2: the third is refused by the limit even though its own
    service and dependencies are free."""
    decision = decide("staging", "cart", (), 2, [fault(1, "a", run_id="run-1"), fault(2, "b", run_id="run-2")])
    assert not decision.admitted and decision.reason.startswith("the blast radius of staging is 2 fault(s)")
    assert [f.run_id for f in decision.blocking] == ["run-1", "run-2"]


@pytest.mark.parametrize(("k", "message"), [
    (0, r"blast_radius: 0 must be an integer >= 1"),
    (-1, r"blast_radius: -1 must be an integer >= 1"),
    (True, r"blast_radius: True must be an integer >= 1"),
    (1.5, r"blast_radius: 1.5 must be an integer >= 1"),
])
def test_a_bad_blast_radius_is_refused(k, message):
    with pytest.raises(ValueError, match=message):
        decide("staging", "app", (), k, [])


# -- config --------------------------------------------------------------------------------------------------

def raw():
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


SERVICES = [
    {"name": "checkout", "selector": "app=checkout,tier=api", "depends_on": ["postgres", "redis"],
     "slo": {"queries": {"availability_pct": "checkout_avail", "error_rate_pct": "checkout_err",
                         "p95_ms": "checkout_p95"}}},
    {"name": "search", "selector": "app=search"},
]


def test_services_and_blast_radius_of_a_kubernetes_environment():
    doc = raw()
    doc["environments"]["staging"]["services"] = SERVICES
    doc["environments"]["staging"]["chaos"]["blast_radius"] = 3
    staging = parse_config(doc).environment("staging")
    assert staging.blast_radius == 3
    assert staging.services[0] == Service("checkout", "app=checkout,tier=api", ("postgres", "redis"),
                                          {"availability_pct": "checkout_avail", "error_rate_pct": "checkout_err",
                                           "p95_ms": "checkout_p95"})
    # no queries of its own: the environment's
    assert staging.service("search") == Service("search", "app=search", (), dict(staging.slo_source().queries))
    with pytest.raises(ValueError, match=r"service: 'cart' is not one of environments\.staging\.services "
                                         r"\['checkout', 'search'\]"):
        staging.service("cart")


def test_the_packaged_environments_keep_one_app_and_one_fault_at_a_time():
    """The lab runs one app (no services to list) and every environment keeps the default K = 1."""
    config = parse_config(raw())
    assert {(name, env.blast_radius, env.services) for name, env in config.environments.items()} == {
        (name, 1, ()) for name in config.environments}


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s["chaos"].update(blast_radius=0),
     r"environments\.staging\.chaos\.blast_radius: 0 must be an integer >= 1 \(faults active at once\)"),
    (lambda s: s["chaos"].update(blast_radius="2"), r"environments\.staging\.chaos\.blast_radius: '2' must be"),
    (lambda s: s["chaos"].update(blast_radius=True), r"environments\.staging\.chaos\.blast_radius: True must be"),
    (lambda s: s.update(services={"checkout": {}}), r"environments\.staging\.services must be a list of services"),
    (lambda s: s.update(services=[{"name": "checkout"}]), r"environments\.staging\.services\.checkout\.selector is missing"),
    (lambda s: s.update(services=[{"selector": "app=x"}]), r"environments\.staging\.services\[0\]\.name is missing"),
    (lambda s: s.update(services=[{"name": "Check_out", "selector": "app=x"}]),
     r"environments\.staging\.services\[0\]\.name: 'Check_out' must be lower-case letters, digits and '-'"),
    (lambda s: s.update(services=[SERVICES[1], SERVICES[1]]),
     r"environments\.staging\.services\.search: the name 'search' is listed twice"),
    (lambda s: s.update(services=[{"name": "x", "selector": "app in (x)"}]),
     r"environments\.staging\.services\.x\.selector: 'app in \(x\)' must be an equality-based label selector"),
    (lambda s: s.update(services=[{"name": "x", "selector": "app=x", "depends_on": "redis"}]),
     r"environments\.staging\.services\.x\.depends_on: 'redis' must be a list of dependency names"),
    (lambda s: s.update(services=[{"name": "x", "selector": "app=x", "depends_on": ["redis", "redis"]}]),
     r"environments\.staging\.services\.x\.depends_on: \['redis', 'redis'\] names a dependency twice"),
    (lambda s: s.update(services=[{"name": "x", "selector": "app=x", "replicas": 3}]),
     r"environments\.staging\.services\[0\]: unknown key\(s\) \['replicas'\]; allowed: \['name', 'selector', 'slo', "
     r"'depends_on'\]"),
    (lambda s: s.update(services=[{"name": "x", "selector": "app=x", "slo": {"queries": {"p95_ms": "q"}}}]),
     r"environments\.staging\.services\.x\.slo\.queries: must give a query for each of \['availability_pct', "
     r"'error_rate_pct', 'p95_ms'\] \(missing \['availability_pct', 'error_rate_pct'\], unknown \[\]\)"),
    (lambda s: s.update(services=[{"name": "x", "selector": "app=x", "slo": {"window": "1m"}}]),
     r"environments\.staging\.services\.x\.slo: unknown key\(s\) \['window'\]; allowed: \['queries'\]"),
    (lambda s: (s.pop("slo"), s.update(services=[{"name": "x", "selector": "app=x"}])),
     r"environments\.staging\.services\.x\.slo\.queries is missing and the environment has no slo section"),
])
def test_bad_services_or_blast_radius_name_the_field(change, message):
    doc = raw()
    change(doc["environments"]["staging"])
    with pytest.raises(ValueError, match=message):
        parse_config(doc)


def test_a_local_environment_takes_no_services():
    doc = raw()
    doc["environments"]["lab"]["services"] = [{"name": "x", "selector": "app=x"}]
    with pytest.raises(ValueError, match=r"environments\.lab\.services: a local environment runs one app"):
        parse_config(doc)


def test_a_freed_slot_goes_to_the_first_waiter_of_the_run_it_admits():
    """K = 2, checkout (postgres) open: orders shares postgres, so of the waiters the slot goes to search,
    then billing would be next; a target already in the ledger is not in line any more."""
    from resilience.chaos.blast_radius import first_in_line

    queue = [{"service": "orders", "scenario": "pod-kill", "depends_on": ["postgres"]},
             {"service": "search", "scenario": "pod-kill", "depends_on": []},
             {"service": "billing", "scenario": "pod-kill", "depends_on": []}]
    opened = [fault(7, "checkout", ("postgres",), environment="staging")]

    def first(service: str, taken: set[tuple[str, str]] = frozenset()) -> bool:
        return first_in_line("run-a", "staging", service, "pod-kill", queue, 2, opened, set(taken))

    assert (first("orders"), first("search"), first("billing")) == (False, True, False)
    assert first("billing", {("search", "pod-kill")})  # search already asked: billing is next
    assert first("ledger-only") is True  # not in the run's queue: nothing to wait behind
