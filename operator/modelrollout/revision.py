"""Revision identity: a hash of exactly what defines the served model.

Changing thresholds, bake, labels on the ModelDeployment or the replica count must not start a
rollout; changing the artifact, the image or anything in the pod template must.
"""

from __future__ import annotations

import hashlib
import json

from modelrollout.api.types import ModelSpec, ServingSpec

REVISION_LENGTH = 10


def served_identity(model: ModelSpec, serving: ServingSpec, image: str) -> dict:
    """The canonical fields of a revision; ``image`` is the effective one (spec or operator default)."""
    serving_fields = serving.model_dump(mode="json", exclude={"replicas", "image"})
    return {"model": model.model_dump(mode="json"), "serving": serving_fields, "image": image}


def revision_hash(model: ModelSpec, serving: ServingSpec, image: str) -> str:
    """Short, stable, DNS-safe hash (hex) of the served identity."""
    canonical = json.dumps(served_identity(model, serving, image), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_LENGTH]
