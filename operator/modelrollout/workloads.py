"""Builders for the children of a ModelDeployment: one Deployment per revision, the Services and
the Secret with the prediction-token key.

Pure functions from API models to Kubernetes manifests (dicts), applied with server-side apply by
the shell. Everything the operator owns carries the same labels and a controller owner reference,
so garbage collection removes it with the ModelDeployment and GitOps tools see it as derived.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from modelrollout.api.types import (
    RESERVED_MOUNT_PATHS,
    RESERVED_VOLUMES,
    AutoscalingSpec,
    ComparedModel,
    DisruptionBudgetSpec,
    EnvVar,
    ModelDeploymentSpec,
    ModelSpec,
    ModelStorageSpec,
    ResourcesSpec,
    ServingSpec,
)

LABEL_DEPLOYMENT = "modelrollout.io/deployment"
LABEL_REVISION = "modelrollout.io/revision"
LABEL_ROLE = "modelrollout.io/role"
MANAGED_BY = {"app.kubernetes.io/managed-by": "modelrollout"}
CONTAINER_NAME = "modelserver"
SERVICE_PORT = 80
SERVICE_GRPC_PORT = 8081
"""The Services' gRPC port (named ``grpc``), present only where a route splits gRPC."""
RUN_AS_USER = 10001
PROBE_PERIOD_SECONDS = 5
FEEDBACK_KEY_BYTES = 32
FEEDBACK_KEY_FIELD = "key"
TMP_VOLUME, FEEDBACK_KEY_VOLUME, MODEL_STORE_VOLUME, REGISTRY_AUTH_VOLUME = RESERVED_VOLUMES
TMP_DIR, FEEDBACK_KEY_DIR, MODEL_STORE_DIR, REGISTRY_AUTH_DIR = RESERVED_MOUNT_PATHS
FEEDBACK_KEY_PATH = f"{FEEDBACK_KEY_DIR}/{FEEDBACK_KEY_FIELD}"


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    """Controller reference to the ModelDeployment, so its deletion garbage-collects the child."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def deployment_name(name: str, revision: str) -> str:
    return f"{name}-{revision}"


def stable_service_name(name: str) -> str:
    return name


def canary_service_name(name: str) -> str:
    return f"{name}-canary"


def feedback_key_secret_name(name: str) -> str:
    return f"{name}-feedback-key"


def build_feedback_key_secret(owner: dict[str, Any], key: bytes) -> dict[str, Any]:
    """The Secret holding the ModelDeployment's prediction-token key (``docs/model-server.md``).

    One per ModelDeployment, shared by all its revisions so any pod verifies any pod's tokens.
    Immutable (the API server refuses edits to its data: no accidental rotation) and owned by the
    ModelDeployment (garbage-collected with it).
    """
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": feedback_key_secret_name(name),
            "namespace": owner["metadata"]["namespace"],
            "labels": {**common_labels(name), LABEL_DEPLOYMENT: name},
            "ownerReferences": [owner_reference(owner)],
        },
        "type": "Opaque",
        "immutable": True,
        "data": {FEEDBACK_KEY_FIELD: base64.b64encode(key).decode("ascii")},
    }


def selector_labels(name: str, revision: str) -> dict[str, str]:
    return {LABEL_DEPLOYMENT: name, LABEL_REVISION: revision}


def common_labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "modelserver", "app.kubernetes.io/instance": name, **MANAGED_BY}


def _probe(path: str, period: int, failure_threshold: int, timeout: int = 2) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failure_threshold,
    }


DEFAULT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1,
    0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""The model server's default edges (seconds); a test keeps the two lists equal."""


def latency_buckets(slos_ms: Iterable[float]) -> str | None:
    """``--latency-buckets`` for the model servers: the default edges plus every slow-requests SLO,
    so that the gate's ``le`` bucket exists exactly (a gate between two edges could not count).
    None when no gate needs an edge: the servers keep their defaults and the pods are unchanged.
    ``repr`` round-trips, so the server parses the very float ``templates.le_label`` formats."""
    extra = {ms / 1000.0 for ms in slos_ms}
    if not extra:
        return None
    return ",".join(repr(edge) for edge in sorted(set(DEFAULT_LATENCY_BUCKETS) | extra))


