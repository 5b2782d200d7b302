"""The ModelDeployment API (modelrollout.io/v1alpha1): the single source of truth for spec and status.

The CRD in ``crds/`` is generated from these models (``make crds``), so the API server enforces the
same shapes, bounds and CEL rules that the operator parses with. Rules the schema alone cannot say
(steps increasing, exactly one traffic provider, min <= max) are attached as
``x-kubernetes-validations`` next to the field they guard, so the API server's message names it.
"""

from __future__ import annotations

import itertools
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator
from pydantic.json_schema import JsonDict

from modelrollout.api.k8s import QUANTITY_PATTERN, KubeObject
from modelrollout.durations import DURATION_PATTERN, parse_duration

GROUP = "modelrollout.io"
VERSION = "v1alpha1"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["mdep"]
API_VERSION = f"{GROUP}/{VERSION}"

BUILTIN_TEMPLATES = (
    "error-rate", "client-error-rate", "slow-requests", "accuracy", "missing-data", "latency-p99", "drift",
    "agreement", "score-difference",
)  # fmt: skip
RATIO_TEMPLATES = (
    "error-rate", "client-error-rate", "slow-requests", "accuracy", "missing-data", "agreement", "score-difference",
)  # fmt: skip
"""Gates whose value is a proportion of countable events, decided by sequential tests on counts."""
SHADOW_TEMPLATES = ("agreement", "score-difference")
"""Gates on the candidate's comparison with the stable model on the same requests (strategy.canary.shadow)."""
FEEDBACK_TEMPLATES = ("accuracy",)
"""Gates on ground-truth labels: a label names the prediction its client saw, so a shadow candidate
(whose answers no client sees) gets none."""
SCORE_DIFFERENCE_EDGES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
"""The model server's ``modelserver_shadow_score_difference`` bucket edges: the values
``scoreDifferenceAbove`` may take (a share of rows above an edge is exact, between edges it is not)."""
SCORE_FEATURE = "_prediction_score"
"""The drift gate's name for the prediction score (the model server's ``feature`` label for it)."""
PHASES = ("Initializing", "Progressing", "Baking", "Succeeded", "RolledBack", "Failed", "Paused")

# Annotations humans set through the CLI; the operator reads them and never edits the spec.
ANNOTATION_PROMOTE = f"{GROUP}/promote"
ANNOTATION_ABORT = f"{GROUP}/abort"
ANNOTATION_RETRY = f"{GROUP}/retry"


class Phase(StrEnum):
    """The phase of a ModelDeployment (status.phase)."""

    INITIALIZING = "Initializing"
    PROGRESSING = "Progressing"
    BAKING = "Baking"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    PAUSED = "Paused"


class HistoryPhase(StrEnum):
    """How a revision's life ended (status.history[].phase): Superseded is no ModelDeployment phase."""

    PROGRESSING = "Progressing"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    SUPERSEDED = "Superseded"
    FAILED = "Failed"


class Reason(StrEnum):
    """Reasons the engine writes into conditions, history and rollbacks. A failed gate is
    ``GateFailed<Gate>`` and a failed watch ``WatchFailed<Gate>`` (:func:`gate_reason`)."""

    ABORTED = "Aborted"
    ANALYSIS_FAILED = "AnalysisFailed"
    AS_EXPECTED = "AsExpected"
    CONTRACT_MISMATCH = "ContractMismatch"
    CONTRACT_UNVERIFIED = "ContractUnverified"
    DRIFT_DETECTED = "DriftDetected"
    EXPERIMENT_LOST = "ExperimentLost"
    EXPERIMENT_TIE = "ExperimentTie"
    EXPERIMENT_TIMEOUT = "ExperimentTimeout"
    EXPERIMENT_WON = "ExperimentWon"
    FIRST_REVISION = "FirstRevision"
    INCONCLUSIVE_LIMIT_REACHED = "InconclusiveLimitReached"
    INSUFFICIENT_TRAFFIC = "InsufficientTraffic"
    NO_DRIFT = "NoDrift"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    PROMOTED = "Promoted"
    REVERTED = "Reverted"
    ROLLED_BACK = "RolledBack"
    STABLE_AVAILABLE = "StableAvailable"
    STABLE_UNAVAILABLE = "StableUnavailable"
    UNDECIDED = "Undecided"
    WAITING_FOR_EVIDENCE = "WaitingForEvidence"


def gate_reason(prefix: str, gate: str) -> str:
    """``GateFailed`` + ``accuracy`` -> ``GateFailedAccuracy`` (``error-rate`` -> ``ErrorRate``)."""
    return prefix + "".join(part.capitalize() for part in gate.split("-"))


class GateReason(StrEnum):
    """Why a gate has the verdict it has; the engine acts on these, not only on the verdict."""

    PASSED = "Passed"  # the evidence shows every threshold is met
    FAILED = "Failed"  # the evidence shows a threshold is breached
    UNDECIDED = "Undecided"  # enough samples, but neither shown yet: wait for more
    INSUFFICIENT_SAMPLES = "InsufficientSamples"  # fewer than minSamples (canary or baseline)
    NO_DATA = "NoData"  # a plain gate's query returned nothing: the gate is blind
    QUERY_ERROR = "QueryError"  # Prometheus unreachable, timed out or refused the query: blind
    NOT_APPLICABLE = "NotApplicable"  # nothing to judge here: accuracy while shadowing, a shadow gate outside it

    @property
    def blind(self) -> bool:
        """True when the gate could not look at all (counts toward inconclusiveLimit)."""
        return self in (GateReason.NO_DATA, GateReason.QUERY_ERROR)


def _cel_list(items: tuple[str, ...]) -> str:
    """A CEL list literal of strings."""
    return "[" + ", ".join(f"'{i}'" for i in items) + "]"


def _cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """One x-kubernetes-validations entry; fieldPath makes the API server name the offending field."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def _cel_not_shorter(longer: str, shorter: str) -> JsonDict:
    """CEL: duration ``longer`` is at least duration ``shorter`` (when both are set); pair with
    :func:`_check_not_shorter` so the operator says the same thing as the API server."""
    return _cel(
        f"!has(self.{longer}) || !has(self.{shorter}) || duration(self.{longer}) >= duration(self.{shorter})",
        f"{longer} must be at least {shorter}",
        f".{longer}",
    )


def _check_not_shorter(model: BaseModel, longer: str, shorter: str) -> None:
    if parse_duration(getattr(model, longer)) < parse_duration(getattr(model, shorter)):
        raise ValueError(f"{longer} must be at least {shorter}")


MINIMUM_RULE = re.compile(r"^duration\(self\) >= duration\('(?P<minimum>[^']+)'\)$")


def _duration_field(default: str, description: str, minimum: str = "0s") -> Any:
    """A Go-style duration string, checked by regex and by CEL's own duration parser; the minimum
    is checked by the operator too (:class:`_Model` reads it from the rule)."""
    return Field(
        default=default,
        description=f"{description} Go duration syntax, e.g. 30s, 5m, 1h30m. Default: {default}.",
        pattern=DURATION_PATTERN,
        max_length=32,
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(f"duration(self) >= duration('{minimum}')", f"must be a duration of at least {minimum}")
            ]
        },
    )


class _Model(BaseModel):
    """Base: camelCase on the wire is written as-is; unknown fields are rejected like the CRD prunes them;
    JSON types are taken as the API server's schema takes them (strict: no ``true`` or ``"3"`` for a
    number), so the operator parses exactly what admission lets through (tests/integration/
    test_admission_fuzz.py)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    # (field, minimum) of each duration field with an ``at least`` rule, read once per class from
    # the CEL rule the API server enforces, so the two cannot drift.
    _duration_minima: ClassVar[tuple[tuple[str, str], ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        minima = []
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            for entry in extra.get("x-kubernetes-validations") or []:  # type: ignore[union-attr]
                if isinstance(entry, dict) and (m := MINIMUM_RULE.match(str(entry["rule"]))):
                    minima.append((name, m["minimum"]))
        cls._duration_minima = tuple(minima)

    @model_validator(mode="after")
    def _duration_minimums(self) -> Any:
        """The ``at least`` of every duration field, as its CEL rule says it to the API server."""
        for name, minimum in self._duration_minima:
            value = getattr(self, name)
            if isinstance(value, str) and parse_duration(value) < parse_duration(minimum):
                raise ValueError(f"{name}: must be a duration of at least {minimum}")
        return self


# --------------------------------------------------------------------------------------------- spec


DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class ModelStorageSpec(_Model):
    """How the pods reach an ``s3://``, ``gs://``, ``azure://`` (``abfs[s]://``) or ``oci://`` model: the store
    and the credentials.

    Not part of the revision: rotating the Secret, naming another one or moving the endpoint never
    starts a rollout (the artifact is the same bytes; ``sha256`` says so). The pods read the
    credentials when they start, so a rotation reaches pods that start afterwards.
    """

    secretName: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Secret in this namespace with the credentials. s3://: its keys AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN, if present) become the pods' environment, as every AWS SDK "
        "reads it; without it the pods sign with what serving.env/envFrom give them, else with their ServiceAccount's "
        "AWS identity (IRSA, EKS Pod Identity: serving.serviceAccountName), or not at all. gs://: GCS "
        "HMAC keys under GCS_HMAC_ACCESS_KEY_ID and GCS_HMAC_SECRET (or the AWS names), each optional; without "
        "keys the pods use Workload Identity (serving.serviceAccountName) where it is set up. oci://: a "
        "kubernetes.io/dockerconfigjson Secret (as for imagePullSecrets), mounted as the pods' docker config. "
        "azure:// and abfs[s]://: its keys AZURE_STORAGE_KEY (an account key) and/or AZURE_STORAGE_SAS_TOKEN, each "
        "optional; the key wins when both are set, neither means a public container.",
    )
    plainHTTP: bool = Field(
        default=False, description="oci:// only: talk to the registry over plain HTTP (a registry without TLS)."
    )
    endpoint: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="An S3-compatible store's URL (MinIO, Ceph, versitygw...), addressed path-style. Default: "
        "AWS S3's regional endpoint, virtual-hosted. gs://: the XML API's URL (GCS_ENDPOINT; default "
        "https://storage.googleapis.com). azure:// and abfs[s]://: the Blob endpoint (AZURE_STORAGE_BLOB_ENDPOINT, "
        "path-style, e.g. Azurite's http://host:10000/<account>; default https://<account>.blob.core.windows.net).",
    )
    region: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[a-z0-9][-a-z0-9]*$",
        description="s3:// only: the region requests are signed for (default us-east-1).",
    )


