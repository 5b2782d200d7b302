"""No traffic layer: nothing is written; the canary's share is whatever its share of ready pods is.

With ``traffic.none`` the engine expresses a weight as replica counts (canary = ceil(N*w/100),
stable = N - floor(N*w/100)), and requests spread over ready pods roughly evenly, so the canary's
share of *ready* pods is the best available estimate of its share of traffic. It is approximate:
kube-proxy balances connections, not requests (keep-alive clients stick to one pod), pods are not
equally fast, and the split is quantised to 1/N. The operator says so with
``status.weightApproximate: true``.

The revisions are found where the traffic actually goes: the ``modelrollout.io/revision`` in the
stable and canary Services' selectors.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from modelrollout.api.types import ModelDeploymentSpec
from modelrollout.kube import deployments_path, read_service, rest, selected_revision
from modelrollout.routers.base import percentages
from modelrollout.routing import Routing, Weights
from modelrollout.workloads import LABEL_DEPLOYMENT, LABEL_REVISION, canary_service_name, stable_service_name

PROVIDER = "none"


def approximate_weights(stable_ready: int | None, canary_ready: int | None) -> Weights | None:
    """(stable %, canary %) from ready replicas; None when there is no stable revision at all.

    No ready pods anywhere reads as (100, 0): whatever trickles through is the stable's.
    """
    if stable_ready is None:
        return None
    stable, canary = max(stable_ready, 0), max(canary_ready or 0, 0)
    if canary == 0:
        return 100, 0
    return percentages(stable, canary)


class NoneRouter:
    """Writes nothing; reads the weight off the revision Deployments' ready replicas."""

    provider = PROVIDER

    def __init__(self, api_client: client.ApiClient | None = None):
        self.api_client = api_client or client.ApiClient()

    def ensure(self, owner: dict[str, Any], spec: ModelDeploymentSpec, routing: Routing) -> bool:
        """Nothing to write: the engine already sized the Deployments for this weight.

        Header and cookie routes and mirrors need a traffic layer; the API refuses them with ``traffic.none``.
        """
        if routing.canary_routes:
            raise ValueError("traffic.none cannot route by header or cookie (spec.traffic.canaryRoutes)")
        if routing.mirror_percent:
            raise ValueError("traffic.none cannot mirror requests (spec.strategy.canary.shadow)")
        return False

    def _service_revision(self, namespace: str, service: str) -> str | None:
        return selected_revision(read_service(self.api_client, namespace, service))

    def _ready_by_revision(self, namespace: str, name: str) -> dict[str, int]:
        """Ready replicas of every revision Deployment of ``name`` (one list, like kube.py's)."""
        query = {"labelSelector": f"{LABEL_DEPLOYMENT}={name}"}
        ready: dict[str, int] = {}
        for d in rest(self.api_client, "GET", deployments_path(namespace), query=query)["items"]:
            revision = (d["metadata"].get("labels") or {}).get(LABEL_REVISION)
            if revision:
                ready[revision] = (d.get("status") or {}).get("readyReplicas") or 0
        return ready

    def read_weights(self, owner: dict[str, Any], spec: ModelDeploymentSpec) -> Weights | None:
        """Approximate (stable %, canary %) from ready pods; None without a stable Deployment."""
        meta = owner["metadata"]
        ns, name = meta["namespace"], meta["name"]
        stable_rev = self._service_revision(ns, stable_service_name(name))
        if stable_rev is None:
            return None
        canary_rev = self._service_revision(ns, canary_service_name(name))
        if canary_rev == stable_rev:  # between rollouts the canary Service selects the stable revision
            canary_rev = None
        ready = self._ready_by_revision(ns, name)
        return approximate_weights(ready.get(stable_rev), ready.get(canary_rev) if canary_rev else None)

    def cleanup(self, owner: dict[str, Any], spec: ModelDeploymentSpec) -> None:
        """Nothing was written, so nothing to delete (Deployments and Services are the operator's)."""
