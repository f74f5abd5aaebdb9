"""A Kubernetes API server on loopback for tests, built on kmock (see harness.KubeApi)."""

from .harness import KubeApi

__all__ = ["KubeApi"]
