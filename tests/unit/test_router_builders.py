"""The routers' pure builders: what each provider writes at weights 0, 5, 50 and 100.

The I/O half of every router is exercised against the real API server with the upstream CRDs in
tests/integration/test_routers.py; here we pin the shapes fast and without a cluster.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from modelrollout.api.types import CanaryRoute, ModelDeploymentSpec
from modelrollout.kube import with_hash
from modelrollout.routers import (
    PROVIDERS,
    Router,
    gatewayapi,
    istio,
    nginx,
    none,
    router_for,
    router_for_provider,
    split,
)
from modelrollout.routers.base import WEIGHTED_ROUTE, cookie_regex, percentages
from modelrollout.routing import Routing
from modelrollout.telemetry import Telemetry

WEIGHTS = (0, 5, 50, 100)
OWNER = {
    "apiVersion": "modelrollout.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "fraud", "namespace": "ml", "uid": "u-1"},
}
TRAFFIC = {
    "gatewayAPI": {
        "parentRefs": [{"name": "public-gw", "namespace": "gateways", "sectionName": "https"}],
        "hostnames": ["fraud.example.com"],
        "path": "/v2/models/fraud",
    },
    "istio": {"hosts": ["fraud.example.com"], "gateways": ["istio-system/public"]},
    "nginx": {"host": "fraud.example.com", "path": "/v2", "pathType": "Prefix", "ingressClassName": "nginx"},
    "none": {},
}


def spec(provider: str, traffic: dict[str, Any] | None = None) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {"model": {"name": "fraud", "uri": "https://m/a.onnx"}, "traffic": {provider: traffic or TRAFFIC[provider]}}
    )


def assert_owned(obj: dict[str, Any], provider: str) -> None:
    meta = obj["metadata"]
    assert meta["namespace"] == "ml"
    (ref,) = meta["ownerReferences"]
    assert ref == {
        "apiVersion": "modelrollout.io/v1alpha1",
        "kind": "ModelDeployment",
        "name": "fraud",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "modelrollout"
    assert meta["labels"]["modelrollout.io/deployment"] == "fraud"
    assert meta["labels"]["modelrollout.io/router"] == provider


# ------------------------------------------------------------------------------------------ shared


@pytest.mark.parametrize("w", WEIGHTS)
def test_split_sums_to_100(w):
    assert split(w) == (100 - w, w)


@pytest.mark.parametrize("bad", [-1, 101, 5.0, True, "5", None])
def test_split_rejects_anything_but_a_percentage(bad):
    with pytest.raises(ValueError, match=r"0\.\.100"):
        split(bad)


def test_percentages_normalise_relative_weights():
    assert percentages(95, 5) == (95, 5)
    assert percentages(1, 1) == (50, 50)
    assert percentages(999_000, 1_000) == (100, 0)  # rounded, never more than 100 in total
    assert percentages(0, 3) == (0, 100)
    assert percentages(0, 0) == (0, 0)  # a route that sends nowhere is not reported as all-stable


def test_hash_annotation_ignores_itself_and_tracks_changes():
    a = with_hash(gatewayapi.build_httproute(OWNER, spec("gatewayAPI").traffic.gatewayAPI, Routing(5)))
    b = with_hash(gatewayapi.build_httproute(OWNER, spec("gatewayAPI").traffic.gatewayAPI, Routing(5)))
    c = with_hash(gatewayapi.build_httproute(OWNER, spec("gatewayAPI").traffic.gatewayAPI, Routing(10)))
    key = "modelrollout.io/applied-hash"
    assert a["metadata"]["annotations"][key] == b["metadata"]["annotations"][key]
    assert a["metadata"]["annotations"][key] != c["metadata"]["annotations"][key]


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_router_for_picks_the_provider_in_the_spec(provider):
    router = router_for(spec(provider))
    assert isinstance(router, Router) and router.provider == provider
    assert isinstance(router, PROVIDERS[provider])


def test_unknown_provider_is_an_error():
    with pytest.raises(ValueError, match="unknown traffic provider"):
        router_for_provider("linkerd")


# ------------------------------------------------------------------------------------- Gateway API


def backends(route: dict[str, Any]) -> dict[str, int]:
    (rule,) = route["spec"]["rules"]
    assert all(b["port"] == 80 for b in rule["backendRefs"])
    return {b["name"]: b["weight"] for b in rule["backendRefs"]}


@pytest.mark.parametrize("w", WEIGHTS)
def test_httproute_weights(w):
    route = gatewayapi.build_httproute(OWNER, spec("gatewayAPI").traffic.gatewayAPI, Routing(w))
    got = backends(route)
    assert sum(got.values()) == 100
    assert got["fraud"] == 100 - w
    if w == 0:
        assert "fraud-canary" not in got, "no backend may name a canary Service that need not exist"
    else:
        assert got["fraud-canary"] == w
    assert gatewayapi.weights_of(route, "fraud") == (100 - w, w)


def test_httproute_shape():
    route = gatewayapi.build_httproute(OWNER, spec("gatewayAPI").traffic.gatewayAPI, Routing(5))
    assert (route["apiVersion"], route["kind"]) == ("gateway.networking.k8s.io/v1", "HTTPRoute")
    assert route["metadata"]["name"] == "fraud"
    assert_owned(route, "gatewayAPI")
    assert route["spec"]["parentRefs"] == [{"name": "public-gw", "namespace": "gateways", "sectionName": "https"}]
    assert route["spec"]["hostnames"] == ["fraud.example.com"]
    (rule,) = route["spec"]["rules"]
    assert rule["name"] == WEIGHTED_ROUTE
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/v2/models/fraud"}}]


def test_httproute_minimal_spec_omits_optional_fields():
    route = gatewayapi.build_httproute(
        OWNER, spec("gatewayAPI", {"parentRefs": [{"name": "gw"}]}).traffic.gatewayAPI, Routing(0)
    )
    assert route["spec"]["parentRefs"] == [{"name": "gw"}]
    assert "hostnames" not in route["spec"]
    assert route["spec"]["rules"][0]["matches"][0]["path"]["value"] == "/"


def test_httproute_weights_read_back_from_relative_weights_and_defaults():
    live = {"spec": {"rules": [
        {"name": "by-header", "backendRefs": [{"name": "fraud-canary", "port": 80}]},
        {"name": WEIGHTED_ROUTE, "backendRefs": [{"name": "fraud", "port": 80, "weight": 300_000},
                                                {"name": "fraud-canary", "port": 80, "weight": 100_000}]},
    ]}}  # fmt: skip
    assert gatewayapi.weights_of(live, "fraud") == (75, 25)
    default_weight = {"spec": {"rules": [{"name": WEIGHTED_ROUTE, "backendRefs": [{"name": "fraud", "port": 80}]}]}}
    assert gatewayapi.weights_of(default_weight, "fraud") == (100, 0)
    assert gatewayapi.weights_of({"spec": {"rules": [{"backendRefs": []}]}}, "fraud") is None


# ------------------------------------------------------------------------------------------- Istio


@pytest.mark.parametrize("w", WEIGHTS)
def test_virtualservice_weights(w):
    vs = istio.build_virtualservice(OWNER, spec("istio").traffic.istio, Routing(w))
    (http,) = vs["spec"]["http"]
    assert http["name"] == WEIGHTED_ROUTE
    by_host = {r["destination"]["host"]: r["weight"] for r in http["route"]}
    assert sum(by_host.values()) == 100
    assert by_host["fraud.ml.svc.cluster.local"] == 100 - w
    if w == 0:
        assert len(by_host) == 1, "no canary traffic: <name>-canary may not exist, so it is not named"
    else:
        assert by_host["fraud-canary.ml.svc.cluster.local"] == w
    for r in http["route"]:
        assert "subset" not in r["destination"], "subsets of <name> would need <name> to select every revision"
        assert r["destination"]["port"] == {"number": 80}
    assert istio.weights_of(vs, OWNER) == (100 - w, w)


def test_virtualservice_shape():
    vs = istio.build_virtualservice(OWNER, spec("istio").traffic.istio, Routing(5))
    assert (vs["apiVersion"], vs["kind"], vs["metadata"]["name"]) == (
        "networking.istio.io/v1", "VirtualService", "fraud")  # fmt: skip
    assert_owned(vs, "istio")
    assert vs["spec"]["hosts"] == ["fraud.example.com"]
    assert vs["spec"]["gateways"] == ["istio-system/public"]
    mesh_only = istio.build_virtualservice(OWNER, spec("istio", {"hosts": ["fraud"]}).traffic.istio, Routing(5))
    assert "gateways" not in mesh_only["spec"], "no gateways means Istio's default: the mesh"


class RecordingKube:
    """Stands in for the cluster in the shell: records the Services it is asked to write."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}

    def read_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.services.get(name)

    def apply_service(self, manifest: dict[str, Any], live: dict[str, Any] | None) -> bool:
        assert live is self.services.get(manifest["metadata"]["name"]), "the shell passes what it read"
        self.services[manifest["metadata"]["name"]] = manifest
        return True

    def delete_service(self, namespace: str, name: str) -> None:
        self.services.pop(name, None)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_the_apex_service_selects_the_stable_revision_alone_except_without_a_traffic_layer(provider, monkeypatch):
    """What handlers._apply writes for PointService: with Istio too, ``fraud`` selects the stable
    revision only (a caller the VirtualService does not govern cannot reach the canary); only
    ``traffic.none`` spans revisions, because there the replica ratio is the weight."""
    from modelrollout import engine, handlers
    from modelrollout.api.types import ModelDeploymentStatus
    from modelrollout.config import OperatorConfig

    kube = RecordingKube()
    rt = handlers.Runtime(
        config=OperatorConfig(), api_client=None, kube=kube, telemetry=Telemetry(process_metrics=False)
    )  # type: ignore[arg-type]
    actions = [engine.PointService("stable", "aaa111"), engine.PointService("canary", "bbb222")]
    decision = engine.Decision(ModelDeploymentStatus(), actions)
    handlers._apply(rt, {**OWNER, "spec": {}}, spec(provider), decision, {})
    stable, canary = kube.services["fraud"]["spec"]["selector"], kube.services["fraud-canary"]["spec"]["selector"]
    assert canary == {"modelrollout.io/deployment": "fraud", "modelrollout.io/revision": "bbb222"}
    if provider == "none":
        assert stable == {"modelrollout.io/deployment": "fraud"}
    else:
        assert stable == {"modelrollout.io/deployment": "fraud", "modelrollout.io/revision": "aaa111"}
    if provider == "istio":
        vs = istio.build_virtualservice(OWNER, spec("istio").traffic.istio, Routing(10))
        hosts = [r["destination"]["host"] for r in vs["spec"]["http"][0]["route"]]
        assert hosts == ["fraud.ml.svc.cluster.local", "fraud-canary.ml.svc.cluster.local"]


