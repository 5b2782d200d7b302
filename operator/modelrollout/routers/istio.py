"""Istio: one ``VirtualService`` (networking.istio.io/v1) that splits by destination host.

The VirtualService ``<name>`` takes the user's hosts and gateways and sends a weighted share to two
destination hosts: the operator's ``<name>`` Service (the stable revision's pods only) and, while
the canary takes traffic, ``<name>-canary`` (the canary revision's pods only). Istio's weights are
relative but we write sums of 100.

Why hosts and not DestinationRule subsets. A VirtualService governs only the requests Envoy routes
with it: those through the listed gateways, and (with no gateways, or ``mesh``) requests from
sidecar-injected callers addressed to one of its hosts. Everything else -- a caller without a
sidecar, a host the VirtualService does not list -- goes straight to the ``<name>`` Service through
kube-proxy. Subsets only select pods *among the endpoints of their host Service*, so splitting by
subsets of ``<name>`` forces ``<name>`` to select every revision, and then every ungoverned caller
spreads over stable, canary and the warm previous revision, bypassing the weights. Routing to two
Services instead lets ``<name>`` select the stable revision alone, exactly as with Gateway API and
NGINX: an ungoverned caller reaches the stable revision and nothing else. A promotion is then the
operator re-pointing the ``<name>`` Service, as for the other providers.

The shadow step's mirror is an http route before the weighted one, for the model's inference path
alone (``uri: {exact: /v2/models/<model>/infer}``, so feedback labels are never mirrored), split
like the weighted route, with ``mirror`` (the canary Service) and ``mirrorPercentage``.

No DestinationRule is written. One that an earlier version of the operator wrote (subsets
``stable``/``canary`` for ``<name>``) is deleted once the VirtualService no longer names its
subsets, and by :meth:`IstioRouter.cleanup`.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from modelrollout.api.types import CanaryRoute, IstioTraffic, ModelDeploymentSpec
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
    service_fqdn,
)
from modelrollout.routing import Routing, Weights, split
from modelrollout.workloads import SERVICE_PORT, canary_service_name, stable_service_name

PROVIDER = "istio"
GROUP = "networking.istio.io"
VERSION = "v1"
VS_PLURAL = "virtualservices"
VS_KIND = "VirtualService"
DR_PLURAL = "destinationrules"
APPLY = "application/apply-patch+yaml"


def virtualservice_name(name: str) -> str:
    return name


def destinationrule_name(name: str) -> str:
    """The DestinationRule earlier operator versions wrote (now only ever deleted)."""
    return name


def stable_host(owner: dict[str, Any]) -> str:
    """FQDN of the ``<name>`` Service, which selects the stable revision only."""
    meta = owner["metadata"]
    return service_fqdn(stable_service_name(meta["name"]), meta["namespace"])


def canary_host(owner: dict[str, Any]) -> str:
    """FQDN of the ``<name>-canary`` Service, which selects the canary revision only."""
    meta = owner["metadata"]
    return service_fqdn(canary_service_name(meta["name"]), meta["namespace"])


def _destination(host: str, weight: int) -> dict[str, Any]:
    return {"destination": {"host": host, "port": {"number": SERVICE_PORT}}, "weight": weight}


def string_match(route: CanaryRoute) -> tuple[str, dict[str, str]]:
    """(header, StringMatch) for a canary route: Istio wants lower-case header names, and matches a
    regex against the whole value (RE2)."""
    if route.header is not None:
        key = "exact" if route.header.match == "Exact" else "regex"
        return route.header.name.lower(), {key: route.header.value}
    assert route.cookie is not None
    return "cookie", {"regex": cookie_regex(route.cookie.name, route.cookie.value)}


def canary_routes_route(owner: dict[str, Any], routes: tuple[CanaryRoute, ...]) -> dict[str, Any]:
    """The http route, first in the list (Istio takes the first that matches), that sends every
    request matching one of ``routes`` (match conditions are ORed) to the canary Service alone."""
    return {
        "name": CANARY_ROUTES,
        "match": [{"headers": dict([string_match(r)])} for r in routes],
        "route": [_destination(canary_host(owner), 100)],
    }


def _weighted_destinations(owner: dict[str, Any], canary_weight: int) -> list[dict[str, Any]]:
    stable_w, canary_w = split(canary_weight)
    route = [_destination(stable_host(owner), stable_w)]
    if canary_w > 0:
        route.append(_destination(canary_host(owner), canary_w))
    return route


def weighted_route(owner: dict[str, Any], canary_weight: int) -> dict[str, Any]:
    """The http route that splits traffic between the stable and canary Services.

    The canary destination is present only while it carries traffic: ``<name>-canary`` exists only
    during a rollout.
    """
    return {"name": WEIGHTED_ROUTE, "route": _weighted_destinations(owner, canary_weight)}


def shadow_route(owner: dict[str, Any], path: str, canary_weight: int, percent: int) -> dict[str, Any]:
    """The shadow step's http route, before the weighted one: the model's inference path alone
    (exact ``uri`` match, so feedback is never mirrored), split like the weighted route, with
    ``mirror`` to the canary Service for ``mirrorPercentage`` of it (Envoy drops the answers)."""
    return {
        "name": SHADOW_ROUTE,
        "match": [{"uri": {"exact": path}}],
        "route": _weighted_destinations(owner, canary_weight),
        "mirror": {"host": canary_host(owner), "port": {"number": SERVICE_PORT}},
        "mirrorPercentage": {"value": float(percent)},
    }


def build_virtualservice(
    owner: dict[str, Any], traffic: IstioTraffic, routing: Routing, inference_path: str | None = None
) -> dict[str, Any]:
    """hosts and gateways from the spec (no gateways: Istio's default, the mesh); ``inference_path``
    is the one the shadow step mirrors."""
    name = owner["metadata"]["name"]
    spec: dict[str, Any] = {"hosts": list(traffic.hosts)}
    if traffic.gateways:
        spec["gateways"] = list(traffic.gateways)
    routes = [canary_routes_route(owner, routing.canary_routes)] if routing.canary_routes else []
    if routing.mirror_percent:
        if inference_path is None:
            raise ValueError("a mirror needs the model's inference path")
        routes.append(shadow_route(owner, inference_path, routing.canary_weight, routing.mirror_percent))
    spec["http"] = [*routes, weighted_route(owner, routing.canary_weight)]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": VS_KIND,
        "metadata": object_meta(owner, virtualservice_name(name), PROVIDER),
        "spec": spec,
    }


def _weighted(vs: dict[str, Any]) -> dict[str, Any] | None:
    http = (vs.get("spec") or {}).get("http") or []
    return next((h for h in http if h.get("name") == WEIGHTED_ROUTE), None)


def weights_of(vs: dict[str, Any], owner: dict[str, Any]) -> Weights | None:
    """(stable %, canary %) from a live VirtualService's weighted route; None when it has none.

    Destinations are told apart by host (the ``<name>`` and ``<name>-canary`` FQDNs); any other
    host counts for neither. A single destination without a weight takes everything (Istio's
    rule), hence the default.
    """
    rt = _weighted(vs)
    if rt is None:
        return None
    dests = rt.get("route") or []
    default = 100 if len(dests) == 1 else 0
    by_host: dict[str, int] = {}
    for d in dests:
        host = (d.get("destination") or {}).get("host", "")
        by_host[host] = by_host.get(host, 0) + int(d.get("weight", default))
    return percentages(by_host.get(stable_host(owner), 0), by_host.get(canary_host(owner), 0))


def names_subsets(vs: dict[str, Any] | None) -> bool:
    """Whether a live VirtualService's weighted route still uses subsets (an earlier version's)."""
    rt = None if vs is None else _weighted(vs)
    return rt is not None and any((d.get("destination") or {}).get("subset") for d in rt.get("route") or [])


class IstioRouter:
    """Writes and reads the VirtualService ``<name>``."""

    provider = PROVIDER

    def __init__(self, api_client: client.ApiClient | None = None):
        self.custom = client.CustomObjectsApi(api_client)

    # The only calls this module makes (the chart's RBAC is derived from them).
    def _get_vs(self, namespace: str, name: str) -> dict[str, Any] | None:
        return get_or_none(
            lambda: json_object(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, VS_PLURAL, name))
        )

    def _get_dr(self, namespace: str, name: str) -> dict[str, Any] | None:
        return get_or_none(
            lambda: json_object(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, DR_PLURAL, name))
        )

    def _apply_vs(self, manifest: dict[str, Any], live: dict[str, Any] | None) -> bool:
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        return apply_unless_unchanged(
            manifest,
            live,
            lambda body: self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, ns, VS_PLURAL, name, body, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY
            ),
        )

    def _delete_vs(self, namespace: str, name: str, owner_uid: str) -> bool:
        return delete_if_controlled(
            self._get_vs(namespace, name),
            owner_uid,
            lambda opts: self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, VS_PLURAL, name, body=opts
            ),
        )

    def _delete_dr(self, namespace: str, name: str, owner_uid: str) -> bool:
        return delete_if_controlled(
            self._get_dr(namespace, name),
            owner_uid,
            lambda opts: self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, DR_PLURAL, name, body=opts
            ),
        )

    def ensure(self, owner: dict[str, Any], spec: ModelDeploymentSpec, routing: Routing) -> bool:
        """Write the VirtualService; the revisions are not needed (the Services select them)."""
        traffic = spec.traffic.istio
        if traffic is None:
            raise ValueError("spec.traffic.istio is not set")
        meta = owner["metadata"]
        vs = build_virtualservice(owner, traffic, routing, infer_path(spec))
        live = self._get_vs(meta["namespace"], virtualservice_name(meta["name"]))
        changed = self._apply_vs(vs, live)
        if names_subsets(live):  # the route no longer names the old subsets: their rule can go
            self._delete_dr(meta["namespace"], destinationrule_name(meta["name"]), meta["uid"])
        return changed

    def read_weights(self, owner: dict[str, Any], spec: ModelDeploymentSpec) -> Weights | None:
        meta = owner["metadata"]
        vs = self._get_vs(meta["namespace"], virtualservice_name(meta["name"]))
        return None if vs is None else weights_of(vs, owner)

    def cleanup(self, owner: dict[str, Any], spec: ModelDeploymentSpec) -> None:
        meta = owner["metadata"]
        # The route first, then a DestinationRule an earlier version may have left.
        self._delete_vs(meta["namespace"], virtualservice_name(meta["name"]), meta["uid"])
        self._delete_dr(meta["namespace"], destinationrule_name(meta["name"]), meta["uid"])
