"""Kubernetes I/O for the operator: observe revision Deployments, apply children, write status.

Children are written with server-side apply under one field manager, so the operator owns exactly
the fields it sets and nothing else (GitOps tools and humans can own the rest). Applies are skipped
when the live object already carries the hash of the manifest we would send, which keeps a steady
reconcile loop to reads only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import secrets
import socket
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelrollout.api import types as t
from modelrollout.api.types import AutoscalingSpec, DisruptionBudgetSpec, RetrainingOutcome
from modelrollout.engine import DeploymentState, JobState
from modelrollout.watchcache import OwnedCache, WatchCache
from modelrollout.workloads import (
    FEEDBACK_KEY_BYTES,
    LABEL_DEPLOYMENT,
    LABEL_REVISION,
    build_autoscaler,
    build_disruption_budget,
    build_feedback_key_secret,
    canary_service_name,
    stable_service_name,
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


def count_requests(api_client: client.ApiClient, record: Callable[[str, str, str, float], None]) -> None:
    """Call ``record(method, resource, status code, seconds)`` for every request ``api_client``
    sends (code ``error`` when no answer came back): the operator's API load and the latency it
    sees, as client-go's rest_client_requests_total and rest_client_request_duration_seconds show
    them. With a bounded pool of workers each waiting on its requests, that latency sets how many
    objects per second the operator can move."""
    rest = api_client.rest_client
    send = rest.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        resource, started, code = resource_of(url), time.monotonic(), "error"
        try:
            response = send(method, url, *args, **kwargs)
            code = str(response.status)
            return response
        except ApiException as exc:
            code = str(exc.status)
            raise
        finally:
            record(method, resource, code, time.monotonic() - started)

    rest.request = request  # type: ignore[method-assign]


def resource_of(url: str) -> str:
    """The resource a request URL names, with its subresource (``modeldeployments/status``): a
    bounded label, unlike the path."""
    parts = urllib.parse.urlsplit(url).path.strip("/").split("/")
    # /api/v1/... or /apis/<group>/<version>/...; then optionally namespaces/<ns>/, then the resource.
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    if not rest or not rest[0]:
        return "unknown"
    return "/".join([rest[0], rest[2]]) if len(rest) > 2 else rest[0]


def applied_hash(manifest: dict[str, Any]) -> str:
    """A short digest of a manifest, stored on the object so an unchanged apply can be skipped.

    A Deployment's ``spec.replicas`` is left out: the count is compared with the live one on its own
    (:func:`apply_unless_unchanged`), so a count another controller set and the operator asks to
    keep (an autoscaled stable revision) costs no write, where a changed hash would re-apply it."""
    if manifest.get("kind") == "Deployment":
        manifest = {**manifest, "spec": {k: v for k, v in manifest["spec"].items() if k != "replicas"}}
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


def json_object(response: object) -> dict[str, Any]:
    """A custom-object read's answer as what it is on the wire, a JSON object (the generated client
    types it ``object``); anything else is a client or server bug, reported as such."""
    if not isinstance(response, dict):
        raise TypeError(f"expected a JSON object from the API server, got {type(response).__name__}")
    return response


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


def rest(
    api_client: client.ApiClient,
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    body: Any = None,
    content_type: str = "application/json",
) -> dict[str, Any]:
    """One request through ``api_client`` (its credentials, pool and request counter); the answer as
    plain JSON; ``ApiException`` for anything but 2xx, as the generated methods raise it.

    Why not ``CoreV1Api``/``AppsV1Api``: building those classes (hundreds of pydantic-validated
    methods) took 1.3 s of the operator's 2.8 s start, and a restarted operator or a CLI call waits for
    it. The few core and apps calls the operator makes are plain REST paths.
    """
    method, url, headers, data, post = api_client.param_serialize(
        method=method,
        resource_path=path,
        query_params=list((query or {}).items()),
        header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api_client.call_api(method, url, header_params=headers, body=data, post_params=post)
    response.read()
    text = response.data.decode() if response.data else ""
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=text, data=None)
    return json_object(json.loads(text)) if text else {}


def deployments_path(namespace: str, name: str = "") -> str:
    """The REST path of a namespace's Deployments, or of one. Call sites pass it inline to
    :func:`rest`: the chart's RBAC test reads the verb and resource from there."""
    return f"/apis/apps/v1/namespaces/{namespace}/deployments" + (f"/{name}" if name else "")


