"""environments.yaml: parsed, validated with named fields, and in step with the DAG drop-downs."""

from __future__ import annotations

import pytest
import yaml

from resilience.config import (
    DEFAULT_CONFIG_PATH,
    ENVIRONMENT_NAMES,
    SANDBOX_ENVIRONMENT_NAMES,
    SloLoosest,
    load_config,
    parse_config,
)


def test_packaged_file_has_the_runbook_environments():
    config = load_config()
    assert set(config.environments) == {"lab", "staging", "production", "dr-sandbox", "production-dr"}
    assert config.environment("production").is_production
    assert not config.environment("production").chaos_enabled


def test_dag_dropdowns_match_the_file():
    config = load_config()
    assert tuple(config.environments) == ENVIRONMENT_NAMES
    assert tuple(n for n, e in config.environments.items() if e.sandbox_allowed) == SANDBOX_ENVIRONMENT_NAMES


def raw():
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["environments"]["lab"].update(platform="docker"),
         r"environments\.lab\.platform: 'docker' is not one of \['local', 'kubernetes'\]"),
        (lambda d: d["environments"]["lab"].update(tier="prod"), r"environments\.lab\.tier: 'prod' is not one of"),
        (lambda d: d["environments"]["lab"]["database"].pop("conn_id"), r"environments\.lab\.database\.conn_id is missing"),
        (lambda d: d["environments"]["staging"].pop("platform"), r"environments\.staging\.platform is missing"),
        (lambda d: d["defaults"].pop("control_db_conn_id"), r"defaults\.control_db_conn_id is missing"),
        (lambda d: d.update(environments={}), r"environments is empty"),
        (lambda d: d["environments"].update(lab=[1]), r"environments\.lab must be a mapping"),
    ],
)
def test_bad_config_names_the_field(mutate, message):
    doc = raw()
    mutate(doc)
    with pytest.raises(ValueError, match=message):
        parse_config(doc)


def test_unknown_environment_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"params\.environment: 'qa' is not one of \['dr-sandbox', 'lab', "):
        load_config().environment("qa", "params.environment")


def test_lab_slo_source():
    slo = load_config().environment("lab").slo
    assert (slo.prometheus_conn_id, slo.window, slo.poll_interval_s) == ("resilience_lab_prometheus", "5s", 0.5)
    assert set(slo.queries) == {"availability_pct", "error_rate_pct", "p95_ms"}
    assert all("{window}" in q for q in slo.queries.values())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s["queries"].pop("p95_ms"), r"environments\.lab\.slo\.queries: missing \['p95_ms'\]"),
        (lambda s: s.update(poll_interval_s=0), r"environments\.lab\.slo\.poll_interval_s: 0 must be a number of seconds > 0"),
        (lambda s: s.pop("prometheus_conn_id"), r"environments\.lab\.slo\.prometheus_conn_id is missing"),
    ],
)
def test_bad_slo_section_names_the_field(mutate, message):
    doc = raw()
    mutate(doc["environments"]["lab"]["slo"])
    with pytest.raises(ValueError, match=message):
        parse_config(doc)


def test_dr_dropdown_matches_the_environments_with_a_dr_section():
    from resilience.config import DR_ENVIRONMENT_NAMES

    config = load_config()
    assert tuple(n for n, e in config.environments.items() if e.dr) == DR_ENVIRONMENT_NAMES


def test_lab_dr_section():
    dr = load_config().environment("lab").dr
    assert (dr.zone, dr.record, dr.dr_environment) == ("resilience.lab.", "api.resilience.lab.", "lab")
    assert dr.metrics.query("up", "dr") == 'max(up{job="dr_lb"})'
    assert '[5s]' in dr.metrics.query("error_rate_pct", "primary") and 'job="lb"' in dr.metrics.query("p95_ms", "primary")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["dns"].update(zone="resilience.lab"), r"environments\.lab\.dr\.dns\.zone: 'resilience\.lab' must be"),
        (lambda d: d["metrics"]["queries"].pop("up"), r"environments\.lab\.dr\.metrics\.queries: missing \['up'\]"),
        (lambda d: d["metrics"]["jobs"].pop("dr"), r"environments\.lab\.dr\.metrics\.jobs: \['primary'\] must name"),
        (lambda d: d.update(dr_environment="mars"), r"environments\.lab\.dr\.dr_environment: 'mars' is not one of"),
        (lambda d: d.update(sequence_gap=0), r"environments\.lab\.dr\.sequence_gap: 0 must be a positive integer"),
    ],
)
def test_bad_dr_section_names_the_field(mutate, message):
    doc = raw()
    mutate(doc["environments"]["lab"]["dr"])
    with pytest.raises(ValueError, match=message):
        parse_config(doc)


