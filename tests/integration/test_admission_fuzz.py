"""The operator's parser and the API server agree on generated ModelDeployments.

Hypothesis mutates a valid manifest (sets fields to values of every type and many near-valid
strings, deletes fields, adds unknown ones) and sends each result to the real API server as a
server-side dry run (CRD schema, CEL rules, pruning and defaults all apply, nothing is stored). What
the API server accepts is then parsed exactly as the operator parses a watched object
(``ModelDeploymentSpec.model_validate`` of the stored spec): an object admitted by the cluster that
the operator cannot parse would sit there with ``InvalidSpec`` forever. The converse (the operator's
parser accepts what admission refuses) is counted and must not happen either: the parser is the
validation the CLI and the tests rely on. Seeded (``MODELROLLOUT_FUZZ_SEED``) with a fixed budget.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from modelrollout.api import types as t
from pydantic import ValidationError

pytestmark = pytest.mark.cluster

SEED = int(os.environ.get("MODELROLLOUT_FUZZ_SEED") or 20261129)
DELETE = object()

BASE: dict[str, Any] = {
    "model": {"name": "fraud", "uri": "https://m/a.onnx"},
    "serving": {
        "replicas": 2,
        "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        "tolerations": [{"key": "gpu", "operator": "Exists"}],
        "volumes": [{"name": "cache", "emptyDir": {}}],
        "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
    },
    "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
    "strategy": {"canary": {"steps": [10, 50, 100], "stepDuration": "30s"}},
    "analysis": {
        "interval": "10s",
        "prometheus": {
            "address": "https://prom:9090",
            "authorization": {"credentials": {"name": "prom", "key": "token"}},
            "tls": {"ca": {"name": "prom", "key": "ca.crt"}},
            "headers": [{"name": "X-Scope-OrgID", "value": "ml"}],
        },
        "metrics": [{"name": "error-rate", "max": 0.01}, {"name": "latency-p99", "max": 250}],
    },
    "bake": {"duration": "1m"},
    "progressDeadlineSeconds": 600,
}

PATHS = [
    "model", "model.name", "model.uri", "model.sha256", "model.version", "model.storage", "model.storage.endpoint",
    "serving", "serving.replicas", "serving.resources", "serving.podLabels", "serving.env", "serving.env.0",
    "serving.tolerations", "serving.tolerations.0", "serving.affinity", "serving.affinity.nodeAffinity",
    "serving.nodeSelector", "serving.volumes", "serving.volumes.0", "serving.volumeMounts",
    "serving.serviceAccountName", "serving.terminationGracePeriodSeconds", "serving.imagePullSecrets",
    "serving.envFrom", "serving.topologySpreadConstraints",
    "traffic", "traffic.gatewayAPI", "traffic.gatewayAPI.parentRefs", "traffic.gatewayAPI.path",
    "traffic.none", "traffic.canaryRoutes",
    "strategy", "strategy.canary", "strategy.canary.steps", "strategy.canary.stepDuration",
    "strategy.canary.maxStepDuration", "strategy.blueGreen",
    "analysis", "analysis.interval", "analysis.failureLimit", "analysis.inconclusiveLimit",
    "analysis.significance", "analysis.prometheus.address", "analysis.prometheus.timeoutSeconds",
    "analysis.prometheus.authorization", "analysis.prometheus.authorization.type",
    "analysis.prometheus.authorization.credentials.name", "analysis.prometheus.basicAuth",
    "analysis.prometheus.tls", "analysis.prometheus.tls.cert", "analysis.prometheus.tls.insecureSkipVerify",
    "analysis.prometheus.headers", "analysis.prometheus.headers.0.name", "analysis.prometheus.headers.1",
    "analysis.metrics", "analysis.metrics.0", "analysis.metrics.0.name", "analysis.metrics.0.max",
    "analysis.metrics.0.template", "analysis.metrics.0.min", "analysis.metrics.1.max",
    "analysis.continuous", "bake", "bake.duration", "progressDeadlineSeconds", "unknownField",
]  # fmt: skip

STRINGS = [
    "", "0s", "1s", "30s", "5m", "1h30m", "-1s", "1.5s", "10", "abc", "https://m/b.onnx", "s3://b/m.onnx",
    "http://prom:9090", "error-rate", "accuracy", "latency-p99", "custom", "gw", "/v2", "/v2//x", "Fraud",
    "a" * 300, "s3://models/fraud/a.onnx", "http://minio:9000", "https://prom:9090", "Basic", "bearer",
    "Authorization", "x-scope-orgid",
]  # fmt: skip
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 130), st.integers(-(2**40), 2**40),
    st.floats(-2, 1000, allow_nan=False), st.sampled_from(STRINGS),
)  # fmt: skip
values = st.one_of(
    scalars,
    st.lists(st.integers(-5, 120), max_size=5),
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(["name", "max", "min", "template", "query", "steps", "x"]), scalars, max_size=3),
    st.just({}),
)
mutations = st.lists(st.tuples(st.sampled_from(PATHS), st.one_of(values, st.just(DELETE))), min_size=1, max_size=3)


def mutated(changes: list[tuple[str, Any]]) -> dict[str, Any]:
    """BASE with each (path, value) applied; a path through a non-object replaces it with one."""
    spec = copy.deepcopy(BASE)
    for path, value in changes:
        *parents, leaf = path.split(".")
        node: Any = spec
        for key in parents:
            child = node[int(key)] if isinstance(node, list) and key.isdigit() and int(key) < len(node) else None
            if child is None and isinstance(node, dict):
                child = node.get(key)
                if not isinstance(child, dict | list):
                    child = node[key] = {}
            if not isinstance(child, dict | list):
                break
            node = child
        else:
            if isinstance(node, dict):
                if value is DELETE:
                    node.pop(leaf, None)
                else:
                    node[leaf] = copy.deepcopy(value)  # st.just({}) is one object: no cycles
            elif isinstance(node, list) and leaf.isdigit() and int(leaf) < len(node) and value is not DELETE:
                node[int(leaf)] = copy.deepcopy(value)
    return spec


def admitted(api: client.ApiClient, namespace: str, spec: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The spec as the API server would store it (dry run), or None and its refusal."""
    body = {"apiVersion": f"{t.GROUP}/{t.VERSION}", "kind": "ModelDeployment", "metadata": {"name": "fuzz"},
            "spec": spec}  # fmt: skip
    try:
        stored = client.CustomObjectsApi(api).create_namespaced_custom_object(
            t.GROUP, t.VERSION, namespace, t.PLURAL, body, dry_run="All"
        )
    except ApiException as exc:
        assert exc.status in (400, 422), f"the API server answered {exc.status}: {exc.body}"
        return None, str(exc.body)[:300]
    return stored.get("spec") or {}, ""


