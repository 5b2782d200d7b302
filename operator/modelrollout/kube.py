"""Kubernetes I/O for the operator: observe revision Deployments, apply children, write status.

Children are written with server-side apply under one field manager, so the operator owns exactly
the fields it sets and nothing else (GitOps tools and humans can own the rest). Applies are skipped
when the live object already carries the hash of the manifest we would send, which keeps a steady
reconcile loop to reads only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelrollout.api import types as t
from modelrollout.engine import DeploymentState
from modelrollout.workloads import (
    FEEDBACK_KEY_BYTES,
    LABEL_DEPLOYMENT,
    LABEL_REVISION,
    build_feedback_key_secret,
)

FIELD_MANAGER = "modelrollout"
APPLY = "application/apply-patch+yaml"
HASH_ANNOTATION = "modelrollout.io/applied-hash"

log = logging.getLogger(__name__)


def load_config() -> None:
    """In-cluster credentials when running in a pod, the kubeconfig otherwise."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


def count_requests(api_client: client.ApiClient, record: Callable[[str, str], None]) -> None:
    """Call ``record(method, status code)`` for every request ``api_client`` sends (``error`` when
    none came back): the operator's API load, as client-go's rest_client_requests_total shows it."""
    rest = api_client.rest_client
    send = rest.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        try:
            response = send(method, url, *args, **kwargs)
        except ApiException as exc:
            record(method, str(exc.status))
            raise
        except Exception:
            record(method, "error")
            raise
        record(method, str(response.status))
        return response

    rest.request = request  # type: ignore[method-assign]