class ModelSpec(_Model):
    """What model is served. Every field but ``storage`` defines the revision."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.storage) || self.uri.startsWith('s3://') || self.uri.startsWith('gs://') || "
                    "self.uri.startsWith('oci://') || self.uri.startsWith('azure://') || self.uri.startsWith('abfs://') "
                    "|| self.uri.startsWith('abfss://')",
                    "storage is for s3://, gs://, azure://, abfs[s]:// and oci:// URIs",
                    ".storage",
                ),
                _cel(
                    "!has(self.storage) || !has(self.storage.endpoint) || self.uri.startsWith('s3://') || "
                    "self.uri.startsWith('gs://') || self.uri.startsWith('azure://') || self.uri.startsWith('abfs://') || "
                    "self.uri.startsWith('abfss://')",
                    "endpoint is for s3://, gs://, azure:// and abfs[s]:// URIs",
                    ".storage.endpoint",
                ),
                _cel(
                    "!has(self.storage) || !has(self.storage.region) || self.uri.startsWith('s3://')",
                    "region is for s3:// URIs",
                    ".storage.region",
                ),
                _cel(
                    "!has(self.storage) || !self.storage.plainHTTP || self.uri.startsWith('oci://')",
                    "plainHTTP is for oci:// URIs",
                    ".storage.plainHTTP",
                ),
            ]
        }
    )

    name: str = Field(
        description="Model name served under /v2/models/{name}. Lowercase letters, digits and dashes.",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
    )
    uri: str = Field(
        description="Where the model artifact is loaded from: file://, http://, https://, s3://<bucket>/<key> "
        "(AWS S3 or an S3-compatible store, see storage), gs://<bucket>/<object> (Google Cloud Storage: HMAC keys "
        "from storage, or Workload Identity through serving.serviceAccountName), pvc://<claim>/<path> (a "
        "PersistentVolumeClaim of this namespace, mounted read-only), hf://<owner>/<repo>[@<revision>]/<path> (a Hugging Face Hub file; "
        "HF_TOKEN from serving.env for a private repository), azure://<account>/<container>/<blob> or "
        "abfs[s]://<container>@<account>.dfs.core.windows.net/<path> (Azure Blob Storage, see storage) or oci://<registry>/<repository>[:<tag>|@<digest>]"
        "[#<file>] (a file of an OCI artifact, see storage). metadata.json, and the ONNX external-data files the "
        "graph names, are read from beside it.",
        pattern=r"^(file://.+|https?://.+|s3://[a-z0-9][-a-z0-9.]{1,61}[a-z0-9]/[^\s]*[^\s/]"
        r"|gs://[a-z0-9][-a-z0-9_.]{1,220}[a-z0-9]/[^\s]*[^\s/]"
        r"|azure://[a-z0-9]{3,24}/[a-z0-9]([-a-z0-9]{1,61}[a-z0-9])/[^\s]*[^\s/]"
        r"|abfss?://[a-z0-9]([-a-z0-9]{1,61}[a-z0-9])@[a-z0-9]{3,24}\.dfs\.[^\s/]+/[^\s]*[^\s/]"
        r"|pvc://[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/[^\s]*[^\s/]"
        r"|hf://[-\w.]+/[-\w.]+(@[^\s/@]+)?/[^\s]*[^\s/]"
        r"|oci://[^/\s]+/[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
        r"(:\w[\w.-]{0,127}|@sha256:[a-f0-9]{64})?(#[^\s#]+)?)$",
        max_length=2048,
    )
    sha256: str | None = Field(
        default=None,
        description="Expected SHA-256 of the artifact (64 lowercase hex digits). A mismatch keeps pods unready.",
        pattern=r"^[a-f0-9]{64}$",
    )
    metadataUri: str | None = Field(
        default=None,
        description="Where metadata.json is read from, when not beside uri: needed with a pre-signed uri, whose "
        "signature covers only the model (a pre-signed URL of the metadata works).",
        pattern=r"^(file://.+|https?://.+|s3://[a-z0-9][-a-z0-9.]{1,61}[a-z0-9]/[^\s]*[^\s/]"
        r"|gs://[a-z0-9][-a-z0-9_.]{1,220}[a-z0-9]/[^\s]*[^\s/])$",
        max_length=2048,
    )
    format: Literal["onnx"] = Field(default="onnx", description="Artifact format. Only ONNX is served.")
    storage: ModelStorageSpec | None = Field(
        default=None,
        description="The store and credentials of an s3://, gs://, azure://, abfs[s]:// or oci:// URI; not part of "
        "the revision.",
    )

    @model_validator(mode="after")
    def _storage_fits_the_scheme(self) -> ModelSpec:
        storage, s3, registry = self.storage, self.uri.startswith("s3://"), self.uri.startswith("oci://")
        gcs = self.uri.startswith("gs://")
        blob = self.uri.startswith(("azure://", "abfs://", "abfss://"))
        if storage is None:
            return self
        if not (s3 or gcs or blob or registry):
            raise ValueError("storage: storage is for s3://, gs://, azure://, abfs[s]:// and oci:// URIs")
        if storage.endpoint is not None and not (s3 or gcs or blob):
            raise ValueError("storage.endpoint: endpoint is for s3://, gs://, azure:// and abfs[s]:// URIs")
        if storage.region is not None and not s3:
            raise ValueError("storage.region: region is for s3:// URIs")
        if storage.plainHTTP and not registry:
            raise ValueError("storage.plainHTTP: plainHTTP is for oci:// URIs")
        return self


class WarmupSpec(_Model):
    """Warmup inferences the model server runs before it reports ready."""

    requests: int = Field(default=10, ge=0, le=10000, description="Warmup inferences before readiness.")


Quantity = Annotated[
    str | int,
    Field(json_schema_extra={"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN}),
]


class ResourcesSpec(_Model):
    """Container resources, the same shape as a Pod's ``resources``."""

    requests: dict[str, Quantity] = Field(default_factory=dict, description="Minimum resources, e.g. cpu: 250m.")
    limits: dict[str, Quantity] = Field(default_factory=dict, description="Maximum resources, e.g. memory: 1Gi.")


class EnvVar(_Model):
    """An environment variable for the model-server container: a value, or one read from a Secret,
    a ConfigMap or the pod (``valueFrom``, the Kubernetes shape)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.valueFrom) || !has(self.value) || self.value == ''", "value and valueFrom are exclusive"
                )
            ]
        }
    )

    name: str = Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", max_length=253, description="Variable name.")
    value: str = Field(default="", max_length=4096, description="Variable value.")
    valueFrom: KubeObject("EnvVarSource") | None = Field(  # type: ignore[valid-type]
        default=None, description="Read the value from a Secret key, a ConfigMap key or a pod field."
    )

    @model_validator(mode="after")
    def _one_source(self) -> EnvVar:
        if self.valueFrom is not None and self.value:
            raise ValueError("value and valueFrom are exclusive")
        return self


# Volumes and mount paths the operator puts in every pod (see workloads.build_deployment).
RESERVED_VOLUMES = ("tmp", "feedback-key", "model-store", "registry-auth")
RESERVED_MOUNT_PATHS = (
    "/tmp",
    "/var/run/modelrollout/feedback",
    "/var/run/modelrollout/model",
    "/var/run/modelrollout/registry",
)


def _volume_rules(names: list[str], mounts: list[tuple[str, str]]) -> list[str]:
    """The operator's side of ServingSpec's volume CEL rules, in the same words."""
    found = []
    if any(n in RESERVED_VOLUMES for n in names):
        found.append(f"volumes: the names {', '.join(RESERVED_VOLUMES)} are the operator's")
    if any(m not in names for m, _ in mounts):
        found.append("volumeMounts: each must name one of spec.serving.volumes")
    if any(p.rstrip("/") in RESERVED_MOUNT_PATHS for _, p in mounts):
        found.append(f"volumeMounts: the paths {', '.join(RESERVED_MOUNT_PATHS)} are the operator's")
    return found


class AutoscalingSpec(_Model):
    """A HorizontalPodAutoscaler (autoscaling/v2) <name> on the stable revision's Deployment: it owns
    the stable's replica count, and the operator sizes the canary from it (``docs/api.md``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("self.minReplicas <= self.maxReplicas", "minReplicas must be <= maxReplicas", ".minReplicas")
            ]
        }
    )

    minReplicas: int = Field(default=1, ge=1, le=1000, description="Fewest stable pods.")
    maxReplicas: int = Field(ge=1, le=1000, description="Most stable pods.")
    metrics: list[KubeObject("MetricSpec")] = Field(  # type: ignore[valid-type]
        default_factory=list,
        max_length=16,
        description="What to scale on (autoscaling/v2 MetricSpec). Empty: Kubernetes' default, 80% of the "
        "pods' CPU requests (set serving.resources.requests.cpu).",
    )
    behavior: KubeObject("HorizontalPodAutoscalerBehavior") | None = Field(  # type: ignore[valid-type]
        default=None, description="Scale-up and scale-down policies (autoscaling/v2)."
    )

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.minReplicas > self.maxReplicas:
            raise ValueError("minReplicas must be <= maxReplicas")
        return self