def parsed(spec: dict[str, Any]) -> str:
    """'' when the operator's parser takes ``spec``, else its first error."""
    try:
        t.ModelDeploymentSpec.model_validate(spec)
    except ValidationError as exc:
        return str(exc.errors()[0])[:300]
    return ""


def test_the_api_server_and_the_operator_parse_alike(api, namespace):
    seen = {"admitted": 0, "refused": 0}
    disagreements: list[str] = []

    @seed(SEED)
    @given(changes=mutations)
    @settings(
        max_examples=int(os.environ.get("MODELROLLOUT_FUZZ_EXAMPLES") or 150),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(changes: list[tuple[str, Any]]) -> None:
        spec = mutated(changes)
        stored, refusal = admitted(api, namespace, spec)
        if stored is not None:
            seen["admitted"] += 1
            if error := parsed(stored):
                disagreements.append(f"admitted, the operator refuses ({error}): {json.dumps(stored)[:400]}")
        else:
            seen["refused"] += 1
            if not parsed(spec):
                disagreements.append(f"refused ({refusal}), the operator accepts: {json.dumps(spec)[:400]}")

    check()
    print(f"\nfuzz seed {SEED}: {seen['admitted']} admitted, {seen['refused']} refused, "
          f"{len(disagreements)} disagreements")  # fmt: skip
    assert seen["admitted"] >= 10 and seen["refused"] >= 10, seen
    assert not disagreements, "\n".join(sorted(set(disagreements))[:10])
