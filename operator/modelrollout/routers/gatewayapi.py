"""Gateway API: one ``HTTPRoute`` (gateway.networking.k8s.io/v1) with weighted Service backends.

Gateway API weights are relative (0..1,000,000 per backend, 0 = no traffic), not percentages; we
write percentages that add up to 100 so the object reads the same as the ModelDeployment's status.
The stable backend is always present (at weight 0 once the canary takes everything, so the
rule keeps its shape); the canary backend is present only while it carries traffic, because an
HTTPRoute naming a Service that does not exist makes implementations report ResolvedRefs=False
and some of them answer 500 for that share.

Canary routes are a rule before the weighted one, one match per header or cookie (the matches of a
rule are ORed). Gateway API gives a match with more header matches precedence over one with fewer
for the same path, so the rule wins wherever its rules sit; a cookie is a RegularExpression match
on the Cookie header (Gateway API has no cookie match).

The shadow step's mirror is a rule for the model's inference path alone (Exact
``/v2/models/<model>/infer``, which outranks the route's PathPrefix), with the same backends and a
``RequestMirror`` filter to the canary Service at ``percent``; feedback and metadata requests keep
the weighted rule, so no label is mirrored. gRPC requests are not mirrored.

With ``grpc`` set, a ``GRPCRoute`` ``<name>-grpc`` splits the Open Inference Protocol's gRPC API
(service ``inference.GRPCInferenceService``) by the same weights and canary routes (gRPC metadata
are HTTP/2 headers), to the Services' ``grpc`` port; a canary's gates then judge its gRPC traffic
too. Without it, a GRPCRoute the router wrote earlier is deleted.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from modelrollout.api.types import CanaryRoute, GatewayAPITraffic, GatewayGRPCTraffic, ModelDeploymentSpec
from modelrollout.kube import FIELD_MANAGER, apply_unless_unchanged, get_or_none, json_object
from modelrollout.routers.base import (
    CANARY_ROUTES,
    SHADOW_ROUTE,
    WEIGHTED_ROUTE,
    cookie_regex,
    delete_if_controlled,
    infer_path,
    object_meta,
    percentages,
)
from modelrollout.routing import Routing, Weights, split
from modelrollout.workloads import SERVICE_GRPC_PORT, SERVICE_PORT, canary_service_name, stable_service_name

PROVIDER = "gatewayAPI"
GROUP = "gateway.networking.k8s.io"
VERSION = "v1"
PLURAL = "httproutes"
KIND = "HTTPRoute"
GRPC_PLURAL = "grpcroutes"
GRPC_KIND = "GRPCRoute"
GRPC_SERVICE = "inference.GRPCInferenceService"
GRPC_ANNOTATION = "modelrollout.io/grpc-route"
"""On the HTTPRoute while a GRPCRoute goes with it: turning ``grpc`` off is then seen in the one
read a reconcile already makes, and the GRPCRoute deleted, without a GET of it on every tick."""
APPLY = "application/apply-patch+yaml"


def route_name(name: str) -> str:
    return name


def grpc_route_name(name: str) -> str:
    return f"{name}-grpc"


def _backend(service: str, weight: int, port: int = SERVICE_PORT) -> dict[str, Any]:
    return {"name": service, "port": port, "weight": weight}


def _parent_ref(ref: Any) -> dict[str, Any]:
    return {k: v for k, v in ref.model_dump(mode="json").items() if v is not None}


def header_match(route: CanaryRoute) -> dict[str, Any]:
    """One HTTPHeaderMatch for a canary route's header or cookie."""
    if route.header is not None:
        return {"type": route.header.match, "name": route.header.name, "value": route.header.value}
    assert route.cookie is not None
    return {"type": "RegularExpression", "name": "Cookie", "value": cookie_regex(route.cookie.name, route.cookie.value)}


def canary_routes_rule(name: str, path: str, routes: tuple[CanaryRoute, ...]) -> dict[str, Any]:
    """The rule that sends every request matching one of ``routes`` to the canary Service alone."""
    return {
        "name": CANARY_ROUTES,
        "matches": [{"path": {"type": "PathPrefix", "value": path}, "headers": [header_match(r)]} for r in routes],
        "backendRefs": [_backend(canary_service_name(name), 1)],
    }