def _compare_args(compared: ComparedModel | None) -> list[str]:
    """The model server's flags to load the stable model beside the candidate's (the shadow step)."""
    if compared is None:
        return []
    args = [f"--compare-model-uri={served_uri(compared.uri)}", f"--compare-revision={compared.revision}"]
    if compared.sha256:
        args.append(f"--compare-sha256={compared.sha256}")
    return args


def _container(
    model: ModelSpec,
    serving: ServingSpec,
    image: str,
    revision: str,
    deployment: str,
    buckets: str | None,
    compared: ComparedModel | None = None,
) -> dict[str, Any]:
    args = [
        f"--model-uri={served_uri(model.uri)}",
        f"--model-name={model.name}",
        f"--revision={revision}",
        "--host=0.0.0.0",
        f"--port={serving.port}",
        f"--grpc-port={serving.grpcPort}",
        f"--warmup-requests={serving.warmup.requests}",
        f"--feedback-key-file={FEEDBACK_KEY_PATH}",
        f"--deployment={deployment}",
        # SIGTERM: serve unready for the drain, then finish in-flight requests in what is left of
        # the grace period (a second before the kill).
        f"--drain-seconds={serving.drainSeconds}",
        f"--shutdown-timeout={max(1, serving.terminationGracePeriodSeconds - serving.drainSeconds - 1)}",
        # A model that cannot be loaded ends the container with the reason as its termination
        # message: the pod's status (and this operator's messages) say why, and the kubelet's
        # restart reads the container's Secrets again (a fixed credential heals the pod).
        "--exit-on-load-failure=true",
    ]
    if model.sha256:
        args.append(f"--sha256={model.sha256}")
    if model.metadataUri:
        args.append(f"--metadata-uri={model.metadataUri}")
    if serving.executionProvider != "CPU":
        args.append(f"--execution-provider={serving.executionProvider.lower()}")
    if buckets:
        args.append(f"--latency-buckets={buckets}")
    args.extend(_compare_args(compared))
    resources = container_resources(serving.resources)
    # A slow model load must not trip liveness: the startup probe waits on readiness for up to
    # startupTimeoutSeconds, and only then do liveness and readiness take over.
    startup_failures = max(1, -(-serving.startupTimeoutSeconds // PROBE_PERIOD_SECONDS))
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "args": args,
        "ports": [
            {"name": "http", "containerPort": serving.port, "protocol": "TCP"},
            {"name": "grpc", "containerPort": serving.grpcPort, "protocol": "TCP"},
        ],
        "env": [env_entry(e) for e in serving.env] + _storage_env(model) + [{"name": "TMPDIR", "value": TMP_DIR}],
        **({"envFrom": serving.envFrom} if serving.envFrom else {}),
        "resources": resources,
        "startupProbe": _probe("/v2/health/ready", PROBE_PERIOD_SECONDS, startup_failures),
        "readinessProbe": _probe("/v2/health/ready", PROBE_PERIOD_SECONDS, 3),
        "livenessProbe": _probe("/v2/health/live", 10, 3),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": TMP_VOLUME, "mountPath": TMP_DIR},
            {"name": FEEDBACK_KEY_VOLUME, "mountPath": FEEDBACK_KEY_DIR, "readOnly": True},
            *_model_store(model)[1],
            *serving.volumeMounts,
        ],
    }