class ServingSpec(_Model):
    """How each revision is served. Everything but ``replicas`` and ``autoscaling`` defines the revision."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    f"!has(self.volumes) || self.volumes.all(v, !(v.name in {_cel_list(RESERVED_VOLUMES)}))",
                    f"the names {', '.join(RESERVED_VOLUMES)} are the operator's",
                    ".volumes",
                ),
                _cel("self.grpcPort != self.port", "must differ from port", ".grpcPort"),
                _cel(
                    "self.executionProvider != 'CUDA' || (has(self.resources) && has(self.resources.limits) && "
                    "'nvidia.com/gpu' in self.resources.limits)",
                    "CUDA needs a GPU: set resources.limits['nvidia.com/gpu'] (and an image with onnxruntime-gpu)",
                    ".executionProvider",
                ),
                _cel(
                    "self.drainSeconds == 0 || self.drainSeconds < self.terminationGracePeriodSeconds",
                    "must be below terminationGracePeriodSeconds (the pod is killed then)",
                    ".drainSeconds",
                ),
                _cel(
                    "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
                    "self.volumes.exists(v, v.name == m.name))",
                    "each must name one of spec.serving.volumes",
                    ".volumeMounts",
                ),
                _cel(
                    "!has(self.volumeMounts) || self.volumeMounts.all(m, "
                    f"!(m.mountPath in {_cel_list(RESERVED_MOUNT_PATHS)}) && "
                    f"!(m.mountPath in {_cel_list(tuple(p + '/' for p in RESERVED_MOUNT_PATHS))}))",
                    f"the paths {', '.join(RESERVED_MOUNT_PATHS)} are the operator's",
                    ".volumeMounts",
                ),
            ]
        }
    )

    image: str | None = Field(
        default=None,
        max_length=512,
        description="Model-server image. Default: the operator's configured image.",
    )
    replicas: int = Field(
        default=1, ge=0, le=1000, description="Pods per revision at full traffic (without autoscaling)."
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None,
        description="Let a HorizontalPodAutoscaler size the stable revision instead of replicas; not part of "
        "a revision. Needs a traffic layer for a canary (without one the replica ratio is the weight).",
    )
    port: int = Field(default=8080, ge=1024, le=65535, description="Container port of the model server.")
    grpcPort: int = Field(
        default=8081,
        ge=1024,
        le=65535,
        description="Container port of the model server's Open Inference Protocol gRPC API (the Services' grpc "
        "port targets it where traffic.gatewayAPI.grpc splits gRPC). Differs from port.",
    )
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Container resources.")
    warmup: WarmupSpec = Field(default_factory=WarmupSpec, description="Warmup before readiness.")
    startupTimeoutSeconds: int = Field(
        default=600,
        ge=10,
        le=86400,
        description="How long a pod may take to load and warm the model before it is restarted.",
    )
    env: list[EnvVar] = Field(default_factory=list, max_length=64, description="Extra environment variables.")
    podLabels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels on the serving pods (e.g. for sidecar injection or cost allocation).",
        json_schema_extra={"maxProperties": 32, "additionalProperties": {"type": "string", "maxLength": 63}},
    )
    podAnnotations: dict[str, str] = Field(
        default_factory=dict,
        description="Extra annotations on the serving pods (e.g. Prometheus scrape hints).",
        json_schema_extra={
            "maxProperties": 32,
            "additionalProperties": {"type": "string", "maxLength": 4096},
        },
    )
    # The rest of a pod spec, in the Kubernetes shape (``docs/api.md`` "Pod spec"). Each defines the
    # revision like every other serving field; see revision.py for how fields added later keep the
    # revisions made before them.
    serviceAccountName: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="ServiceAccount the pods run as (workload identity for model storage, image pulls).",
    )
    automountServiceAccountToken: bool = Field(
        default=False,
        description="Mount the ServiceAccount's API token in the pods. Off: the model server never calls the API.",
    )
    nodeSelector: dict[str, str] = Field(
        default_factory=dict,
        description="Node labels the pods must run on (e.g. a GPU node pool).",
        json_schema_extra={"maxProperties": 32, "additionalProperties": {"type": "string", "maxLength": 63}},
    )
    tolerations: list[KubeObject("Toleration")] = Field(  # type: ignore[valid-type]
        default_factory=list, max_length=32, description="Taints the pods tolerate (core/v1 Toleration)."
    )
    affinity: KubeObject("Affinity") | None = Field(  # type: ignore[valid-type]
        default=None, description="Node and pod (anti-)affinity (core/v1 Affinity)."
    )
    topologySpreadConstraints: list[KubeObject("TopologySpreadConstraint")] = Field(  # type: ignore[valid-type]
        default_factory=list,
        max_length=16,
        description="How pods spread across zones or nodes (core/v1 TopologySpreadConstraint).",
    )
    priorityClassName: str | None = Field(
        default=None, max_length=253, pattern=DNS_SUBDOMAIN, description="PriorityClass of the pods."
    )
    imagePullSecrets: list[KubeObject("LocalObjectReference")] = Field(  # type: ignore[valid-type]
        default_factory=list, max_length=16, description="Secrets to pull the model-server image with."
    )
    volumes: list[KubeObject("Volume")] = Field(  # type: ignore[valid-type]
        default_factory=list,
        max_length=32,
        description="Extra pod volumes (core/v1 Volume); tmp and feedback-key are the operator's.",
    )
    volumeMounts: list[KubeObject("VolumeMount")] = Field(  # type: ignore[valid-type]
        default_factory=list,
        max_length=32,
        description="Mounts of the extra volumes in the model-server container (core/v1 VolumeMount).",
    )
    envFrom: list[KubeObject("EnvFromSource")] = Field(  # type: ignore[valid-type]
        default_factory=list, max_length=16, description="Environment from whole Secrets or ConfigMaps."
    )
    terminationGracePeriodSeconds: int = Field(
        default=30, ge=0, le=3600, description="Seconds a stopping pod has, drain included, before it is killed."
    )
    executionProvider: Literal["CPU", "CUDA"] = Field(
        default="CPU",
        description="onnxruntime's execution provider. CUDA runs the model on an NVIDIA GPU: it needs "
        "resources.limits['nvidia.com/gpu'] and an image whose onnxruntime is the GPU build; a pod that "
        "cannot use CUDA fails to load, saying why, instead of quietly running on the CPU.",
    )
    drainSeconds: int = Field(
        default=5,
        ge=0,
        le=300,
        description="After SIGTERM a pod keeps serving, unready, this long (proxies and gateways still route "
        "to it until they learn the endpoint is gone), then finishes in-flight requests and exits. Below "
        "terminationGracePeriodSeconds.",
    )

    @model_validator(mode="after")
    def _ports_differ(self) -> ServingSpec:
        if self.grpcPort == self.port:
            raise ValueError("grpcPort: must differ from port")
        return self

    @model_validator(mode="after")
    def _gpu_for_cuda(self) -> ServingSpec:
        if self.executionProvider == "CUDA" and "nvidia.com/gpu" not in self.resources.limits:
            raise ValueError(
                "executionProvider: CUDA needs a GPU: set resources.limits['nvidia.com/gpu'] "
                "(and an image with onnxruntime-gpu)"
            )
        return self

    @model_validator(mode="after")
    def _drain_fits(self) -> ServingSpec:
        if self.drainSeconds and self.drainSeconds >= self.terminationGracePeriodSeconds:
            raise ValueError("drainSeconds: must be below terminationGracePeriodSeconds (the pod is killed then)")
        return self

    @model_validator(mode="after")
    def _volumes(self) -> ServingSpec:
        names = [v["name"] for v in self.volumes]
        if found := _volume_rules(names, [(m["name"], m["mountPath"]) for m in self.volumeMounts]):
            raise ValueError("; ".join(found))
        return self


class ParentRef(_Model):
    """A Gateway API parentRef: the Gateway the HTTPRoute attaches to."""

    name: str = Field(max_length=253, description="Gateway name.")
    namespace: str | None = Field(default=None, max_length=63, description="Gateway namespace.")
    sectionName: str | None = Field(default=None, max_length=253, description="Listener name.")


class GatewayGRPCTraffic(_Model):
    """The gRPC side of the split: a GRPCRoute with the HTTPRoute's weights and canary routes."""

    parentRefs: list[ParentRef] = Field(
        default_factory=list,
        max_length=32,
        description="Gateways (listeners) the GRPCRoute attaches to; default: traffic.gatewayAPI.parentRefs. "
        "gRPC needs HTTP/2: a Gateway usually serves it on a listener of its own, named by sectionName.",
    )
    hostnames: list[str] = Field(
        default_factory=list, max_length=16, description="Hostnames to match; default: traffic.gatewayAPI.hostnames."
    )


class GatewayAPITraffic(_Model):
    """Weights are written to an HTTPRoute (gateway.networking.k8s.io/v1) owned by the operator."""

    parentRefs: list[ParentRef] = Field(min_length=1, max_length=32, description="Gateways to attach to.")
    hostnames: list[str] = Field(default_factory=list, max_length=16, description="Hostnames to match.")
    path: str = Field(default="/", pattern=r"^/", max_length=1024, description="Path prefix to route.")
    grpc: GatewayGRPCTraffic | None = Field(
        default=None,
        description="Split the Open Inference Protocol's gRPC API too: a GRPCRoute <name>-grpc with the same "
        "weights and canary routes, to the Services' grpc port (serving.grpcPort, appProtocol kubernetes.io/h2c). "
        "{} attaches it to the HTTPRoute's parentRefs and hostnames.",
    )


class IstioTraffic(_Model):
    """Weights are written to a VirtualService (networking.istio.io/v1) routing to the <name> Service
    (the stable revision only) and <name>-canary."""

    hosts: list[str] = Field(min_length=1, max_length=16, description="VirtualService hosts.")
    gateways: list[str] = Field(default_factory=list, max_length=16, description="Istio gateways (default: mesh).")


class NginxTraffic(_Model):
    """Weights are written to a canary Ingress (nginx.ingress.kubernetes.io/canary-weight)."""

    host: str = Field(max_length=253, description="Ingress host.")
    path: str = Field(default="/", pattern=r"^/", max_length=1024, description="Ingress path.")
    pathType: Literal["Prefix", "Exact", "ImplementationSpecific"] = Field(default="Prefix")
    ingressClassName: str = Field(default="nginx", max_length=253, description="IngressClass to use.")


class NoneTraffic(_Model):
    """No traffic layer: the canary weight is approximated by the canary/stable replica ratio."""


HEADER_NAME_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
"""An HTTP header name (RFC 9110 token); cookie names are tokens too."""
COOKIE_VALUE_PATTERN = r"^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]+$"
"""RFC 6265 cookie-octets: visible ASCII except space, double quote, comma, semicolon, backslash."""


class HeaderMatch(_Model):
    """A request header whose value sends the request to the canary."""

    name: str = Field(max_length=256, pattern=HEADER_NAME_PATTERN, description="Header name (case-insensitive).")
    value: str = Field(min_length=1, max_length=1024, description="The value to match.")
    match: Literal["Exact", "RegularExpression"] = Field(
        default="Exact",
        description="Exact, or RegularExpression (RE2 syntax). Envoy-based proxies (Istio, Envoy Gateway) match "
        "a regular expression against the whole value, Traefik and NGINX against any part of it: anchor it "
        "(^...$) to mean the same everywhere.",
    )

    @model_validator(mode="after")
    def _regex_compiles(self) -> HeaderMatch:
        if self.match == "RegularExpression":
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"value is not a valid regular expression: {exc}") from None
        return self


class CookieMatch(_Model):
    """A cookie (``name=value`` in the Cookie header) that sends the request to the canary."""

    name: str = Field(max_length=256, pattern=HEADER_NAME_PATTERN, description="Cookie name.")
    value: str = Field(
        default="always",
        min_length=1,
        max_length=1024,
        pattern=COOKIE_VALUE_PATTERN,
        description="Cookie value, matched exactly. With nginx it must be 'always' (ingress-nginx's "
        "canary-by-cookie routes on that value only).",
    )


