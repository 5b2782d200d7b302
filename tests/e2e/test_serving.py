"""Real model servers behind the operator's pods: readiness is the server's warmup, not a simulation."""

from __future__ import annotations

import json
import urllib.request

import pytest
from kubernetes import config

from hack.loopback.cluster import TESTENV, wait_until
from hack.loopback.pods import PodRunner, wait_ready
from hack.loopback.world import SHA256, model_spec, serving_spec

pytestmark = pytest.mark.e2e


def manifest(model: str, sha256: str, deadline: int = 60) -> dict:
    return {
        "apiVersion": "modelrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {
            "model": model_spec(model, sha256),
            "serving": serving_spec(),
            "traffic": {"none": {}},
            "progressDeadlineSeconds": deadline,
        },
    }


@pytest.fixture
def runner(cluster, namespace):
    api = config.new_client_from_config(str(cluster.kubeconfig))
    with PodRunner(api, namespace, TESTENV / "e2e-logs" / namespace) as r:
        yield r


def test_pod_is_ready_only_when_the_model_server_is(cluster, operator, namespace, runner):
    cluster.apply(manifest("baseline", SHA256["baseline.onnx"]), namespace)
    rev = wait_until(lambda: (cluster.get("mdep", "fraud", namespace) or {}).get("status", {}).get("stableRevision"),
                     90, what="first revision stable")  # fmt: skip
    (pod,) = wait_ready(runner, rev, 1, 30)
    with urllib.request.urlopen(f"{pod.url}/v2/models/fraud") as resp:
        meta = json.load(resp)
    assert meta["name"] == "fraud" and meta["platform"] == "onnx_onnxv1"
    obj = cluster.get("mdep", "fraud", namespace)
    assert next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"


def test_sha256_mismatch_never_becomes_ready_trips_the_deadline_and_says_why(cluster, operator, namespace, runner):
    cluster.apply(manifest("baseline", "0" * 64, deadline=15), namespace)
    obj = wait_until(
        lambda: (o := cluster.get("mdep", "fraud", namespace)) and o.get("status", {}).get("phase") == "Failed" and o,
        90, what="phase Failed",
    )  # fmt: skip
    degraded = next(c for c in obj["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "ProgressDeadlineExceeded"
    assert runner.targets() == [] and runner.pods, "the pod exists but must never report ready"
    # The server exits with the reason (--exit-on-load-failure), the kubelet restarts it, and the
    # reason reaches the status from the container's last termination message.
    # The reason can follow the deadline (a slow start on a busy machine): it is kept up to date.
    message = wait_until(
        lambda: "sha256 mismatch" in (m := cluster.get("mdep", "fraud", namespace)["status"]["message"]) and m,
        60, what="the pods' reason in the message",
    )  # fmt: skip
    assert "not available within progressDeadlineSeconds=15: pod fraud-" in message, message
    assert "CrashLoopBackOff; last exit 1: sha256 mismatch for" in message, message
    (proc,) = runner.pods.values()
    assert proc.last_exit is not None and "sha256 mismatch" in proc.last_exit["message"]