def test_cluster_domain_is_configurable(monkeypatch):
    monkeypatch.setenv("MODELROLLOUT_CLUSTER_DOMAIN", "corp.internal")
    vs = istio.build_virtualservice(OWNER, spec("istio").traffic.istio, Routing(5))
    hosts = [r["destination"]["host"] for r in vs["spec"]["http"][0]["route"]]
    assert hosts == ["fraud.ml.svc.corp.internal", "fraud-canary.ml.svc.corp.internal"]


@pytest.mark.parametrize("weight", [101, -1, True, 5.0])
def test_a_weight_that_is_no_percentage_never_becomes_a_routing(weight):
    with pytest.raises(ValueError, match=r"0\.\.100"):
        Routing(weight)


def test_virtualservice_weights_read_back():
    single = {
        "spec": {"http": [{"name": WEIGHTED_ROUTE, "route": [{"destination": {"host": "fraud.ml.svc.cluster.local"}}]}]}
    }
    assert istio.weights_of(single, OWNER) == (100, 0), "a lone destination without weight takes everything"
    assert istio.weights_of({"spec": {"http": [{"name": "other"}]}}, OWNER) is None
    foreign = {"spec": {"http": [{"name": WEIGHTED_ROUTE, "route": [
        {"destination": {"host": "fraud.ml.svc.cluster.local"}, "weight": 60},
        {"destination": {"host": "elsewhere.ml.svc.cluster.local"}, "weight": 40}]}]}}  # fmt: skip
    assert istio.weights_of(foreign, OWNER) == (100, 0), "a host that is neither Service counts for neither"


