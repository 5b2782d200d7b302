"""Every router against the real API server with the real upstream CRDs installed.

The Gateway API (standard channel) and Istio networking CRDs come from their Go modules through
hack/fetch-crds.sh, so their OpenAPI schemas and CEL rules judge exactly what the routers write.
No operator is needed: each test applies a ModelDeployment as the owner (``paused: true``, so an
operator that other tests run against the same cluster leaves it alone), drives the router
directly, reads the result back through the router and through kubectl, and finally deletes the
owner to see the real garbage collector remove what the router wrote.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from modelrollout.api.types import ModelDeploymentSpec
from modelrollout.routers import cleanup_other_providers, router_for, router_for_provider
from modelrollout.workloads import build_deployment, build_service

from tests.conftest import Cluster, wait_until

pytestmark = pytest.mark.cluster

# The garbage collector learns about new resource types by periodic discovery (30 s) after the
# CRDs are installed, so give collection of custom resources a generous bound.
GC_TIMEOUT = 120

TRAFFIC = {
    "gatewayAPI": {"parentRefs": [{"name": "public-gw", "namespace": "gateways"}], "hostnames": ["fraud.example.com"],
                   "path": "/v2/models/fraud"},
    "istio": {"hosts": ["fraud.example.com"], "gateways": ["istio-system/public"]},
    "nginx": {"host": "fraud.example.com", "path": "/v2", "pathType": "Prefix", "ingressClassName": "nginx"},
    "none": {},
}  # fmt: skip


def md_manifest(provider: str, name: str = "fraud", traffic: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "modelrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": "fraud", "uri": "https://models.example.com/a.onnx"},
            "traffic": {provider: TRAFFIC[provider] if traffic is None else traffic},
            "paused": True,
        },
    }


def create_owner(cluster: Cluster, namespace: str, provider: str, **kw: Any) -> tuple[dict, ModelDeploymentSpec]:
    """Apply a valid ModelDeployment and return it as the API server has it (with its uid)."""
    cluster.apply(md_manifest(provider, **kw), namespace)
    name = kw.get("name", "fraud")
    owner = cluster.get("mdep", name, namespace)
    assert owner is not None and owner["metadata"]["uid"]
    return owner, ModelDeploymentSpec.model_validate(owner["spec"])


def get(cluster: Cluster, kind: str, name: str, ns: str) -> dict[str, Any] | None:
    """What kubectl sees, managedFields included (they show who applied which fields)."""
    proc = cluster.kubectl("get", kind, name, "-n", ns, "-o", "json", "--show-managed-fields", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def assert_owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> None:
    (ref,) = obj["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
        "ModelDeployment", owner["metadata"]["name"], owner["metadata"]["uid"], True)  # fmt: skip
    assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "modelrollout"
    managers = {(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]}
    assert ("modelrollout", "Apply") in managers, managers


def rejected(cluster: Cluster, manifest: dict[str, Any], namespace: str) -> str:
    """Server-side dry-run ``manifest``; it must be refused. Returns the API server's message."""
    proc = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest), check=False
    )
    assert proc.returncode != 0, f"the API server accepted an invalid object: {proc.stdout}"
    return proc.stderr


def delete_owner_and_wait_gone(cluster: Cluster, ns: str, owner: dict, objects: list[tuple[str, str]]) -> None:
    cluster.kubectl("delete", "mdep", owner["metadata"]["name"], "-n", ns, "--wait=true", "--timeout=60s")
    for kind, name in objects:
        wait_until(lambda k=kind, n=name: get(cluster, k, n, ns) is None, GC_TIMEOUT, 1.0, f"{kind}/{name} collected")


# ------------------------------------------------------------------------------------- Gateway API


