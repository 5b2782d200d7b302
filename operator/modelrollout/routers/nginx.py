"""NGINX Ingress: the main ``Ingress`` and, while a canary takes traffic, a canary ``Ingress``.

ingress-nginx pairs a canary Ingress with the main one by host and path, so both are built from
the same (host, path, pathType, ingressClassName) and only differ in backend and annotations:
``nginx.ingress.kubernetes.io/canary: "true"`` and ``canary-weight: "<w>"`` (out of the default
``canary-weight-total`` of 100). With no canary traffic the canary Ingress is deleted rather than
left at weight 0: it would name a canary Service that the operator deletes after a rollout, and
ingress-nginx complains about (and some versions mis-handle) backends without endpoints.

During the shadow step a third Ingress, ``<name>-shadow``, takes the model's inference path alone
(``pathType: Exact``, which ingress-nginx ranks before the main Ingress's prefix), sends it to the
stable Service and copies every request to the canary Service with ``mirror-target`` (nginx's
``mirror`` module: every request, no percentage, answers dropped). Feedback keeps the main
Ingress, so no label is mirrored. It is deleted when the shadow step ends.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from modelrollout.api.types import CanaryRoute, ModelDeploymentSpec, NginxTraffic
from modelrollout.kube import FIELD_MANAGER, apply_unless_unchanged, get_or_none, json_object
from modelrollout.routers.base import delete_if_controlled, infer_path, object_meta, percentages, service_fqdn
from modelrollout.routing import Routing, Weights
from modelrollout.workloads import SERVICE_PORT, canary_service_name, stable_service_name

PROVIDER = "nginx"
GROUP = "networking.k8s.io"
VERSION = "v1"
PLURAL = "ingresses"
APPLY = "application/apply-patch+yaml"
ANNOTATION_CANARY = "nginx.ingress.kubernetes.io/canary"
ANNOTATION_CANARY_WEIGHT = "nginx.ingress.kubernetes.io/canary-weight"
ANNOTATION_CANARY_WEIGHT_TOTAL = "nginx.ingress.kubernetes.io/canary-weight-total"
ANNOTATION_BY_HEADER = "nginx.ingress.kubernetes.io/canary-by-header"
ANNOTATION_BY_HEADER_VALUE = "nginx.ingress.kubernetes.io/canary-by-header-value"
ANNOTATION_BY_HEADER_PATTERN = "nginx.ingress.kubernetes.io/canary-by-header-pattern"
ANNOTATION_BY_COOKIE = "nginx.ingress.kubernetes.io/canary-by-cookie"
ANNOTATION_MIRROR_TARGET = "nginx.ingress.kubernetes.io/mirror-target"
ANNOTATION_MIRROR_BODY = "nginx.ingress.kubernetes.io/mirror-request-body"


def main_ingress_name(name: str) -> str:
    return name


def canary_ingress_name(name: str) -> str:
    return f"{name}-canary"


def shadow_ingress_name(name: str) -> str:
    return f"{name}-shadow"


def _ingress(
    owner: dict[str, Any],
    ingress_name: str,
    service: str,
    traffic: NginxTraffic,
    annotations: dict[str, str] | None = None,
    exact_path: str | None = None,
) -> dict[str, Any]:
    """One Ingress routing traffic.host + traffic.path (or ``exact_path``) to ``service`` port 80."""
    path = {
        "path": exact_path or traffic.path,
        "pathType": "Exact" if exact_path else traffic.pathType,
        "backend": {"service": {"name": service, "port": {"number": SERVICE_PORT}}},
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Ingress",
        "metadata": object_meta(owner, ingress_name, PROVIDER, annotations=annotations),
        "spec": {
            "ingressClassName": traffic.ingressClassName,
            "rules": [{"host": traffic.host, "http": {"paths": [path]}}],
        },
    }


def build_main_ingress(owner: dict[str, Any], traffic: NginxTraffic) -> dict[str, Any]:
    """The Ingress every request matches first: all traffic to the stable Service."""
    name = owner["metadata"]["name"]
    return _ingress(owner, main_ingress_name(name), stable_service_name(name), traffic)


def route_annotations(routes: tuple[CanaryRoute, ...]) -> dict[str, str]:
    """``canary-by-header[-value|-pattern]`` and ``canary-by-cookie`` for the canary routes.

    ingress-nginx allows one canary Ingress per host/path, so one header and one cookie (the API
    validates that, and that the cookie's value is ``always``, the only one it routes on). It
    checks the header first, then the cookie, then the weight.
    """
    annotations: dict[str, str] = {}
    for route in routes:
        if route.header is not None:
            annotations[ANNOTATION_BY_HEADER] = route.header.name
            key = ANNOTATION_BY_HEADER_VALUE if route.header.match == "Exact" else ANNOTATION_BY_HEADER_PATTERN
            annotations[key] = route.header.value
        elif route.cookie is not None:
            annotations[ANNOTATION_BY_COOKIE] = route.cookie.name
    return annotations


def build_canary_ingress(owner: dict[str, Any], traffic: NginxTraffic, routing: Routing) -> dict[str, Any] | None:
    """The canary Ingress for this routing, or None when nothing goes to the canary (delete it)."""
    if not (routing.canary_weight or routing.canary_routes):  # a mirror alone is the shadow Ingress's
        return None
    name = owner["metadata"]["name"]
    annotations = {ANNOTATION_CANARY: "true", ANNOTATION_CANARY_WEIGHT: str(routing.canary_weight),
                   **route_annotations(routing.canary_routes)}  # fmt: skip
    return _ingress(owner, canary_ingress_name(name), canary_service_name(name), traffic, annotations)


def build_shadow_ingress(
    owner: dict[str, Any], traffic: NginxTraffic, routing: Routing, inference_path: str
) -> dict[str, Any] | None:
    """The shadow step's Ingress for the inference path (to stable, mirrored to the canary), or None
    (delete it). ingress-nginx mirrors every request: the API allows only ``percent: 100``."""
    if not routing.mirror_percent:
        return None
    if routing.mirror_percent != 100:
        raise ValueError("ingress-nginx mirrors every request: strategy.canary.shadow.percent must be 100")
    meta = owner["metadata"]
    target = f"http://{service_fqdn(canary_service_name(meta['name']), meta['namespace'])}:{SERVICE_PORT}$request_uri"
    annotations = {ANNOTATION_MIRROR_TARGET: target, ANNOTATION_MIRROR_BODY: "on"}
    return _ingress(owner, shadow_ingress_name(meta["name"]), stable_service_name(meta["name"]), traffic,
                    annotations, exact_path=inference_path)  # fmt: skip


def weights_of(main: dict[str, Any] | None, canary: dict[str, Any] | None) -> Weights | None:
    """(stable %, canary %) from the live pair; None without the main Ingress.

    A canary Ingress that is not marked canary, or whose weight does not parse, is read as 0: that
    is what ingress-nginx does with it.
    """
    if main is None:
        return None
    if canary is None:
        return 100, 0
    ann = canary["metadata"].get("annotations") or {}
    if ann.get(ANNOTATION_CANARY) != "true":
        return 100, 0
    try:
        weight = int(ann.get(ANNOTATION_CANARY_WEIGHT, "0"))
        total = int(ann.get(ANNOTATION_CANARY_WEIGHT_TOTAL, "100"))
    except ValueError:
        return 100, 0
    weight = max(0, min(weight, total))
    return percentages(total - weight, weight)


class NginxRouter:
    """Writes and reads the Ingresses ``<name>``, ``<name>-canary`` and ``<name>-shadow``."""

    provider = PROVIDER

    def __init__(self, api_client: client.ApiClient | None = None):
        # The generic client serves built-in groups too, and hands back plain dicts like the others.
        self.custom = client.CustomObjectsApi(api_client)

    # The only calls this module makes (the chart's RBAC is derived from them).
    def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return get_or_none(
            lambda: json_object(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))
        )

    def _apply(self, manifest: dict[str, Any]) -> bool:
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
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
        traffic = spec.traffic.nginx
        if traffic is None:
            raise ValueError("spec.traffic.nginx is not set")
        meta = owner["metadata"]
        canary = build_canary_ingress(owner, traffic, routing)
        shadow = build_shadow_ingress(owner, traffic, routing, infer_path(spec))
        changed = self._apply(build_main_ingress(owner, traffic))
        if shadow is not None:
            changed = self._apply(shadow) | changed
        else:
            changed = self._delete(meta["namespace"], shadow_ingress_name(meta["name"]), meta["uid"]) | changed
        if canary is not None:
            return self._apply(canary) | changed
        return self._delete(meta["namespace"], canary_ingress_name(meta["name"]), meta["uid"]) | changed

    def read_weights(self, owner: dict[str, Any], spec: ModelDeploymentSpec) -> Weights | None:
        meta = owner["metadata"]
        main = self._get(meta["namespace"], main_ingress_name(meta["name"]))
        canary = self._get(meta["namespace"], canary_ingress_name(meta["name"]))
        return weights_of(main, canary)

    def cleanup(self, owner: dict[str, Any], spec: ModelDeploymentSpec) -> None:
        meta = owner["metadata"]
        # The canary first, so the pair is never left as a canary without the Ingress it modifies.
        self._delete(meta["namespace"], shadow_ingress_name(meta["name"]), meta["uid"])
        self._delete(meta["namespace"], canary_ingress_name(meta["name"]), meta["uid"])
        self._delete(meta["namespace"], main_ingress_name(meta["name"]), meta["uid"])
