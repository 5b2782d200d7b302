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

import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelrollout.api.types import ModelDeploymentSpec
from modelrollout.routers.base import Objects, Resource, Weights, percentages
from modelrollout.workloads import LABEL_REVISION, canary_service_name, deployment_name, stable_service_name

PROVIDER = "none"
DEPLOYMENT = Resource("apps", "v1", "deployments", "Deployment")


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
        self.core = client.CoreV1Api(api_client)
        self.objects = Objects(api_client)

    def ensure(
        self,
        owner: dict[str, Any],
        spec: ModelDeploymentSpec,
        canary_weight: int,
        *,
        stable_revision: str | None = None,
        canary_revision: str | None = None,
    ) -> bool:
        """Nothing to write: the engine already sized the Deployments for this weight."""
        return False

    def _service_revision(self, namespace: str, service: str) -> str | None:
        try:
            resp = self.core.read_namespaced_service(service, namespace, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        selector = (json.loads(resp.data).get("spec") or {}).get("selector") or {}
        return selector.get(LABEL_REVISION)

    def _ready(self, namespace: str, name: str, revision: str | None) -> int | None:
        if revision is None:
            return None
        dep = self.objects.get(DEPLOYMENT, namespace, deployment_name(name, revision))
        if dep is None:
            return None
        return int((dep.get("status") or {}).get("readyReplicas") or 0)

    def read_weights(self, owner: dict[str, Any], spec: ModelDeploymentSpec) -> Weights | None:
        """Approximate (stable %, canary %) from ready pods; None without a stable Deployment."""
        meta = owner["metadata"]
        ns, name = meta["namespace"], meta["name"]
        stable = self._ready(ns, name, self._service_revision(ns, stable_service_name(name)))
        canary_rev = self._service_revision(ns, canary_service_name(name))
        canary = self._ready(ns, name, canary_rev) if canary_rev else None
        return approximate_weights(stable, canary)

    def cleanup(self, owner: dict[str, Any], spec: ModelDeploymentSpec) -> None:
        """Nothing was written, so nothing to delete (Deployments and Services are the operator's)."""