S3_SECRET_KEYS = (("AWS_ACCESS_KEY_ID", False), ("AWS_SECRET_ACCESS_KEY", False), ("AWS_SESSION_TOKEN", True))
"""The keys of ``model.storage.secretName`` the pods get, and whether each may be absent."""
GCS_SECRET_KEYS = ("GCS_HMAC_ACCESS_KEY_ID", "GCS_HMAC_SECRET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
"""The HMAC keys a ``gs://`` model's Secret may hold (either pair; the GCS names win), all optional."""
AZURE_SECRET_KEYS = ("AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN")
"""The keys an ``azure://`` (``abfs[s]://``) model's Secret may hold: an account key and/or a SAS, both optional."""


def _storage_env(model: ModelSpec) -> list[dict[str, Any]]:
    """The environment that says how the pods reach the model (see :func:`_s3_env`, :func:`_gcs_env`,
    :func:`_registry`)."""
    if model.uri.startswith("oci://"):
        return _registry(model.storage)[2]
    if model.uri.startswith("gs://"):
        return _gcs_env(model.storage)
    if model.uri.startswith(("azure://", "abfs://", "abfss://")):
        return _azure_env(model.storage)
    return _s3_env(model.storage)


def _registry(
    storage: ModelStorageSpec | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """``(volumes, mounts, env)`` of an ``oci://`` model: the dockerconfigjson Secret as the pods'
    ``$DOCKER_CONFIG/config.json`` (by the kubelet: the operator never reads it), plain HTTP if asked."""
    if storage is None:
        return [], [], []
    volumes, mounts, env = [], [], []
    if storage.secretName:
        volumes.append({"name": REGISTRY_AUTH_VOLUME, "secret": {
            "secretName": storage.secretName, "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
            "defaultMode": 0o440}})  # fmt: skip
        mounts.append({"name": REGISTRY_AUTH_VOLUME, "mountPath": REGISTRY_AUTH_DIR, "readOnly": True})
        env.append({"name": "DOCKER_CONFIG", "value": REGISTRY_AUTH_DIR})
    if storage.plainHTTP:
        env.append({"name": "OCI_PLAIN_HTTP", "value": "true"})
    return volumes, mounts, env


def _s3_env(storage: ModelStorageSpec | None) -> list[dict[str, Any]]:
    """The AWS SDK environment of an ``s3://`` model: endpoint, region and the Secret's keys.

    Given by reference (``secretKeyRef``): the kubelet resolves them when a container starts, the
    operator never reads the Secret, and a missing Secret or key keeps the pod from starting with
    the kubelet's own reason (``CreateContainerConfigError``)."""
    if storage is None:
        return []
    env: list[dict[str, Any]] = []
    if storage.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL_S3", "value": storage.endpoint})
    if storage.region:
        env.append({"name": "AWS_REGION", "value": storage.region})
    if storage.secretName:
        for key, optional in S3_SECRET_KEYS:
            ref: dict[str, Any] = {"name": storage.secretName, "key": key}
            if optional:
                ref["optional"] = True
            env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    return env


def _gcs_env(storage: ModelStorageSpec | None) -> list[dict[str, Any]]:
    """The environment of a ``gs://`` model: ``GCS_ENDPOINT`` and the Secret's HMAC keys (either pair
    of names works). Workload Identity needs none of it: the pods' ServiceAccount
    (``serving.serviceAccountName``) is the credential."""
    return _endpoint_and_optional_keys(storage, "GCS_ENDPOINT", GCS_SECRET_KEYS)


def _azure_env(storage: ModelStorageSpec | None) -> list[dict[str, Any]]:
    """The environment of an ``azure://`` (``abfs[s]://``) model: ``AZURE_STORAGE_BLOB_ENDPOINT`` and the
    Secret's account key and SAS token (the server signs with the key when both are there; neither
    means a public container)."""
    return _endpoint_and_optional_keys(storage, "AZURE_STORAGE_BLOB_ENDPOINT", AZURE_SECRET_KEYS)


def _endpoint_and_optional_keys(
    storage: ModelStorageSpec | None, endpoint_variable: str, keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    """``storage.endpoint`` as ``endpoint_variable``, and each of ``keys`` from the Secret by
    optional reference: the kubelet resolves them, the operator never reads the Secret, and a key
    the Secret lacks is simply absent (the server says which credentials it used)."""
    if storage is None:
        return []
    env: list[dict[str, Any]] = []
    if storage.endpoint:
        env.append({"name": endpoint_variable, "value": storage.endpoint})
    if storage.secretName:
        for key in keys:
            ref = {"name": storage.secretName, "key": key, "optional": True}
            env.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    return env


def pvc_claim(uri: str) -> tuple[str, str] | None:
    """``pvc://<claim>/<path>`` -> ``(claim, path)``; None for every other scheme."""
    if not uri.startswith("pvc://"):
        return None
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return claim, path


def served_uri(uri: str) -> str:
    """The URI the model server loads: a ``pvc://`` model is a file under the claim's read-only mount."""
    found = pvc_claim(uri)
    return uri if found is None else f"file://{MODEL_STORE_DIR}/{found[1]}"


def _model_store(model: ModelSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The volumes and mounts the model's source needs: a ``pvc://`` claim (read-only), an
    ``oci://`` registry's credentials, or none."""
    if model.uri.startswith("oci://"):
        volumes, mounts, _ = _registry(model.storage)
        return volumes, mounts
    found = pvc_claim(model.uri)
    if found is None:
        return [], []
    volume = {"name": MODEL_STORE_VOLUME, "persistentVolumeClaim": {"claimName": found[0], "readOnly": True}}
    return [volume], [{"name": MODEL_STORE_VOLUME, "mountPath": MODEL_STORE_DIR, "readOnly": True}]


def container_resources(resources: ResourcesSpec) -> dict[str, dict[str, str]]:
    """``resources`` as a container's ``resources`` (quantities as strings, empty maps left out)."""
    dumped = resources.model_dump(mode="json", exclude_defaults=False)
    return {k: {rk: str(rv) for rk, rv in v.items()} for k, v in dumped.items() if v}


def env_entry(var: EnvVar) -> dict[str, Any]:
    """One container ``env`` entry."""
    return (
        {"name": var.name, "valueFrom": var.valueFrom}
        if var.valueFrom is not None
        else var.model_dump(include={"name", "value"})
    )


def _scheduling(serving: ServingSpec) -> dict[str, Any]:
    """The pod-spec fields that say where and as whom the pods run; absent ones are left out, so
    the API server's defaults apply as in any Deployment."""
    fields: dict[str, Any] = {
        "serviceAccountName": serving.serviceAccountName,
        "priorityClassName": serving.priorityClassName,
        "nodeSelector": serving.nodeSelector,
        "tolerations": serving.tolerations,
        "affinity": serving.affinity,
        "topologySpreadConstraints": serving.topologySpreadConstraints,
        "imagePullSecrets": serving.imagePullSecrets,
    }
    return {k: v for k, v in fields.items() if v}


def build_deployment(
    owner: dict[str, Any],
    revision: str,
    model: ModelSpec,
    serving: ServingSpec,
    image: str,
    replicas: int,
    progress_deadline_seconds: int,
    latency_slos_ms: Iterable[float] = (),
    compared_with: ComparedModel | None = None,
) -> dict[str, Any]:
    """The Deployment serving one revision; ``replicas`` is decided by the engine, not the spec.

    ``latency_slos_ms`` are the slow-requests gates' SLOs: every revision exports those bucket
    edges, the stable as well as the canary, since the gates compare the two. ``compared_with`` is
    the stable model a shadow candidate scores every request with too (its history entry keeps it,
    so the revision's Deployment never changes when the rollout moves on)."""
    name = owner["metadata"]["name"]
    selector = selector_labels(name, revision)
    pod_labels = {**serving.podLabels, **common_labels(name), **selector}
    pod_annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(serving.port),
        "prometheus.io/path": "/metrics",
        **serving.podAnnotations,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(name, revision),
            "namespace": owner["metadata"]["namespace"],
            "labels": {**common_labels(name), **selector},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 1,
            "progressDeadlineSeconds": progress_deadline_seconds,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations},
                "spec": {
                    "automountServiceAccountToken": serving.automountServiceAccountToken,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": serving.terminationGracePeriodSeconds,
                    **_scheduling(serving),
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS_USER,
                        "runAsGroup": RUN_AS_USER,
                        "fsGroup": RUN_AS_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        _container(
                            model,
                            serving,
                            image,
                            revision,
                            f"{owner['metadata']['namespace']}/{name}",
                            latency_buckets(latency_slos_ms),
                            compared_with,
                        )
                    ],
                    "volumes": [
                        {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "2Gi"}},
                        {
                            "name": FEEDBACK_KEY_VOLUME,
                            "secret": {"secretName": feedback_key_secret_name(name), "defaultMode": 0o440},
                        },
                        *_model_store(model)[0],
                        *serving.volumes,
                    ],
                },
            },
        },
    }