def weighted_backends(name: str, canary_weight: int, port: int = SERVICE_PORT) -> list[dict[str, Any]]:
    """The stable Service, and the canary's while it carries traffic, at their shares."""
    stable_w, canary_w = split(canary_weight)
    backends = [_backend(stable_service_name(name), stable_w, port)]
    if canary_w > 0:
        backends.append(_backend(canary_service_name(name), canary_w, port))
    return backends


def weighted_rule(name: str, path: str, canary_weight: int) -> dict[str, Any]:
    """The rule that splits traffic between the stable and canary Services."""
    return {
        "name": WEIGHTED_ROUTE,
        "matches": [{"path": {"type": "PathPrefix", "value": path}}],
        "backendRefs": weighted_backends(name, canary_weight),
    }


def shadow_rule(name: str, path: str, canary_weight: int, percent: int) -> dict[str, Any]:
    """The inference path's rule during the shadow step: the weighted backends, plus a mirror of
    ``percent`` % of its requests to the canary Service (whose answers the gateway drops)."""
    mirror = {"backendRef": {"name": canary_service_name(name), "port": SERVICE_PORT}, "percent": percent}
    return {
        "name": SHADOW_ROUTE,
        "matches": [{"path": {"type": "Exact", "value": path}}],
        "filters": [{"type": "RequestMirror", "requestMirror": mirror}],
        "backendRefs": weighted_backends(name, canary_weight),
    }


def build_grpcroute(
    owner: dict[str, Any], traffic: GatewayAPITraffic, grpc: GatewayGRPCTraffic, routing: Routing
) -> dict[str, Any]:
    """The GRPCRoute: the inference service's methods split like the HTTPRoute, on the grpc port."""
    name = owner["metadata"]["name"]
    method = {"method": {"type": "Exact", "service": GRPC_SERVICE}}
    spec: dict[str, Any] = {"parentRefs": [_parent_ref(r) for r in grpc.parentRefs or traffic.parentRefs]}
    hostnames = grpc.hostnames or traffic.hostnames
    if hostnames:
        spec["hostnames"] = list(hostnames)
    rules = []
    if routing.canary_routes:
        rules.append({
            "name": CANARY_ROUTES,
            "matches": [{**method, "headers": [header_match(r)]} for r in routing.canary_routes],
            "backendRefs": [_backend(canary_service_name(name), 1, SERVICE_GRPC_PORT)],
        })  # fmt: skip
    rules.append({"name": WEIGHTED_ROUTE, "matches": [method],
                  "backendRefs": weighted_backends(name, routing.canary_weight, SERVICE_GRPC_PORT)})  # fmt: skip
    spec["rules"] = rules
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": GRPC_KIND,
        "metadata": object_meta(owner, grpc_route_name(name), PROVIDER),
        "spec": spec,
    }


def build_httproute(
    owner: dict[str, Any], traffic: GatewayAPITraffic, routing: Routing, inference_path: str | None = None
) -> dict[str, Any]:
    """The whole HTTPRoute for one routing: parentRefs, hostnames and path prefix from the spec;
    ``inference_path`` is the one the shadow step mirrors."""
    name = owner["metadata"]["name"]
    spec: dict[str, Any] = {"parentRefs": [_parent_ref(r) for r in traffic.parentRefs]}
    if traffic.hostnames:
        spec["hostnames"] = list(traffic.hostnames)
    rules = [canary_routes_rule(name, traffic.path, routing.canary_routes)] if routing.canary_routes else []
    if routing.mirror_percent:
        if inference_path is None:
            raise ValueError("a mirror needs the model's inference path")
        rules.append(shadow_rule(name, inference_path, routing.canary_weight, routing.mirror_percent))
    spec["rules"] = [*rules, weighted_rule(name, traffic.path, routing.canary_weight)]
    grpc = {GRPC_ANNOTATION: grpc_route_name(name)} if traffic.grpc is not None else None
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": object_meta(owner, route_name(name), PROVIDER, annotations=grpc),
        "spec": spec,
    }


