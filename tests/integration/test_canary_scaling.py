"""A Proportional canary against the real API server, controller-manager and kwok: it runs at its
step's share of the replicas and the route gives it a weight only with the pods for it."""

from __future__ import annotations

import math
import time

import pytest

from tests.integration.test_operator import manifest, wait_phase

pytestmark = pytest.mark.cluster


def canary_percent(route: dict | None) -> int | None:
    """The canary's share in the HTTPRoute's weighted rule, in percent (None: no route yet)."""
    if route is None:
        return None
    rule = route["spec"]["rules"][-1]
    weights = {b["name"]: b.get("weight", 1) for b in rule["backendRefs"]}
    total = sum(weights.values())
    return round(100 * weights.get("fraud-canary", 0) / total) if total else 0


def test_a_proportional_canary_takes_each_weight_only_with_the_pods_for_it(cluster, operator, upstream_crds, namespace):
    gateway = {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}
    cluster.apply(manifest(traffic=gateway, serving={"replicas": 4}), namespace)
    stable = wait_phase(cluster, namespace, "Succeeded")["status"]["stableRevision"]
    steps = {"steps": [25, 50, 100], "stepDuration": "2s", "scaling": "Proportional"}
    cluster.apply(manifest(uri="https://models.example.com/b.onnx", traffic=gateway, serving={"replicas": 4},
                           strategy={"canary": steps}), namespace)  # fmt: skip
    samples, deadline = [], time.monotonic() + 90
    while time.monotonic() < deadline:
        obj = cluster.get("mdep", "fraud", namespace) or {}
        status = obj.get("status", {})
        percent = canary_percent(cluster.get("httproute", "fraud", namespace))  # the route first, then the pods:
        canary = status.get("canaryRevision")  # scale-ups only add pods in between, never take them away
        if canary:
            dep = cluster.get("deploy", f"fraud-{canary}", namespace) or {}
            samples.append(
                (percent, dep.get("spec", {}).get("replicas"), dep.get("status", {}).get("availableReplicas") or 0)
            )
        if status.get("phase") == "Succeeded" and status.get("stableRevision") != stable:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the rollout did not finish: {samples[-5:]}")
    asked = {replicas for _, replicas, _ in samples}
    assert {1, 2, 4} <= asked, samples  # 25 % and 50 % of 4 (rounded up), then full size
    for percent, _, available in samples:
        if percent:
            assert available >= math.ceil(4 * percent / 100), (percent, available, samples)
    assert {25, 50, 100} <= {p for p, _, _ in samples}, samples
