"""The router interface and what every provider shares: weights, metadata and server-side apply.

A router turns one :class:`Routing` value ("the canary gets N % of the traffic, and every request
matching these headers or cookies") into the objects one traffic layer reads (an HTTPRoute, a
VirtualService, a canary Ingress, or nothing at all). One value rather than positional arguments,
so a new kind of route (the shadow step's mirror) is one more field that each provider renders or
refuses, and the engine states the whole desired routing in one action. Each provider
module keeps two halves apart on purpose:

- pure ``build_*`` functions from (owner, spec, routing) to manifest dicts, unit-tested without a
  cluster, and
- a small class doing the I/O with server-side apply, integration-tested against the real API
  server with the upstream CRDs installed, so their schemas and CEL rules judge what we write.

Every object carries the controller owner reference to its ModelDeployment (garbage collection
removes it with the owner) and is written by server-side apply under the operator's field manager,
so the operator owns exactly the fields it writes and nothing else.

The weighted route is one named rule/route (:data:`WEIGHTED_ROUTE`); the canary routes (header and
cookie matches) are one more named rule placed before it (:data:`CANARY_ROUTES`), and so is the
shadow step's mirror of the inference path (:data:`SHADOW_ROUTE`). Readers find the weights by
name, not by position.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelrollout.api.types import ModelDeploymentSpec
from modelrollout.routing import Routing, Weights
from modelrollout.workloads import LABEL_DEPLOYMENT, common_labels, owner_reference

log = logging.getLogger(__name__)

LABEL_ROUTER = "modelrollout.io/router"
# The name of the rule (HTTPRoute) or http route (VirtualService) that carries the weights.
WEIGHTED_ROUTE = "weighted"

# The rule (HTTPRoute) or http route (VirtualService) that sends header/cookie matches to the canary.
CANARY_ROUTES = "canary-routes"

# The rule (HTTPRoute) or http route (VirtualService) that mirrors inference requests to the canary
# during the shadow step: the weighted split for the inference path alone, plus the mirror.
SHADOW_ROUTE = "shadow"


def infer_path(spec: ModelDeploymentSpec) -> str:
    """The Open Inference Protocol inference path of the model: the only requests a shadow mirrors.

    Feedback goes to ``.../feedback`` on the same route; a mirrored label would be counted by both
    revisions (tokens name the stable's prediction), so mirrors match this path exactly.
    """
    return f"/v2/models/{spec.model.name}/infer"


@runtime_checkable
class Router(Protocol):
    """One traffic layer. Every method is synchronous and idempotent: call it off the event loop.

    ``stable_revision`` / ``canary_revision`` are for providers that would select pods by revision
    themselves; every provider today routes to the stable and canary Services, which the operator
    already points at the right revisions, and ignores them.
    """

    provider: str

    def ensure(self, owner: dict[str, Any], spec: ModelDeploymentSpec, routing: Routing) -> bool:
        """Write the route objects for ``routing``; True when anything was written.

        When ``routing.uses_canary`` is False nothing references the canary (its Service may not
        exist), so it is safe to call before the canary Service is created and after it is deleted.
        """
        ...

    def read_weights(self, owner: dict[str, Any], spec: ModelDeploymentSpec) -> Weights | None:
        """(stable %, canary %) as currently written in the cluster; None when nothing is there."""
        ...

    def cleanup(self, owner: dict[str, Any], spec: ModelDeploymentSpec) -> None:
        """Delete the objects this provider writes for ``owner`` (only those it owns).

        Must not depend on ``spec.traffic`` naming this provider: it is what runs when the spec
        has moved to another provider.
        """
        ...


# ------------------------------------------------------------------------------------ pure helpers


def percentages(stable: int, canary: int) -> Weights:
    """Relative weights as written (any scale) -> percentages, the canary share rounded.

    Both zero means the route sends nothing to either backend; that is reported as (0, 0) rather
    than invented.
    """
    total = stable + canary
    if total <= 0:
        return 0, 0
    canary_pct = round(100 * canary / total)
    return 100 - canary_pct, canary_pct


def cookie_regex(name: str, value: str) -> str:
    """A regular expression on the whole Cookie header that holds when cookie ``name`` is ``value``.

    Anchored at both ends, so it means the same to proxies that match the whole header value
    (Envoy: Istio, Envoy Gateway) and to those that search it (Traefik, NGINX); ``xname=value`` and
    ``name=values`` do not match. RE2, Go and PCRE all read ``re.escape``'s escapes as literals.
    """
    return rf"^(.*?;\s*)?{re.escape(name)}={re.escape(value)}(;.*)?$"


def route_labels(name: str, provider: str) -> dict[str, str]:
    """The operator's common labels plus which ModelDeployment and which router wrote the object."""
    return {**common_labels(name), LABEL_DEPLOYMENT: name, LABEL_ROUTER: provider}


def object_meta(owner: dict[str, Any], name: str, provider: str, **extra: Any) -> dict[str, Any]:
    """metadata for a route object: same namespace as the owner, owned by it (controller ref)."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner["metadata"]["namespace"],
        "labels": route_labels(owner["metadata"]["name"], provider),
        "ownerReferences": [owner_reference(owner)],
    }
    meta.update({k: v for k, v in extra.items() if v})
    return meta


def cluster_domain() -> str:
    """The cluster DNS domain used in Service FQDNs (Istio hosts); cluster.local unless configured."""
    return os.environ.get("MODELROLLOUT_CLUSTER_DOMAIN", "cluster.local")


def service_fqdn(service: str, namespace: str) -> str:
    return f"{service}.{namespace}.svc.{cluster_domain()}"


# --------------------------------------------------------------------------------------------- I/O
# The API calls themselves live in each provider module, spelled with that module's literal group,
# version and plural: the chart's RBAC test reads those call sites to derive the ClusterRole, so a
# generic "any resource" client here would hide what the operator needs. What is shared is the
# logic around the calls.


def delete_if_controlled(
    live: dict[str, Any] | None, owner_uid: str, delete: Callable[[client.V1DeleteOptions], object]
) -> bool:
    """Delete ``live`` (through ``delete``) if ``owner_uid`` is its controller; True when sent.

    An object of the same name that someone else owns (a hand-written HTTPRoute, say) is left
    alone, and the uid precondition makes sure the object checked is the object deleted.
    """
    if live is None:
        return False
    meta = live["metadata"]
    if not any(r.get("uid") == owner_uid and r.get("controller") for r in meta.get("ownerReferences") or []):
        log.info("%s %s/%s is not controlled by %s; not deleting it", live.get("kind"), meta.get("namespace"),
                 meta["name"], owner_uid)  # fmt: skip
        return False
    options = client.V1DeleteOptions(
        preconditions=client.V1Preconditions(uid=meta["uid"]), propagation_policy="Background"
    )
    try:
        delete(options)
    except ApiException as exc:
        if exc.status in (404, 409):  # gone meanwhile, or replaced by a new object (uid mismatch)
            return False
        raise
    return True
