"""EKS access (``kubernetes.eks``) against moto's EKS: what ``kubernetes_hook(target)`` builds for a cluster.

An in-process moto server (``ThreadedMotoServer`` on 127.0.0.1, on a free port) holds the cluster; the Amazon Connection points at it (``endpoint_url``). What is checked: the
kubeconfig the Amazon provider's EksHook generated names moto's endpoint and CA for that cluster and the
target's namespace, and authenticates with the exec plugin's token (an STS presigned URL), with no static
secret in the kubeconfig; the client refreshes that token after the hook is gone; a missing cluster is a
clear error.

A real API call cannot be made: moto's cluster endpoint (``https://<random>.<x>.us-west-2.eks.amazonaws.com``)
and its CA (random characters) are fake, no API server answers there, and nothing here would accept an STS
token. The API calls themselves are covered by the other contract tests on the loopback API server.
"""

from __future__ import annotations

import base64
import gc
import json
import os
import re
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from resilience.platforms.kubernetes.target import EksCluster, KubernetesTarget

AWS_CONN, CLUSTER, REGION, NAMESPACE = "aws_eks_contract", "ofm-dr-cluster", "us-west-2", "ofm-dr-sandbox"
ACCESS_KEY, SECRET_KEY = "AKIDEKSCONTRACT", "eks-contract-secret-key"


def eks_target(cluster: str = CLUSTER) -> KubernetesTarget:
    return KubernetesTarget(AWS_CONN, NAMESPACE, "ofm-social-os-api", "app=ofm-social-os",
                            eks=EksCluster(cluster, AWS_CONN, REGION))


@pytest.fixture(scope="module")
def moto_eks() -> Iterator[tuple[str, dict[str, Any]]]:
    """moto's EKS with the DR cluster: (endpoint URL of moto, the cluster as CreateCluster returned it)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # a free port the kernel picks
    server.start()
    try:
        url = f"http://127.0.0.1:{server._server.server_port}"
        eks = boto3.client("eks", region_name=REGION, endpoint_url=url, aws_access_key_id=ACCESS_KEY,
                           aws_secret_access_key=SECRET_KEY)
        cluster = eks.create_cluster(name=CLUSTER, roleArn="arn:aws:iam::123456789012:role/eks-cluster",
                                     resourcesVpcConfig={"subnetIds": []})["cluster"]
        yield url, cluster
    finally:
        server.stop()


@pytest.fixture
def aws_connection(moto_eks: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The Amazon Connection on moto; this interpreter's python3.X first on PATH (the exec plugin runs it)."""
    url, cluster = moto_eks
    monkeypatch.setenv(f"AIRFLOW_CONN_{AWS_CONN.upper()}", json.dumps(
        {"conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY,
         "extra": {"endpoint_url": url, "region_name": REGION}}))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return cluster


def sts_url(bearer: str) -> str:
    """The STS GetCallerIdentity URL an EKS token (``Bearer k8s-aws-v1.<base64url, unpadded>``) carries."""
    prefix = "Bearer k8s-aws-v1."
    assert bearer.startswith(prefix), bearer[:30]
    encoded = bearer.removeprefix(prefix)
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()


def credentials_file(kubeconfig: dict[str, Any]) -> Path:
    """The provider's credential file the exec plugin sources (``. /tmp/airflow_eks_....aws_creds``)."""
    script = kubeconfig["users"][0]["user"]["exec"]["args"][1]
    found = re.search(r"^\s*\. (\S+)$", script, re.MULTILINE)
    assert found, script
    return Path(found.group(1))


def test_without_eks_the_hook_is_the_targets_kubernetes_connection():
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    from resilience.platforms.kubernetes.api import kubernetes_hook

    hook = kubernetes_hook(KubernetesTarget("kubernetes_staging", "ofm-staging", "api", "app=api"))
    assert (type(hook), hook.conn_id, hook.config_file) == (KubernetesHook, "kubernetes_staging", None)