class CanaryRoute(_Model):
    """Requests that reach the canary whatever its weight: one header or one cookie match."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("has(self.header) != has(self.cookie)", "a canary route is exactly one of header or cookie")
            ]
        }
    )

    header: HeaderMatch | None = Field(default=None, description="Match a request header.")
    cookie: CookieMatch | None = Field(default=None, description="Match a cookie.")

    @model_validator(mode="after")
    def _one(self) -> CanaryRoute:
        if (self.header is None) == (self.cookie is None):
            raise ValueError("a canary route is exactly one of header or cookie")
        return self


class TrafficSpec(_Model):
    """Exactly one traffic provider."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "[has(self.gatewayAPI), has(self.istio), has(self.nginx), has(self.none)].filter(x, x).size() == 1",
                    "exactly one traffic provider must be set: gatewayAPI, istio, nginx or none",
                ),
                _cel(
                    "!has(self.none) || !has(self.canaryRoutes) || size(self.canaryRoutes) == 0",
                    "canaryRoutes need a traffic layer (gatewayAPI, istio or nginx); traffic.none cannot route by "
                    "header or cookie",
                    ".canaryRoutes",
                ),
                _cel(
                    "!has(self.nginx) || !has(self.canaryRoutes) || ("
                    "self.canaryRoutes.filter(r, has(r.header)).size() <= 1"
                    " && self.canaryRoutes.filter(r, has(r.cookie)).size() <= 1"
                    " && self.canaryRoutes.all(r, !has(r.cookie) || r.cookie.value == 'always'))",
                    "with nginx, canaryRoutes hold at most one header and one cookie route, and the cookie's value "
                    "must be 'always' (ingress-nginx's canary-by-header and canary-by-cookie)",
                    ".canaryRoutes",
                ),
            ]
        }
    )

    gatewayAPI: GatewayAPITraffic | None = Field(default=None, description="Gateway API HTTPRoute.")
    istio: IstioTraffic | None = Field(default=None, description="Istio VirtualService.")
    nginx: NginxTraffic | None = Field(default=None, description="NGINX Ingress canary.")
    none: NoneTraffic | None = Field(default=None, description="No mesh; replica-ratio weights.")
    canaryRoutes: list[CanaryRoute] = Field(
        default_factory=list,
        max_length=8,
        description="Requests matching any of these (a header or a cookie) go to the canary at every weight, 0 "
        "included, while it has ready pods: testers reach the candidate before and during the rollout. They count "
        "in the canary's gates like any other request. Not with traffic.none.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> TrafficSpec:
        if self.provider_count() != 1:
            raise ValueError("exactly one traffic provider must be set: gatewayAPI, istio, nginx or none")
        if self.none is not None and self.canaryRoutes:
            raise ValueError(
                "canaryRoutes need a traffic layer (gatewayAPI, istio or nginx); traffic.none cannot route by "
                "header or cookie"
            )
        if self.nginx is not None:
            headers = [r for r in self.canaryRoutes if r.header]
            cookies = [r for r in self.canaryRoutes if r.cookie]
            if len(headers) > 1 or len(cookies) > 1 or any(r.cookie.value != "always" for r in cookies if r.cookie):
                raise ValueError(
                    "with nginx, canaryRoutes hold at most one header and one cookie route, and the cookie's value "
                    "must be 'always' (ingress-nginx's canary-by-header and canary-by-cookie)"
                )
        return self

    def provider_count(self) -> int:
        return sum(x is not None for x in (self.gatewayAPI, self.istio, self.nginx, self.none))

    @property
    def provider(self) -> str:
        for name in ("gatewayAPI", "istio", "nginx", "none"):
            if getattr(self, name) is not None:
                return name
        raise ValueError("no traffic provider set")


class CanaryScaling(StrEnum):
    """How many pods the canary runs at each step (with a traffic layer; without one its share of
    pods is its weight whatever this says). The values of ``CanarySpec.scaling``."""

    FULL = "Full"
    PROPORTIONAL = "Proportional"


class ShadowSpec(_Model):
    """A shadow phase before the canary's first step: live requests are mirrored to the candidate, its
    answers go nowhere, and its pods score every request with the stable model too (docs/strategies.md)."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [_cel_not_shorter("maxDuration", "duration")]}
    )

    percent: int = Field(
        default=100,
        ge=1,
        le=100,
        description="Share of live inference requests mirrored to the candidate, in percent. NGINX mirrors "
        "every request (100 only).",
    )
    duration: str = _duration_field(
        "10m", "Least time in shadow; the gates must also have passed on the mirrored requests."
    )
    maxDuration: str = _duration_field(
        "2h",
        "Longest the shadow phase waits for its gates' evidence; still undecided then, the candidate is rolled "
        "back (InsufficientTraffic or Undecided) without having answered a client.",
        "1s",
    )

    @field_validator("duration", "maxDuration")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v

    @model_validator(mode="after")
    def _max_after_min(self) -> ShadowSpec:
        _check_not_shorter(self, "maxDuration", "duration")
        return self


class CanarySpec(_Model):
    """Step-wise traffic shifting."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [_cel_not_shorter("maxStepDuration", "stepDuration")]}
    )

    steps: list[int] = Field(
        default_factory=lambda: [5, 10, 25, 50, 100],
        min_length=1,
        max_length=20,
        description="Canary weights in percent, strictly increasing, each in 0..100, ending at 100. A first step "
        "of 0 is a dark step: only requests matching traffic.canaryRoutes reach the canary, and its gates judge "
        "those (it needs canaryRoutes).",
        json_schema_extra={
            "items": {"type": "integer", "minimum": 0, "maximum": 100},
            "x-kubernetes-validations": [
                _cel(
                    "self.all(i, i >= 0 && i <= 100)",
                    "every canary step must be a weight between 0 and 100",
                ),
                _cel(
                    "self.isSorted() && self.all(x, self.indexOf(x) == self.lastIndexOf(x))",
                    "canary steps must be strictly increasing",
                ),
                _cel("self[self.size() - 1] == 100", "the last canary step must be 100"),
            ],
        },
    )
    stepDuration: str = _duration_field("60s", "Minimum time at each step before the next one.")
    shadow: ShadowSpec | None = Field(
        default=None,
        description="Begin with a shadow phase: mirror live requests to the candidate, whose answers reach no "
        "client, and compare its predictions with the stable model's on the same requests (gates agreement and "
        "score-difference). Needs a traffic layer and no traffic.canaryRoutes.",
    )
    allowSignatureChange: bool = Field(
        default=False,
        description="The canary's input/output signature or feature schema is meant to differ from the "
        "stable revision's. Without it, a canary whose inputs, outputs or named features differ (as its "
        "model server reports them) is rolled back with reason ContractMismatch before it takes any "
        "traffic; with it, the difference is only reported in an Event.",
    )
    scaling: Literal["Full", "Proportional"] = Field(
        default="Full",
        description="Full: the canary runs at full size (serving.replicas, or the stable's count under "
        "serving.autoscaling) from its first step. Proportional: at its "
        "step's share of them (at least 1, rounded up), and a step's weight is routed only once that many "
        "canary pods are available, so a canary never takes a share it lacks the pods for.",
    )
    maxStepDuration: str = _duration_field(
        "2h",
        "Longest a step may wait for its gates' evidence. A step still undecided then ends the rollout: "
        "the canary is rolled back with reason InsufficientTraffic (a gate below minSamples) or Undecided "
        "(enough samples, thresholds neither met nor breached). Never shorter than stepDuration.",
        "1s",
    )
    scaleDownDelay: str = _duration_field(
        "30s",
        "With a traffic layer, a revision whose weight drops to 0 (a rolled-back or superseded canary, the "
        "previous stable after a promotion without a bake, a stable reverted by the bake or the watch) keeps "
        "its pods this long before it is scaled to 0, so proxies and gateways that still route by the old "
        "weights find it serving. 0s scales it down in the same write. Without a traffic layer the Service's "
        "endpoints are the weights, and the pods' drainSeconds covers the same gap.",
    )

    @field_validator("steps")
    @classmethod
    def _steps_valid(cls, steps: list[int]) -> list[int]:
        if any(s < 0 or s > 100 for s in steps):
            raise ValueError("every canary step must be a weight between 0 and 100")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("canary steps must be strictly increasing")
        if steps[-1] != 100:
            raise ValueError("the last canary step must be 100")
        return steps

    @field_validator("stepDuration", "maxStepDuration", "scaleDownDelay")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v

    @model_validator(mode="after")
    def _max_after_min(self) -> CanarySpec:
        _check_not_shorter(self, "maxStepDuration", "stepDuration")
        return self


class BlueGreenSpec(_Model):
    """The new revision at full size behind the preview Service ``<name>-canary``, judged by the gates on
    preview traffic (callers of that Service, and traffic.canaryRoutes), then every request switched at
    once; the previous revision stays at full size for an instant revert."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [_cel_not_shorter("maxPreviewDuration", "previewDuration")]}
    )

    previewDuration: str = _duration_field(
        "5m", "Least time in preview before the switch; the gates must also have passed on preview traffic."
    )
    maxPreviewDuration: str = _duration_field(
        "2h",
        "Longest the preview waits for its gates' evidence; still undecided then, the new revision is rolled "
        "back (InsufficientTraffic or Undecided).",
        "1s",
    )
    scaleDownDelay: str = _duration_field(
        "10m",
        "After the switch, the previous revision stays at full size this long (or bake.duration if longer) "
        "while the gates keep watching the new one; a failure switches back at once.",
    )
    autoPromote: bool = Field(
        default=True,
        description="Switch as soon as the preview passed. False: wait for `kubectl modelrollout promote`.",
    )
    allowSignatureChange: bool = Field(
        default=False, description="As strategy.canary.allowSignatureChange, for the new revision."
    )

    abortScaleDownDelay: str = _duration_field(
        "30s",
        "With a traffic layer, a new revision that is rolled back or superseded in preview, or switched back "
        "from, keeps its pods this long before it is scaled to 0, so proxies that still route by the old "
        "routes find it serving. 0s scales it down in the same write.",
    )

    @field_validator("previewDuration", "maxPreviewDuration", "scaleDownDelay", "abortScaleDownDelay")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v

    @model_validator(mode="after")
    def _max_after_min(self) -> BlueGreenSpec:
        _check_not_shorter(self, "maxPreviewDuration", "previewDuration")
        return self


class ExperimentMetric(_Model):
    """The A/B test's primary metric, a proportion per revision: accuracy from feedback labels, or
    any pair of PromQL counts (e.g. conversions out of sessions)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "has(self.successes) == has(self.trials)",
                    "set successes and trials together (or neither, for accuracy)",
                    ".successes",
                ),
                _cel(
                    "!(self.name == 'accuracy' && has(self.successes))",
                    "name accuracy reads the feedback labels; give another name to a successes/trials pair",
                    ".name",
                ),
                _cel(
                    "self.name == 'accuracy' || has(self.successes)",
                    "a metric other than accuracy needs successes and trials (PromQL counts)",
                    ".successes",
                ),
            ]
        }
    )

    name: str = Field(
        default="accuracy",
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="accuracy (correct feedback labels out of all labels, per revision), or the name of a "
        "successes/trials pair.",
    )
    successes: str | None = Field(
        default=None,
        max_length=4096,
        description="PromQL counting one revision's successes over the experiment: {{namespace}}, {{name}}, "
        "{{revision}} and {{range}} (the time since the experiment began, e.g. 3600s) are substituted, e.g. "
        'sum(increase(checkout_conversions_total{namespace="{{namespace}}", revision="{{revision}}"}[{{range}}])).',
    )
    trials: str | None = Field(
        default=None, max_length=4096, description="PromQL counting the same revision's trials (same placeholders)."
    )

    @model_validator(mode="after")
    def _pair(self) -> ExperimentMetric:
        if (self.successes is None) != (self.trials is None):
            raise ValueError("set successes and trials together (or neither, for accuracy)")
        if self.name == "accuracy" and self.successes is not None:
            raise ValueError("name accuracy reads the feedback labels; give another name to a successes/trials pair")
        if self.name != "accuracy" and self.successes is None:
            raise ValueError("a metric other than accuracy needs successes and trials (PromQL counts)")
        return self


class ABTestSpec(_Model):
    """A fixed split between the stable revision (A) and the candidate (B) until a sequential test on
    the primary metric names a winner, shows a tie, or runs out of time (docs/strategies.md)."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [_cel_not_shorter("maxDuration", "minDuration")]}
    )

    split: int = Field(default=50, ge=1, le=99, description="Percent of requests to the candidate (B).")
    metric: ExperimentMetric = Field(
        default_factory=ExperimentMetric, description="The primary metric, higher is better."
    )
    minDuration: str = _duration_field(
        "1h", "Least time before any decision (cover the cycles of your traffic: hours of the day, weekdays)."
    )
    maxDuration: str = _duration_field(
        "168h",
        "Still undecided then (default a week): the experiment ends as a timeout and the stable revision is kept.",
        "1s",
    )
    minSamples: int = Field(
        default=200, ge=1, le=100_000_000, description="Trials each revision needs before any decision."
    )
    tieMargin: float = Field(
        default=0.01,
        gt=0,
        le=0.5,
        description="A difference smaller than this (in the metric's units) is a tie: shown when the whole "
        "confidence interval of B - A lies within +-tieMargin. The stable revision is kept.",
    )
    significance: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="Probability of declaring a winner (or a tie) that is not, over the whole experiment, "
        "however often it is checked (always-valid sequential tests; docs/gates.md).",
    )

    @field_validator("minDuration", "maxDuration")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v

    @model_validator(mode="after")
    def _max_after_min(self) -> ABTestSpec:
        _check_not_shorter(self, "maxDuration", "minDuration")
        return self


class StrategySpec(_Model):
    """How a new revision takes traffic: canary (the default), blueGreen or abTest."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "[has(self.canary), has(self.blueGreen), has(self.abTest)].filter(x, x).size() <= 1",
                    "set one strategy: canary, blueGreen or abTest",
                )
            ]
        }
    )

    canary: CanarySpec = Field(default_factory=CanarySpec, description="Canary steps (the default strategy).")
    blueGreen: BlueGreenSpec | None = Field(default=None, description="Preview, then one switch.")
    abTest: ABTestSpec | None = Field(
        default=None, description="A fixed split until a sequential test names a winner, a tie or a timeout."
    )

    @model_validator(mode="after")
    def _one(self) -> StrategySpec:
        chosen = [self.blueGreen is not None, self.abTest is not None, "canary" in self.model_fields_set]
        if sum(chosen) > 1:
            raise ValueError("set one strategy: canary, blueGreen or abTest")
        return self


class SecretKeyRef(_Model):
    """One key of a Secret in the ModelDeployment's namespace (read by the operator at each check)."""

    name: str = Field(max_length=253, pattern=DNS_SUBDOMAIN, description="The Secret's name.")
    key: str = Field(max_length=253, pattern=r"^[-._a-zA-Z0-9]+$", description="The key in the Secret's data.")


