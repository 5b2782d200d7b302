"""Revision identity: a hash of exactly what defines the served model.

Changing thresholds, bake, labels on the ModelDeployment, the replica count, the autoscaling or how
the artifact is reached (``model.storage``: store and credentials) must not start a rollout; changing
the artifact, the image or anything else in the pod template must.
"""

from __future__ import annotations

import hashlib
import json

from modelrollout.api.types import ModelSpec, ServingSpec

REVISION_LENGTH = 10


# Serving fields added after revisions existed. While at their default they are left out of the
# identity, so upgrading the operator gives no running model a new revision (and an unasked-for
# rollout); ``tests/unit/test_revision.py`` pins hashes made before they existed.
ADDED_SERVING_FIELDS = (
    "serviceAccountName",
    "automountServiceAccountToken",
    "nodeSelector",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "priorityClassName",
    "imagePullSecrets",
    "volumes",
    "volumeMounts",
    "envFrom",
    "terminationGracePeriodSeconds",
    "drainSeconds",
)


def served_identity(model: ModelSpec, serving: ServingSpec, image: str) -> dict:
    """The canonical fields of a revision; ``image`` is the effective one (spec or operator default)."""
    serving_fields = serving.model_dump(mode="json", exclude={"replicas", "autoscaling", "image"})
    for name in ADDED_SERVING_FIELDS:
        if getattr(serving, name) == ServingSpec.model_fields[name].get_default(call_default_factory=True):
            del serving_fields[name]
    for var in serving_fields["env"]:
        if var["valueFrom"] is None:
            del var["valueFrom"]
    # storage says how to reach the same bytes (the store, the credentials): never a new revision.
    return {"model": model.model_dump(mode="json", exclude={"storage"}), "serving": serving_fields, "image": image}


def revision_hash(model: ModelSpec, serving: ServingSpec, image: str) -> str:
    """Short, stable, DNS-safe hash (hex) of the served identity."""
    canonical = json.dumps(served_identity(model, serving, image), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_LENGTH]