def test_gatewayapi_httproute(cluster, upstream_crds, api, namespace):
    owner, spec = create_owner(cluster, namespace, "gatewayAPI")
    router = router_for(spec, api)
    assert router.read_weights(owner, spec) is None

    for w in (0, 5, 50, 100):
        assert router.ensure(owner, spec, w) is True
        assert router.read_weights(owner, spec) == (100 - w, w)
        route = get(cluster, "httproute", "fraud", namespace)
        (rule,) = route["spec"]["rules"]
        assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/v2/models/fraud"}}]
        backends = {b["name"]: b["weight"] for b in rule["backendRefs"]}
        assert backends == ({"fraud": 100} if w == 0 else {"fraud": 100 - w, "fraud-canary": w})
        assert route["spec"]["hostnames"] == ["fraud.example.com"]
        assert route["spec"]["parentRefs"][0]["name"] == "public-gw"
        assert_owned_by(route, owner)

    version = get(cluster, "httproute", "fraud", namespace)["metadata"]["resourceVersion"]
    assert router.ensure(owner, spec, 100) is False, "an unchanged weight is not written again"
    assert get(cluster, "httproute", "fraud", namespace)["metadata"]["resourceVersion"] == version
    # A hand edit of the weights (the hash annotation survives it) is still repaired.
    patch = '[{"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 100}]'
    cluster.kubectl("patch", "httproute", "fraud", "-n", namespace, "--type=json", "-p", patch)
    assert router.read_weights(owner, spec) == (50, 50)
    assert router.ensure(owner, spec, 100) is True
    assert router.read_weights(owner, spec) == (0, 100)

    # A weight the CRD forbids (relative weights are 0..1,000,000) is refused by the API server...
    bad = get(cluster, "httproute", "fraud", namespace)
    bad = {"apiVersion": bad["apiVersion"], "kind": bad["kind"], "metadata": {"name": "fraud"}, "spec": bad["spec"]}
    bad["spec"]["rules"][0]["backendRefs"][0]["weight"] = 1_000_001
    assert "1000000" in rejected(cluster, bad, namespace)
    bad["spec"]["rules"][0]["backendRefs"][0]["weight"] = -1
    assert "should be greater than or equal to 0" in rejected(cluster, bad, namespace)
    # ...and the router never gets that far with a weight that is not a percentage.
    with pytest.raises(ValueError):
        router.ensure(owner, spec, 101)
    assert router.read_weights(owner, spec) == (0, 100)

    router.cleanup(owner, spec)
    assert get(cluster, "httproute", "fraud", namespace) is None
    assert router.read_weights(owner, spec) is None
    router.cleanup(owner, spec)  # idempotent

    router.ensure(owner, spec, 5)
    delete_owner_and_wait_gone(cluster, namespace, owner, [("httproute", "fraud")])


def test_gatewayapi_cel_rejects_a_path_our_schema_lets_through(cluster, upstream_crds, api, namespace):
    """The HTTPRoute CRD's CEL rules are stricter than ModelDeployment's ``path`` pattern (``^/``):
    the API server refuses the route, and the router surfaces that as an error instead of hiding it."""
    traffic = {**TRAFFIC["gatewayAPI"], "path": "/v2//fraud"}
    owner, spec = create_owner(cluster, namespace, "gatewayAPI", traffic=traffic)
    with pytest.raises(ApiException) as err:
        router_for(spec, api).ensure(owner, spec, 5)
    assert err.value.status == 422
    assert "must not contain '//'" in json.loads(err.value.body)["message"]


def test_cleanup_leaves_objects_it_does_not_own(cluster, upstream_crds, api, namespace):
    owner, spec = create_owner(cluster, namespace, "gatewayAPI")
    foreign = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "fraud"},
        "spec": {"parentRefs": [{"name": "public-gw"}], "rules": [{"backendRefs": [{"name": "other", "port": 80}]}]},
    }
    cluster.apply(foreign, namespace)
    router_for(spec, api).cleanup(owner, spec)
    assert get(cluster, "httproute", "fraud", namespace) is not None


# ------------------------------------------------------------------------------------------- Istio


def test_istio_virtualservice_and_destinationrule(cluster, upstream_crds, api, namespace):
    owner, spec = create_owner(cluster, namespace, "istio")
    router = router_for(spec, api)
    assert router.read_weights(owner, spec) is None
    host = f"fraud.{namespace}.svc.cluster.local"

    for w in (0, 5, 50, 100):
        router.ensure(owner, spec, w, stable_revision="aaa111", canary_revision="bbb222")
        assert router.read_weights(owner, spec) == (100 - w, w)
        vs = get(cluster, "virtualservice", "fraud", namespace)
        assert vs["spec"]["hosts"] == ["fraud.example.com"]
        assert vs["spec"]["gateways"] == ["istio-system/public"]
        (http,) = vs["spec"]["http"]
        split = {r["destination"]["subset"]: r["weight"] for r in http["route"]}
        assert split == ({"stable": 100} if w == 0 else {"stable": 100 - w, "canary": w})
        assert {r["destination"]["host"] for r in http["route"]} == {host}
        dr = get(cluster, "destinationrule", "fraud", namespace)
        assert dr["spec"]["host"] == host
        subsets = {s["name"]: s["labels"]["modelrollout.io/revision"] for s in dr["spec"]["subsets"]}
        assert subsets == {"stable": "aaa111", "canary": "bbb222"}
        assert_owned_by(vs, owner)
        assert_owned_by(dr, owner)

    # Promotion: the stable subset moves to the new revision, the canary subset goes away.
    router.ensure(owner, spec, 0, stable_revision="bbb222")
    dr = get(cluster, "destinationrule", "fraud", namespace)
    assert dr["spec"]["subsets"] == [
        {"name": "stable", "labels": {"modelrollout.io/deployment": "fraud", "modelrollout.io/revision": "bbb222"}}
    ]
    assert router.read_weights(owner, spec) == (100, 0)

    # The Istio CRDs validate too (here a CEL duration rule on an http route).
    vs = get(cluster, "virtualservice", "fraud", namespace)
    bad = {"apiVersion": vs["apiVersion"], "kind": vs["kind"], "metadata": {"name": "fraud"}, "spec": vs["spec"]}
    bad["spec"]["http"][0]["timeout"] = "soon"
    assert "valid duration" in rejected(cluster, bad, namespace)

    router.cleanup(owner, spec)
    assert get(cluster, "virtualservice", "fraud", namespace) is None
    assert get(cluster, "destinationrule", "fraud", namespace) is None
    assert router.read_weights(owner, spec) is None

    router.ensure(owner, spec, 5, stable_revision="aaa111", canary_revision="bbb222")
    delete_owner_and_wait_gone(cluster, namespace, owner, [("virtualservice", "fraud"), ("destinationrule", "fraud")])