class PrometheusAuthorization(_Model):
    """An ``Authorization: <type> <credentials>`` header, e.g. a bearer token for a managed Prometheus."""

    type: str = Field(
        default="Bearer",
        max_length=64,
        pattern=r"^[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*$",
        description="The scheme: Bearer (default) or another token scheme. Use basicAuth for Basic.",
        json_schema_extra={
            "x-kubernetes-validations": [_cel("self.lowerAscii() != 'basic'", "use basicAuth for Basic credentials")]
        },
    )
    credentials: SecretKeyRef = Field(description="The token, from a Secret (surrounding whitespace is trimmed).")

    @field_validator("type")
    @classmethod
    def _not_basic(cls, value: str) -> str:
        if value.lower() == "basic":
            raise ValueError("use basicAuth for Basic credentials")
        return value


class PrometheusBasicAuth(_Model):
    """HTTP basic authentication, both halves from Secrets."""

    username: SecretKeyRef = Field(description="The user name, from a Secret.")
    password: SecretKeyRef = Field(description="The password, from a Secret.")


class PrometheusTLS(_Model):
    """How an https:// Prometheus is trusted and how the operator proves who it is."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("has(self.cert) == has(self.key)", "cert and key go together (a client certificate)", ".cert"),
                _cel(
                    "!(has(self.ca) && self.insecureSkipVerify)",
                    "ca is ignored when insecureSkipVerify is true: set one",
                    ".insecureSkipVerify",
                ),
            ]
        }
    )

    ca: SecretKeyRef | None = Field(
        default=None, description="PEM certificates the server's certificate must chain to (default: the system's)."
    )
    cert: SecretKeyRef | None = Field(default=None, description="PEM client certificate (with key).")
    key: SecretKeyRef | None = Field(default=None, description="PEM private key of the client certificate.")
    insecureSkipVerify: bool = Field(
        default=False, description="Do not verify the server's certificate (tests only: anyone can impersonate it)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> PrometheusTLS:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key go together (a client certificate)")
        if self.ca is not None and self.insecureSkipVerify:
            raise ValueError("ca is ignored when insecureSkipVerify is true: set one")
        return self


RESERVED_PROMETHEUS_HEADERS = ("authorization", "host", "content-length", "content-type", "connection")


class PrometheusHeader(_Model):
    """An extra request header, e.g. ``X-Scope-OrgID`` for a multi-tenant Mimir, Cortex or Thanos."""

    name: str = Field(
        max_length=256,
        pattern=HEADER_NAME_PATTERN,
        description="Header name; not Authorization (use authorization or basicAuth) nor a connection header.",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!(self.lowerAscii() in " + _cel_list(RESERVED_PROMETHEUS_HEADERS) + ")",
                    "this header is set by the operator; credentials go in authorization or basicAuth",
                )
            ]
        },
    )
    value: str = Field(max_length=4096, pattern=r"^[\x20-\x7E]*$", description="Header value (visible ASCII).")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.lower() in RESERVED_PROMETHEUS_HEADERS:
            raise ValueError("this header is set by the operator; credentials go in authorization or basicAuth")
        return value


class PrometheusSpec(_Model):
    """Where gates are queried, and with which credentials."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!(has(self.authorization) && has(self.basicAuth))",
                    "set one of authorization and basicAuth",
                    ".basicAuth",
                ),
                _cel("!has(self.tls) || self.address.startsWith('https://')", "tls needs an https:// address", ".tls"),
                _cel(
                    "!has(self.headers) || self.headers.all(h, "
                    "self.headers.filter(g, g.name.lowerAscii() == h.name.lowerAscii()).size() == 1)",
                    "header names must be unique (case-insensitive)",
                    ".headers",
                ),
            ]
        }
    )

    address: str = Field(
        description="Prometheus base URL, e.g. http://prometheus.monitoring:9090 (a path prefix is kept).",
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
    )
    timeoutSeconds: int = Field(default=10, ge=1, le=120, description="Per-query timeout.")
    authorization: PrometheusAuthorization | None = Field(
        default=None, description="Send an Authorization header with a token from a Secret."
    )
    basicAuth: PrometheusBasicAuth | None = Field(default=None, description="Send HTTP basic authentication.")
    tls: PrometheusTLS | None = Field(default=None, description="CA and client certificate for an https:// address.")
    headers: list[PrometheusHeader] = Field(
        default_factory=list, max_length=16, description="Extra headers sent with every query (not secrets)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> PrometheusSpec:
        if self.authorization is not None and self.basicAuth is not None:
            raise ValueError("set one of authorization and basicAuth")
        if self.tls is not None and not self.address.startswith("https://"):
            raise ValueError("tls needs an https:// address")
        names = [h.name.lower() for h in self.headers]
        if len(set(names)) != len(names):
            raise ValueError("headers: header names must be unique (case-insensitive)")
        return self


class MetricSpec(_Model):
    """One gate. Built-in templates are scoped to one revision's pods; custom gates bring their PromQL.

    Values are in the metric's natural unit: error-rate, client-error-rate, slow-requests, accuracy
    and missing-data are proportions in 0..1 (decided by sequential tests on counts, docs/gates.md);
    latency-p99 is in milliseconds (a plain comparison, for display).
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "has(self.template) || self.name in " + _cel_list(BUILTIN_TEMPLATES),
                    "set template (" + ", ".join(BUILTIN_TEMPLATES) + " or custom) unless name is a built-in one",
                    ".template",
                ),
                _cel(
                    "(has(self.template) && self.template == 'custom') == has(self.query)",
                    "query is required for template custom and not allowed otherwise",
                    ".query",
                ),
                _cel(
                    "((has(self.template) ? self.template : self.name) == 'slow-requests') == has(self.slowerThanMs)",
                    "slowerThanMs (the latency SLO in milliseconds) is required for slow-requests and not allowed "
                    "otherwise",
                    ".slowerThanMs",
                ),
                _cel(
                    "(has(self.template) ? self.template : self.name) == 'drift'"
                    " || has(self.min) || has(self.max) || has(self.maxDropVsStable) || has(self.maxRiseVsStable)",
                    "set at least one threshold: min, max, maxDropVsStable or maxRiseVsStable",
                ),
                _cel(
                    "((has(self.template) ? self.template : self.name) == 'drift')"
                    " == (has(self.maxPSI) || has(self.maxPSIVsStable))",
                    "a drift gate needs maxPSI and/or maxPSIVsStable; other gates take neither",
                    ".maxPSI",
                ),
                _cel(
                    "(has(self.template) ? self.template : self.name) != 'drift'"
                    " || !(has(self.min) || has(self.max) || has(self.maxDropVsStable) || has(self.maxRiseVsStable))",
                    "a drift gate's thresholds are maxPSI and maxPSIVsStable, not min, max, maxDropVsStable or "
                    "maxRiseVsStable",
                    ".max",
                ),
                _cel(
                    "((has(self.template) ? self.template : self.name) == 'score-difference')"
                    " == has(self.scoreDifferenceAbove)",
                    "scoreDifferenceAbove is required for score-difference and not allowed otherwise",
                    ".scoreDifferenceAbove",
                ),
                _cel(
                    "!((has(self.template) ? self.template : self.name) in " + _cel_list(SHADOW_TEMPLATES) + ")"
                    " || !(has(self.maxDropVsStable) || has(self.maxRiseVsStable))",
                    "agreement and score-difference already compare with the stable model (on the same requests): "
                    "use min or max, not maxDropVsStable or maxRiseVsStable",
                    ".maxDropVsStable",
                ),
                _cel(
                    "!has(self.features) || (has(self.template) ? self.template : self.name) == 'drift'",
                    "features is for drift gates only",
                    ".features",
                ),
                _cel("!has(self.min) || !has(self.max) || self.min <= self.max", "min must be <= max", ".min"),
                _cel(
                    "!(has(self.maxDropVsStable) && has(self.maxRiseVsStable))",
                    "set maxDropVsStable (higher is better) or maxRiseVsStable (lower is better), not both",
                    ".maxDropVsStable",
                ),
                _cel(
                    "!((has(self.template) ? self.template : self.name) in " + _cel_list(RATIO_TEMPLATES) + ")"
                    " || ((!has(self.min) || (self.min >= 0.0 && self.min <= 1.0))"
                    " && (!has(self.max) || (self.max >= 0.0 && self.max <= 1.0))"
                    " && (!has(self.maxDropVsStable) || self.maxDropVsStable <= 1.0)"
                    " && (!has(self.maxRiseVsStable) || self.maxRiseVsStable <= 1.0))",
                    ", ".join(RATIO_TEMPLATES) + " thresholds are proportions between 0 and 1",
                    ".max",
                ),
            ]
        }
    )

    name: str = Field(
        description="Gate name, unique in the list. A built-in template's name selects that template.",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
    )
    template: (
        Literal[
            "error-rate",
            "client-error-rate",
            "slow-requests",
            "accuracy",
            "missing-data",
            "latency-p99",
            "drift",
            "agreement",
            "score-difference",
            "custom",
        ]
        | None
    ) = Field(default=None, description="Query template. Default: the name, when it is a built-in one.")
    query: str | None = Field(
        default=None,
        max_length=4096,
        description="PromQL for custom gates; {{namespace}}, {{name}}, {{revision}}, {{stableRevision}} "
        "and {{interval}} are substituted. Must return one number.",
    )
    slowerThanMs: float | None = Field(
        default=None,
        gt=0,
        le=3_600_000,
        description="slow-requests only: the latency SLO in milliseconds. The gate's value is the share of "
        "requests slower than this; the operator adds it as a histogram bucket edge on the model servers.",
    )
    scoreDifferenceAbove: float | None = Field(
        default=None,
        description="score-difference only: the gate's value is the share of compared rows whose score differs "
        "from the stable model's by more than this; one of the model server's bucket edges "
        + ", ".join(f"{e:g}" for e in SCORE_DIFFERENCE_EDGES)
        + ".",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self in [" + ", ".join(repr(e) for e in SCORE_DIFFERENCE_EDGES) + "]",
                    "scoreDifferenceAbove must be one of the model server's bucket edges "
                    + ", ".join(f"{e:g}" for e in SCORE_DIFFERENCE_EDGES),
                )
            ]
        },
    )
    min: float | None = Field(
        default=None, description="Fail when the evidence shows the value below this; pass when it shows it above."
    )
    max: float | None = Field(
        default=None, description="Fail when the evidence shows the value above this; pass when it shows it below."
    )
    maxDropVsStable: float | None = Field(
        default=None,
        ge=0,
        description="Fail when the evidence shows the canary lower than stable by more than this (same period).",
    )
    maxRiseVsStable: float | None = Field(
        default=None,
        ge=0,
        description="Fail when the evidence shows the canary higher than stable by more than this (same period).",
    )
    minSamples: int = Field(
        default=100,
        ge=0,
        le=100_000_000,
        description="Requests (feedback labels for accuracy) the revision, and the stable for a comparison, must "
        "have accumulated before the gate can pass. A failure needs only the evidence. Drift gates judge a "
        "feature only once it has at least this many values and at least 20 * (bins - 1) / bound (docs/drift.md).",
    )
    maxPSI: float | None = Field(
        default=None,
        gt=0,
        le=10,
        description="drift only: fail when a feature's (or the score's) population stability index against the "
        "revision's own training reference (metadata.json reference_bins) exceeds this and a chi-square test "
        "shows the move is not noise. 0.1-0.25 is a moderate shift, above 0.25 a major one.",
    )
    maxPSIVsStable: float | None = Field(
        default=None,
        gt=0,
        le=10,
        description="drift only: the same against the stable revision's counts over the same period (a canary "
        "whose inputs or scores differ from stable's on the same traffic). Not used by the continuous watch.",
    )
    features: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="drift only: the features to judge, by name; _prediction_score is the prediction score. "
        "Default: every feature with reference bins, and the score.",
    )

    @property
    def effective_template(self) -> str:
        return self.template or self.name

    @property
    def is_drift(self) -> bool:
        """Drift gates compare binned distributions (docs/drift.md); in the continuous watch they set
        the Drifted condition instead of failing the watch."""
        return self.effective_template == "drift"

    @property
    def is_shadow(self) -> bool:
        """Judged on the candidate's comparison with the stable model, which exists only under a shadow
        strategy and only for the revision that was compared (docs/strategies.md#shadow)."""
        return self.effective_template in SHADOW_TEMPLATES

    @property
    def needs_feedback(self) -> bool:
        """Judged on ground-truth labels, which name the prediction a client saw."""
        return self.effective_template in FEEDBACK_TEMPLATES

    @property
    def is_ratio(self) -> bool:
        """Proportion gates are decided by sequential tests on counts; the others by plain comparison."""
        return self.effective_template in RATIO_TEMPLATES

    @model_validator(mode="after")
    def _check(self) -> MetricSpec:
        if self.template is None and self.name not in BUILTIN_TEMPLATES:
            raise ValueError(f"metric {self.name!r}: set template unless name is a built-in one")
        if (self.template == "custom") != (self.query is not None):
            raise ValueError(f"metric {self.name!r}: query is required for template custom and not allowed otherwise")
        if (self.effective_template == "slow-requests") != (self.slowerThanMs is not None):
            raise ValueError(
                f"metric {self.name!r}: slowerThanMs is required for slow-requests and not allowed otherwise"
            )
        bounds = (self.min, self.max, self.maxDropVsStable, self.maxRiseVsStable)
        if self.is_drift != (self.maxPSI is not None or self.maxPSIVsStable is not None):
            raise ValueError(
                f"metric {self.name!r}: a drift gate needs maxPSI and/or maxPSIVsStable; other gates take neither"
            )
        if self.is_drift and any(v is not None for v in bounds):
            raise ValueError(
                f"metric {self.name!r}: a drift gate's thresholds are maxPSI and maxPSIVsStable, not min, max, "
                "maxDropVsStable or maxRiseVsStable"
            )
        if (self.effective_template == "score-difference") != (self.scoreDifferenceAbove is not None):
            raise ValueError(
                f"metric {self.name!r}: scoreDifferenceAbove is required for score-difference and not allowed otherwise"
            )
        if self.scoreDifferenceAbove is not None and self.scoreDifferenceAbove not in SCORE_DIFFERENCE_EDGES:
            raise ValueError(
                f"metric {self.name!r}: scoreDifferenceAbove must be one of the model server's bucket edges "
                + ", ".join(f"{e:g}" for e in SCORE_DIFFERENCE_EDGES)
            )
        if self.is_shadow and (self.maxDropVsStable is not None or self.maxRiseVsStable is not None):
            raise ValueError(
                f"metric {self.name!r}: agreement and score-difference already compare with the stable model (on the "
                "same requests): use min or max, not maxDropVsStable or maxRiseVsStable"
            )
        if self.features and not self.is_drift:
            raise ValueError(f"metric {self.name!r}: features is for drift gates only")
        if not self.is_drift and all(v is None for v in bounds):
            raise ValueError(
                f"metric {self.name!r}: set at least one threshold: min, max, maxDropVsStable or maxRiseVsStable"
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"metric {self.name!r}: min must be <= max")
        if self.is_ratio and not (
            all(0.0 <= v <= 1.0 for v in (self.min, self.max) if v is not None)
            and all(v <= 1.0 for v in (self.maxDropVsStable, self.maxRiseVsStable) if v is not None)
        ):
            raise ValueError(
                f"metric {self.name!r}: {', '.join(RATIO_TEMPLATES)} thresholds are proportions between 0 and 1"
            )
        return self


class ContinuousSpec(_Model):
    """Keep checking the stable revision after its bake, for as long as it serves."""

    window: str = _duration_field(
        "1h",
        "Evidence period of the watch: counts start afresh every window, so significance bounds the false "
        "alarms per window.",
        "1m",
    )
    revert: bool = Field(
        default=False,
        description="On a failed watch, switch back to the previous revision (scaled up and ready first) and mark "
        "this one failed. Off: only the Degraded condition, an Event and the metrics say so.",
    )

    @field_validator("window")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v


class AnalysisSpec(_Model):
    """Prometheus gates checked at every step and during bake."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.metrics) || self.metrics.all(m, self.metrics.filter(n, n.name == m.name).size() == 1)",
                    "metric names must be unique",
                    ".metrics",
                ),
            ]
        }
    )

    interval: str = _duration_field(
        "30s",
        "How often gates are checked. Ratio gates decide on counts accumulated since the canary first took "
        "traffic; the interval is also the window of the freshness value shown beside them and of plain gates.",
        "1s",
    )
    prometheus: PrometheusSpec | None = Field(
        default=None,
        description="Prometheus to query. Default: the operator's --prometheus-address "
        "(MODELROLLOUT_PROMETHEUS_ADDRESS, the chart's operator.prometheusAddress).",
    )
    failureLimit: int = Field(default=1, ge=1, le=100, description="Failed checks that trigger rollback.")
    inconclusiveLimit: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Blind checks in a row (Prometheus unreachable or erroring, a plain gate with no data) that "
        "count as a failure. Waiting for samples or evidence is not blind and never counts.",
    )
    significance: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        description="Upper bound on the probability that the ratio gates roll back a revision whose true values "
        "all meet their thresholds, over the whole rollout and bake however many checks run; it is split "
        "evenly over the sequential tests (one per threshold). The same level bounds a wrong pass.",
    )
    metrics: list[MetricSpec] = Field(default_factory=list, max_length=32, description="The gates.")
    continuous: ContinuousSpec | None = Field(
        default=None,
        description="Watch the stable revision after its bake with the gates' absolute thresholds (min/max); "
        "comparisons with stable need a concurrent baseline and do not apply. Unset: no watch.",
    )

    @field_validator("interval")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v

    @field_validator("metrics")
    @classmethod
    def _unique(cls, metrics: list[MetricSpec]) -> list[MetricSpec]:
        names = [m.name for m in metrics]
        if len(set(names)) != len(names):
            raise ValueError("metric names must be unique")
        return metrics


class RetrainingJobSpec(_Model):
    """The container of the retraining Job. The operator adds MODELROLLOUT_DRIFT_REPORT (JSON, docs/drift.md),
    MODELROLLOUT_MODEL_URI, MODELROLLOUT_REVISION, MODELROLLOUT_NAME and MODELROLLOUT_NAMESPACE to its env."""

    image: str = Field(min_length=1, max_length=1024, description="The retraining image.")
    command: list[str] = Field(default_factory=list, max_length=64, description="Entrypoint (default: the image's).")
    args: list[str] = Field(default_factory=list, max_length=256, description="Arguments.")
    env: list[EnvVar] = Field(default_factory=list, max_length=64, description="Extra environment variables.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Container resources.")
    serviceAccountName: str | None = Field(
        default=None, max_length=253, pattern=DNS_SUBDOMAIN, description="ServiceAccount of the Job's pod."
    )
    podLabels: dict[str, str] = Field(
        default_factory=dict, max_length=32, description="Extra labels on the Job's pod (e.g. sidecar injection)."
    )
    podAnnotations: dict[str, str] = Field(
        default_factory=dict, max_length=32, description="Extra annotations on the Job's pod."
    )
    backoffLimit: int = Field(default=0, ge=0, le=10, description="Pod retries inside one run (the Job's own).")
    activeDeadlineSeconds: int = Field(
        default=3600, ge=10, le=7 * 86400, description="A run still going after this long fails."
    )


class RetrainingSpec(_Model):
    """Start a Kubernetes Job when the Drifted condition is set: at most one run at a time, a cooldown
    after a success, exponential backoff with jitter after a failure. The Job publishes a new model and
    updates this manifest (a GitOps commit or kubectl apply); the operator never edits the spec."""

    model_config = ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [_cel_not_shorter("maxBackoff", "backoff")]}
    )

    job: RetrainingJobSpec = Field(description="The Job's container.")
    cooldown: str = _duration_field("24h", "After a successful run, no new run before this long.", "0s")
    backoff: str = _duration_field("10m", "After a failed run, wait this long, doubled per failure in a row.", "1s")
    maxBackoff: str = _duration_field("6h", "The backoff's ceiling.", "1s")

    @model_validator(mode="after")
    def _backoff_order(self) -> RetrainingSpec:
        _check_not_shorter(self, "maxBackoff", "backoff")
        return self


class BakeSpec(_Model):
    """After promotion, gates keep running on the new stable while the previous one stays warm."""

    duration: str = _duration_field("5m", "How long to watch the new stable revision after promotion.")

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: str) -> str:
        parse_duration(v)
        return v


NOTIFICATION_EVENTS = (
    "PhaseInitializing", "PhaseProgressing", "PhaseBaking", "PhaseSucceeded", "PhaseRolledBack", "PhaseFailed",
    "PhasePaused", "RevisionCreated", "RetryRequested", "ProgressDeadlineExceeded", "StepStarted",
    "PreviewStarted", "ShadowStarted", "ShadowComparisonUnavailable", "ExperimentStarted", "ExperimentEnded",
    "HookFailed", "PromotionConfirmed",
    "CanaryUnavailable", "CanaryAvailable", "SignatureChangeAllowed", "SignatureNotCompared",
    "AnalysisBlind", "AnalysisFailed", "PromotedManually", "Promoted", "RolledBack", "Superseded",
    "WatchFailed*", "WatchRecovered", "Drifted", "DriftCleared", "RetrainingStarted", "RetrainingSucceeded",
    "RetrainingFailed",
)  # fmt: skip
"""The Event reasons the engine emits (``run.emit`` in engine.py), as ``spec.notifications[].events``
names them; ``WatchFailed*`` stands for ``WatchFailed<Gate>`` (``WatchFailedErrorRate``, ...).
tests/unit/test_notify.py checks the list against engine.py."""
EVENT_PATTERN = r"^[A-Z][A-Za-z0-9]*\*?$"


class NotificationURLSource(_Model):
    """Where a webhook URL is read from."""

    secretKeyRef: SecretKeyRef = Field(
        description="A key of a Secret in this namespace holding the URL (surrounding whitespace is trimmed); "
        "read at delivery, which needs the chart's rbac.readSecrets."
    )


class NotificationSpec(_Model):
    """A webhook that receives the ModelDeployment's Events as JSON: a Slack-compatible text and a
    modelrollout object (docs/api.md#notifications), POSTed with retries, never holding up a rollout."""

    # ``events`` takes any CamelCase reason, not only NOTIFICATION_EVENTS: WatchFailed<Gate> carries the
    # gate's name, and a reason a newer operator adds must not make an older manifest invalid (nor a
    # manifest written for a newer operator invalid on an older one). A reason never emitted never matches.

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("has(self.url) != has(self.urlFrom)", "set exactly one of url and urlFrom", ".url"),
            ]
        }
    )

    name: str = Field(
        description="The target's name, unique in the list; the operator's logs name the target by it (never "
        "by its URL).",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
    )
    url: str | None = Field(
        default=None,
        description="The webhook URL, https:// (http:// for a receiver inside the cluster). A URL with a token in "
        "it (Slack, Teams) is a secret: use urlFrom.",
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
    )
    urlFrom: NotificationURLSource | None = Field(default=None, description="Read the URL from a Secret instead.")
    events: list[Annotated[str, Field(pattern=EVENT_PATTERN, max_length=64)]] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Event reasons to send, e.g. RolledBack, Promoted, Drifted, RetrainingFailed, PhaseSucceeded; "
        "a trailing * matches a prefix (WatchFailed* for every gate's WatchFailed<Gate>). Default: every Event "
        "the operator emits. The known reasons: " + ", ".join(NOTIFICATION_EVENTS) + ".",
    )

    @model_validator(mode="after")
    def _one_url(self) -> NotificationSpec:
        if (self.url is None) == (self.urlFrom is None):
            raise ValueError("set exactly one of url and urlFrom")
        return self

    def wants(self, reason: str) -> bool:
        """Whether an Event of this reason goes to this target."""
        if self.events is None:
            return True
        return any(reason.startswith(e[:-1]) if e.endswith("*") else reason == e for e in self.events)


