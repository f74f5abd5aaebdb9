"""The two platforms every contract test runs on: the lab's, and a Kubernetes capability against the
module's loopback API server (its ``kubeapi`` fixture), reached through a Kubernetes Connection."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from resilience.platforms.kubernetes.target import KubernetesTarget

PLATFORMS = ["lab", "kubernetes"]
CONN_ID, NAMESPACE = "kubernetes_contract", "ofm-staging"
APP_DEPLOYMENT, APP_SELECTOR = "ofm-social-os-api", "app=ofm-social-os"


def kubernetes_target(**capabilities: Any) -> KubernetesTarget:
    return KubernetesTarget(CONN_ID, NAMESPACE, APP_DEPLOYMENT, APP_SELECTOR, **capabilities)


def capability(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
               build: Callable[[KubernetesTarget], Any], **capabilities: Any) -> Any:
    """The capability under test on the platform ``request.param`` names: the lab's platform (the session's
    lab), or ``build`` of a Kubernetes target with ``capabilities`` against the module's ``kubeapi``."""
    if request.param == "lab":
        request.getfixturevalue("lab")
        from resilience.config import load_config
        from resilience.platforms.local import LocalPlatform

        return LocalPlatform(load_config().environment("lab"))  # the lab provides every capability
    api = request.getfixturevalue("kubeapi")
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", api.connection_json(namespace=NAMESPACE))
    return build(kubernetes_target(**capabilities))


@contextmanager
def cluster_config(directory: Path, connection_json: str, edit: Callable[[dict[str, Any]], None]) -> Iterator[Path]:
    """The packaged environments.yaml with ``edit`` applied to it, in use (``RESILIENCE_ENVIRONMENTS``) together
    with the loopback API server's Connection (``CONN_ID``) while the block runs: the DAGs then act on a
    Kubernetes environment whose cluster is the test's."""
    import yaml

    from resilience.config import CONFIG_ENV_VAR, DEFAULT_CONFIG_PATH

    config = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    edit(config["environments"])
    path = directory / "environments.yaml"
    path.write_text(yaml.safe_dump(config))
    saved = {k: os.environ.get(k) for k in (CONFIG_ENV_VAR, f"AIRFLOW_CONN_{CONN_ID.upper()}")}
    os.environ[CONFIG_ENV_VAR] = str(path)
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = connection_json
    try:
        yield path
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
