"""The one place that builds Kubernetes API clients for a target: ``kubernetes_hook(target)``.

Without ``kubernetes.eks`` it is ``KubernetesHook(conn_id=target.conn_id)`` (a kubeconfig or in-cluster
Connection). With it, the cluster is reached the way the runbook's ``aws eks update-kubeconfig --name
<cluster>`` does, through the Amazon provider: ``EksHook(aws_conn_id, region_name)`` describes the cluster
(endpoint, CA) and writes a kubeconfig whose user is an ``exec`` plugin, and that kubeconfig is what the
clients load (and what helm gets as ``--kubeconfig``: the hook presents it as its ``kube_config_path``).

Token lifetime (read in amazon provider 9.39 and kubernetes client 36): the exec plugin runs
``python3.X -m airflow.providers.amazon.aws.utils.eks_get_token``, which presigns an STS
GetCallerIdentity URL (``k8s-aws-v1.<base64 url>``, no network call) and reports an expiry 14 minutes
ahead (EKS accepts such a token for 15). No token is written to disk: the client keeps it in memory and,
on each request, re-runs the plugin once the token is within 5 minutes of that expiry
(``refresh_api_key_hook``), so a long wait between requests never sends an expired token. The plugin
reads the AWS credentials from a 0600 file the provider writes (``generate_config_file_with_credentials``)
and deletes when its context exits, so that context stays open as long as the API client lives and is
closed when the client is garbage-collected (or at interpreter exit). Those credentials are frozen when
the client is built: temporary ones (an assumed role) that expire during the client's life make the
refreshed tokens fail with 401; build a new capability object per task, as the DAGs do.
"""

from __future__ import annotations

import logging
import weakref
from contextlib import ExitStack
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

if TYPE_CHECKING:
    from resilience.platforms.kubernetes.target import EksCluster, KubernetesTarget

log = logging.getLogger(__name__)


class EksKubernetesHook(KubernetesHook):
    """KubernetesHook on EksHook's kubeconfig file, presented as its Connection's ``kube_config_path`` extra
    (there is no Kubernetes Connection), so a reader of the hook's extras (``helm --kubeconfig`` in
    releases.py) reaches the same cluster as the clients. The file exists as long as the API client."""

    def __init__(self, config_file: str, client_configuration: Any) -> None:
        super().__init__(conn_id=None, kubernetes_conn_id=None, client_configuration=client_configuration)
        self.eks_config_file = config_file

    @cached_property
    def conn_extras(self) -> dict[str, Any]:
        return {"kube_config_path": self.eks_config_file}


def kubernetes_hook(target: KubernetesTarget) -> KubernetesHook:
    """The KubernetesHook for ``target``: through EKS when ``target.eks`` is set, else its Connection."""
    if target.eks is None:
        return KubernetesHook(conn_id=target.conn_id)
    return _eks_hook(target.eks, target.namespace)


def _eks_hook(eks: EksCluster, namespace: str) -> EksKubernetesHook:
    """A hook whose clients use EksHook's kubeconfig for ``eks.cluster``, loaded now (its API client built),
    with the provider's credential file kept until that client is garbage-collected."""
    from airflow.providers.amazon.aws.hooks.eks import EksHook
    from botocore.exceptions import ClientError
    from kubernetes.client import Configuration

    aws = EksHook(aws_conn_id=eks.aws_conn_id, region_name=eks.region)
    files = ExitStack()
    try:
        try:
            config_file, _ = files.enter_context(
                aws.generate_config_file_with_credentials(eks_cluster_name=eks.cluster, pod_namespace=namespace))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "ResourceNotFoundException":
                region = aws.region_name or "(the Connection's default)"
                raise ValueError(f"kubernetes.eks.cluster: {eks.cluster!r} not found by Amazon Connection "
                                 f"{eks.aws_conn_id!r} in region {region} (EKS: {error.get('Message', '')})") from exc
            raise
        # own Configuration, not the kubernetes client's process-wide default; no Kubernetes Connection read
        configuration = Configuration()
        hook = EksKubernetesHook(config_file, configuration)
        api = hook.api_client  # loads the kubeconfig while its file exists; runs the exec plugin once
        if not configuration.api_key.get("BearerToken"):
            raise RuntimeError(
                f"kubernetes.eks: no token for cluster {eks.cluster!r} from the kubeconfig's exec plugin "
                f"(python3.X -m airflow.providers.amazon.aws.utils.eks_get_token): the python3.X first on PATH "
                f"must have the amazon provider installed; see the client's error logged above")
    except BaseException:
        files.close()
        raise
    weakref.finalize(api, files.close)
    log.info("Reaching EKS cluster %s (namespace %s) at %s with Amazon Connection %s (token by STS presigned URL, "
             "refreshed by the client before it expires)", eks.cluster, namespace, configuration.host,
             eks.aws_conn_id)
    return hook
