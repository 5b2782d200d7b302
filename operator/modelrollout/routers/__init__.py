"""Traffic routers: one module per provider behind the :class:`~modelrollout.routers.base.Router`
interface, chosen by which of ``spec.traffic``'s fields is set.

- ``gatewayAPI`` -> :mod:`.gatewayapi` (HTTPRoute)
- ``istio`` -> :mod:`.istio` (VirtualService)
- ``nginx`` -> :mod:`.nginx` (main + canary Ingress)
- ``none`` -> :mod:`.none` (writes nothing; replica-ratio weights)
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelrollout.api.types import ModelDeploymentSpec
from modelrollout.routers.apis import explain, missing_apis
from modelrollout.routers.base import Router
from modelrollout.routers.gatewayapi import GatewayAPIRouter
from modelrollout.routers.istio import IstioRouter
from modelrollout.routers.nginx import NginxRouter
from modelrollout.routers.none import NoneRouter
from modelrollout.routing import Routing, Weights, split

__all__ = [
    "PROVIDERS",
    "Router",
    "Routing",
    "Weights",
    "cleanup_other_providers",
    "explain",
    "missing_apis",
    "router_for",
    "router_for_provider",
    "split",
]

log = logging.getLogger(__name__)

PROVIDERS: dict[str, type] = {
    "gatewayAPI": GatewayAPIRouter,
    "istio": IstioRouter,
    "nginx": NginxRouter,
    "none": NoneRouter,
}


def router_for_provider(provider: str, api_client: client.ApiClient | None = None) -> Router:
    """The router for a provider name as spelled in ``spec.traffic`` (gatewayAPI, istio, nginx, none)."""
    try:
        return PROVIDERS[provider](api_client)
    except KeyError:
        raise ValueError(f"unknown traffic provider {provider!r}; expected one of {sorted(PROVIDERS)}") from None


def router_for(spec: ModelDeploymentSpec, api_client: client.ApiClient | None = None) -> Router:
    """The router for the provider ``spec.traffic`` names."""
    return router_for_provider(spec.traffic.provider, api_client)


def cleanup_other_providers(
    owner: dict[str, Any], spec: ModelDeploymentSpec, api_client: client.ApiClient | None = None
) -> None:
    """Delete what every provider but the current one wrote for ``owner``: the switch-over path.

    Call it after the new provider's ``ensure`` succeeded, so traffic has a route at every moment.
    Providers whose CRDs are not installed cost one 404 each; objects of the same name that the
    owner does not control are left alone. A provider the operator has no RBAC for (the chart's
    ``rbac.routers.<provider>: false``) answers 403: it cannot have written anything, so that is
    skipped too, while any other error propagates.
    """
    current = spec.traffic.provider
    for provider in PROVIDERS:
        if provider == current:
            continue
        try:
            router_for_provider(provider, api_client).cleanup(owner, spec)
        except ApiException as exc:
            if exc.status != 403:
                raise
            log.debug("no RBAC for %s routes; nothing of ours to clean up there", provider)
