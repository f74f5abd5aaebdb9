"""``kubernetes.eks``: an EKS cluster reached through the Amazon provider's EksHook instead of a kubeconfig
Connection; exclusive with ``conn_id``, and a bad section names the field."""

from __future__ import annotations

from typing import Any

import pytest

from resilience.config import load_config
from resilience.platforms.kubernetes.target import EksCluster, KubernetesTarget, parse_target

WHERE = "environments.dr-sandbox.kubernetes"
APP = {"deployment": "ofm-social-os-api", "selector": "app=ofm-social-os"}


def section(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"eks": {"cluster": "ofm-dr-cluster", "aws_conn_id": "aws_dr", "region": "us-west-2"},
                           "namespace": "ofm-dr-sandbox", "app": dict(APP)}
    raw.update(changes)
    return {k: v for k, v in raw.items() if v is not None}


@pytest.mark.parametrize(("raw", "eks"), [
    (section(), EksCluster("ofm-dr-cluster", "aws_dr", "us-west-2")),
    (section(eks={"cluster": "ofm-dr-cluster", "aws_conn_id": "aws_dr"}), EksCluster("ofm-dr-cluster", "aws_dr")),
    (section(eks={"cluster": "a", "aws_conn_id": "aws_dr", "region": "us-gov-west-1"}),
     EksCluster("a", "aws_dr", "us-gov-west-1")),
    (section(eks={"cluster": "c" * 100, "aws_conn_id": "aws_dr", "region": None}), EksCluster("c" * 100, "aws_dr")),
])
def test_an_eks_section_is_parsed_and_its_amazon_connection_is_the_targets(raw, eks):
    assert parse_target(raw, WHERE) == KubernetesTarget(eks.aws_conn_id, "ofm-dr-sandbox", "ofm-social-os-api",
                                                        "app=ofm-social-os", eks=eks)


def test_without_eks_the_kubernetes_connection_is_used_as_before():
    target = parse_target(section(eks=None, conn_id="kubernetes_staging"), WHERE)
    assert (target.conn_id, target.eks) == ("kubernetes_staging", None)


@pytest.mark.parametrize(("raw", "message"), [
    (section(conn_id="kubernetes_dr"),
     r"environments\.dr-sandbox\.kubernetes: conn_id 'kubernetes_dr' and eks are exclusive"),
    (section(eks="ofm-dr-cluster"), r"environments\.dr-sandbox\.kubernetes\.eks: must map cluster, aws_conn_id"),
    (section(eks={"aws_conn_id": "aws_dr"}),
     r"environments\.dr-sandbox\.kubernetes\.eks\.cluster: None must be a non-empty string"),
    (section(eks={"cluster": "ofm dr", "aws_conn_id": "aws_dr"}),
     r"environments\.dr-sandbox\.kubernetes\.eks\.cluster: 'ofm dr' is not an EKS cluster name"),
    (section(eks={"cluster": "-ofm", "aws_conn_id": "aws_dr"}),
     r"environments\.dr-sandbox\.kubernetes\.eks\.cluster: '-ofm' is not an EKS cluster name"),
    (section(eks={"cluster": "c" * 101, "aws_conn_id": "aws_dr"}),
     r"environments\.dr-sandbox\.kubernetes\.eks\.cluster: 'c{101}' is not an EKS cluster name"),
    (section(eks={"cluster": "ofm-dr-cluster"}),
     r"environments\.dr-sandbox\.kubernetes\.eks\.aws_conn_id: None must be a non-empty string"),
    (section(eks={"cluster": "ofm-dr-cluster", "aws_conn_id": ""}),
     r"environments\.dr-sandbox\.kubernetes\.eks\.aws_conn_id: '' must be a non-empty string"),
    (section(eks={"cluster": "ofm-dr-cluster", "aws_conn_id": "aws_dr", "region": "US West 2"}),
     r"environments\.dr-sandbox\.kubernetes\.eks\.region: 'US West 2' is not an AWS region such as 'us-west-2'"),
    (section(eks={"cluster": "ofm-dr-cluster", "aws_conn_id": "aws_dr", "region": 2}),
     r"environments\.dr-sandbox\.kubernetes\.eks\.region: 2 must be a non-empty string"),
    (section(eks={"cluster": "ofm-dr-cluster", "aws_conn_id": "aws_dr", "name": "x"}),
     r"environments\.dr-sandbox\.kubernetes\.eks: unknown keys \['name'\]; allowed: \['aws_conn_id', 'cluster', "
     r"'region'\]"),
    (section(eks=None), r"environments\.dr-sandbox\.kubernetes\.conn_id: None must be a non-empty string"),
])
def test_a_bad_eks_section_names_the_field(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_target(raw, WHERE)


@pytest.mark.parametrize("name", ["production-dr", "dr-sandbox"])
def test_the_dr_environments_reach_the_dr_cluster_through_eks(name):
    target = load_config().environment(name).kubernetes
    assert target is not None
    assert (target.eks, target.conn_id) == (EksCluster("ofm-dr-cluster", "aws_dr", "us-west-2"), "aws_dr")


@pytest.mark.parametrize(("selector", "labels", "picked"), [
    ("app=search", {"app": "search", "pod-template-hash": "5f"}, True),
    ("app==search", {"app": "orders"}, False),
    ("app=search,tier!=db", {"app": "search"}, True),  # != holds where the key is absent, as the API server says
    ("app=search,tier!=db", {"app": "search", "tier": "db"}, False),
    ("app=search, tier=api", {"app": "search", "tier": "api"}, True),
    ("app=search", {}, False),
])
def test_a_label_selector_picks_labels_as_the_api_server_does(selector, labels, picked):
    from resilience.platforms.kubernetes.target import selector_matches

    assert selector_matches(selector, labels) is picked