def test_a_route_with_subsets_is_recognised_as_an_earlier_versions():
    old = {"spec": {"http": [{"name": WEIGHTED_ROUTE, "route": [
        {"destination": {"host": "fraud.ml.svc.cluster.local", "subset": "stable"}, "weight": 100}]}]}}  # fmt: skip
    assert istio.names_subsets(old)
    assert not istio.names_subsets(istio.build_virtualservice(OWNER, spec("istio").traffic.istio, Routing(50)))
    assert not istio.names_subsets(None)


# ------------------------------------------------------------------------------------------- NGINX


@pytest.mark.parametrize("w", WEIGHTS)
def test_nginx_pair(w):
    traffic = spec("nginx").traffic.nginx
    main = nginx.build_main_ingress(OWNER, traffic)
    canary = nginx.build_canary_ingress(OWNER, traffic, Routing(w))
    assert main["metadata"]["name"] == "fraud"
    assert_owned(main, "nginx")
    assert "annotations" not in main["metadata"]
    assert main["spec"]["rules"][0]["http"]["paths"][0]["backend"] == {
        "service": {"name": "fraud", "port": {"number": 80}}
    }
    if w == 0:
        assert canary is None, "no canary traffic: the canary Ingress is deleted, not left naming a missing Service"
        assert nginx.weights_of(main, None) == (100, 0)
        return
    assert canary is not None
    assert canary["metadata"]["name"] == "fraud-canary"
    assert_owned(canary, "nginx")
    assert canary["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": str(w),
    }
    # ingress-nginx pairs the two by class, host, path and pathType: they must match exactly.
    assert canary["spec"]["ingressClassName"] == main["spec"]["ingressClassName"] == "nginx"
    (mrule,), (crule,) = main["spec"]["rules"], canary["spec"]["rules"]
    assert mrule["host"] == crule["host"] == "fraud.example.com"
    (mpath,), (cpath,) = mrule["http"]["paths"], crule["http"]["paths"]
    assert (mpath["path"], mpath["pathType"]) == (cpath["path"], cpath["pathType"]) == ("/v2", "Prefix")
    assert cpath["backend"] == {"service": {"name": "fraud-canary", "port": {"number": 80}}}
    assert nginx.weights_of(main, canary) == (100 - w, w)