def applied_hash(manifest: dict[str, Any]) -> str:
    """A short digest of a manifest, stored on the object so an unchanged apply can be skipped."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


def with_hash(manifest: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``manifest`` carrying its own hash as an annotation (the hash excludes itself)."""
    digest = applied_hash(manifest)
    out = json.loads(json.dumps(manifest))
    out["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = digest
    return out


T = TypeVar("T")


def get_or_none(fetch: Callable[[], T]) -> T | None:
    """Run a read; a 404 (no such object, or the CRD is not installed) is None, not an error."""
    try:
        return fetch()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def raw_json(response: Any) -> dict[str, Any]:
    """The body of a call made with ``_preload_content=False``, parsed as plain JSON.

    The generated client would build typed models (and the operator turned them back into dicts):
    for a list of Deployments that round trip was the largest CPU cost of a reconcile at scale."""
    return json_object(json.loads(response.data))


def json_object(response: object) -> dict[str, Any]:
    """A custom-object read's answer as what it is on the wire, a JSON object (the generated client
    types it ``object``); anything else is a client or server bug, reported as such."""
    if not isinstance(response, dict):
        raise TypeError(f"expected a JSON object from the API server, got {type(response).__name__}")
    return response


def revision_of(dep: client.V1Deployment) -> str | None:
    """The revision label of a Deployment the operator wrote; None (or empty) for any other."""
    return None if dep.metadata is None else (dep.metadata.labels or {}).get(LABEL_REVISION)


def apply_unless_unchanged(
    manifest: dict[str, Any], live: dict[str, Any] | None, patch: Callable[[dict[str, Any]], object]
) -> bool:
    """Server-side apply ``manifest`` (through ``patch``) unless ``live`` already is what it says.

    "Already is" means the live object carries this manifest's hash *and* still contains every
    field of it: the hash alone would let a hand-edited weight survive until the desired weight
    changes. A steady reconcile therefore costs one GET and no write; True when something was sent.
    """
    body = with_hash(manifest)
    digest = body["metadata"]["annotations"][HASH_ANNOTATION]
    if (
        live is not None
        and (live["metadata"].get("annotations") or {}).get(HASH_ANNOTATION) == digest
        and contains(live, {"metadata": {k: v for k, v in body["metadata"].items() if k != "name"},
                            "spec": body.get("spec", {})})
    ):  # fmt: skip
        return False
    patch(body)
    return True


def contains(live: Any, want: Any) -> bool:
    """Whether ``live`` has every field of ``want`` with the same value.

    Dicts may have more keys in ``live`` (defaults the API server fills in, fields other managers
    own); lists must match element by element, as the lists we write are atomic or keyed by the
    whole element.
    """
    if isinstance(want, dict):
        return isinstance(live, dict) and all(k in live and contains(live[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(live, list) and len(live) == len(want) and all(map(contains, live, want))
    return live == want


class Kube:
    """Thin typed wrapper over the generated clients; every call is synchronous (run off the loop)."""

    def __init__(self, api_client: client.ApiClient | None = None):
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    # ---------------------------------------------------------------- ModelDeployment
    def get_modeldeployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return json_object(self.custom.get_namespaced_custom_object(t.GROUP, t.VERSION, namespace, t.PLURAL, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def write_status(self, namespace: str, name: str, resource_version: str, status: dict[str, Any]) -> bool:
        """Merge-patch the whole status, conditional on resourceVersion; False on a conflict."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        try:
            self.custom.patch_namespaced_custom_object_status(t.GROUP, t.VERSION, namespace, t.PLURAL, name, body)
        except ApiException as exc:
            if exc.status in (404, 409):
                log.info("status of %s/%s not written (%s); next tick re-decides", namespace, name, exc.reason)
                return False
            raise
        return True

    def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the ModelDeployment; failures are logged, never fatal to a reconcile."""
        meta = obj["metadata"]
        now = datetime.now(UTC)
        event: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "modelrollout"},
            "reportingComponent": "modelrollout.io/operator",
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now.isoformat(),
            "lastTimestamp": now.isoformat(),
            "count": 1,
        }
        try:
            # The client validates a plain dict into its model at call time (pydantic ``validate_call``;
            # before kubernetes 37 it serialised the dict as is), so the dict is the body, typed as the model.
            self.core.create_namespaced_event(meta["namespace"], cast("client.CoreV1Event", event))
        except ApiException as exc:
            if exc.status == 403 and "NamespaceTerminating" in str(exc.body):
                return  # the namespace, and the ModelDeployment with it, is going away
            log.warning("event %s on %s/%s not posted: %s", reason, meta["namespace"], meta["name"], exc.reason)

    # ---------------------------------------------------------------- Deployments
    def list_revisions(self, namespace: str, name: str) -> dict[str, tuple[DeploymentState, dict[str, Any]]]:
        """Revision -> (state, the live object as a dict) for every Deployment this ModelDeployment owns."""
        items = raw_json(
            self.apps.list_namespaced_deployment(
                namespace, label_selector=f"{LABEL_DEPLOYMENT}={name}", _preload_content=False
            )
        )["items"]
        out: dict[str, tuple[DeploymentState, dict[str, Any]]] = {}
        for dep in items:
            meta = dep.get("metadata") or {}
            revision = (meta.get("labels") or {}).get(LABEL_REVISION)
            if not revision:
                continue
            st = dep.get("status") or {}  # no status yet reads as nothing ready
            state = DeploymentState(
                replicas=(dep.get("spec") or {}).get("replicas") or 0,
                updated=st.get("updatedReplicas") or 0,
                ready=st.get("readyReplicas") or 0,
                available=st.get("availableReplicas") or 0,
                up_to_date=(st.get("observedGeneration") or 0) >= (meta.get("generation") or 0),
            )
            out[revision] = (state, dep)
        return out

    def apply_deployment(self, manifest: dict[str, Any], live: dict[str, Any] | None) -> bool:
        """Server-side apply unless the live object already is what the manifest says (a hand edit,
        e.g. ``kubectl scale``, is put back)."""
        meta = manifest["metadata"]
        return apply_unless_unchanged(
            manifest,
            live,
            lambda body: self.apps.patch_namespaced_deployment(
                meta["name"], meta["namespace"], body, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY
            ),
        )

    def delete_deployment(self, namespace: str, name: str) -> None:
        try:
            self.apps.delete_namespaced_deployment(name, namespace, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise

    # ---------------------------------------------------------------- Services
    def apply_service(self, manifest: dict[str, Any]) -> bool:
        meta = manifest["metadata"]
        live = get_or_none(
            lambda: raw_json(self.core.read_namespaced_service(meta["name"], meta["namespace"], _preload_content=False))
        )
        return apply_unless_unchanged(
            manifest,
            live,
            lambda body: self.core.patch_namespaced_service(
                meta["name"], meta["namespace"], body, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY
            ),
        )

    def delete_service(self, namespace: str, name: str) -> None:
        try:
            self.core.delete_namespaced_service(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # ---------------------------------------------------------------- the feedback key
    def ensure_feedback_key(self, owner: dict[str, Any]) -> bool:
        """Create the ModelDeployment's prediction-token key Secret if it does not exist; True if created.

        Create-only, on purpose: "already exists" (409) is the answer that it is there, so the
        operator needs no permission to read, list or change any Secret — it never sees a key, and
        an existing key is never replaced (the Secret is also immutable). Fresh random bytes are
        drawn for each attempt and dropped unless the create succeeds; they are never logged.
        """
        body = build_feedback_key_secret(owner, secrets.token_bytes(FEEDBACK_KEY_BYTES))
        meta = body["metadata"]
        try:
            self.core.create_namespaced_secret(meta["namespace"], cast("client.V1Secret", body))  # as for Events
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        log.info("created Secret %s/%s (prediction-token key)", meta["namespace"], meta["name"])
        return True
