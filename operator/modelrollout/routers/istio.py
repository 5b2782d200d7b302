"""Istio: a ``VirtualService`` and a ``DestinationRule`` (networking.istio.io/v1).

The DestinationRule ``<name>`` is for the stable Service's FQDN and defines two subsets that select
pods by revision label: ``stable`` (the stable revision) and ``canary`` (the canary revision, only
while there is one). The VirtualService ``<name>`` takes the user's hosts and gateways and sends a
weighted share to each subset; Istio's weights are relative but we write sums of 100.

Because the subsets are defined by revision, this router needs the revisions from the operator:
``ensure(..., stable_revision=..., canary_revision=...)``. A subset only has endpoints among the
pods behind its host Service, so the Service named in ``host`` must select the pods of every
revision that a subset names (see docs/traffic.md).

Order matters while Envoy configs converge: a subset is added to the DestinationRule before the
VirtualService routes to it, and the VirtualService stops routing to a subset before the subset
is removed, so no request is routed to a subset Istio does not know.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from modelrollout.api.types import IstioTraffic, ModelDeploymentSpec
from modelrollout.kube import FIELD_MANAGER, apply_unless_unchanged, get_or_none
from modelrollout.routers.base import (
    WEIGHTED_ROUTE,
    Weights,
    delete_if_controlled,
    object_meta,
    percentages,
    service_fqdn,
    split,
)
from modelrollout.workloads import SERVICE_PORT, selector_labels, stable_service_name

PROVIDER = "istio"
GROUP = "networking.istio.io"
VERSION = "v1"
VS_PLURAL = "virtualservices"
DR_PLURAL = "destinationrules"
APPLY = "application/apply-patch+yaml"
STABLE_SUBSET = "stable"
CANARY_SUBSET = "canary"


def virtualservice_name(name: str) -> str:
    return name


def destinationrule_name(name: str) -> str:
    return name


def destination_host(owner: dict[str, Any]) -> str:
    """The stable Service's FQDN: the DestinationRule's host and every route's destination."""
    meta = owner["metadata"]
    return service_fqdn(stable_service_name(meta["name"]), meta["namespace"])


def build_destinationrule(owner: dict[str, Any], stable_revision: str, canary_revision: str | None) -> dict[str, Any]:
    """Subsets by revision label; the canary subset exists only while there is a canary revision."""
    if not stable_revision:
        raise ValueError("the Istio router needs the stable revision to define its subset")
    name = owner["metadata"]["name"]
    subsets = [{"name": STABLE_SUBSET, "labels": selector_labels(name, stable_revision)}]
    if canary_revision:
        subsets.append({"name": CANARY_SUBSET, "labels": selector_labels(name, canary_revision)})
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DestinationRule",
        "metadata": object_meta(owner, destinationrule_name(name), PROVIDER),
        "spec": {"host": destination_host(owner), "subsets": subsets},
    }


def _destination(host: str, subset: str, weight: int) -> dict[str, Any]:
    return {"destination": {"host": host, "subset": subset, "port": {"number": SERVICE_PORT}}, "weight": weight}


def weighted_route(owner: dict[str, Any], canary_weight: int) -> dict[str, Any]:
    """The http route that splits traffic between the subsets.

    Header (A/B) routes, when they come, go before it; a mirror goes on it (``mirror`` +
    ``mirrorPercentage``).
    """
    stable_w, canary_w = split(canary_weight)
    host = destination_host(owner)
    route = [_destination(host, STABLE_SUBSET, stable_w)]
    if canary_w > 0:
        route.append(_destination(host, CANARY_SUBSET, canary_w))
    return {"name": WEIGHTED_ROUTE, "route": route}


def build_virtualservice(owner: dict[str, Any], traffic: IstioTraffic, canary_weight: int) -> dict[str, Any]:
    """hosts and gateways from the spec (no gateways: Istio's default, the mesh)."""
    name = owner["metadata"]["name"]
    spec: dict[str, Any] = {"hosts": list(traffic.hosts)}
    if traffic.gateways:
        spec["gateways"] = list(traffic.gateways)
    spec["http"] = [weighted_route(owner, canary_weight)]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "VirtualService",
        "metadata": object_meta(owner, virtualservice_name(name), PROVIDER),
        "spec": spec,
    }


def weights_of(vs: dict[str, Any]) -> Weights | None:
    """(stable %, canary %) from a live VirtualService's weighted route; None when it has none.

    A single destination without a weight takes everything (Istio's rule), hence the default.
    """
    http = (vs.get("spec") or {}).get("http") or []
    rt = next((h for h in http if h.get("name") == WEIGHTED_ROUTE), None)
    if rt is None:
        return None
    dests = rt.get("route") or []
    default = 100 if len(dests) == 1 else 0
    by_subset: dict[str, int] = {}
    for d in dests:
        subset = (d.get("destination") or {}).get("subset", "")
        by_subset[subset] = by_subset.get(subset, 0) + int(d.get("weight", default))
    return percentages(by_subset.get(STABLE_SUBSET, 0), by_subset.get(CANARY_SUBSET, 0))


class IstioRouter:
    """Writes and reads the VirtualService and DestinationRule ``<name>``."""

    provider = PROVIDER

    def __init__(self, api_client: client.ApiClient | None = None):
        self.custom = client.CustomObjectsApi(api_client)

    # The only calls this module makes (the chart's RBAC is derived from them).
    def _get_vs(self, namespace: str, name: str) -> dict[str, Any] | None:
        return get_or_none(lambda: self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, VS_PLURAL, name))

    def _get_dr(self, namespace: str, name: str) -> dict[str, Any] | None:
        return get_or_none(lambda: self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, DR_PLURAL, name))

    def _apply_vs(self, manifest: dict[str, Any]) -> bool:
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        return apply_unless_unchanged(
            manifest,
            self._get_vs(ns, name),
            lambda body: self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, ns, VS_PLURAL, name, body, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY
            ),
        )

    def _apply_dr(self, manifest: dict[str, Any]) -> bool:
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        return apply_unless_unchanged(
            manifest,
            self._get_dr(ns, name),
            lambda body: self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, ns, DR_PLURAL, name, body, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY
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

    def ensure(
        self,
        owner: dict[str, Any],
        spec: ModelDeploymentSpec,
        canary_weight: int,
        *,
        stable_revision: str | None = None,
        canary_revision: str | None = None,
    ) -> bool:
        traffic = spec.traffic.istio
        if traffic is None:
            raise ValueError("spec.traffic.istio is not set")
        if canary_weight > 0 and not canary_revision:
            raise ValueError("a canary weight above 0 needs the canary revision for its subset")
        vs = build_virtualservice(owner, traffic, canary_weight)
        dr = build_destinationrule(owner, stable_revision or "", canary_revision)
        if canary_weight > 0:  # the subset must exist before the route sends to it
            return self._apply_dr(dr) | self._apply_vs(vs)
        return self._apply_vs(vs) | self._apply_dr(dr)

    def read_weights(self, owner: dict[str, Any], spec: ModelDeploymentSpec) -> Weights | None:
        meta = owner["metadata"]
        vs = self._get_vs(meta["namespace"], virtualservice_name(meta["name"]))
        return None if vs is None else weights_of(vs)

    def cleanup(self, owner: dict[str, Any], spec: ModelDeploymentSpec) -> None:
        meta = owner["metadata"]
        # Routes first, then the subsets they name.
        self._delete_vs(meta["namespace"], virtualservice_name(meta["name"]), meta["uid"])
        self._delete_dr(meta["namespace"], destinationrule_name(meta["name"]), meta["uid"])