def test_nginx_weights_read_back():
    main = nginx.build_main_ingress(OWNER, spec("nginx").traffic.nginx)
    assert nginx.weights_of(None, None) is None
    total = {"metadata": {"annotations": {nginx.ANNOTATION_CANARY: "true", nginx.ANNOTATION_CANARY_WEIGHT: "250",
                                          nginx.ANNOTATION_CANARY_WEIGHT_TOTAL: "1000"}}}  # fmt: skip
    assert nginx.weights_of(main, total) == (75, 25)
    not_canary = {"metadata": {"annotations": {nginx.ANNOTATION_CANARY_WEIGHT: "50"}}}
    assert nginx.weights_of(main, not_canary) == (100, 0)
    garbage = {"metadata": {"annotations": {nginx.ANNOTATION_CANARY: "true", nginx.ANNOTATION_CANARY_WEIGHT: "x"}}}
    assert nginx.weights_of(main, garbage) == (100, 0)


# -------------------------------------------------------------------------------------------- none


def test_none_weights_are_the_ready_replica_ratio():
    assert none.approximate_weights(None, None) is None
    assert none.approximate_weights(3, None) == (100, 0)
    assert none.approximate_weights(0, 0) == (100, 0)
    assert none.approximate_weights(3, 1) == (75, 25)
    assert none.approximate_weights(1, 1) == (50, 50)
    assert none.approximate_weights(0, 2) == (0, 100)


def test_none_writes_nothing():
    router = none.NoneRouter.__new__(none.NoneRouter)  # no client: ensure and cleanup do no I/O
    for w in WEIGHTS:
        assert router.ensure(OWNER, spec("none"), Routing(w)) is False
    assert router.cleanup(OWNER, spec("none")) is None


def test_cleanup_of_other_providers_skips_forbidden_ones_and_never_the_current(monkeypatch):
    from kubernetes.client.exceptions import ApiException
    from modelrollout import routers

    calls: list[str] = []

    def fake(provider: str, status: int | None):
        class Fake:
            def __init__(self, api_client=None):
                pass

            def cleanup(self, owner, spec):
                calls.append(provider)
                if status:
                    raise ApiException(status=status)

        return Fake

    monkeypatch.setattr(routers, "PROVIDERS", {"gatewayAPI": fake("gatewayAPI", None), "istio": fake("istio", 403),
                                               "nginx": fake("nginx", None), "none": fake("none", None)})  # fmt: skip
    routers.cleanup_other_providers(OWNER, spec("nginx"))
    assert calls == ["gatewayAPI", "istio", "none"]
    monkeypatch.setitem(routers.PROVIDERS, "istio", fake("istio", 500))
    with pytest.raises(ApiException):
        routers.cleanup_other_providers(OWNER, spec("nginx"))


