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
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from modelrollout.api.types import CanaryRoute, GatewayAPITraffic, ModelDeploymentSpec
from modelrollout.kube import FIELD_MANAGER, apply_unless_unchanged, get_or_none, json_object
from modelrollout.routers.base import (
    CANARY_ROUTES,
    WEIGHTED_ROUTE,
    cookie_regex,
    delete_if_controlled,
    object_meta,
    percentages,
)
from modelrollout.routing import Routing, Weights, split
from modelrollout.workloads import SERVICE_PORT, canary_service_name, stable_service_name

PROVIDER = "gatewayAPI"
GROUP = "gateway.networking.k8s.io"
VERSION = "v1"
PLURAL = "httproutes"
KIND = "HTTPRoute"
APPLY = "application/apply-patch+yaml"


def route_name(name: str) -> str:
    return name


def _backend(service: str, weight: int) -> dict[str, Any]:
    return {"name": service, "port": SERVICE_PORT, "weight": weight}


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


def weighted_rule(name: str, path: str, canary_weight: int) -> dict[str, Any]:
    """The rule that splits traffic between the stable and canary Services."""
    stable_w, canary_w = split(canary_weight)
    backends = [_backend(stable_service_name(name), stable_w)]
    if canary_w > 0:
        backends.append(_backend(canary_service_name(name), canary_w))
    return {
        "name": WEIGHTED_ROUTE,
        "matches": [{"path": {"type": "PathPrefix", "value": path}}],
        "backendRefs": backends,
    }


def build_httproute(owner: dict[str, Any], traffic: GatewayAPITraffic, routing: Routing) -> dict[str, Any]:
    """The whole HTTPRoute for one routing: parentRefs, hostnames and path prefix from the spec."""
    name = owner["metadata"]["name"]
    spec: dict[str, Any] = {"parentRefs": [_parent_ref(r) for r in traffic.parentRefs]}
    if traffic.hostnames:
        spec["hostnames"] = list(traffic.hostnames)
    rules = [canary_routes_rule(name, traffic.path, routing.canary_routes)] if routing.canary_routes else []
    spec["rules"] = [*rules, weighted_rule(name, traffic.path, routing.canary_weight)]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": object_meta(owner, route_name(name), PROVIDER),
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
    """Writes and reads the HTTPRoute ``<name>`` in the ModelDeployment's namespace."""

    provider = PROVIDER

    def __init__(self, api_client: client.ApiClient | None = None):
        self.custom = client.CustomObjectsApi(api_client)

    # The only calls this module makes (the chart's RBAC is derived from them).
    def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return get_or_none(
            lambda: json_object(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))
        )

    def _apply(self, manifest: dict[str, Any]) -> bool:
        meta = manifest["metadata"]
        ns, name = meta["namespace"], meta["name"]
        return apply_unless_unchanged(
            manifest,
            self._get(ns, name),
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

    def ensure(self, owner: dict[str, Any], spec: ModelDeploymentSpec, routing: Routing) -> bool:
        traffic = spec.traffic.gatewayAPI
        if traffic is None:
            raise ValueError("spec.traffic.gatewayAPI is not set")
        return self._apply(build_httproute(owner, traffic, routing))

    def read_weights(self, owner: dict[str, Any], spec: ModelDeploymentSpec) -> Weights | None:
        meta = owner["metadata"]
        route = self._get(meta["namespace"], route_name(meta["name"]))
        return None if route is None else weights_of(route, meta["name"])

    def cleanup(self, owner: dict[str, Any], spec: ModelDeploymentSpec) -> None:
        meta = owner["metadata"]
        self._delete(meta["namespace"], route_name(meta["name"]), meta["uid"])