def build_disruption_budget(owner: dict[str, Any], budget: DisruptionBudgetSpec) -> dict[str, Any]:
    """One PodDisruptionBudget over every revision's pods (``docs/operations.md``, "Disruptions").

    One, not one per revision: it never changes during a rollout (no write per step), and a node
    drain mid-rollout takes at most ``maxUnavailable`` pods of the model, whichever revision they
    serve. ``AlwaysAllow`` lets unready pods go whatever the budget says: a canary stuck unready
    would otherwise use the budget up and block every drain of its nodes.
    """
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _singleton_metadata(owner),
        "spec": {
            "maxUnavailable": budget.maxUnavailable,
            "selector": {"matchLabels": {LABEL_DEPLOYMENT: name}},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def build_autoscaler(owner: dict[str, Any], autoscaling: AutoscalingSpec, stable_revision: str) -> dict[str, Any]:
    """The HorizontalPodAutoscaler <name> on the stable revision's Deployment. It moves to the new
    stable revision at promotion; canaries are sized by the engine from the stable's count."""
    name = owner["metadata"]["name"]
    spec: dict[str, Any] = {
        "scaleTargetRef": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": deployment_name(name, stable_revision),
        },
        "minReplicas": autoscaling.minReplicas,
        "maxReplicas": autoscaling.maxReplicas,
    }
    if autoscaling.metrics:
        spec["metrics"] = autoscaling.metrics
    if autoscaling.behavior:
        spec["behavior"] = autoscaling.behavior
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _singleton_metadata(owner),
        "spec": spec,
    }


