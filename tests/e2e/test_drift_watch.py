"""Drift end to end: real model servers count inputs and scores in their training bins, a real
Prometheus scrapes them, the operator's continuous watch judges the counts, and a retraining Job
runs under the real Job controller (its pod simulated by kwok: it exits 0 after two seconds).

Healthy traffic from the training distribution keeps Drifted=False with every feature judged;
traffic whose ``amount`` is four times larger sets Drifted naming ``amount`` (and no other input),
starts exactly one retraining Job although the operator is killed right after creating it, and the
cooldown keeps a second run from starting while the drift goes on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hack.loopback.cluster import TESTENV, Cluster, wait_until
from hack.loopback.traffic import TrafficSender
from hack.loopback.world import LocalWorld, local_world, model_spec, serving_spec

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
RATE, BATCH = 40, 5  # requests per second, rows per request: 200 values of each feature per second
INPUTS = {"amount", "account_age_days", "hour", "distance_km", "channel"}
SHIFT = {"amount": 4.0}


def manifest(prometheus: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {
            "model": model_spec("baseline"),
            "serving": serving_spec(5),
            "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
            "analysis": {
                "interval": "3s",
                "failureLimit": 2,  # two drifted checks in a row are sustained drift
                "prometheus": {"address": prometheus, "timeoutSeconds": 2},
                "metrics": [{"name": "drift", "maxPSI": 0.2}],  # the documented default
                "continuous": {"window": "5m"},
            },
            "retraining": {
                "job": {"image": "registry.invalid/trainer:1", "podLabels": {"modelrollout.io/simulate": "complete"}},
                "cooldown": "1h",
            },
            "bake": {"duration": "0s"},
        },
    }


class DriftWorld:
    def __init__(self, cluster: Cluster, namespace: str, lw: LocalWorld) -> None:
        self.cluster, self.namespace, self.lw = cluster, namespace, lw
        self.senders: list[TrafficSender] = []

    def status(self) -> dict[str, Any]:
        return (self.cluster.get("mdep", "fraud", self.namespace) or {}).get("status", {})

    def condition(self, type_: str) -> dict[str, Any]:
        return next((c for c in self.status().get("conditions", []) if c["type"] == type_), {})

    def drift_check(self) -> dict[str, Any]:
        """The drift gate's result in the last watch check."""
        metrics = (self.status().get("lastAnalysis") or {}).get("metrics", [])
        return next((m for m in metrics if m["name"] == "drift"), {})

    def traffic(self, scale: dict[str, float] | None = None) -> None:
        for sender in self.senders:
            sender.stop()
        sender = TrafficSender({"gw": self.lw.gateway.url}, seed=len(self.senders) + 11, batch_size=BATCH,
                               feedback=False, concurrency=2, scale=scale)  # fmt: skip
        sender.start(max_requests=RATE * 300, max_seconds=300, rate=RATE)
        self.senders.append(sender)

    def jobs(self) -> list[dict[str, Any]]:
        listed = self.cluster.kubectl("get", "jobs", "-n", self.namespace, "-l", "modelrollout.io/retraining=fraud",
                                      "-o", "json")  # fmt: skip
        return json.loads(listed.stdout)["items"]


@pytest.fixture
def drift_world(cluster, operator, upstream_crds, api, namespace, tmp_path) -> Iterator[DriftWorld]:
    with local_world(api, namespace, tmp_path, TESTENV / "e2e-logs" / namespace) as lw:
        world = DriftWorld(cluster, namespace, lw)
        try:
            yield world
        finally:
            for sender in world.senders:
                sender.stop()


def test_shifted_inputs_set_drifted_and_start_one_retraining_run_that_the_cooldown_holds(drift_world, operator):
    w = drift_world
    w.cluster.apply(manifest(w.lw.prometheus.url), w.namespace)
    wait_until(lambda: w.status().get("phase") == "Succeeded", 120, what="the first revision stable")
    w.traffic()

    # Healthy: every feature (and the score) judged against its training bins, none drifted.
    passed = wait_until(lambda: (m := w.drift_check()).get("reason") == "Passed" and m, 90, what="a judged check")
    judged = {f["name"] for f in passed["features"]}
    assert judged == INPUTS | {"_prediction_score"}, passed
    assert max(f["psi"] for f in passed["features"]) < 0.05, passed
    assert w.condition("Drifted")["status"] == "False" and w.condition("Drifted")["reason"] == "NoDrift"
    assert (w.status().get("drift") or {}).get("checks", 0) == 0 and not w.jobs()

    # Shifted: amount four times larger. The watch's counts mix it with the healthy ones of the window.
    w.traffic(scale=SHIFT)
    shifted = time.monotonic()
    drifted = wait_until(lambda: (c := w.condition("Drifted")).get("status") == "True" and c, 120, what="Drifted")
    print(
        f"\ndrift: healthy largest PSI {max(f['psi'] for f in passed['features']):.3f}; Drifted "
        f"{time.monotonic() - shifted:.1f} s after the shift: {drifted['message']}"
    )
    assert drifted["reason"] == "DriftDetected" and "amount PSI" in drifted["message"], drifted
    names = {f["name"] for f in w.status()["drift"]["features"]}
    assert "amount" in names and not names & (INPUTS - {"amount"}), names  # the score may move with amount
    assert w.condition("Degraded")["status"] == "False", "data drift is not a failed watch"

    # One run: the operator is killed as soon as its Job exists, and the restarted one carries on.
    job = wait_until(w.jobs, 30, what="the retraining Job")[0]
    operator.kill()
    operator.start()
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert job["metadata"]["name"] == "fraud-retrain-1" and env["MODELROLLOUT_REVISION"] == w.status()["stableRevision"]
    assert '"amount"' in env["MODELROLLOUT_DRIFT_REPORT"] and env["MODELROLLOUT_MODEL_URI"].endswith("baseline.onnx")
    done = wait_until(lambda: (r := w.status().get("retraining") or {}).get("outcome") == "Succeeded" and r, 90,
                      what="the run's outcome")  # fmt: skip
    assert done["runs"] == 1 and done["job"] == "fraud-retrain-1" and done["nextRunAfter"] > done["finishedAt"]

    # Still drifted, but in the cooldown: no second run over several checks.
    checked = w.status()["drift"]["lastCheckAt"]
    wait_until(lambda: w.status()["drift"]["lastCheckAt"] > checked, 30, what="a later drift check")
    wait_until(lambda: w.status()["drift"]["checks"] >= 4, 60, what="more drifted checks")
    assert w.condition("Drifted")["status"] == "True"
    assert [j["metadata"]["name"] for j in w.jobs()] == ["fraud-retrain-1"]
    assert (w.status().get("retraining") or {}).get("runs") == 1