def weights_of(route: dict[str, Any], name: str) -> Weights | None:
    """(stable %, canary %) from a live HTTPRoute's weighted rule; None when it has none.

    Backends without a weight count as 1, which is the Gateway API default.
    """
    rules = (route.get("spec") or {}).get("rules") or []
    rule = next((r for r in rules if r.get("name") == WEIGHTED_ROUTE), None)
    if rule is None:
        return None
    by_service: dict[str, int] = {}
    for ref in rule.get("backendRefs") or []:
        if ref.get("kind", "Service") == "Service" and not ref.get("group"):
            by_service[ref["name"]] = by_service.get(ref["name"], 0) + int(ref.get("weight", 1))
    return percentages(by_service.get(stable_service_name(name), 0), by_service.get(canary_service_name(name), 0))


class GatewayAPIRouter:
    """Writes and reads the HTTPRoute ``<name>`` (and the GRPCRoute ``<name>-grpc``) in the
    ModelDeployment's namespace."""

    provider = PROVIDER

    def __init__(self, api_client: client.ApiClient | None = None):
        self.custom = client.CustomObjectsApi(api_client)

    # The only calls this module makes (the chart's RBAC is derived from them), one set per kind.
    def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return get_or_none(
            lambda: json_object(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))
        )

    def _get_grpc(self, namespace: str, name: str) -> dict[str, Any] | None:
        return get_or_none(
            lambda: json_object(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, GRPC_PLURAL, name))
        )

    def _apply(self, manifest: dict[str, Any], live: dict[str, Any] | None) -> bool:
        meta = manifest["metadata"]
        ns, name = meta["namespace"], meta["name"]
        if manifest["kind"] == GRPC_KIND:
            return apply_unless_unchanged(
                manifest,
                live,
                lambda body: self.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, ns, GRPC_PLURAL, name, body, field_manager=FIELD_MANAGER, force=True,
                    _content_type=APPLY,
                ),
            )  # fmt: skip
        return apply_unless_unchanged(
            manifest,
            live,
            lambda body: self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, name, body, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY
            ),
        )

    def _delete(self, namespace: str, name: str, owner_uid: str) -> bool:
        return delete_if_controlled(
            self._get(namespace, name),
            owner_uid,
            lambda opts: self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, body=opts
            ),
        )

    def _delete_grpc(self, namespace: str, name: str, owner_uid: str) -> bool:
        return delete_if_controlled(
            self._get_grpc(namespace, name),
            owner_uid,
            lambda opts: self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, GRPC_PLURAL, name, body=opts
            ),
        )

    def ensure(self, owner: dict[str, Any], spec: ModelDeploymentSpec, routing: Routing) -> bool:
        """The HTTPRoute, then the GRPCRoute (or, without ``grpc``, the removal of one written before)."""
        traffic = spec.traffic.gatewayAPI
        if traffic is None:
            raise ValueError("spec.traffic.gatewayAPI is not set")
        meta = owner["metadata"]
        ns, name = meta["namespace"], meta["name"]
        live = self._get(ns, route_name(name))
        wrote = self._apply(build_httproute(owner, traffic, routing, infer_path(spec)), live)
        if traffic.grpc is not None:
            grpc = build_grpcroute(owner, traffic, traffic.grpc, routing)
            return self._apply(grpc, self._get_grpc(ns, grpc_route_name(name))) or wrote
        if live is not None and GRPC_ANNOTATION in (live["metadata"].get("annotations") or {}):
            self._delete_grpc(ns, grpc_route_name(name), meta["uid"])
        return wrote

    def read_weights(self, owner: dict[str, Any], spec: ModelDeploymentSpec) -> Weights | None:
        meta = owner["metadata"]
        route = self._get(meta["namespace"], route_name(meta["name"]))
        return None if route is None else weights_of(route, meta["name"])

    def cleanup(self, owner: dict[str, Any], spec: ModelDeploymentSpec) -> None:
        meta = owner["metadata"]
        self._delete(meta["namespace"], route_name(meta["name"]), meta["uid"])
        self._delete_grpc(meta["namespace"], grpc_route_name(meta["name"]), meta["uid"])
