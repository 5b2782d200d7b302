"""A Proportional canary against the real API server, controller-manager and kwok: it runs at its
step's share of the replicas and the route gives it a weight only with the pods for it."""

from __future__ import annotations

import json
import math
import time

import pytest

from hack.loopback.cluster import wait_until
from tests.integration.test_operator import manifest, wait_phase
from tests.integration.test_pod_spec import refused_everywhere

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


def replicas_managers(deploy: dict) -> set[str]:
    """The field managers that own spec.replicas (an Update of the scale subresource is the HPA)."""
    return {
        f"{entry['manager']}/{entry.get('subresource', '')}"
        for entry in deploy["metadata"].get("managedFields") or []
        if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    }


def test_an_autoscaler_owns_the_stable_count_and_the_canary_is_sized_from_it(
    cluster, operator, upstream_crds, namespace
):
    """With the real controller-manager's HPA controller (no metrics server here: it still enforces
    minReplicas, which is what this needs)."""
    gateway = {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}
    serving = {"replicas": 2, "autoscaling": {"minReplicas": 3, "maxReplicas": 6}}
    steps = {"steps": [50, 100], "stepDuration": "2s", "scaling": "Proportional", "scaleDownDelay": "2s"}
    cluster.apply(manifest(traffic=gateway, serving=serving, strategy={"canary": steps}), namespace)
    rev1 = wait_phase(cluster, namespace, "Succeeded")["status"]["stableRevision"]
    hpa = wait_until(lambda: cluster.get("hpa", "fraud", namespace), 15, what="HorizontalPodAutoscaler fraud")
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"fraud-{rev1}"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 6)
    assert cluster.get("deploy", f"fraud-{rev1}", namespace)["spec"]["replicas"] == 3  # created at minReplicas

    # Below minReplicas by hand: the HPA controller, not the operator, puts it back.
    cluster.kubectl("scale", "deploy", f"fraud-{rev1}", "-n", namespace, "--replicas=1")
    back = wait_until(lambda: (d := cluster.get("deploy", f"fraud-{rev1}", namespace))["spec"]["replicas"] == 3
                      and d, 60, what="the HPA restoring minReplicas")  # fmt: skip
    fields = json.loads(cluster.kubectl("get", "deploy", f"fraud-{rev1}", "-n", namespace, "-o", "json",
                                        "--show-managed-fields").stdout)  # fmt: skip
    assert back["spec"]["replicas"] == 3 and replicas_managers(fields) == {"kube-controller-manager/scale"}, fields[
        "metadata"
    ]["managedFields"]

    # Within its bounds the count is the autoscaler's (here: kubectl standing in for a scale-up): never put back.
    cluster.kubectl("scale", "deploy", f"fraud-{rev1}", "-n", namespace, "--replicas=5")
    time.sleep(5)
    assert cluster.get("deploy", f"fraud-{rev1}", namespace)["spec"]["replicas"] == 5

    # A rollout sizes the canary from the stable's 5: 3 pods at 50 %, 5 at 100 %; the HPA moves on.
    cluster.apply(manifest(uri="https://models.example.com/b.onnx", traffic=gateway, serving=serving,
                           strategy={"canary": steps}), namespace)  # fmt: skip
    asked, deadline = set(), time.monotonic() + 90
    while time.monotonic() < deadline:
        status = (cluster.get("mdep", "fraud", namespace) or {}).get("status", {})
        if status.get("canaryRevision"):
            dep = cluster.get("deploy", f"fraud-{status['canaryRevision']}", namespace) or {}
            asked.add(dep.get("spec", {}).get("replicas"))
        if status.get("phase") == "Succeeded" and status.get("stableRevision") != rev1:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the rollout did not finish; canary sizes seen {asked}")
    rev2 = status["stableRevision"]
    assert {3, 5} <= asked, asked
    wait_until(lambda: cluster.get("hpa", "fraud", namespace)["spec"]["scaleTargetRef"]["name"] == f"fraud-{rev2}",
               15, what="the HPA on the new stable")  # fmt: skip
    assert cluster.get("deploy", f"fraud-{rev2}", namespace)["spec"]["replicas"] == 5
    wait_until(lambda: cluster.get("deploy", f"fraud-{rev1}", namespace)["spec"]["replicas"] == 0, 30,
               what="the old stable scaled to zero")  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"serving": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}, "spec.serving.autoscaling.minReplicas"),
        (
            {"serving": {"autoscaling": {"maxReplicas": 4, "metrics": [{"type": 7}]}}},
            "spec.serving.autoscaling.metrics[0].type",
        ),
        ({"serving": {"autoscaling": {"maxReplicas": 4}}}, "spec.serving.autoscaling"),  # traffic.none canary
        ({"strategy": {"canary": {"steps": [50, 100], "scaling": "Half"}}}, "spec.strategy.canary.scaling"),
    ],
    ids=["min-above-max", "metric-type", "no-traffic-layer", "unknown-scaling"],
)
def test_scaling_settings_are_refused_at_admission_naming_the_field(cluster, namespace, spec, field):
    refused_everywhere(cluster, namespace, manifest(**spec), field)
