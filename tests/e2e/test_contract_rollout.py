"""The contract check end to end: a canary whose model expects other inputs never takes traffic.

Everything real, as in test_rollouts.py: the operator, the API server and kwok, a real model server
per pod, a real Prometheus scraping ``modelserver_model_signature_info``, and the loopback gateway
that routes by the HTTPRoute's weights. The stable serves ``baseline`` (input FP32 [-1,5], five
named features); the canary ``narrow/narrow`` (input FP32 [-1,4], no ``channel``) would answer 400 to
every request -- which the error-rate gate (5xx only) cannot see -- so the only gate here is that
one, exactly as in examples/fraud-istio.yaml: the contract check alone must refuse it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hack.loopback.cluster import TESTENV, wait_until
from hack.loopback.traffic import TrafficSender
from hack.loopback.world import LocalWorld, local_world, model_spec, serving_spec

pytestmark = pytest.mark.e2e
RATE = 30


def manifest(model: str, prometheus: str) -> dict:
    return {
        "apiVersion": "modelrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {
            "model": model_spec(model),
            "serving": serving_spec(),
            "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
            "strategy": {"canary": {"steps": [20, 50, 100], "stepDuration": "5s"}},
            "analysis": {
                "interval": "3s",
                "prometheus": {"address": prometheus, "timeoutSeconds": 2},
                "metrics": [{"name": "error-rate", "max": 0.05, "minSamples": 10}],
            },
            "bake": {"duration": "0s"},
            "progressDeadlineSeconds": 60,
        },
    }


@pytest.fixture
def world(cluster, operator, upstream_crds, api, namespace, tmp_path) -> Iterator[LocalWorld]:
    with local_world(api, namespace, tmp_path, TESTENV / "e2e-logs" / namespace) as lw:
        yield lw


def status(cluster, namespace: str) -> dict:
    return (cluster.get("mdep", "fraud", namespace) or {}).get("status", {})


def test_a_canary_with_another_input_schema_never_takes_traffic(cluster, namespace, world):
    cluster.apply(manifest("baseline", world.prometheus.url), namespace)
    stable = wait_until(lambda: (s := status(cluster, namespace)).get("phase") == "Succeeded" and s, 120, 0.5,
                        "baseline stable")["stableRevision"]  # fmt: skip
    sender = TrafficSender({"gw": world.gateway.url}, seed=1, concurrency=2)
    sender.start(max_requests=RATE * 120, max_seconds=120, rate=RATE)
    try:
        wait_until(lambda: world.gateway.stats.routed[stable] > 30, 30, what="traffic on the stable revision")
        # The check skips a stable that exports no signature (a model server older than the metric).
        # A stable not scraped yet is held as Unknown when the canary's signature is there
        # (tests/unit/test_contract.py), but proceeds when neither is scraped (a Prometheus that
        # scrapes no model server), which a busy machine could also produce here: wait for the
        # scrape, as a stable that has served a while has been.
        signature = f'modelserver_model_signature_info{{namespace="{namespace}", revision="{stable}"}}'
        wait_until(lambda: world.prometheus.query(signature), 30, what="the stable's signature scraped")
        cluster.apply(manifest("narrow/narrow", world.prometheus.url), namespace)
        canary = wait_until(lambda: status(cluster, namespace).get("canaryRevision"), 30, what="canary revision")
        st = wait_until(lambda: (s := status(cluster, namespace)).get("phase") == "RolledBack" and s, 90, 0.5,
                        "the canary refused")  # fmt: skip
    finally:
        sent = sender.stop()

    # Refused for its signature (read from Prometheus, so its pod served and was scraped), by name.
    assert st["rollbackReason"] == "ContractMismatch" and st["stableRevision"] == stable
    assert canary in st["failedRevisions"] and st["canaryWeight"] == 0
    degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "ContractMismatch"
    for text in (st["message"], degraded["message"]):
        assert "input 'input': FP32 [-1,5] on stable, FP32 [-1,4] on canary" in text, text
        assert "feature 'channel' missing on canary" in text, text
    # Not one request reached it: the route never named it, and no caller got its 400.
    assert world.gateway.stats.routed[canary] == 0 and canary not in world.gateway.stats.first_seen
    assert all(weights.get(canary, 0) == 0 for _, weights in world.gateway.stats.weights_log)
    assert sent.total > 0 and sent.codes["gw"][400] == 0, sent.codes
    reasons = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=fraud",
                              "-o", "jsonpath={.items[*].reason}").stdout.split()  # fmt: skip
    assert "StepStarted" not in reasons and "RolledBack" in reasons