def test_the_kubeconfig_names_the_clusters_endpoint_ca_and_namespace_and_authenticates_by_token(aws_connection):
    from resilience.platforms.kubernetes.api import kubernetes_hook

    cluster = aws_connection
    hook = kubernetes_hook(eks_target())
    config_path = Path(hook.eks_config_file)  # type: ignore[attr-defined]
    text = config_path.read_text()
    kubeconfig = yaml.safe_load(text)

    assert kubeconfig["clusters"] == [{"name": CLUSTER, "cluster": {
        "server": cluster["endpoint"], "certificate-authority-data": cluster["certificateAuthority"]["data"]}}]
    assert kubeconfig["contexts"][0]["context"] == {"cluster": CLUSTER, "namespace": NAMESPACE, "user": "aws"}
    user = kubeconfig["users"][0]["user"]
    assert list(user) == ["exec"]  # no token, password or client key in the kubeconfig
    assert user["exec"]["apiVersion"] == "client.authentication.k8s.io/v1"
    script = user["exec"]["args"][1]
    assert "-m airflow.providers.amazon.aws.utils.eks_get_token" in script
    assert f"--cluster-name {CLUSTER}" in script and f"--region-name {REGION}" in script
    assert SECRET_KEY not in text and ACCESS_KEY not in text
    # the provider's own credential file: private to this user, removed with the client (next test)
    creds = credentials_file(kubeconfig)
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600

    # the clients use it: moto's endpoint, moto's CA, and a token that is an STS presigned URL
    configuration = hook.api_client.configuration
    assert configuration.host == cluster["endpoint"].rstrip("/")
    assert Path(configuration.ssl_ca_cert).read_bytes() == base64.b64decode(cluster["certificateAuthority"]["data"])
    url = urlsplit(sts_url(configuration.get_api_key_with_prefix("BearerToken")))
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert (url.scheme, url.hostname, query["Action"], query["X-Amz-Expires"]) == (
        "https", f"sts.{REGION}.amazonaws.com", "GetCallerIdentity", "60")
    assert query["X-Amz-Credential"].startswith(f"{ACCESS_KEY}/") and f"/{REGION}/sts/" in query["X-Amz-Credential"]
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"].split(";")  # bound to the cluster's name
    # helm (releases.py) reads the kubeconfig from the hook's extras: the same file
    assert hook._get_field("kube_config_path") == str(config_path)


def test_the_client_refreshes_its_token_after_the_hook_is_gone_and_its_files_go_with_it(aws_connection, monkeypatch):
    """A long wait must not outlive the token: the client re-runs the exec plugin when its token nears expiry
    (made immediate here), which needs the provider's credential file for as long as the client lives."""
    from kubernetes.config import kube_config

    from resilience.platforms.kubernetes.api import kubernetes_hook

    hook = kubernetes_hook(eks_target())
    config_path = Path(hook.eks_config_file)  # type: ignore[attr-defined]
    creds = credentials_file(yaml.safe_load(config_path.read_text()))
    core = hook.core_v1_client
    del hook  # the capabilities keep only the clients
    gc.collect()
    configuration = core.api_client.configuration
    first = configuration.get_api_key_with_prefix("BearerToken")
    assert creds.exists() and config_path.exists()

    time.sleep(1.1)  # a new signature needs a new X-Amz-Date (seconds)
    monkeypatch.setattr(kube_config, "_is_expired", lambda expiry: True)
    refreshed = configuration.get_api_key_with_prefix("BearerToken")
    dates = [parse_qs(urlsplit(sts_url(t)).query)["X-Amz-Date"][0] for t in (first, refreshed)]
    assert dates[1] > dates[0]

    del core, configuration
    gc.collect()
    assert not creds.exists() and not config_path.exists()


def test_a_missing_cluster_names_the_field_and_the_connection(aws_connection):
    from resilience.platforms.kubernetes.api import kubernetes_hook

    with pytest.raises(ValueError, match=rf"kubernetes\.eks\.cluster: 'ofm-missing' not found by Amazon Connection "
                                         rf"'{AWS_CONN}' in region {REGION}"):
        kubernetes_hook(eks_target("ofm-missing"))


def test_an_exec_plugin_that_gives_no_token_is_refused(aws_connection, monkeypatch, tmp_path):
    """The plugin runs ``python3.X`` from PATH: one without the amazon provider gives no token, and the clients
    would call the cluster anonymously; refused instead."""
    from resilience.platforms.kubernetes.api import kubernetes_hook

    broken = tmp_path / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    broken.write_text("#!/bin/sh\necho 'No module named airflow' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}/usr/bin{os.pathsep}/bin")
    with pytest.raises(RuntimeError, match=rf"kubernetes\.eks: no token for cluster '{CLUSTER}'"):
        kubernetes_hook(eks_target())
