"""Disruption safety against the real API server and controller-manager: the PodDisruptionBudget over
a model's pods (the eviction API enforces it), its changes and removal, the drain every pod is given,
and the bounds admission puts on both."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from hack.loopback.cluster import wait_until
from tests.integration.test_operator import manifest, mdep, wait_phase
from tests.integration.test_pod_spec import refused_everywhere

pytestmark = pytest.mark.cluster


def budget(cluster, namespace: str) -> dict | None:
    return cluster.get("pdb", "fraud", namespace)


def evict(api: client.ApiClient, namespace: str, pod: str) -> int:
    """The eviction API's answer for ``pod``: 201 evicted, 429 refused by a disruption budget."""
    body = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod, namespace=namespace))
    try:
        client.CoreV1Api(api).create_namespaced_pod_eviction(pod, namespace, body)
    except ApiException as exc:
        return exc.status
    return 201


@contextlib.contextmanager
def no_new_pods(cluster, namespace: str) -> Iterator[None]:
    """While the block runs, no pod can be created in ``namespace``: a quota below the pods there now
    (the ones running stay). An evicted pod's replacement then cannot start, so the next eviction
    meets the budget as the disruption controller counts it; without this, kwok makes the
    replacement ready within milliseconds and the budget rightly allows the next eviction."""
    count = len(json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"])
    cluster.kubectl("create", "quota", "no-new-pods", "-n", namespace, f"--hard=pods={count - 1}")
    try:
        yield
    finally:
        cluster.kubectl("delete", "quota", "no-new-pods", "-n", namespace, "--ignore-not-found", check=False)


def test_the_budget_covers_every_pod_and_the_eviction_api_enforces_it(cluster, operator, api, namespace):
    cluster.apply(manifest(), namespace)
    rev = wait_phase(cluster, namespace, "Succeeded")["status"]["stableRevision"]
    pdb = wait_until(lambda: budget(cluster, namespace), 15, what="PodDisruptionBudget fraud")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == {"matchLabels": {"modelrollout.io/deployment": "fraud"}}
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert pdb["metadata"]["ownerReferences"][0]["uid"] == mdep(cluster, namespace)["metadata"]["uid"]
    # The controller-manager's disruption controller counts the two ready pods: one may go.
    wait_until(lambda: (budget(cluster, namespace).get("status") or {}).get("disruptionsAllowed") == 1, 30,
               what="disruptionsAllowed 1")  # fmt: skip
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", f"modelrollout.io/revision={rev}",
                                      "-o", "json").stdout)["items"]  # fmt: skip
    first, second = (p["metadata"]["name"] for p in pods[:2])
    with no_new_pods(cluster, namespace):
        assert evict(api, namespace, first) == 201
        assert evict(api, namespace, second) == 429, "a second eviction must wait for the first pod's replacement"

    # A change of the budget reaches the cluster at the next reconcile, without a rollout.
    body = manifest(disruptionBudget={"maxUnavailable": "100%"})
    cluster.apply(body, namespace)
    wait_until(lambda: budget(cluster, namespace)["spec"]["maxUnavailable"] == "100%", 15, what="budget 100%")
    assert mdep(cluster, namespace)["status"]["stableRevision"] == rev
    cluster.apply(manifest(disruptionBudget={"enabled": False}), namespace)
    wait_until(lambda: budget(cluster, namespace) is None, 15, what="budget deleted")


def test_the_drain_and_the_shutdown_are_passed_within_the_grace_period(cluster, operator, namespace):
    """spec.serving.drainSeconds reaches the model server, and its shutdown gets what is left of the
    grace period minus a second (the drain itself is tested on the server: test_lifecycle.py)."""
    cluster.apply(manifest(serving={"replicas": 1, "drainSeconds": 8, "terminationGracePeriodSeconds": 20}), namespace)
    rev = wait_phase(cluster, namespace, "Succeeded")["status"]["stableRevision"]
    pod = cluster.get("deploy", f"fraud-{rev}", namespace)["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert "--drain-seconds=8" in args and "--shutdown-timeout=11" in args, args
    assert pod["terminationGracePeriodSeconds"] == 20


ADMISSION = [
    ({"disruptionBudget": {"maxUnavailable": 0}}, "spec.disruptionBudget.maxUnavailable"),
    ({"disruptionBudget": {"maxUnavailable": "0%"}}, "spec.disruptionBudget.maxUnavailable"),
    ({"disruptionBudget": {"maxUnavailable": "half"}}, "spec.disruptionBudget.maxUnavailable"),
    ({"serving": {"drainSeconds": 30}}, "spec.serving.drainSeconds"),  # not below the default grace of 30
    ({"serving": {"drainSeconds": 5, "terminationGracePeriodSeconds": 5}}, "spec.serving.drainSeconds"),
]


@pytest.mark.parametrize(("spec", "field"), ADMISSION, ids=[json.dumps(s) for s, _ in ADMISSION])
def test_budget_and_drain_bounds_are_refused_at_admission(cluster, namespace, spec, field):
    refused_everywhere(cluster, namespace, manifest(**spec), field)
