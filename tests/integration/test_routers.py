"""Every router against the real API server with the real upstream CRDs installed.

The Gateway API (standard channel) and Istio networking CRDs come from their Go modules through
hack/fetch-crds.sh, so their OpenAPI schemas and CEL rules judge exactly what the routers write.
No operator is needed: each test applies a ModelDeployment as the owner (``paused: true``, so an
operator that other tests run against the same cluster leaves it alone), drives the router
directly, reads the result back through the router and through kubectl, and finally deletes the
owner to see the real garbage collector remove what the router wrote.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from modelrollout import engine
from modelrollout.api.types import AnalysisResult, CanaryRoute, ModelDeploymentSpec, ModelDeploymentStatus
from modelrollout.revision import revision_hash
from modelrollout.routers import cleanup_other_providers, router_for, router_for_provider
from modelrollout.routing import Routing
from modelrollout.telemetry import Telemetry
from modelrollout.workloads import build_deployment, build_service

from hack.loopback.cluster import Cluster, wait_until

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
        assert router.ensure(owner, spec, Routing(w)) is True
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
    assert router.ensure(owner, spec, Routing(100)) is False, "an unchanged weight is not written again"
    assert get(cluster, "httproute", "fraud", namespace)["metadata"]["resourceVersion"] == version
    # A hand edit of the weights (the hash annotation survives it) is still repaired.
    patch = '[{"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 100}]'
    cluster.kubectl("patch", "httproute", "fraud", "-n", namespace, "--type=json", "-p", patch)
    assert router.read_weights(owner, spec) == (50, 50)
    assert router.ensure(owner, spec, Routing(100)) is True
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
        router.ensure(owner, spec, Routing(101))
    assert router.read_weights(owner, spec) == (0, 100)

    router.cleanup(owner, spec)
    assert get(cluster, "httproute", "fraud", namespace) is None
    assert router.read_weights(owner, spec) is None
    router.cleanup(owner, spec)  # idempotent

    router.ensure(owner, spec, Routing(5))
    delete_owner_and_wait_gone(cluster, namespace, owner, [("httproute", "fraud")])


def test_gatewayapi_grpcroute_follows_the_weights_and_goes_when_grpc_is_turned_off(cluster, upstream_crds, api,
                                                                                    namespace):  # fmt: skip
    grpc = {**TRAFFIC["gatewayAPI"], "grpc": {"parentRefs": [{"name": "public-gw", "namespace": "gateways",
                                                              "sectionName": "grpc"}]}}  # fmt: skip
    owner, spec = create_owner(cluster, namespace, "gatewayAPI", traffic=grpc)
    router = router_for(spec, api)
    routes = (CanaryRoute.model_validate({"header": {"name": "x-canary", "value": "always"}}),)
    for w in (0, 20, 100):
        router.ensure(owner, spec, Routing(w, routes))
        route = get(cluster, "grpcroute", "fraud-grpc", namespace)  # the CRD's schema and CEL took it
        assert route is not None, "the GRPCRoute was not written"
        first, weighted = route["spec"]["rules"]
        assert first["backendRefs"] == [{"group": "", "kind": "Service", "name": "fraud-canary", "port": 8081,
                                         "weight": 1}]  # fmt: skip
        backends = {b["name"]: (b["port"], b["weight"]) for b in weighted["backendRefs"]}
        assert backends == ({"fraud": (8081, 100)} if w == 0 else {"fraud": (8081, 100 - w), "fraud-canary": (8081, w)})
        assert route["spec"]["parentRefs"][0]["sectionName"] == "grpc"
        assert_owned_by(route, owner)
        assert router.read_weights(owner, spec) == (100 - w, w)  # the HTTPRoute's, the same split
    version = get(cluster, "grpcroute", "fraud-grpc", namespace)["metadata"]["resourceVersion"]
    assert router.ensure(owner, spec, Routing(100, routes)) is False, "unchanged: neither route is written"
    assert get(cluster, "grpcroute", "fraud-grpc", namespace)["metadata"]["resourceVersion"] == version

    # grpc turned off: the next routing write deletes the GRPCRoute (seen on the HTTPRoute's annotation).
    owner, plain = create_owner(cluster, namespace, "gatewayAPI")
    assert router.ensure(owner, plain, Routing(100)) is True
    wait_until(lambda: get(cluster, "grpcroute", "fraud-grpc", namespace) is None, 30, what="GRPCRoute deleted")
    assert "modelrollout.io/grpc-route" not in get(cluster, "httproute", "fraud", namespace)["metadata"]["annotations"]
    router.ensure(owner, spec, Routing(5))
    delete_owner_and_wait_gone(cluster, namespace, owner, [("httproute", "fraud"), ("grpcroute", "fraud-grpc")])


def test_gatewayapi_cel_rejects_a_path_our_schema_lets_through(cluster, upstream_crds, api, namespace):
    """The HTTPRoute CRD's CEL rules are stricter than ModelDeployment's ``path`` pattern (``^/``):
    the API server refuses the route, and the router surfaces that as an error instead of hiding it."""
    traffic = {**TRAFFIC["gatewayAPI"], "path": "/v2//fraud"}
    owner, spec = create_owner(cluster, namespace, "gatewayAPI", traffic=traffic)
    with pytest.raises(ApiException) as err:
        router_for(spec, api).ensure(owner, spec, Routing(5))
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


def test_istio_virtualservice(cluster, upstream_crds, api, namespace):
    owner, spec = create_owner(cluster, namespace, "istio")
    router = router_for(spec, api)
    assert router.read_weights(owner, spec) is None
    stable, canary = f"fraud.{namespace}.svc.cluster.local", f"fraud-canary.{namespace}.svc.cluster.local"

    for w in (0, 5, 50, 100):
        router.ensure(owner, spec, Routing(w, (), "aaa111", "bbb222"))
        assert router.read_weights(owner, spec) == (100 - w, w)
        vs = get(cluster, "virtualservice", "fraud", namespace)
        assert vs["spec"]["hosts"] == ["fraud.example.com"]
        assert vs["spec"]["gateways"] == ["istio-system/public"]
        (http,) = vs["spec"]["http"]
        split = {r["destination"]["host"]: r["weight"] for r in http["route"]}
        assert split == ({stable: 100} if w == 0 else {stable: 100 - w, canary: w})
        assert not any("subset" in r["destination"] for r in http["route"])
        assert_owned_by(vs, owner)
        assert get(cluster, "destinationrule", "fraud", namespace) is None, "no subsets, no DestinationRule"

    # The Istio CRDs validate too (here a CEL duration rule on an http route).
    vs = get(cluster, "virtualservice", "fraud", namespace)
    bad = {"apiVersion": vs["apiVersion"], "kind": vs["kind"], "metadata": {"name": "fraud"}, "spec": vs["spec"]}
    bad["spec"]["http"][0]["timeout"] = "soon"
    assert "valid duration" in rejected(cluster, bad, namespace)

    router.cleanup(owner, spec)
    assert get(cluster, "virtualservice", "fraud", namespace) is None
    assert router.read_weights(owner, spec) is None

    router.ensure(owner, spec, Routing(5))
    delete_owner_and_wait_gone(cluster, namespace, owner, [("virtualservice", "fraud")])


def test_istio_replaces_an_earlier_versions_subsets(cluster, upstream_crds, api, namespace):
    """An operator upgraded mid-rollout finds a VirtualService routing to subsets and the
    DestinationRule defining them: the route moves to the Services, then the rule goes."""
    owner, spec = create_owner(cluster, namespace, "istio")
    ref = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": "fraud",
           "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}  # fmt: skip
    host = f"fraud.{namespace}.svc.cluster.local"
    old_dr = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "fraud", "ownerReferences": [ref]},
        "spec": {"host": host, "subsets": [{"name": "stable", "labels": {"modelrollout.io/revision": "aaa"}}]},
    }
    old_vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
              "metadata": {"name": "fraud", "ownerReferences": [ref]},
              "spec": {"hosts": ["fraud.example.com"], "http": [{"name": "weighted", "route": [
                  {"destination": {"host": host, "subset": "stable"}, "weight": 100}]}]}}  # fmt: skip
    cluster.apply(old_dr, namespace)
    cluster.apply(old_vs, namespace)
    router = router_for(spec, api)
    assert router.ensure(owner, spec, Routing(0)) is True
    (route,) = get(cluster, "virtualservice", "fraud", namespace)["spec"]["http"][0]["route"]
    assert route["destination"] == {"host": host, "port": {"number": 80}}
    assert get(cluster, "destinationrule", "fraud", namespace) is None


def test_istio_apex_service_selects_only_the_stable_revision_at_every_phase(cluster, upstream_crds, api, namespace):
    """The engine drives a whole rollout with traffic.istio and the shell applies every action to the
    real API server (kwok runs the pods): at each phase the ``fraud`` Service's endpoints are exactly
    the stable revision's pods, never the canary's or the warm previous revision's, so a caller the
    VirtualService does not govern cannot bypass the weights."""
    harness = RolloutHarness(cluster, api, namespace)
    r1 = harness.converge("https://models.example.com/a.onnx", until=lambda st: st.phase == "Succeeded")
    harness.check("initial")

    r2 = harness.converge("https://models.example.com/b.onnx", until=lambda st: st.canaryRevision is not None)
    harness.check("canary waiting for readiness")
    harness.converge(harness.uri, until=lambda st: st.currentStep is not None)
    seen = []
    while harness.status.phase == "Progressing":
        seen.append(harness.status.canaryWeight)
        harness.check(f"canary step at {harness.status.canaryWeight}%")
        harness.advance(11)  # past stepDuration and the analysis interval: the next tick moves on
        harness.tick()
    assert seen == [25, 50, 100]
    assert harness.status.phase == "Baking" and harness.status.previousStableRevision == r1
    harness.wait_ready(r1, 2)  # the previous revision is warm, ready, and still not behind <name>
    harness.check("bake with the warm previous revision")
    harness.advance(61)
    harness.converge(harness.uri, until=lambda st: st.phase == "Succeeded")
    assert harness.status.stableRevision == r2

    r3 = harness.converge("https://models.example.com/c.onnx", until=lambda st: st.currentStep == 0)
    harness.check("third revision at its first step")
    harness.annotations = {"modelrollout.io/abort": "now"}
    harness.converge(harness.uri, until=lambda st: st.phase == "RolledBack")
    assert harness.status.stableRevision == r2 and r3 in harness.status.failedRevisions
    harness.check("rolled back")


class RolloutHarness:
    """engine.decide on a fake clock + handlers._apply against the real API server, tick by tick."""

    def __init__(self, cluster: Cluster, api: Any, namespace: str):
        from modelrollout import handlers
        from modelrollout.config import OperatorConfig
        from modelrollout.kube import Kube

        self.cluster, self.api, self.ns = cluster, api, namespace
        # Paused in the cluster (a session operator leaves it alone); driven unpaused here.
        self.owner, spec = create_owner(cluster, namespace, "istio", traffic={"hosts": ["fraud"]})
        self.spec = ModelDeploymentSpec.model_validate({
            **spec.model_dump(mode="json", exclude_none=True),
            "paused": False,
            "serving": {"replicas": 2},
            "strategy": {"canary": {"steps": [25, 50, 100], "stepDuration": "10s"}},
            "bake": {"duration": "1m"},
            "analysis": {"interval": "10s", "prometheus": {"address": "http://prometheus.invalid:9090"},
                         "metrics": [{"name": "error-rate", "max": 0.5}]},
        })  # fmt: skip
        self.kube = Kube(api, list_max_age=0)  # no watch feeds its caches here: list every tick
        self.runtime = handlers.Runtime(
            config=OperatorConfig(), api_client=api, kube=self.kube, telemetry=Telemetry(process_metrics=False)
        )
        self.handlers = handlers
        self.status = ModelDeploymentStatus()
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.uri = ""
        self.annotations: dict[str, str] = {}

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def tick(self) -> None:
        model = self.spec.model.model_copy(update={"uri": self.uri})
        spec = self.spec.model_copy(update={"model": model})
        rev = revision_hash(model, spec.serving, "modelserver:test")
        serving = spec.serving.model_copy(update={"image": "modelserver:test"})
        live = self.kube.list_revisions(self.ns, "fraud")
        obs = engine.Observations(
            generation=1,
            desired=engine.DesiredRevision(rev, model, serving),
            deployments={r: state for r, (state, _) in live.items()},
            annotations=self.annotations,
        )
        target = engine.analysis_due(spec, self.status, self.now)
        if target is not None:  # every gate check passes: this test is about where traffic goes
            obs = dataclasses.replace(obs, analysis=AnalysisResult(time=self.now, revision=target, verdict="Pass"))
        decision = engine.decide(spec, self.status, obs, self.now)
        self.handlers._apply(self.runtime, self.owner, spec, decision, live)
        self.status = decision.status
        self.desired = rev

    def converge(self, uri: str, until: Callable[[ModelDeploymentStatus], bool], timeout: float = 90) -> str:
        """Tick (1 s of fake time each) until ``until(status)``; returns the desired revision."""
        self.uri = uri
        deadline = time.monotonic() + timeout
        while True:
            self.tick()
            if until(self.status):
                return self.desired
            assert time.monotonic() < deadline, f"rollout stuck: {self.status.phase} {self.status.message}"
            self.advance(1)
            time.sleep(0.3)

    def wait_ready(self, revision: str, n: int) -> None:
        def ready() -> bool:
            dep = get(self.cluster, "deploy", f"fraud-{revision}", self.ns) or {}
            return dep.get("status", {}).get("readyReplicas", 0) == n

        wait_until(ready, 60, what=f"{n} ready pods of {revision}")

    def pod_ips(self, revision: str) -> set[str]:
        pods = self.cluster.kubectl("get", "pods", "-n", self.ns, "-l", f"modelrollout.io/revision={revision}",
                                    "-o", "json").stdout  # fmt: skip
        return {p["status"]["podIP"] for p in json.loads(pods)["items"] if p["status"].get("podIP")}

    def endpoints(self, service: str) -> set[str]:
        slices = self.cluster.kubectl("get", "endpointslices", "-n", self.ns, "-l",
                                      f"kubernetes.io/service-name={service}", "-o", "json").stdout  # fmt: skip
        return {
            addr
            for s in json.loads(slices)["items"]
            for ep in s.get("endpoints") or []
            if (ep.get("conditions") or {}).get("ready")
            for addr in ep["addresses"]
        }

    def check(self, phase: str) -> None:
        stable = self.status.stableRevision
        assert stable is not None
        svc = get(self.cluster, "svc", "fraud", self.ns)
        selector = {"modelrollout.io/deployment": "fraud", "modelrollout.io/revision": stable}
        assert svc["spec"]["selector"] == selector, phase
        self.wait_ready(stable, 2)
        want = self.pod_ips(stable)
        others = set().union(*(self.pod_ips(r) for r in self._other_revisions())) if self._other_revisions() else set()
        assert want and not want & others, phase
        wait_until(lambda: self.endpoints("fraud") == want, 60, what=f"{phase}: fraud endpoints = stable pods only")
        vs = get(self.cluster, "virtualservice", "fraud", self.ns)
        route = vs["spec"]["http"][0]["route"]
        hosts = {r["destination"]["host"].split(".")[0]: r["weight"] for r in route}
        w = self.status.canaryWeight
        assert hosts == ({"fraud": 100} if w == 0 else {"fraud": 100 - w, "fraud-canary": w}), phase
        canary = self.status.canaryRevision
        csvc = get(self.cluster, "svc", "fraud-canary", self.ns)
        selected = csvc["spec"]["selector"]["modelrollout.io/revision"]
        # A canary gets its Service once it has a pod; with no canary the Service selects the stable.
        assert selected == canary if w else selected in (canary, stable), phase

    def _other_revisions(self) -> list[str]:
        deps = json.loads(self.cluster.kubectl("get", "deploy", "-n", self.ns, "-o", "json").stdout)["items"]
        revs = [d["metadata"]["labels"]["modelrollout.io/revision"] for d in deps]
        return [r for r in revs if r != self.status.stableRevision]


# ------------------------------------------------------------------------------------------- NGINX


def test_nginx_main_and_canary_ingress(cluster, upstream_crds, api, namespace):
    owner, spec = create_owner(cluster, namespace, "nginx")
    router = router_for(spec, api)
    assert router.read_weights(owner, spec) is None

    for w in (5, 50, 100, 0):
        router.ensure(owner, spec, Routing(w))
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

    router.ensure(owner, spec, Routing(25))
    router.cleanup(owner, spec)
    assert get(cluster, "ingress", "fraud", namespace) is None
    assert get(cluster, "ingress", "fraud-canary", namespace) is None
    assert router.read_weights(owner, spec) is None

    router.ensure(owner, spec, Routing(25))
    delete_owner_and_wait_gone(cluster, namespace, owner, [("ingress", "fraud"), ("ingress", "fraud-canary")])


# -------------------------------------------------------------------------------------------- none


def test_none_reads_the_ready_replica_ratio(cluster, upstream_crds, api, namespace):
    owner, spec = create_owner(cluster, namespace, "none")
    router = router_for(spec, api)
    assert router.ensure(owner, spec, Routing(25)) is False
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
    cluster.apply(build_service(owner, "fraud-canary", "aaa111", "canary"), namespace)  # between rollouts
    assert router.read_weights(owner, spec) == (100, 0), "the canary Service on the stable revision is no share"

    router.cleanup(owner, spec)  # writes nothing, deletes nothing
    assert get(cluster, "deploy", "fraud-aaa111", namespace) is not None


# --------------------------------------------------------------------------------- provider change


def test_switching_provider_cleans_up_the_old_one(cluster, upstream_crds, api, namespace):
    owner, spec = create_owner(cluster, namespace, "gatewayAPI")
    router_for(spec, api).ensure(owner, spec, Routing(50))
    nginx_spec = ModelDeploymentSpec.model_validate({**owner["spec"], "traffic": {"nginx": TRAFFIC["nginx"]}})
    router_for(nginx_spec, api).ensure(owner, nginx_spec, Routing(50))
    cleanup_other_providers(owner, nginx_spec, api)
    assert get(cluster, "httproute", "fraud", namespace) is None
    assert router_for_provider("nginx", api).read_weights(owner, nginx_spec) == (50, 50)


# ------------------------------------------------------------------------ header and cookie routes

CANARY_ROUTES = {
    "gatewayAPI": [{"header": {"name": "x-canary", "value": "always"}},
                   {"header": {"name": "x-tester", "value": "^(alice|bob)$", "match": "RegularExpression"}},
                   {"cookie": {"name": "canary"}}],
    "istio": [{"header": {"name": "X-Canary", "value": "always"}}, {"cookie": {"name": "canary"}}],
    "nginx": [{"header": {"name": "x-tester", "value": "^(alice|bob)$", "match": "RegularExpression"}},
              {"cookie": {"name": "canary"}}],
}  # fmt: skip


def canary_rule(cluster: Cluster, provider: str, namespace: str) -> Any:
    """The canary-routes rule (HTTPRoute), http route (VirtualService) or canary Ingress annotations."""
    if provider == "gatewayAPI":
        rules = get(cluster, "httproute", "fraud", namespace)["spec"]["rules"]
        return next((r for r in rules if r.get("name") == "canary-routes"), None)
    if provider == "istio":
        http = get(cluster, "virtualservice", "fraud", namespace)["spec"]["http"]
        return next((h for h in http if h.get("name") == "canary-routes"), None)
    canary = get(cluster, "ingress", "fraud-canary", namespace)
    if canary is None:
        return None
    ann = canary["metadata"]["annotations"]
    return {k.rsplit("/", 1)[1]: v for k, v in ann.items() if "canary-by-" in k} or None


@pytest.mark.parametrize("provider", ["gatewayAPI", "istio", "nginx"])
def test_canary_routes_are_accepted_by_the_upstream_schemas_and_removed_with_the_canary(
    cluster, upstream_crds, api, namespace, provider
):
    manifest = md_manifest(provider)
    manifest["spec"]["traffic"]["canaryRoutes"] = CANARY_ROUTES[provider]
    cluster.apply(manifest, namespace)  # the CRD's CEL rules accept these routes for this provider
    owner = cluster.get("mdep", "fraud", namespace)
    spec = ModelDeploymentSpec.model_validate(owner["spec"])
    router = router_for(spec, api)
    routes = tuple(spec.traffic.canaryRoutes)

    for w in (0, 30):  # the upstream CRDs (schemas and CEL) judge every object written
        assert router.ensure(owner, spec, Routing(w, routes, "aaa111", "bbb222")) is True
        assert router.read_weights(owner, spec) == (100 - w, w), "the routes never count as weight"
        rule = canary_rule(cluster, provider, namespace)
        assert rule is not None, f"no canary routes written at weight {w}"
    if provider == "gatewayAPI":
        assert [m["headers"][0]["name"] for m in rule["matches"]] == ["x-canary", "x-tester", "Cookie"]
        assert rule["backendRefs"] == [{"group": "", "kind": "Service", "name": "fraud-canary", "port": 80,
                                        "weight": 1}]  # fmt: skip
    elif provider == "istio":
        assert rule["match"] == [{"headers": {"x-canary": {"exact": "always"}}},
                                 {"headers": {"cookie": {"regex": r"^(.*?;\s*)?canary=always(;.*)?$"}}}]  # fmt: skip
    else:
        assert rule == {"canary-by-header": "x-tester", "canary-by-header-pattern": "^(alice|bob)$",
                        "canary-by-cookie": "canary"}  # fmt: skip

    assert router.ensure(owner, spec, Routing(0)) is True  # the canary is gone: so are its routes
    assert canary_rule(cluster, provider, namespace) is None
    assert router.read_weights(owner, spec) == (100, 0)


# ------------------------------------------------------------------------------ the shadow mirror


def mirror_of(cluster: Cluster, provider: str, namespace: str) -> Any:
    """The shadow rule (HTTPRoute), http route (VirtualService) or shadow Ingress; None when absent."""
    if provider == "gatewayAPI":
        rules = get(cluster, "httproute", "fraud", namespace)["spec"]["rules"]
        return next((r for r in rules if r.get("name") == "shadow"), None)
    if provider == "istio":
        http = get(cluster, "virtualservice", "fraud", namespace)["spec"]["http"]
        return next((h for h in http if h.get("name") == "shadow"), None)
    return get(cluster, "ingress", "fraud-shadow", namespace)


@pytest.mark.parametrize("provider", ["gatewayAPI", "istio", "nginx"])
def test_the_shadow_mirror_is_accepted_by_the_upstream_schemas_and_goes_with_the_shadow_step(
    cluster, upstream_crds, api, namespace, provider
):
    """The mirror of the inference path alone, written for every provider while the shadow step
    lasts, judged by the upstream CRDs (and the ModelDeployment's own CEL for the shadow spec)."""
    percent = 100 if provider == "nginx" else 25
    manifest = md_manifest(provider)
    manifest["spec"]["strategy"] = {"canary": {"shadow": {"percent": percent, "duration": "1m"}}}
    manifest["spec"]["analysis"] = {"metrics": [{"name": "agreement", "min": 0.95}]}
    cluster.apply(manifest, namespace)
    owner = cluster.get("mdep", "fraud", namespace)
    spec = ModelDeploymentSpec.model_validate(owner["spec"])
    router = router_for(spec, api)

    assert router.ensure(owner, spec, Routing(0, (), "aaa111", "bbb222", percent)) is True
    assert router.read_weights(owner, spec) == (100, 0), "a mirror is no weight"
    mirror = mirror_of(cluster, provider, namespace)
    assert mirror is not None
    canary_host = f"fraud-canary.{namespace}.svc.cluster.local"
    if provider == "gatewayAPI":
        assert mirror["matches"] == [{"path": {"type": "Exact", "value": "/v2/models/fraud/infer"}}]
        (filt,) = mirror["filters"]
        assert filt["type"] == "RequestMirror" and filt["requestMirror"]["percent"] == 25
        assert filt["requestMirror"]["backendRef"]["name"] == "fraud-canary"
        assert [b["name"] for b in mirror["backendRefs"]] == ["fraud"]
    elif provider == "istio":
        assert mirror["match"] == [{"uri": {"exact": "/v2/models/fraud/infer"}}]
        assert mirror["mirror"] == {"host": canary_host, "port": {"number": 80}}
        assert mirror["mirrorPercentage"] == {"value": 25.0}
        assert [d["destination"]["host"] for d in mirror["route"]] == [f"fraud.{namespace}.svc.cluster.local"]
    else:
        (path,) = mirror["spec"]["rules"][0]["http"]["paths"]
        assert (path["path"], path["pathType"]) == ("/v2/models/fraud/infer", "Exact")
        assert path["backend"]["service"]["name"] == "fraud"
        ann = mirror["metadata"]["annotations"]
        assert ann["nginx.ingress.kubernetes.io/mirror-target"] == f"http://{canary_host}:80$request_uri"
        assert get(cluster, "ingress", "fraud-canary", namespace) is None, "no canary Ingress at weight 0"
    assert router.ensure(owner, spec, Routing(0, (), "aaa111", "bbb222", percent)) is False, "unchanged"

    assert router.ensure(owner, spec, Routing(10, (), "aaa111", "bbb222")) is True  # the first canary step
    assert mirror_of(cluster, provider, namespace) is None
    assert router.read_weights(owner, spec) == (90, 10)