def core_path(namespace: str, plural: str, name: str = "") -> str:
    """The REST path of a namespace's core/v1 ``plural`` (a literal at the call site), or of one."""
    return f"/api/v1/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")


def jobs_path(namespace: str, name: str = "") -> str:
    """The REST path of a namespace's batch/v1 Jobs, or of one (inline at the call site, as above)."""
    return f"/apis/batch/v1/namespaces/{namespace}/jobs" + (f"/{name}" if name else "")


def job_state(job: dict[str, Any] | None) -> JobState:
    """A retraining Job's outcome from its status conditions (``Complete``/``Failed``, the Job
    controller's final word); running until one of them is True."""
    if job is None:
        return JobState(None, "the Job does not exist: deleted before it finished, or its creation was refused")
    name = job.get("metadata", {}).get("name", "")
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return JobState(RetrainingOutcome.SUCCEEDED, f"Job {name} succeeded")
        if cond.get("type") == "Failed":
            why = cond.get("message") or cond.get("reason") or "failed"
            return JobState(RetrainingOutcome.FAILED, f"Job {name} failed: {why}")
    return JobState(RetrainingOutcome.RUNNING)


APPLY_QUERY = {"fieldManager": FIELD_MANAGER, "force": "true"}


def read_service(api_client: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    """A Service as JSON, None when there is none."""
    return get_or_none(lambda: rest(api_client, "GET", core_path(namespace, "services", name)))


def _deleted_version(answer: dict[str, Any], kind: str) -> int | None:
    """The resourceVersion a DELETE answered with (the object's last state), when it answered with
    the object (a 404 or a Status answer has none)."""
    version = str((answer.get("metadata") or {}).get("resourceVersion") or "") if answer.get("kind") == kind else ""
    return int(version) if version.isdigit() else None


def selected_revision(service: dict[str, Any] | None) -> str | None:
    """The revision a Service selects (None: no Service, or it selects every revision)."""
    return None if service is None else ((service.get("spec") or {}).get("selector") or {}).get(LABEL_REVISION)


# Container states that mean "will not get ready by waiting" (kubelet's reasons).
STUCK_REASONS = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "ErrImagePull", "ImagePullBackOff",
     "InvalidImageName", "CrashLoopBackOff", "RunContainerError"}
)  # fmt: skip
PROBLEM_CHARS = 600


def pod_problem(pods: list[dict[str, Any]]) -> str | None:
    """The first pod's reason for not being ready, as the kubelet reports it: a container that cannot
    start (``CreateContainerConfigError: secret "x" not found``), keeps exiting (``CrashLoopBackOff``
    with its last termination message, where the model server writes why the model did not load), or
    a pod that cannot be scheduled. None when every pod is merely starting."""
    problems: list[str] = []
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("name", "")):
        name = (pod.get("metadata") or {}).get("name", "?")
        status = pod.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason"):
                problems.append(f"pod {name}: {cond['reason']}: {cond.get('message', '')}".rstrip(": "))
        for container in status.get("containerStatuses") or []:
            state, last = container.get("state") or {}, container.get("lastState") or {}
            waiting, terminated = state.get("waiting") or {}, state.get("terminated") or last.get("terminated") or {}
            reason = waiting.get("reason") if waiting.get("reason") in STUCK_REASONS else None
            if reason is None and state.get("terminated"):
                reason = terminated.get("reason") or "Terminated"
            if reason is None:
                continue
            text = f"pod {name}: {reason}"
            if waiting.get("message") and reason != "CrashLoopBackOff":
                text += f": {waiting['message']}"
            if terminated.get("message"):
                text += f"; last exit {terminated.get('exitCode', '?')}: {terminated['message'].strip()}"
            problems.append(text)
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    first = problems[0]
    return (first[: PROBLEM_CHARS - 3] + "..." if len(first) > PROBLEM_CHARS else first) + more


