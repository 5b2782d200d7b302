"""Which API each traffic provider writes, and what to tell a user whose cluster does not serve it.

A write to a resource the API server does not know fails with a bare ``404 page not found``: no
group, no kind, no hint. That is what a user sees who applies a ModelDeployment with
``traffic.gatewayAPI`` to a cluster without the Gateway API CRDs. When a write fails with 404, the
shell asks discovery (which every authenticated user may read, so no extra RBAC) whether the
provider's APIs are served, and turns the answer into a message that names the missing
group/version/kind, says what to install, and which other providers exist.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelrollout.routers import gatewayapi, istio, nginx

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouteAPI:
    """One resource a router writes, as discovery names it."""

    group: str
    version: str
    kind: str
    plural: str

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}"

    def __str__(self) -> str:
        return f"{self.group_version} {self.kind}"


REQUIRED: dict[str, tuple[RouteAPI, ...]] = {
    "gatewayAPI": (RouteAPI(gatewayapi.GROUP, gatewayapi.VERSION, gatewayapi.KIND, gatewayapi.PLURAL),),
    "istio": (RouteAPI(istio.GROUP, istio.VERSION, istio.VS_KIND, istio.VS_PLURAL),),
    "nginx": (RouteAPI(nginx.GROUP, nginx.VERSION, "Ingress", nginx.PLURAL),),
    "none": (),
}
"""The resources each provider writes (``none`` writes nothing beyond Services and Deployments)."""
GRPC_ROUTE = RouteAPI(gatewayapi.GROUP, gatewayapi.VERSION, gatewayapi.GRPC_KIND, gatewayapi.GRPC_PLURAL)
"""What ``traffic.gatewayAPI.grpc`` writes besides (standard channel since Gateway API v1.1)."""

INSTALL: dict[str, str] = {
    "gatewayAPI": (
        "install the Gateway API CRDs, standard channel v1.0 or later (which serves HTTPRoute at v1; GRPCRoute, "
        "for traffic.gatewayAPI.grpc, from v1.1), and a Gateway implementation"
    ),
    "istio": "install Istio 1.22 or later (its base chart installs the networking.istio.io CRDs and serves v1)",
    "nginx": "Ingress networking.k8s.io/v1 is built into Kubernetes 1.19 and later: upgrade the cluster",
}


@dataclass(frozen=True)
class Missing:
    """A required API the cluster does not serve, and what discovery said about its group."""

    api: RouteAPI
    served_versions: tuple[str, ...] = ()  # versions of the group that *are* served, if any
    group_version_served: bool = False  # the group/version exists but has no such resource

    def describe(self) -> str:
        if self.group_version_served:
            return f"{self.api} ({self.api.plural}): {self.api.group_version} is served but has no {self.api.plural}"
        if self.served_versions:
            return f"{self.api}: {self.api.group} is served only at {', '.join(self.served_versions)}"
        return f"{self.api}: no {self.api.group} API is installed"


def missing(api: RouteAPI, api_client: client.ApiClient | None = None) -> Missing | None:
    """Ask discovery whether ``api`` is served; None when it is. Discovery errors other than 404 raise."""
    try:
        resources = client.CustomObjectsApi(api_client).get_api_resources(api.group, api.version)
    except ApiException as exc:
        if exc.status != 404:
            raise
        return Missing(api, served_versions=_served_versions(api.group, api_client))
    if any(r.name == api.plural for r in resources.resources or []):
        return None
    return Missing(api, group_version_served=True)


def _served_versions(group: str, api_client: client.ApiClient | None) -> tuple[str, ...]:
    groups = client.ApisApi(api_client).get_api_versions().groups or []
    return tuple(v.version for g in groups if g.name == group for v in g.versions or [])


def missing_apis(provider: str, api_client: client.ApiClient | None = None, grpc: bool = False) -> list[Missing]:
    """The provider's APIs this cluster does not serve (empty when all are, or discovery failed);
    ``grpc``: the GRPCRoute of ``traffic.gatewayAPI.grpc`` too."""
    wanted = (*REQUIRED.get(provider, ()), *((GRPC_ROUTE,) if grpc and provider == "gatewayAPI" else ()))
    try:
        return [m for api in wanted if (m := missing(api, api_client)) is not None]
    except Exception as exc:  # an explanation is a nicety: never let it hide the original error
        log.warning("discovery for the %s router's APIs failed: %s", provider, exc)
        return []


def explain(provider: str, gaps: list[Missing]) -> str:
    """One sentence for the condition and the Event: what is missing, what to install, or what else to pick."""
    others = ", ".join(p for p in REQUIRED if p != provider)
    what = "; ".join(m.describe() for m in gaps)
    return (
        f"traffic.{provider} needs an API this cluster does not serve: {what}. "
        f"To use it, {INSTALL.get(provider, 'install it')}; "
        f"or choose another provider in spec.traffic ({others})"
    )