# ------------------------------------------------------------------------------------------- NGINX


def test_nginx_main_and_canary_ingress(cluster, upstream_crds, api, namespace):
    owner, spec = create_owner(cluster, namespace, "nginx")
    router = router_for(spec, api)
    assert router.read_weights(owner, spec) is None

    for w in (5, 50, 100, 0):
        router.ensure(owner, spec, w)
        assert router.read_weights(owner, spec) == (100 - w, w)
        main = get(cluster, "ingress", "fraud", namespace)
        canary = get(cluster, "ingress", "fraud-canary", namespace)
        assert_owned_by(main, owner)
        assert main["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "fraud"
        assert "nginx.ingress.kubernetes.io/canary" not in (main["metadata"].get("annotations") or {})
        if w == 0:
            assert canary is None, "no canary traffic: the canary Ingress is removed"
            continue
        assert_owned_by(canary, owner)
        ann = canary["metadata"]["annotations"]
        assert ann["nginx.ingress.kubernetes.io/canary"] == "true"
        assert ann["nginx.ingress.kubernetes.io/canary-weight"] == str(w)
        assert canary["spec"]["ingressClassName"] == main["spec"]["ingressClassName"] == "nginx"
        assert canary["spec"]["rules"][0]["host"] == main["spec"]["rules"][0]["host"] == "fraud.example.com"
        cpath, mpath = canary["spec"]["rules"][0]["http"]["paths"][0], main["spec"]["rules"][0]["http"]["paths"][0]
        assert (cpath["path"], cpath["pathType"]) == (mpath["path"], mpath["pathType"]) == ("/v2", "Prefix")
        assert cpath["backend"]["service"] == {"name": "fraud-canary", "port": {"number": 80}}

    router.ensure(owner, spec, 25)
    router.cleanup(owner, spec)
    assert get(cluster, "ingress", "fraud", namespace) is None
    assert get(cluster, "ingress", "fraud-canary", namespace) is None
    assert router.read_weights(owner, spec) is None

    router.ensure(owner, spec, 25)
    delete_owner_and_wait_gone(cluster, namespace, owner, [("ingress", "fraud"), ("ingress", "fraud-canary")])


# -------------------------------------------------------------------------------------------- none


def test_none_reads_the_ready_replica_ratio(cluster, upstream_crds, api, namespace):
    owner, spec = create_owner(cluster, namespace, "none")
    router = router_for(spec, api)
    assert router.ensure(owner, spec, 25) is False
    assert router.read_weights(owner, spec) is None, "no stable Service, no stable revision"

    def serve(revision: str, replicas: int, service: str, role: str) -> None:
        dep = build_deployment(owner, revision, spec.model, spec.serving, "modelserver:test", replicas, 60)
        cluster.apply(dep, namespace)
        cluster.apply(build_service(owner, service, revision, role), namespace)

    def ready(revision: str, n: int) -> bool:
        dep = get(cluster, "deploy", f"fraud-{revision}", namespace) or {}
        return dep.get("status", {}).get("readyReplicas", 0) == n

    serve("aaa111", 3, "fraud", "stable")
    wait_until(lambda: ready("aaa111", 3), 60, what="stable pods ready")
    assert router.read_weights(owner, spec) == (100, 0)
    serve("bbb222", 1, "fraud-canary", "canary")
    wait_until(lambda: ready("bbb222", 1), 60, what="canary pod ready")
    assert router.read_weights(owner, spec) == (75, 25)

    router.cleanup(owner, spec)  # writes nothing, deletes nothing
    assert get(cluster, "deploy", "fraud-aaa111", namespace) is not None


# --------------------------------------------------------------------------------- provider change


def test_switching_provider_cleans_up_the_old_one(cluster, upstream_crds, api, namespace):
    owner, spec = create_owner(cluster, namespace, "gatewayAPI")
    router_for(spec, api).ensure(owner, spec, 50)
    nginx_spec = ModelDeploymentSpec.model_validate({**owner["spec"], "traffic": {"nginx": TRAFFIC["nginx"]}})
    router_for(nginx_spec, api).ensure(owner, nginx_spec, 50)
    cleanup_other_providers(owner, nginx_spec, api)
    assert get(cluster, "httproute", "fraud", namespace) is None
    assert router_for_provider("nginx", api).read_weights(owner, nginx_spec) == (50, 50)