class Kube:
    """The operator's reads and writes; every call is synchronous (run off the loop)."""

    def __init__(self, api_client: client.ApiClient | None = None, *, list_max_age: float = 300.0):
        """``list_max_age``: how long a ModelDeployment's Deployments are listed from memory before
        the API server is asked again (the resync period)."""
        self.api_client = api_client or client.ApiClient()
        self.custom = client.CustomObjectsApi(self.api_client)
        # Fed by the kopf watches (handlers.on_modeldeployment, on_service, on_child) and by the
        # answers to this class's own writes: reconciles read these kinds without a GET.
        self.modeldeployments = WatchCache()
        self.services = WatchCache()
        self.deployments = OwnedCache(list_max_age)
        # ModelDeployments (by uid) whose feedback-key Secret this process saw exist, and when: one
        # create (or 409) per object and resync period instead of one per rollout step that starts
        # pods. The period bounds how long a Secret deleted by hand stays missing.
        self._feedback_keys: dict[str, float] = {}
        # (ModelDeployment uid, plural) of the singletons this process wrote (PodDisruptionBudget,
        # HorizontalPodAutoscaler): the hash of what it wrote (None: deleted) and when.
        self._singletons: dict[tuple[str, str], tuple[str | None, float]] = {}
        self._list_max_age = list_max_age

    def forget(self, namespace: str, name: str, uid: str | None) -> None:
        """The ModelDeployment is gone (the watch saw it deleted): drop it and what was kept about
        its children, which garbage collection deletes with it."""
        self.modeldeployments.gone((namespace, name))
        for service in (stable_service_name(name), canary_service_name(name)):
            self.services.gone((namespace, service))
        self.deployments.forget((namespace, name))
        self._feedback_keys.pop(uid or "", None)
        for kind in ("poddisruptionbudgets", "horizontalpodautoscalers"):
            self._singletons.pop((uid or "", kind), None)

    # ---------------------------------------------------------------- ModelDeployment
    def get_modeldeployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object from the watch cache (its newest state this process has seen, its own status
        writes included); a GET only when the cache knows nothing of it yet."""
        known, obj = self.modeldeployments.lookup((namespace, name))
        if known and obj is not None:
            return obj
        try:
            obj = json_object(self.custom.get_namespaced_custom_object(t.GROUP, t.VERSION, namespace, t.PLURAL, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        self.modeldeployments.read((namespace, name), obj)
        return obj

    def write_status(self, namespace: str, name: str, resource_version: str, status: dict[str, Any]) -> bool:
        """Merge-patch the whole status, conditional on resourceVersion; False on a conflict (the
        cached object is dropped then: the next reconcile reads it fresh)."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        key = (namespace, name)
        try:
            written = self.custom.patch_namespaced_custom_object_status(
                t.GROUP, t.VERSION, namespace, t.PLURAL, name, body
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                log.info("status of %s/%s not written (%s); next tick re-decides", namespace, name, exc.reason)
                self.modeldeployments.gone(key)
                return False
            raise
        self.modeldeployments.observed(key, json_object(written))
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
            rest(self.api_client, "POST", core_path(meta["namespace"], "events"), body=event)
        except ApiException as exc:
            if exc.status == 403 and "NamespaceTerminating" in str(exc.body):
                return  # the namespace, and the ModelDeployment with it, is going away
            log.warning("event %s on %s/%s not posted: %s", reason, meta["namespace"], meta["name"], exc.reason)

    # ---------------------------------------------------------------- Deployments
    def list_revisions(self, namespace: str, name: str) -> dict[str, tuple[DeploymentState, dict[str, Any]]]:
        """Revision -> (state, the live object as a dict) for every Deployment this ModelDeployment
        owns: from the Deployment cache when it holds them all, else one list (which fills it)."""
        owner = (namespace, name)
        items = self.deployments.items(owner)
        if items is None:
            epoch = self.deployments.epoch(owner)
            selector = {"labelSelector": f"{LABEL_DEPLOYMENT}={name}"}
            answer = rest(self.api_client, "GET", deployments_path(namespace), query=selector)
            items = answer["items"]
            self.deployments.listed(owner, items, (answer.get("metadata") or {}).get("resourceVersion"), epoch)
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

    def pod_problem(self, namespace: str, name: str, revision: str) -> str | None:
        """Why a revision's pods are not ready, from their status (see :func:`pod_problem`). One
        label-selected list, made only while the revision is short of ready pods."""
        selector = {"labelSelector": f"{LABEL_DEPLOYMENT}={name},{LABEL_REVISION}={revision}"}
        answer = rest(self.api_client, "GET", core_path(namespace, "pods"), query=selector)
        return pod_problem(answer.get("items") or [])

    def apply_deployment(self, manifest: dict[str, Any], live: dict[str, Any] | None) -> bool:
        """Server-side apply unless the live object already is what the manifest says (a hand edit,
        e.g. ``kubectl scale``, is put back)."""
        meta = manifest["metadata"]
        ns, name, owner = meta["namespace"], meta["name"], (meta["namespace"], meta["labels"][LABEL_DEPLOYMENT])

        def patch(body: dict[str, Any]) -> None:
            applied = rest(
                self.api_client, "PATCH", deployments_path(ns, name), query=APPLY_QUERY, body=body, content_type=APPLY
            )
            self.deployments.observed(owner, applied)

        return apply_unless_unchanged(manifest, live, patch)

    def delete_deployment(self, namespace: str, owner: str, name: str) -> None:
        """Delete one of ``owner``'s revision Deployments (its pods go in the background)."""
        try:
            answer = rest(
                self.api_client, "DELETE", deployments_path(namespace, name), query={"propagationPolicy": "Background"}
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            answer = {}
        self.deployments.deleted((namespace, owner), name, _deleted_version(answer, "Deployment"))

    # ---------------------------------------------------------------- Services
    def read_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Service from the watch cache; a GET only when the cache knows nothing of it yet."""
        known, service = self.services.lookup((namespace, name))
        if known:
            return service
        service = read_service(self.api_client, namespace, name)
        self.services.read((namespace, name), service)
        return service

    def apply_service(self, manifest: dict[str, Any], live: dict[str, Any] | None) -> bool:
        """Server-side apply unless ``live`` (the caller's read of it) already is what it says; the
        answer is what the next read returns."""
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]

        def patch(body: dict[str, Any]) -> None:
            applied = rest(
                self.api_client,
                "PATCH",
                core_path(ns, "services", name),
                query=APPLY_QUERY,
                body=body,
                content_type=APPLY,
            )
            self.services.observed((ns, name), applied)

        return apply_unless_unchanged(manifest, live, patch)

    # ---------------------------------------------------- the disruption budget and the autoscaler
    def ensure_disruption_budget(self, owner: dict[str, Any], budget: DisruptionBudgetSpec) -> bool:
        """Apply (or, when disabled, delete) the ModelDeployment's PodDisruptionBudget; True if a
        request was sent (see :meth:`_ensure_singleton`)."""
        ns, name = owner["metadata"]["namespace"], owner["metadata"]["name"]
        return self._ensure_singleton(
            owner,
            "poddisruptionbudgets",
            build_disruption_budget(owner, budget) if budget.enabled else None,
            lambda body: self.custom.patch_namespaced_custom_object(
                "policy",
                "v1",
                ns,
                "poddisruptionbudgets",
                name,
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=APPLY,
            ),
            lambda: self.custom.delete_namespaced_custom_object("policy", "v1", ns, "poddisruptionbudgets", name),
        )

    def ensure_autoscaler(self, owner: dict[str, Any], autoscaling: AutoscalingSpec | None, stable: str | None) -> bool:
        """Apply the HorizontalPodAutoscaler on the stable revision (or delete it when
        serving.autoscaling is unset); True if a request was sent (see :meth:`_ensure_singleton`)."""
        ns, name = owner["metadata"]["namespace"], owner["metadata"]["name"]
        wanted = build_autoscaler(owner, autoscaling, stable) if autoscaling is not None and stable else None
        return self._ensure_singleton(
            owner,
            "horizontalpodautoscalers",
            wanted,
            lambda body: self.custom.patch_namespaced_custom_object(
                "autoscaling",
                "v2",
                ns,
                "horizontalpodautoscalers",
                name,
                body,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=APPLY,
            ),
            lambda: self.custom.delete_namespaced_custom_object(
                "autoscaling", "v2", ns, "horizontalpodautoscalers", name
            ),
        )

    def _ensure_singleton(
        self,
        owner: dict[str, Any],
        kind: str,
        manifest: dict[str, Any] | None,
        apply: Callable[[dict[str, Any]], object],
        delete: Callable[[], object],
    ) -> bool:
        """One child per ModelDeployment that only the operator writes and never reads back: sent when
        the wish differs from what this process last sent, and once per ``list_max_age`` (which puts
        back a hand edit or deletion), so a steady reconcile costs nothing. Server-side apply creates
        it; an unwanted one is deleted once per process (nothing recreates it). The wish is recorded
        before the request: one that fails is tried again at the next change or period, not at
        every reconcile (the caller reports the failure)."""
        key = (owner["metadata"]["uid"], kind)
        digest = applied_hash(manifest) if manifest is not None else None
        sent, at = self._singletons.get(key, ("", -math.inf))
        if sent == digest and (digest is None or time.monotonic() - at < self._list_max_age):
            return False
        self._singletons[key] = (digest, time.monotonic())
        if manifest is not None:
            apply(manifest)
            return True
        try:
            delete()
        except ApiException as exc:
            if exc.status != 404:
                raise
        return True

    # ---------------------------------------------------------------- Prometheus credentials
    def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """A Secret's data, decoded (None when there is none). Read only for the Secrets a
        ModelDeployment names for its Prometheus credentials, at each check, and never cached."""
        answer = get_or_none(lambda: rest(self.api_client, "GET", core_path(namespace, "secrets", name)))
        if answer is None:
            return None
        return {str(k): base64.b64decode(v) for k, v in (answer.get("data") or {}).items()}

    # ---------------------------------------------------------------- retraining Jobs
    def read_job(self, namespace: str, name: str) -> JobState:
        """How a retraining run's Job is doing; read only while the status says the run is going."""
        return job_state(get_or_none(lambda: rest(self.api_client, "GET", jobs_path(namespace, name))))

    def create_job(self, manifest: dict[str, Any]) -> bool:
        """Create a retraining Job; False when one of that name exists: the same run, created by a
        decision whose status write did not happen (a restart, a conflict), so nothing is duplicated."""
        meta = manifest["metadata"]
        try:
            rest(self.api_client, "POST", jobs_path(meta["namespace"]), body=manifest)
        except ApiException as exc:
            if exc.status == 409:
                log.info("Job %s/%s exists already: the same retraining run", meta["namespace"], meta["name"])
                return False
            raise
        log.info("created retraining Job %s/%s", meta["namespace"], meta["name"])
        return True

    # ---------------------------------------------------------------- the feedback key
    def ensure_feedback_key(self, owner: dict[str, Any]) -> bool:
        """Create the ModelDeployment's prediction-token key Secret if it does not exist; True if created.

        Create-only, on purpose: "already exists" (409) is the answer that it is there, so the
        operator never reads, lists or changes this Secret — it never sees a key, and
        an existing key is never replaced (the Secret is also immutable). Fresh random bytes are
        drawn for each attempt and dropped unless the create succeeds; they are never logged. Once
        seen, it is not asked about again for ``list_max_age`` seconds: a Secret deleted by hand is
        created again within that time.
        """
        uid = owner["metadata"]["uid"]
        if time.monotonic() - self._feedback_keys.get(uid, -math.inf) < self._list_max_age:
            return False
        body = build_feedback_key_secret(owner, secrets.token_bytes(FEEDBACK_KEY_BYTES))
        meta = body["metadata"]
        try:
            rest(self.api_client, "POST", core_path(meta["namespace"], "secrets"), body=body)
        except ApiException as exc:
            if exc.status == 409:
                self._feedback_keys[uid] = time.monotonic()
                return False
            raise
        self._feedback_keys[uid] = time.monotonic()
        log.info("created Secret %s/%s (prediction-token key)", meta["namespace"], meta["name"])
        return True