class HookType(StrEnum):
    """When a rollout hook is called (docs/strategies.md#rollout-hooks)."""

    PRE_ROLLOUT = "PreRollout"
    STEP = "Step"
    CONFIRM_PROMOTION = "ConfirmPromotion"
    POST_ROLLOUT = "PostRollout"


class HookSpec(_Model):
    """A webhook the rollout waits on: before the candidate takes traffic, at each step, to confirm the
    promotion, or after it. 2xx is a pass; anything else, or no answer within timeoutSeconds, a fail."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("has(self.url) != has(self.urlFrom)", "set exactly one of url and urlFrom", ".url"),
            ]
        }
    )

    name: str = Field(
        description="The hook's name, unique in the list; a failure's reason is HookFailed<Name>.",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
    )
    type: Literal["PreRollout", "Step", "ConfirmPromotion", "PostRollout"] = Field(
        description="PreRollout: must pass before the candidate takes any traffic (e.g. an offline evaluation); "
        "Step: must pass in each step before the next (e.g. a load test); ConfirmPromotion: the promotion waits "
        "until it passes (an approval; it never rolls back); PostRollout: told once the new revision is stable.",
    )
    url: str | None = Field(
        default=None,
        description="The webhook URL, https:// (http:// inside the cluster). It receives a JSON POST "
        "(docs/strategies.md#rollout-hooks).",
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
    )
    urlFrom: NotificationURLSource | None = Field(default=None, description="Read the URL from a Secret instead.")
    timeoutSeconds: int = Field(default=10, ge=1, le=60, description="How long one call may take.")
    failureLimit: int = Field(
        default=3,
        ge=1,
        le=100,
        description="PreRollout and Step: failed calls in a row (one per analysis interval) that roll the "
        "candidate back with reason HookFailed<Name>; PostRollout: calls before giving up.",
    )
    metadata: dict[str, str] = Field(
        default_factory=dict, max_length=16, description="Sent as is in every call's body."
    )

    @model_validator(mode="after")
    def _one_url(self) -> HookSpec:
        if (self.url is None) == (self.urlFrom is None):
            raise ValueError("set exactly one of url and urlFrom")
        return self


PERCENT_OR_COUNT = r"^([0-9]|[1-9][0-9]|100)%$"


class DisruptionBudgetSpec(_Model):
    """The PodDisruptionBudget over all of a ModelDeployment's pods (every revision): how many a node
    drain or another voluntary eviction may take down at once. Pods that are not ready can always be
    evicted (``unhealthyPodEvictionPolicy: AlwaysAllow``), so a canary that never became ready does
    not block draining a node."""

    enabled: bool = Field(default=True, description="Keep a PodDisruptionBudget named <name>.")
    maxUnavailable: int | str = Field(
        default=1,
        description="Pods that may be evicted at once: a count (>= 1) or a percentage such as 25%.",
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            "x-kubernetes-validations": [
                _cel(
                    f"type(self) == int ? self >= 1 : self.matches('{PERCENT_OR_COUNT}') && self != '0%'",
                    "must be a count of at least 1 or a percentage from 1% to 100%",
                )
            ],
        },
    )

    @field_validator("maxUnavailable")
    @classmethod
    def _count_or_percent(cls, value: int | str) -> int | str:
        ok = value >= 1 if isinstance(value, int) else bool(re.match(PERCENT_OR_COUNT, value)) and value != "0%"
        if not ok:
            raise ValueError("must be a count of at least 1 or a percentage from 1% to 100%")
        return value


AUTOSCALING_NEEDS_ROUTES = (
    "a canary with autoscaling needs a traffic layer (gatewayAPI, istio or nginx): with traffic.none the "
    "replica ratio is the weight, and the autoscaler would change it"
)


SHADOW_NEEDS_ROUTES = (
    "a shadow phase mirrors requests through a traffic layer (gatewayAPI, istio or nginx); traffic.none cannot mirror"
)
SHADOW_WITHOUT_CANARY_ROUTES = (
    "a shadow candidate answers no client, so traffic.canaryRoutes (which send testers' requests to it) cannot "
    "be set with it"
)
AB_TEST_WITHOUT_CANARY_ROUTES = (
    "an A/B test compares the split's two groups, and traffic.canaryRoutes would add requests chosen by "
    "header or cookie to one of them: remove them for the experiment"
)
SHADOW_NGINX_PERCENT = "ingress-nginx mirrors every request: strategy.canary.shadow.percent must be 100 with nginx"
SHADOW_GATES_NEED_SHADOW = (
    "agreement and score-difference gates judge a shadow comparison: set strategy.canary.shadow, or remove them"
)


class ModelDeploymentSpec(_Model):
    """A model served by revision, rolled out step by step, gated by Prometheus."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.strategy) || !has(self.strategy.canary) || !has(self.strategy.canary.steps)"
                    " || self.strategy.canary.steps[0] > 0"
                    " || (has(self.traffic.canaryRoutes) && size(self.traffic.canaryRoutes) > 0)",
                    "a first canary step of 0 (a dark step) needs traffic.canaryRoutes: without them no request "
                    "would reach the canary",
                    ".strategy.canary.steps",
                ),
                _cel(
                    "!has(self.strategy) || !has(self.strategy.canary) || !has(self.strategy.canary.shadow)"
                    " || !has(self.traffic.none)",
                    SHADOW_NEEDS_ROUTES,
                    ".strategy.canary.shadow",
                ),
                _cel(
                    "!has(self.strategy) || !has(self.strategy.canary) || !has(self.strategy.canary.shadow)"
                    " || !has(self.traffic.canaryRoutes) || size(self.traffic.canaryRoutes) == 0",
                    SHADOW_WITHOUT_CANARY_ROUTES,
                    ".strategy.canary.shadow",
                ),
                _cel(
                    "!has(self.strategy) || !has(self.strategy.canary) || !has(self.strategy.canary.shadow)"
                    " || !has(self.traffic.nginx) || !has(self.strategy.canary.shadow.percent)"
                    " || self.strategy.canary.shadow.percent == 100",
                    SHADOW_NGINX_PERCENT,
                    ".strategy.canary.shadow.percent",
                ),
                _cel(
                    "(has(self.strategy) && has(self.strategy.canary) && has(self.strategy.canary.shadow))"
                    " || !has(self.analysis) || !has(self.analysis.metrics) || !self.analysis.metrics.exists(m, "
                    "(has(m.template) ? m.template : m.name) in " + _cel_list(SHADOW_TEMPLATES) + ")",
                    SHADOW_GATES_NEED_SHADOW,
                    ".analysis.metrics",
                ),
                _cel(
                    "!has(self.strategy) || !has(self.strategy.abTest)"
                    " || !has(self.traffic.canaryRoutes) || size(self.traffic.canaryRoutes) == 0",
                    AB_TEST_WITHOUT_CANARY_ROUTES,
                    ".strategy.abTest",
                ),
                _cel(
                    "!has(self.serving) || !has(self.serving.autoscaling) || !has(self.traffic.none)"
                    " || (has(self.strategy) && has(self.strategy.blueGreen))",
                    AUTOSCALING_NEEDS_ROUTES,
                    ".serving.autoscaling",
                ),
            ]
        }
    )

    model: ModelSpec = Field(description="The model artifact.")
    serving: ServingSpec = Field(default_factory=ServingSpec, description="How revisions are served.")
    traffic: TrafficSpec = Field(description="The traffic layer that carries the weights (exactly one).")
    strategy: StrategySpec = Field(default_factory=StrategySpec, description="Rollout strategy.")
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec, description="Gates.")
    bake: BakeSpec = Field(default_factory=BakeSpec, description="Post-promotion watch.")
    progressDeadlineSeconds: int = Field(
        default=600, ge=10, le=86400, description="Time for a revision's pods to become available."
    )
    revisionHistoryLimit: int = Field(
        default=10, ge=0, le=100, description="Old revisions kept in status.history (Deployments are pruned)."
    )
    paused: bool = Field(default=False, description="Hold the rollout where it is (no steps, no rollback).")
    disruptionBudget: DisruptionBudgetSpec = Field(
        default_factory=DisruptionBudgetSpec,
        description="The PodDisruptionBudget over every revision's pods (not part of a revision).",
    )
    retraining: RetrainingSpec | None = Field(
        default=None,
        description="Start a retraining Job when the continuous watch's drift gates set Drifted (docs/drift.md).",
    )
    hooks: list[HookSpec] = Field(
        default_factory=list,
        max_length=16,
        description="Webhooks the rollout waits on: PreRollout, Step, ConfirmPromotion, PostRollout "
        "(docs/strategies.md#rollout-hooks).",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("self.all(h, self.filter(g, g.name == h.name).size() == 1)", "hook names must be unique")
            ]
        },
    )
    notifications: list[NotificationSpec] = Field(
        default_factory=list,
        max_length=8,
        description="Webhooks (Slack-compatible) that receive this ModelDeployment's Events: phase changes, "
        "rollbacks, drift, retraining (docs/api.md#notifications). Best effort: never delays a rollout.",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("self.all(n, self.filter(m, m.name == n.name).size() == 1)", "notification names must be unique")
            ]
        },
    )

    @field_validator("hooks")
    @classmethod
    def _unique_hooks(cls, hooks: list[HookSpec]) -> list[HookSpec]:
        names = [h.name for h in hooks]
        if len(set(names)) != len(names):
            raise ValueError("hook names must be unique")
        return hooks

    @field_validator("notifications")
    @classmethod
    def _unique_notifications(cls, targets: list[NotificationSpec]) -> list[NotificationSpec]:
        names = [n.name for n in targets]
        if len(set(names)) != len(names):
            raise ValueError("notification names must be unique")
        return targets

    @model_validator(mode="after")
    def _autoscaling_has_routes(self) -> ModelDeploymentSpec:
        if self.serving.autoscaling and self.traffic.none is not None and self.strategy.blueGreen is None:
            raise ValueError(f"serving.autoscaling: {AUTOSCALING_NEEDS_ROUTES}")
        return self

    @model_validator(mode="after")
    def _shadow_fits(self) -> ModelDeploymentSpec:
        blue_green, ab_test = self.strategy.blueGreen, self.strategy.abTest
        shadow = None if blue_green is not None or ab_test is not None else self.strategy.canary.shadow
        if shadow is not None and self.traffic.none is not None:
            raise ValueError(f"strategy.canary.shadow: {SHADOW_NEEDS_ROUTES}")
        if shadow is not None and self.traffic.canaryRoutes:
            raise ValueError(f"strategy.canary.shadow: {SHADOW_WITHOUT_CANARY_ROUTES}")
        if shadow is not None and self.traffic.nginx is not None and shadow.percent != 100:
            raise ValueError(f"strategy.canary.shadow.percent: {SHADOW_NGINX_PERCENT}")
        if self.strategy.abTest is not None and self.traffic.canaryRoutes:
            raise ValueError(f"strategy.abTest: {AB_TEST_WITHOUT_CANARY_ROUTES}")
        if shadow is None and any(m.is_shadow for m in self.analysis.metrics):
            raise ValueError(f"analysis.metrics: {SHADOW_GATES_NEED_SHADOW}")
        return self

    @model_validator(mode="after")
    def _dark_step_has_routes(self) -> ModelDeploymentSpec:
        chosen_canary = self.strategy.blueGreen is None and self.strategy.abTest is None
        if chosen_canary and self.strategy.canary.steps[0] == 0 and not self.traffic.canaryRoutes:
            raise ValueError(
                "strategy.canary.steps: a first step of 0 (a dark step) needs traffic.canaryRoutes: without them "
                "no request would reach the canary"
            )
        return self