def test_an_unchanged_apply_is_skipped_but_a_hand_edit_is_repaired():
    from modelrollout.kube import apply_unless_unchanged

    manifest = gatewayapi.build_httproute(OWNER, spec("gatewayAPI").traffic.gatewayAPI, Routing(5))
    sent: list[dict] = []
    assert apply_unless_unchanged(manifest, None, sent.append) is True
    live = json.loads(json.dumps(sent[0]))
    # What the API server adds (defaults, uid, other managers' fields) does not count as a change.
    live["metadata"].update(uid="x", resourceVersion="7", generation=1)
    live["metadata"]["annotations"]["team"] = "risk"
    for ref in live["spec"]["rules"][0]["backendRefs"]:
        ref.update(group="", kind="Service")
    live["spec"]["parentRefs"][0].update(group="gateway.networking.k8s.io", kind="Gateway")
    assert apply_unless_unchanged(manifest, live, sent.append) is False
    live["spec"]["rules"][0]["backendRefs"][1]["weight"] = 60  # kubectl edit, hash annotation intact
    assert apply_unless_unchanged(manifest, live, sent.append) is True
    assert len(sent) == 2


# ------------------------------------------------------------------------ header and cookie routes

ROUTES = (
    CanaryRoute.model_validate({"header": {"name": "X-Canary", "value": "always"}}),
    CanaryRoute.model_validate(
        {"header": {"name": "x-tester", "value": "^(alice|bob)$", "match": "RegularExpression"}}
    ),
    CanaryRoute.model_validate({"cookie": {"name": "canary"}}),
)
COOKIE = r"^(.*?;\s*)?canary=always(;.*)?$"


@pytest.mark.parametrize("w", [0, 20])
def test_httproute_canary_routes_rule_comes_first_and_targets_the_canary_alone(w):
    route = gatewayapi.build_httproute(OWNER, spec("gatewayAPI").traffic.gatewayAPI, Routing(w, ROUTES))
    first, weighted = route["spec"]["rules"]
    assert first["name"] == "canary-routes" and weighted["name"] == WEIGHTED_ROUTE
    assert first["backendRefs"] == [{"name": "fraud-canary", "port": 80, "weight": 1}]
    path = {"type": "PathPrefix", "value": "/v2/models/fraud"}
    assert first["matches"] == [
        {"path": path, "headers": [{"type": "Exact", "name": "X-Canary", "value": "always"}]},
        {"path": path, "headers": [{"type": "RegularExpression", "name": "x-tester", "value": "^(alice|bob)$"}]},
        {"path": path, "headers": [{"type": "RegularExpression", "name": "Cookie", "value": COOKIE}]},
    ]
    assert gatewayapi.weights_of(route, "fraud") == (100 - w, w), "the weights are read from the weighted rule"


def test_virtualservice_canary_routes_come_first_with_lower_case_headers():
    vs = istio.build_virtualservice(OWNER, spec("istio").traffic.istio, Routing(0, ROUTES))
    first, weighted = vs["spec"]["http"]
    assert first["name"] == "canary-routes" and weighted["name"] == WEIGHTED_ROUTE
    assert first["match"] == [
        {"headers": {"x-canary": {"exact": "always"}}},
        {"headers": {"x-tester": {"regex": "^(alice|bob)$"}}},
        {"headers": {"cookie": {"regex": COOKIE}}},
    ]
    assert first["route"] == [{"destination": {"host": "fraud-canary.ml.svc.cluster.local", "port": {"number": 80}},
                               "weight": 100}]  # fmt: skip
    assert istio.weights_of(vs, OWNER) == (100, 0)


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        (ROUTES[:1], {"canary-by-header": "X-Canary", "canary-by-header-value": "always"}),
        (ROUTES[1:], {"canary-by-header": "x-tester", "canary-by-header-pattern": "^(alice|bob)$",
                      "canary-by-cookie": "canary"}),
    ],
)  # fmt: skip
def test_nginx_canary_ingress_carries_the_routes_even_at_weight_0(routes, expected):
    canary = nginx.build_canary_ingress(OWNER, spec("nginx").traffic.nginx, Routing(0, routes))
    assert canary is not None, "a header route needs the canary Ingress at weight 0"
    prefix = "nginx.ingress.kubernetes.io/"
    assert canary["metadata"]["annotations"] == {
        f"{prefix}canary": "true",
        f"{prefix}canary-weight": "0",
        **{prefix + k: v for k, v in expected.items()},
    }
    main = nginx.build_main_ingress(OWNER, spec("nginx").traffic.nginx)
    assert nginx.weights_of(main, canary) == (100, 0)


