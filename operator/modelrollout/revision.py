"""Revision identity: a hash of exactly what defines the served model.

Changing thresholds, bake, labels on the ModelDeployment, the replica count, the autoscaling or how
the artifact is reached (``model.storage``: store and credentials) must not start a rollout; changing
the artifact, the image or anything else in the pod template must; re-signing a pre-signed URL must
not (:func:`unsigned_uri`).
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse

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
    "executionProvider",
    "grpcPort",
)


# Query parameters that sign a URL rather than name an object: AWS SigV4 and GCS V4 pre-signed URLs,
# Azure SAS tokens, CloudFront signed URLs. They change with every signing and expire.
_SIGNING_PREFIXES = ("x-amz-", "x-goog-")
_SIGNING_PARAMS = frozenset(
    {"awsaccesskeyid", "signature", "expires", "key-pair-id", "policy", "googleaccessid",  # SigV2, CloudFront, GCS V2
     "sv", "ss", "srt", "sp", "se", "st", "spr", "sig", "sr", "si", "sdd", "skoid", "sktid", "skt", "ske", "sks",
     "skv", "saoid", "suoid", "scid", "ses"}  # Azure SAS
)  # fmt: skip


def unsigned_uri(uri: str) -> str:
    """``uri`` without the query parameters that sign it: what identifies the artifact.

    Why: a pre-signed URL is re-signed before it expires, and the new signature names the same
    bytes. The revision is hashed from this form (re-signing starts no rollout; the new URL reaches
    the revision's pods by a rolling update of its Deployment), and status and Events show this form
    (a signature is a credential until it expires)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.query:
        return uri
    kept = [
        (k, v)
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith(_SIGNING_PREFIXES) and k.lower() not in _SIGNING_PARAMS
    ]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(kept)))


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
    model_fields = model.model_dump(mode="json", exclude={"storage"})
    model_fields["uri"] = unsigned_uri(model.uri)
    if model.metadataUri is None:  # added later: absent, it leaves older hashes as they were
        del model_fields["metadataUri"]
    else:
        model_fields["metadataUri"] = unsigned_uri(model.metadataUri)
    return {"model": model_fields, "serving": serving_fields, "image": image}


def revision_hash(model: ModelSpec, serving: ServingSpec, image: str) -> str:
    """Short, stable, DNS-safe hash (hex) of the served identity."""
    canonical = json.dumps(served_identity(model, serving, image), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_LENGTH]
