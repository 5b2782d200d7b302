"""Which watch events queue a reconcile: changes a decision depends on, not the status the operator
itself just wrote nor a Deployment's status churn that changes no readiness figure."""

from __future__ import annotations

import copy

from modelrollout import handlers

MDEP = {
    "metadata": {"name": "fraud", "namespace": "ml", "generation": 3, "annotations": {}},
    "status": {"phase": "Progressing", "canaryWeight": 10},
}
DEPLOY = {
    "metadata": {"name": "fraud-abc", "namespace": "ml", "generation": 2},
    "spec": {"replicas": 2},
    "status": {"observedGeneration": 2, "updatedReplicas": 2, "readyReplicas": 1, "availableReplicas": 1},
}


def changed(kind: str, body: dict) -> bool:
    inputs = handlers._modeldeployment_inputs if kind == "mdep" else handlers._deployment_inputs
    return handlers._changed(kind, "ml", body["metadata"]["name"], inputs(body))


def test_modeldeployment_events_queue_spec_annotation_and_deletion_changes_only() -> None:
    handlers._last_seen.clear()
    body = copy.deepcopy(MDEP)
    assert changed("mdep", body)  # first sight
    body["status"]["canaryWeight"] = 50  # the operator's own status write
    assert not changed("mdep", body)
    body["metadata"]["annotations"]["modelrollout.io/promote"] = "t1"
    assert changed("mdep", body)
    body["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "{}"
    assert not changed("mdep", body)
    body["metadata"]["generation"] = 4
    assert changed("mdep", body)
    body["metadata"]["deletionTimestamp"] = "2026-11-29T00:00:00Z"
    assert changed("mdep", body)


def test_deployment_events_queue_readiness_and_spec_changes_only() -> None:
    handlers._last_seen.clear()
    body = copy.deepcopy(DEPLOY)
    assert changed("deploy", body)
    body["status"]["conditions"] = [{"type": "Progressing", "status": "True"}]  # churn
    body["metadata"]["resourceVersion"] = "99"
    assert not changed("deploy", body)
    body["status"]["readyReplicas"] = body["status"]["availableReplicas"] = 2
    assert changed("deploy", body)
    body["metadata"]["generation"] = 3  # `kubectl scale` or any hand edit of the spec
    assert changed("deploy", body)
    body["status"]["observedGeneration"] = 3
    assert changed("deploy", body)  # the controller caught up: up to date again