def test_routing_without_traffic_layer_refuses_canary_routes():
    router = none.NoneRouter.__new__(none.NoneRouter)
    with pytest.raises(ValueError, match="header or cookie"):
        router.ensure(OWNER, spec("none"), Routing(0, ROUTES))


def test_routing_without_traffic_layer_refuses_a_mirror():
    router = none.NoneRouter.__new__(none.NoneRouter)
    with pytest.raises(ValueError, match="cannot mirror"):
        router.ensure(OWNER, spec("none"), Routing(0, (), None, "r2", 50))


@pytest.mark.parametrize("weight", [0, 20])
def test_the_mirror_rule_comes_before_the_weighted_one_and_splits_the_same(weight):
    route = gatewayapi.build_httproute(OWNER, spec("gatewayAPI").traffic.gatewayAPI, Routing(weight, (), "a", "b", 30),
                                       "/v2/models/fraud/infer")  # fmt: skip
    shadow, weighted = route["spec"]["rules"]
    assert (shadow["name"], weighted["name"]) == ("shadow", "weighted")
    assert shadow["backendRefs"] == weighted["backendRefs"], "the mirror changes nothing about who answers"
    vs = istio.build_virtualservice(OWNER, spec("istio").traffic.istio, Routing(weight, (), "a", "b", 30), "/p")
    assert [h["name"] for h in vs["spec"]["http"]] == ["shadow", "weighted"]
    assert vs["spec"]["http"][0]["route"] == vs["spec"]["http"][1]["route"]


def test_a_mirror_needs_the_inference_path_and_nginx_mirrors_everything():
    with pytest.raises(ValueError, match="inference path"):
        gatewayapi.build_httproute(OWNER, spec("gatewayAPI").traffic.gatewayAPI, Routing(0, (), "a", "b", 30))
    with pytest.raises(ValueError, match="percent must be 100"):
        nginx.build_shadow_ingress(OWNER, spec("nginx").traffic.nginx, Routing(0, (), "a", "b", 30), "/p")
    assert nginx.build_shadow_ingress(OWNER, spec("nginx").traffic.nginx, Routing(20), "/p") is None
    assert nginx.build_canary_ingress(OWNER, spec("nginx").traffic.nginx, Routing(0, (), "a", "b", 100)) is None


@pytest.mark.parametrize(
    ("cookie_header", "matches"),
    [("canary=always", True), ("a=1; canary=always", True), ("a=1;canary=always; b=2", True),
     ("xcanary=always", False), ("canary=alwaysx", False), ("a=canary=always", False), ("", False)],
)  # fmt: skip
def test_the_cookie_regex_means_the_same_searched_or_matched_whole(cookie_header, matches):
    assert bool(re.search(COOKIE, cookie_header)) is matches
    assert bool(re.fullmatch(COOKIE, cookie_header)) is matches
    assert cookie_regex("canary", "always") == COOKIE


def test_a_service_is_never_moved_off_serving_pods_onto_a_revision_without_any(monkeypatch):
    """A decision re-made from a status older than the cluster (operator killed between writing the
    children and writing status) may point the stable Service back at a revision already scaled to
    zero: the shell holds the Service where pods serve until the target has an available pod."""
    from modelrollout import engine, handlers
    from modelrollout.api.types import ModelDeploymentStatus
    from modelrollout.config import OperatorConfig

    def live(**available: int) -> dict:
        return {rev: (engine.DeploymentState(replicas=2, updated=2, ready=n, available=n, up_to_date=True), {})
                for rev, n in available.items()}  # fmt: skip

    kube = RecordingKube()
    rt = handlers.Runtime(
        config=OperatorConfig(), api_client=None, kube=kube, telemetry=Telemetry(process_metrics=False)
    )  # type: ignore[arg-type]
    owner = {**OWNER, "spec": {}}

    def point(revision: str, world: dict) -> str:
        decision = engine.Decision(ModelDeploymentStatus(), [engine.PointService("stable", revision)])
        handlers._apply(rt, owner, spec("gatewayAPI"), decision, world)
        return kube.services["fraud"]["spec"]["selector"]["modelrollout.io/revision"]

    assert point("new222", live()) == "new222"  # nothing serves yet: the first revision is pointed at
    assert point("old111", live(old111=2, new222=2)) == "old111"  # both serve: moved
    assert point("new222", live(old111=2, new222=0)) == "old111"  # held on the serving revision
    assert point("new222", live(old111=2, new222=1)) == "new222"  # once the target serves
    assert point("old111", live(old111=0, new222=0)) == "old111"  # nothing serves: no reason to hold