def _singleton_metadata(owner: dict[str, Any]) -> dict[str, Any]:
    """Metadata of a child the ModelDeployment has one of, named like it and owned by it."""
    name = owner["metadata"]["name"]
    return {
        "name": name,
        "namespace": owner["metadata"]["namespace"],
        "labels": {**common_labels(name), LABEL_DEPLOYMENT: name},
        "ownerReferences": [owner_reference(owner)],
    }


def grpc_routed(spec: ModelDeploymentSpec) -> bool:
    """Whether a route splits gRPC, so the Services must carry the grpc port."""
    return spec.traffic.gatewayAPI is not None and spec.traffic.gatewayAPI.grpc is not None


def _service_ports(grpc: bool) -> list[dict[str, Any]]:
    """HTTP always; gRPC only where a route splits it: a gRPC port on every Service would be sent to
    the HTTP port by Istio's host-wide routes, which match no port. ``kubernetes.io/h2c`` tells a
    gateway to speak cleartext HTTP/2 to the pods (Gateway API GEP-1911)."""
    ports = [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}]
    if grpc:
        ports.append({"name": "grpc", "port": SERVICE_GRPC_PORT, "targetPort": "grpc", "protocol": "TCP",
                      "appProtocol": "kubernetes.io/h2c"})  # fmt: skip
    return ports


def build_service(
    owner: dict[str, Any],
    service_name: str,
    revision: str,
    role: str,
    all_revisions: bool = False,
    grpc: bool = False,
) -> dict[str, Any]:
    """A Service selecting one revision's pods; ``role`` is stable or canary.

    ``grpc`` adds the pods' gRPC port, for a route that splits gRPC (``traffic.gatewayAPI.grpc``).
    ``all_revisions`` makes the stable Service select every revision's pods: what the ``none``
    provider needs (kube-proxy spreads requests by pod count, so the replica ratio *is* the weight).
    Every router leaves it off, so callers a route does not govern (an Istio caller without a
    sidecar, say) reach the stable revision only.
    """
    name = owner["metadata"]["name"]
    selector = {LABEL_DEPLOYMENT: name} if all_revisions else selector_labels(name, revision)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name,
            "namespace": owner["metadata"]["namespace"],
            "labels": {**common_labels(name), LABEL_DEPLOYMENT: name, LABEL_ROLE: role},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": _service_ports(grpc),
        },
    }