# ------------------------------------------------------------------------------------------- status


class _Status(_Model):
    """Base of what the operator writes: read back from its own JSON (timestamps as strings, phases
    and reasons as their names), so types are coerced, not strict."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=False)


class Condition(_Status):
    """metav1.Condition."""

    type: str = Field(max_length=316, description="Ready, Progressing or Degraded.")
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(max_length=1024, description="CamelCase reason.")
    message: str = Field(default="", max_length=32768)
    lastTransitionTime: datetime
    observedGeneration: int | None = Field(default=None, ge=0)


class FeatureDrift(_Status):
    """One feature's (or the score's) distribution against its reference, as a drift gate judged it."""

    name: str = Field(description="The feature; _prediction_score is the prediction score.")
    psi: float = Field(description="Population stability index against the reference.")
    pValue: float = Field(description="Chi-square test of the counts against the reference.")
    samples: int = Field(description="Values counted in the evidence period.")
    drifted: bool = Field(description="PSI above the bound and the test significant.")


class MetricResult(_Status):
    """One gate's outcome at the last check, with the counts it was decided on.

    For ratio gates ``value`` and ``stableValue`` are accumulated over the evidence period (since the
    canary first took traffic) and ``events``/``samples`` are the counts behind them, so a restarted
    operator, a human and ``kubectl modelrollout status`` all see the evidence itself.
    """

    name: str
    value: float | None = Field(default=None, description="Canary (or baking stable) value; null when no data.")
    stableValue: float | None = Field(default=None, description="Baseline value over the same period, when compared.")
    threshold: str = Field(default="", description="The thresholds, human-readable.")
    samples: int | None = Field(default=None, description="Samples behind the value.")
    events: int | None = Field(default=None, description="Ratio gates: the events counted in value (x of samples).")
    stableSamples: int | None = Field(default=None, description="Ratio gates: the baseline's samples.")
    stableEvents: int | None = Field(default=None, description="Ratio gates: the baseline's events.")
    windowValue: float | None = Field(
        default=None, description="Freshness view: the value since the previous check (not used to decide)."
    )
    verdict: Literal["Pass", "Fail", "Inconclusive"]
    reason: GateReason | None = Field(default=None, description="Why: Passed, Failed, Undecided, ... (docs/gates.md).")
    message: str = ""
    features: list[FeatureDrift] = Field(
        default_factory=list, description="Drift gates: each judged feature, the most drifted first."
    )


class HookResult(_Status):
    """A rollout hook's last call for the current revision."""

    name: str
    type: HookType
    revision: str = Field(description="The revision the call was about.")
    step: int | None = Field(default=None, description="Step hooks: the step (index in the plan) it was called in.")
    passed: bool = Field(description="The webhook answered 2xx.")
    message: str = Field(default="", description="HTTP status and the start of the answer, or why no answer.")
    calledAt: datetime
    failures: int = Field(default=0, description="Failed calls in a row (for this revision and step).")


