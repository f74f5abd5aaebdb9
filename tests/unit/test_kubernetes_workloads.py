"""The Kubernetes workload's pure decisions: a pod's readiness and a Deployment's rollout state."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace as NS

import pytest

from resilience.platforms.kubernetes.workloads import as_replica, pod_ready, rollout_state


def deployment(generation=2, observed=2, wanted=3, updated=3, total=3, available=3):
    return NS(metadata=NS(name="ofm-social-os-api", generation=generation), spec=NS(replicas=wanted),
              status=NS(observed_generation=observed, updated_replicas=updated, replicas=total,
                        available_replicas=available))


@pytest.mark.parametrize(("changes", "state"), [
    ({}, None),
    ({"observed": 1}, "deployment ofm-social-os-api: its newest spec is not observed yet"),
    ({"updated": 1}, "deployment ofm-social-os-api: 1 of 3 replicas updated"),
    ({"total": 4}, "deployment ofm-social-os-api: 1 old replica(s) pending termination"),
    ({"available": 2}, "deployment ofm-social-os-api: 2 of 3 updated replicas available"),
    ({"wanted": 0, "updated": 0, "total": 0, "available": 0}, None),  # scaled to zero and settled
])
def test_rollout_state_follows_kubectl_rollout_status(changes, state):
    assert rollout_state(deployment(**changes)) == state


READY_AT = datetime(2026, 12, 2, 6, 0, 12, tzinfo=UTC)


def pod(phase="Running", ready="True", deleting=None, restarts=(0, 2)):
    return NS(metadata=NS(name="api-7d9f-x2k4q", uid="u-1", deletion_timestamp=deleting,
                          labels={"app": "ofm-social-os", "pod-template-hash": "7d9f"}),
              status=NS(phase=phase, conditions=[NS(type="PodScheduled", status="True", last_transition_time=None),
                                                 NS(type="Ready", status=ready, last_transition_time=READY_AT)],
                        container_statuses=[NS(restart_count=r) for r in restarts]))


def test_a_pod_is_ready_only_when_running_ready_and_not_being_deleted():
    assert pod_ready(pod()) and not pod_ready(pod(ready="False")) and not pod_ready(pod(phase="Pending"))
    assert not pod_ready(pod(deleting="2026-12-02T06:00:00Z"))  # terminating: out of the Service already
    assert as_replica(pod()) == as_replica(pod())
    replica = as_replica(pod())
    assert (replica.name, replica.ready, replica.instance, replica.restarts, replica.release) == (
        "api-7d9f-x2k4q", True, "u-1", 2, "7d9f")
    # when it became Ready: what pod-kill's "replacements ready within 30 s" is measured from
    assert replica.ready_since == READY_AT.timestamp() and as_replica(pod(ready="False")).ready_since is None
