"""Models in a private bucket of a real S3-compatible store and in a real OCI registry, rolled out by
the operator.

The store is versitygw (hack/loopback/objectstore.py), which checks every request's signature; the
pods are real model servers run by the loopback kubelet (PodRunner), which resolves their
``secretKeyRef`` environment from the Secret when a container starts, as kubelet does. The
ModelDeployment names the Secret in ``spec.model.storage``; the operator never reads it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hack.loopback.cluster import TESTENV, Cluster, wait_until
from hack.loopback.modelserver import model_path
from hack.loopback.objectstore import ObjectStore
from hack.loopback.pods import PodRunner
from hack.loopback.registry import Registry, docker_config
from hack.loopback.world import SHA256, local_world, serving_spec

pytestmark = pytest.mark.e2e

KEYS = ("MODELROLLOUTE2E", "first-secret-" + "1" * 27)
ROTATED = ("MODELROLLOUTE2E2", "second-secret-" + "2" * 26)


@dataclass
class Bed:
    cluster: Cluster
    namespace: str
    runner: PodRunner
    store: ObjectStore

    def secret(self, name: str, keys: tuple[str, str]) -> None:
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                "stringData": {"AWS_ACCESS_KEY_ID": keys[0], "AWS_SECRET_ACCESS_KEY": keys[1]}}  # fmt: skip
        self.cluster.kubectl("apply", "-n", self.namespace, "-f", "-", stdin=json.dumps(body))

    def apply(self, model: str, secret: str, deadline: int = 30) -> None:
        spec: dict[str, Any] = {
            "model": {
                "name": "fraud",
                "uri": f"s3://models/fraud/{model}.onnx",
                "sha256": SHA256[f"{model}.onnx"],
                "storage": {"secretName": secret, "endpoint": self.store.url},
            },
            "serving": serving_spec(warmup=2),
            "traffic": {"none": {}},
            "strategy": {"canary": {"steps": [100], "stepDuration": "1s"}},
            "progressDeadlineSeconds": deadline,
        }
        manifest = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelDeployment",
                    "metadata": {"name": "fraud"}, "spec": spec}  # fmt: skip
        self.cluster.apply(manifest, self.namespace)

    def status(self) -> dict:
        return (self.cluster.get("mdep", "fraud", self.namespace) or {}).get("status", {})

    def wait_phase(self, phase: str, timeout: float = 90) -> dict:
        return wait_until(lambda: (s := self.status()).get("phase") == phase and s, timeout, what=f"phase {phase}")


@pytest.fixture
def bed(cluster, operator, api, namespace, tmp_path) -> Iterator[Bed]:
    with contextlib.ExitStack() as stack:
        store = stack.enter_context(ObjectStore(tmp_path / "s3", *KEYS))
        for model in ("baseline", "better"):
            store.put("models", f"fraud/{model}.onnx", model_path(model).read_bytes())
        store.put("models", "fraud/metadata.json", (model_path("baseline").parent / "metadata.json").read_bytes())
        world = stack.enter_context(local_world(api, namespace, tmp_path, TESTENV / "e2e-logs" / namespace))
        yield Bed(cluster, namespace, world.runner, store)


def test_a_private_model_is_served_with_a_secret_that_rotates_without_a_new_revision(bed: Bed) -> None:
    bed.secret("fraud-store", KEYS)
    bed.apply("baseline", "fraud-store")
    revision = bed.wait_phase("Succeeded")["stableRevision"]
    generation = bed.cluster.get("mdep", "fraud", bed.namespace)["metadata"]["generation"]

    # Rotate: the store takes new keys, the Secret follows. Nothing about the revision changes.
    bed.store.rotate(*ROTATED)
    bed.secret("fraud-store", ROTATED)
    time.sleep(3)  # a few reconciles' worth
    status = bed.status()
    assert status["stableRevision"] == revision and not status.get("canaryRevision")
    assert [h["revision"] for h in status["history"]] == [revision], "no new revision"
    assert bed.cluster.get("mdep", "fraud", bed.namespace)["metadata"]["generation"] == generation

    # A pod that starts after the rotation (here: one deleted by hand) loads with the new keys.
    (old,) = bed.runner.by_revision()[revision]
    bed.cluster.kubectl("delete", "pod", old.pod, "-n", bed.namespace, "--wait=false")
    wait_until(
        lambda: [p for p in bed.runner.by_revision().get(revision, []) if p.pod != old.pod],
        60,
        what="the replacement pod ready with the rotated keys",
    )
    assert bed.status()["stableRevision"] == revision


def test_stale_credentials_are_named_in_status_and_a_fixed_secret_heals_the_canary(bed: Bed) -> None:
    """The model server exits with the store's refusal as its termination message; the operator
    shows it while it waits; the kubelet's restart reads the corrected Secret and the same revision
    goes on to be promoted."""
    bed.secret("fraud-store", KEYS)
    bed.apply("baseline", "fraud-store")
    bed.wait_phase("Succeeded")
    bed.secret("canary-store", ("MODELROLLOUTE2E", "not-the-secret-" + "0" * 25))
    bed.apply("better", "canary-store", deadline=90)
    canary = wait_until(lambda: bed.status().get("canaryRevision"), 30, what="the canary")
    waiting = wait_until(
        lambda: "SignatureDoesNotMatch" in (m := bed.status().get("message", "")) and m, 60, what="the reason"
    )
    assert waiting.startswith(f"waiting for canary {canary} to become available: pod fraud-{canary}-")
    assert "CrashLoopBackOff; last exit 1: s3://models/fraud/better.onnx: the store refused the request" in waiting
    assert "not-the-secret" not in waiting

    bed.secret("canary-store", KEYS)
    done = bed.wait_phase("Succeeded", timeout=90)
    assert done["stableRevision"] == canary, "the same revision, healed by the kubelet's restart"


def test_a_missing_secret_is_named_and_rolls_back_at_the_deadline(bed: Bed) -> None:
    bed.secret("fraud-store", KEYS)
    bed.apply("baseline", "fraud-store")
    stable = bed.wait_phase("Succeeded")["stableRevision"]
    bed.apply("better", "no-such-secret", deadline=20)
    # Seen while waiting (the kubelet reports it once the pod is scheduled), then in the rollback.
    waiting = wait_until(lambda: "CreateContainerConfigError" in (m := bed.status().get("message", "")) and m,
                         20, what="the kubelet's reason while waiting")  # fmt: skip
    assert 'secret "no-such-secret" not found' in waiting
    rolled_back = bed.wait_phase("RolledBack", timeout=60)
    assert rolled_back["stableRevision"] == stable
    (canary,) = rolled_back["failedRevisions"]
    assert f"canary {canary} not available after 20s: pod fraud-{canary}-" in rolled_back["message"]
    assert 'CreateContainerConfigError: secret "no-such-secret" not found' in rolled_back["message"]


def test_an_oci_artifact_is_served_with_a_dockerconfigjson_secret(bed: Bed, tmp_path: Path) -> None:
    """The same Secret type as imagePullSecrets: the kubelet mounts it as the pods' docker config."""
    with Registry(tmp_path / "registry", {"puller": "registry-secret-" + "9" * 24}) as registry:
        files = {"model.onnx": model_path("baseline").read_bytes(),
                 "metadata.json": (model_path("baseline").parent / "metadata.json").read_bytes()}  # fmt: skip
        digest = registry.push("models/fraud", "v1", files)
        config = docker_config(tmp_path / "docker", registry.host, "puller", "registry-secret-" + "9" * 24)
        dockerconfig = (config / "config.json").read_text()
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                  "metadata": {"name": "pull"}, "stringData": {".dockerconfigjson": dockerconfig}}  # fmt: skip
        bed.cluster.kubectl("apply", "-n", bed.namespace, "-f", "-", stdin=json.dumps(secret))
        spec: dict[str, Any] = {
            "model": {"name": "fraud", "uri": f"oci://{registry.host}/models/fraud@{digest}",
                      "sha256": SHA256["baseline.onnx"], "storage": {"secretName": "pull", "plainHTTP": True}},
            "serving": serving_spec(warmup=2),
            "traffic": {"none": {}},
            "progressDeadlineSeconds": 30,
        }  # fmt: skip
        manifest = {"apiVersion": "modelrollout.io/v1alpha1", "kind": "ModelDeployment",
                    "metadata": {"name": "fraud"}, "spec": spec}  # fmt: skip
        bed.cluster.apply(manifest, bed.namespace)
        status = bed.wait_phase("Succeeded")
        (pod,) = bed.runner.by_revision()[status["stableRevision"]]
        assert pod.ready