class ExperimentOutcome(StrEnum):
    """Where an A/B test stands: running, or how it ended."""

    RUNNING = "Running"
    CANDIDATE_WON = "CandidateWon"
    STABLE_WON = "StableWon"
    TIE = "Tie"
    TIMEOUT = "Timeout"


class ArmCounts(_Status):
    """One side of an A/B test: the primary metric's successes out of trials over the experiment."""

    revision: str
    successes: int = Field(description="Successes (correct labels for accuracy).")
    trials: int = Field(description="Trials (labels for accuracy).")
    value: float | None = Field(default=None, description="successes / trials; null without trials.")


class ExperimentResult(_Status):
    """An A/B test's evidence and outcome: the effect of the candidate (B) over the stable revision (A)
    with an always-valid confidence interval (docs/strategies.md#ab-test-strategyabtest)."""

    metric: str = Field(description="The primary metric's name.")
    outcome: ExperimentOutcome = Field(description="Running, CandidateWon, StableWon, Tie or Timeout.")
    candidate: ArmCounts
    stable: ArmCounts
    effect: float | None = Field(default=None, description="B - A, in the metric's units.")
    lower: float | None = Field(default=None, description="Lower end of the confidence interval of B - A.")
    upper: float | None = Field(default=None, description="Upper end of the confidence interval of B - A.")
    confidence: float = Field(description="The interval's coverage, 1 - significance, valid at every look.")
    since: datetime | None = Field(default=None, description="When the experiment began (its first split).")
    decidedAt: datetime | None = Field(default=None, description="When it ended.")
    message: str = ""


class AnalysisResult(_Status):
    """The last gate check."""

    time: datetime
    revision: str = ""
    baselineRevision: str | None = Field(default=None, description="The revision compared with, if any.")
    since: datetime | None = Field(default=None, description="Start of the evidence period the counts cover.")
    verdict: Literal["Pass", "Fail", "Inconclusive"]
    metrics: list[MetricResult] = Field(default_factory=list)
    experiment: ExperimentResult | None = Field(
        default=None, description="An A/B test's evidence at this check (strategy.abTest)."
    )


class ComparedModel(_Status):
    """The model a shadow candidate's pods score every request with, beside their own."""

    revision: str = Field(description="The stable revision it is (the compared_with label of the shadow metrics).")
    uri: str = Field(description="Its model URI.")
    sha256: str | None = Field(default=None, description="Its sha256, verified on load.")


class HistoryEntry(_Status):
    """A revision's life; the model and serving snapshot lets the operator re-render its Deployment."""

    revision: str
    modelURI: str
    phase: HistoryPhase = Field(description="Progressing, Succeeded, RolledBack, Superseded or Failed.")
    startedAt: datetime
    finishedAt: datetime | None = None
    reason: str = ""
    model: ModelSpec
    # Written only by the operator, from a spec admission already checked: the CRD keeps it as an
    # object without repeating ServingSpec's schema (which embeds core/v1 Volume, Affinity, ...), so
    # the CRD stays small enough for a client-side `kubectl apply`.
    serving: Annotated[ServingSpec, WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True})]
    comparedWith: ComparedModel | None = Field(
        default=None,
        description="Under a shadow strategy: the stable model this revision's pods also load, to score every "
        "request with both (set when the rollout starts; it stays with the revision's Deployment).",
    )


class RetiringRevision(_Status):
    """A revision taken out of traffic that keeps its pods until ``scaleDownAt``."""

    revision: str
    scaleDownAt: datetime


class DriftStatus(_Status):
    """What the continuous watch's drift gates say about the stable revision's inputs and scores."""

    revision: str = Field(description="The revision watched.")
    drifted: bool = Field(default=False, description="The Drifted condition: drift in failureLimit checks in a row.")
    checks: int = Field(default=0, ge=0, description="Drifted checks in a row.")
    since: datetime | None = Field(default=None, description="The first drifted check of this streak.")
    features: list[FeatureDrift] = Field(default_factory=list, description="The last check's drifted features.")
    lastCheckAt: datetime | None = None


class RetrainingOutcome(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class RetrainingStatus(_Status):
    """The retraining runs started by sustained drift (spec.retraining)."""

    runs: int = Field(default=0, ge=0, description="Runs started so far; the next Job is <name>-retrain-<runs+1>.")
    job: str | None = Field(default=None, description="The run in progress or the last one.")
    outcome: RetrainingOutcome | None = Field(default=None, description="Running, Succeeded or Failed.")
    message: str = ""
    startedAt: datetime | None = None
    finishedAt: datetime | None = None
    failures: int = Field(default=0, ge=0, description="Failed runs in a row (the backoff's exponent).")
    nextRunAfter: datetime | None = Field(
        default=None, description="No run starts before this (cooldown after a success, backoff after a failure)."
    )


class ModelDeploymentStatus(_Status):
    """Everything the operator knows. State lives here only, so a restarted operator resumes exactly."""

    model_config = ConfigDict(extra="ignore")

    observedGeneration: int | None = Field(default=None, ge=0)
    phase: Phase | None = None
    message: str = ""
    stableRevision: str | None = None
    canaryRevision: str | None = None
    previousStableRevision: str | None = Field(default=None, description="Kept warm while baking.")
    canaryWeight: int = Field(default=0, ge=0, le=100, description="Percent of traffic on the canary.")
    weightApproximate: bool = Field(default=False, description="True when weights are replica ratios (no mesh).")
    currentStep: int | None = Field(default=None, ge=0, description="Index into strategy.canary.steps.")
    stepStartedAt: datetime | None = None
    revisionStartedAt: datetime | None = Field(default=None, description="When the pending revision was created.")
    bakeStartedAt: datetime | None = None
    canaryUnavailableSince: datetime | None = Field(
        default=None, description="When the canary lost its last ready pod; its traffic is held at 0 meanwhile."
    )
    lastCheckAt: datetime | None = None
    evidenceSince: datetime | None = Field(
        default=None,
        description="When the canary first took traffic: ratio gates count from here through the bake.",
    )
    watchSince: datetime | None = Field(
        default=None, description="Start of the continuous watch's current evidence window (analysis.continuous)."
    )
    watchFailure: str | None = Field(
        default=None, description="Why the continuous watch last failed (a GateFailed... reason); null while it passes."
    )
    failedChecks: int = Field(default=0, ge=0)
    inconclusiveChecks: int = Field(default=0, ge=0)
    failedRevisions: list[str] = Field(default_factory=list, description="Revisions not retried until spec changes.")
    lastHandledRetry: str | None = Field(default=None, description="Value of the last retry annotation acted on.")
    lastHandledPromote: str | None = Field(default=None, description="Value of the last promote annotation acted on.")
    lastHandledAbort: str | None = Field(default=None, description="Value of the last abort annotation acted on.")
    rollbackReason: str | None = Field(default=None, description="Why the last rollback happened (gate or deadline).")
    routesProvider: str | None = Field(
        default=None,
        description="The traffic provider whose routes are kept; any other's are deleted after a switch.",
    )
    conditions: list[Condition] = Field(default_factory=list)
    lastAnalysis: AnalysisResult | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    drift: DriftStatus | None = Field(default=None, description="The continuous watch's drift gates (docs/drift.md).")
    retraining: RetrainingStatus | None = Field(default=None, description="Retraining runs (spec.retraining).")
    experiment: ExperimentResult | None = Field(
        default=None, description="The last A/B test (strategy.abTest): its evidence, and how it ended."
    )
    hooks: list[HookResult] = Field(
        default_factory=list, description="spec.hooks' last calls for the current rollout, one per hook."
    )
    awaitingConfirmation: bool = Field(
        default=False, description="The candidate passed its last step and waits for its ConfirmPromotion hooks."
    )
    retiring: list[RetiringRevision] = Field(
        default_factory=list,
        description="Revisions whose weight went to 0 and that keep their pods until scaleDownAt (the "
        "strategy's scaleDownDelay), so proxies still routing by the old weights find them serving.",
    )


class ModelDeployment(BaseModel):
    """The whole object, for code that reads a full manifest."""

    model_config = ConfigDict(extra="ignore")

    apiVersion: Literal["modelrollout.io/v1alpha1"] = "modelrollout.io/v1alpha1"
    kind: Literal["ModelDeployment"] = "ModelDeployment"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus = Field(default_factory=ModelDeploymentStatus)