def test_every_chaos_environment_has_loosest_slo_bounds():
    config = load_config()
    lab = config.environment("lab").slo.loosest
    assert lab.as_dict() == {"min_availability_pct": 95.0, "max_error_rate_increase_pct": 5.0,
                             "max_p95_ratio": 10.0, "max_recovery_s": 600.0, "max_breach_s": 30.0}
    for env in config.environments.values():
        if env.chaos_enabled:
            assert env.slo is not None and env.slo.loosest is not None, env.name


def test_loosest_defaults_when_the_section_is_absent():
    doc = raw()
    del doc["environments"]["lab"]["slo"]["loosest"]
    assert parse_config(doc).environment("lab").slo.loosest == SloLoosest()
    doc["environments"]["lab"]["slo"]["loosest"] = {"max_p95_ratio": 3}
    assert parse_config(doc).environment("lab").slo.loosest == SloLoosest(max_p95_ratio=3.0)


@pytest.mark.parametrize(
    ("loosest", "message"),
    [
        ({"max_p95": 3}, r"environments\.lab\.slo\.loosest: unknown key\(s\) \['max_p95'\]"),
        ({"min_availability_pct": 101}, r"environments\.lab\.slo\.loosest\.min_availability_pct: 101 must be a "
                                        r"percentage in 0\.\.100"),
        ({"max_p95_ratio": "ten"}, r"environments\.lab\.slo\.loosest\.max_p95_ratio: 'ten' must be a ratio >= 1"),
        ({"max_recovery_s": 0}, r"environments\.lab\.slo\.loosest\.max_recovery_s: 0 must be a number of seconds > 0"),
        ({"min_availability_pct": 99.6}, r"environments\.lab\.slo\.loosest\.min_availability_pct: 99\.6 is stricter "
                                         r"than the runbook's own SLO \(99\.5\), .* it must be <= 99\.5"),
        ({"max_p95_ratio": 1.5}, r"environments\.lab\.slo\.loosest\.max_p95_ratio: 1\.5 is stricter than the "
                                 r"runbook's own SLO \(2\), .* it must be >= 2"),
        ("loose", r"environments\.lab\.slo\.loosest must be a mapping"),
    ],
)
def test_bad_loosest_bounds_name_the_field(loosest, message):
    doc = raw()
    doc["environments"]["lab"]["slo"]["loosest"] = loosest
    with pytest.raises(ValueError, match=message):
        parse_config(doc)


def test_loosest_exactly_at_the_runbook_slo_is_allowed():
    doc = raw()
    doc["environments"]["lab"]["slo"]["loosest"] = {"min_availability_pct": 99.5, "max_error_rate_increase_pct": 1,
                                                    "max_p95_ratio": 2, "max_recovery_s": 120}
    assert parse_config(doc).environment("lab").slo.loosest == SloLoosest(99.5, 1.0, 2.0, 120.0)


@pytest.mark.parametrize(("change", "message"), [
    (lambda k: k.pop("app"), r"environments\.staging\.kubernetes\.app: missing \(deployment"),
    (lambda k: k.update(namespace="OFM_staging"), r"environments\.staging\.kubernetes\.namespace: 'OFM_staging' is not a DNS label"),
    (lambda k: k["app"].update(selector="app in ofm"), r"environments\.staging\.kubernetes\.app\.selector: 'app in ofm' is not a label selector"),
    (lambda k: k["app"].update(deployment="Api_1"), r"environments\.staging\.kubernetes\.app\.deployment: 'Api_1' is not a Kubernetes object name"),
    (lambda k: k.pop("conn_id"), r"environments\.staging\.kubernetes\.conn_id: None must be a non-empty string"),
    (lambda k: k["cache"].update(kind="ReplicaSet"), r"environments\.staging\.kubernetes\.cache\.kind: 'ReplicaSet' is not one of \['Deployment', 'StatefulSet'\]"),
    (lambda k: k.update(cache="redis"), r"environments\.staging\.kubernetes\.cache: must map kind"),
])
def test_a_kubernetes_environment_names_its_app_and_a_bad_section_names_the_field(change, message):
    staging = load_config().environment("staging").kubernetes
    assert (staging.app_selector, staging.cache_kind, staging.cache_name) == ("app=ofm-social-os", "Deployment", "redis")
    doc = raw()
    change(doc["environments"]["staging"]["kubernetes"])
    with pytest.raises(ValueError, match=message):
        parse_config(doc)