# ---------------------------------------------------------------------------- Gateway API: gRPC

GRPC_TRAFFIC = {**TRAFFIC["gatewayAPI"], "grpc": {"parentRefs": [{"name": "public-gw", "sectionName": "grpc"}]}}


@pytest.mark.parametrize("w", WEIGHTS)
def test_the_grpcroute_splits_the_inference_service_like_the_httproute(w):
    traffic = spec("gatewayAPI", GRPC_TRAFFIC).traffic.gatewayAPI
    assert traffic is not None and traffic.grpc is not None
    route = gatewayapi.build_grpcroute(OWNER, traffic, traffic.grpc, Routing(w))
    assert route["kind"] == "GRPCRoute" and route["metadata"]["name"] == "fraud-grpc"
    assert_owned(route, "gatewayAPI")
    (rule,) = route["spec"]["rules"]
    assert rule["name"] == WEIGHTED_ROUTE
    assert rule["matches"] == [{"method": {"type": "Exact", "service": "inference.GRPCInferenceService"}}]
    assert {b["name"]: b["weight"] for b in rule["backendRefs"]} == (
        {"fraud": 100} if w == 0 else {"fraud": 100 - w, "fraud-canary": w}
    )
    assert all(b["port"] == 8081 for b in rule["backendRefs"])
    assert route["spec"]["parentRefs"] == [{"name": "public-gw", "sectionName": "grpc"}]  # its own listener
    assert route["spec"]["hostnames"] == ["fraud.example.com"]  # the HTTPRoute's, by default
    http = gatewayapi.build_httproute(OWNER, traffic, Routing(w))
    assert http["metadata"]["annotations"] == {"modelrollout.io/grpc-route": "fraud-grpc"}


def test_the_grpcroute_sends_canary_route_matches_to_the_canary_and_defaults_to_the_httproutes_parents():
    traffic = spec("gatewayAPI", {**TRAFFIC["gatewayAPI"], "grpc": {}}).traffic.gatewayAPI
    assert traffic is not None and traffic.grpc is not None
    routes = (CanaryRoute.model_validate({"header": {"name": "x-canary", "value": "always"}}),)
    route = gatewayapi.build_grpcroute(OWNER, traffic, traffic.grpc, Routing(0, routes))
    first, weighted = route["spec"]["rules"]
    assert first["name"] == "canary-routes" and first["backendRefs"] == [{"name": "fraud-canary", "port": 8081,
                                                                          "weight": 1}]  # fmt: skip
    assert first["matches"] == [{"method": {"type": "Exact", "service": "inference.GRPCInferenceService"},
                                 "headers": [{"type": "Exact", "name": "x-canary", "value": "always"}]}]  # fmt: skip
    assert [b["name"] for b in weighted["backendRefs"]] == ["fraud"]
    assert route["spec"]["parentRefs"] == [{"name": "public-gw", "namespace": "gateways", "sectionName": "https"}]
    plain = gatewayapi.build_httproute(OWNER, spec("gatewayAPI").traffic.gatewayAPI, Routing(0))
    assert "annotations" not in plain["metadata"]


def test_services_carry_the_grpc_port_only_where_a_route_splits_grpc():
    from modelrollout.workloads import build_service, grpc_routed

    assert grpc_routed(spec("gatewayAPI", GRPC_TRAFFIC)) and not grpc_routed(spec("gatewayAPI"))
    assert not grpc_routed(spec("istio"))
    with_grpc = build_service(OWNER, "fraud", "aaa111", "stable", grpc=True)["spec"]["ports"]
    assert with_grpc[1] == {"name": "grpc", "port": 8081, "targetPort": "grpc", "protocol": "TCP",
                            "appProtocol": "kubernetes.io/h2c"}  # fmt: skip
    assert [p["name"] for p in build_service(OWNER, "fraud", "aaa111", "stable")["spec"]["ports"]] == ["http"]
