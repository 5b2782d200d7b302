"""The operator's gates behind a bearer token, with the token in a Secret of the real API server.

A real Prometheus sits behind :class:`~hack.loopback.authproxy.BearerProxy` (401 without the right
``Authorization: Bearer``), as managed Prometheus services do. A ModelDeployment names the Secret in
``spec.analysis.prometheus.authorization``; the operator reads it at each check. One rollout shows
the three things users depend on: the gates pass through the proxy with the token; a wrong token
(the Secret rotated to a stale value) makes them blind with a message that says what to fix and
holds the canary; rotating the Secret back lets the same revision finish, with no restart and no
new revision.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.loopback.authproxy import BearerProxy
from hack.loopback.cluster import Cluster, wait_until
from hack.loopback.prometheus import Prometheus
from tests.integration.test_operator import manifest, mdep, wait_phase

pytestmark = pytest.mark.cluster

TOKEN = "good-" + "1" * 32
STALE = "stale-" + "2" * 32


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[BearerProxy]:
    with Prometheus(tmp_path / "prometheus") as prometheus, BearerProxy(prometheus.url, TOKEN) as proxy:
        yield proxy


def set_token(cluster: Cluster, namespace: str, token: str) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "prom-token", "namespace": namespace},
        "stringData": {"token": token},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(secret))


@pytest.mark.usefixtures("operator")
def test_gates_use_the_token_from_a_secret_and_follow_its_rotation(
    cluster: Cluster, namespace: str, guarded: BearerProxy
) -> None:
    set_token(cluster, namespace, TOKEN)
    analysis = {
        "interval": "1s",
        "inconclusiveLimit": 1000,  # blind checks hold the canary here instead of rolling it back
        "prometheus": {
            "address": guarded.url,
            "timeoutSeconds": 5,
            "authorization": {"credentials": {"name": "prom-token", "key": "token"}},
        },
        "metrics": [{"name": "answers", "template": "custom", "query": "vector(0.01)", "max": 0.05}],
    }
    steps = {"canary": {"steps": [50, 100], "stepDuration": "3s"}}
    cluster.apply(manifest("auth", analysis=analysis, strategy=steps), namespace)
    wait_phase(cluster, namespace, "Succeeded", name="auth")

    cluster.apply(
        manifest("auth", uri="https://models.example.com/b.onnx", analysis=analysis, strategy=steps), namespace
    )
    at_half = wait_until(
        lambda: (s := mdep(cluster, namespace, "auth").get("status") or {}).get("canaryWeight") == 50 and s,
        30,
        what="canary at 50 %",
    )
    canary = at_half["canaryRevision"]
    assert guarded.forwarded > 0 and guarded.refused == 0, "the checks so far went through with the token"

    set_token(cluster, namespace, STALE)

    def blind() -> dict | None:
        last = (mdep(cluster, namespace, "auth").get("status") or {}).get("lastAnalysis") or {}
        metrics = last.get("metrics") or []
        return last if metrics and "refused the credentials" in metrics[0].get("message", "") else None

    refused = wait_until(blind, 30, what="a check refused by the proxy")  # the Secret is read at each check
    gate = refused["metrics"][0]
    assert refused["verdict"] == "Inconclusive" and gate["reason"] == "QueryError"
    assert f"Prometheus at {guarded.url} refused the credentials (HTTP 401: Unauthorized)" in gate["message"]
    status = mdep(cluster, namespace, "auth")["status"]
    assert status["canaryRevision"] == canary and status["canaryWeight"] == 50, "held, not promoted"
    assert STALE not in json.dumps(status) and TOKEN not in json.dumps(status)

    set_token(cluster, namespace, TOKEN)
    done = wait_phase(cluster, namespace, "Succeeded", name="auth", timeout=60)
    assert done["status"]["stableRevision"] == canary, "the same revision finished: rotation is no new revision"
    assert done["status"]["lastAnalysis"]["verdict"] == "Pass"
