"""Prometheus metrics for the rollout gates, every series labelled with ``model`` and ``revision``.

Why: the operator compares a canary revision with the stable one using only these series (error
rate, p99 latency, accuracy from feedback, prediction distribution, data quality). Children for the
hot path are bound once at start-up, because ``.labels(...)`` on every request costs more than the
increment itself. The names and their PromQL are documented in ``docs/metrics.md``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from .config import DEFAULT_LATENCY_BUCKETS as LATENCY_BUCKETS

# ``*_created`` series double the exposition size and no gate uses them.
disable_created_metrics()

SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
ENDPOINTS = (
    "infer", "feedback", "model_metadata", "model_ready", "server_metadata",
    "server_live", "server_ready", "metrics", "unknown",
)  # fmt: skip
GRPC_ENDPOINTS = ("infer", "model_metadata", "model_ready", "server_metadata", "server_live", "server_ready")
"""The endpoints the gRPC API also serves (its RPCs ModelInfer, ModelMetadata, ... by their HTTP names)."""
PROTOCOLS = ("http", "grpc")
CODE_CLASSES = ("2xx", "4xx", "5xx")
MAX_CLASS_LABELS = 100
MAX_FEEDBACK_REVISIONS = 32
"""Revisions (other than this one) whose token feedback this process keeps series for; the least
recently labelled one is dropped first (its counter restarts at 0 if it comes back: a counter reset)."""
UNMATCHED_REASONS = ("unknown", "expired", "malformed", "forged", "foreign", "replayed", "unsupported")
BASE = ("model", "revision")


def code_class(status: int) -> str:
    """``503`` -> ``"5xx"``: the label keeps cardinality fixed while gates only need the class."""
    return f"{status // 100}xx"


class ServerMetrics:
    """All series of one server process, registered on a private registry (no unlabelled series)."""

    def __init__(
        self,
        model: str,
        revision: str,
        registry: CollectorRegistry | None = None,
        latency_buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.labels = (model, revision)
        self._define(self.registry, tuple(latency_buckets))
        self._bind()

    def _define(self, r: CollectorRegistry, latency_buckets: tuple[float, ...]) -> None:
        self.requests = Counter(
            "modelserver_requests", "Requests by endpoint, status class and protocol (http or grpc).",
            (*BASE, "endpoint", "code", "protocol"), registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "modelserver_request_duration_seconds",
            "Time to answer infer requests that reached the model (2xx and 5xx), in seconds.",
            BASE, buckets=latency_buckets, registry=r,
        )  # fmt: skip
        self.inflight = Gauge("modelserver_inflight_requests", "Infer requests in progress.", BASE, registry=r)
        self.predictions = Counter(
            "modelserver_predictions", "Predicted rows by predicted class.", (*BASE, "class"), registry=r
        )
        self.score = Histogram(
            "modelserver_prediction_score",
            "Score of each predicted row: probability of the positive class (binary with positive_class) "
            "or of the predicted class.",
            BASE, buckets=SCORE_BUCKETS, registry=r,
        )  # fmt: skip
        self.feedback = Counter(
            "modelserver_feedback",
            "Ground-truth labels joined to a prediction (cached by id, or carried by a prediction token), "
            "labelled with the revision that made the prediction.",
            (*BASE, "correct"),
            registry=r,
        )
        self.unmatched = Counter(
            "modelserver_feedback_unmatched",
            "Feedback not counted: unknown or expired id; malformed, forged, foreign, expired or replayed token.",
            (*BASE, "reason"), registry=r,
        )  # fmt: skip
        self.signature = Gauge(
            "modelserver_model_signature_info",
            "The model's contract: one series per input and output tensor and per named feature.",
            (*BASE, "io", "name", "datatype", "shape"), registry=r,
        )  # fmt: skip
        self.imputed = Counter(
            "modelserver_features_imputed",
            "Feature values imputed (named-feature requests).",
            (*BASE, "feature"),
            registry=r,
        )
        self.missing = Counter(
            "modelserver_features_missing",
            "Feature values missing (absent or null) in named-feature requests, imputed or not.",
            (*BASE, "feature"), registry=r,
        )  # fmt: skip
        self.load_seconds = Gauge(
            "modelserver_model_load_seconds", "Seconds to fetch, verify and load the model.", BASE, registry=r
        )
        self.warmup_seconds = Gauge(
            "modelserver_warmup_seconds", "Seconds spent on warmup and self-check.", BASE, registry=r
        )
        self.ready = Gauge(
            "modelserver_ready", "1 when the model is loaded, warmed up and self-checked.", BASE, registry=r
        )

    def _bind(self) -> None:
        m, rev = self.labels
        self._requests = {(e, c): self.requests.labels(m, rev, e, c, "http") for e in ENDPOINTS for c in CODE_CLASSES}
        self._grpc_requests = {
            (e, c): self.requests.labels(m, rev, e, c, "grpc") for e in GRPC_ENDPOINTS for c in CODE_CLASSES
        }
        self._duration = self.duration.labels(m, rev)
        self.inflight_child = self.inflight.labels(m, rev)
        self._score = self.score.labels(m, rev)
        self._feedback = {
            True: self.feedback.labels(m, rev, "true"),
            False: self.feedback.labels(m, rev, "false"),
        }
        self._unmatched = {r: self.unmatched.labels(m, rev, r) for r in UNMATCHED_REASONS}
        self._foreign_feedback: OrderedDict[str, dict[bool, Counter]] = OrderedDict()
        self._classes: dict[str, Counter] = {}
        self.load_seconds.labels(m, rev).set(0)
        self.warmup_seconds.labels(m, rev).set(0)
        self.ready.labels(m, rev).set(0)

    def bind_features(self, names: Iterable[str]) -> None:
        """Pre-create per-feature series so dashboards see zeros rather than absent series."""
        for name in names:
            self.imputed.labels(*self.labels, name)
            self.missing.labels(*self.labels, name)

    def bind_classes(self, names: Iterable[str]) -> None:
        for name in names:
            self._class_child(name)

    def record_request(self, endpoint: str, status: int, protocol: str = "http") -> None:
        """Count one answer; ``status`` is the HTTP status, also for gRPC (the status it maps to)."""
        children = self._requests if protocol == "http" else self._grpc_requests
        children[(endpoint, code_class(status))].inc()

    def observe_latency(self, seconds: float) -> None:
        self._duration.observe(seconds)

    def record_predictions(self, classes: Iterable[tuple[str, int]], scores: Iterable[float]) -> None:
        for name, count in classes:
            self._class_child(name).inc(count)
        for score in scores:
            self._score.observe(score)

    def _class_child(self, name: str) -> Counter:
        child = self._classes.get(name)
        if child is None:
            if len(self._classes) >= MAX_CLASS_LABELS:
                name = "other"
                child = self._classes.get(name)
            if child is None:
                child = self.predictions.labels(*self.labels, name)
                self._classes[name] = child
        return child

    def record_feedback(self, correct: int, incorrect: int, revision: str | None = None) -> None:
        """Count labels for ``revision`` (the one that predicted; default: this server's)."""
        children = self._feedback if revision is None or revision == self.labels[1] else self._revision(revision)
        if correct:
            children[True].inc(correct)
        if incorrect:
            children[False].inc(incorrect)

    def _revision(self, revision: str) -> dict[bool, Counter]:
        """Feedback children of another revision (token feedback), bounded by MAX_FEEDBACK_REVISIONS."""
        children = self._foreign_feedback.get(revision)
        if children is not None:
            self._foreign_feedback.move_to_end(revision)
            return children
        model = self.labels[0]
        children = {flag: self.feedback.labels(model, revision, str(flag).lower()) for flag in (True, False)}
        self._foreign_feedback[revision] = children
        if len(self._foreign_feedback) > MAX_FEEDBACK_REVISIONS:
            dropped, _ = self._foreign_feedback.popitem(last=False)
            for flag in ("true", "false"):
                self.feedback.remove(model, dropped, flag)
        return children

    def set_signature(self, series: Iterable[tuple[str, str, str, str]]) -> None:
        """One ``modelserver_model_signature_info`` series per ``(io, name, datatype, shape)``."""
        for io, name, datatype, shape in series:
            self.signature.labels(*self.labels, io, name, datatype, shape).set(1)

    def record_unmatched(self, reason: str) -> None:
        self._unmatched[reason].inc()

    def record_features(self, missing: dict[str, int], imputed: dict[str, int]) -> None:
        for name, count in missing.items():
            self.missing.labels(*self.labels, name).inc(count)
        for name, count in imputed.items():
            self.imputed.labels(*self.labels, name).inc(count)

    def set_load_seconds(self, seconds: float) -> None:
        self.load_seconds.labels(*self.labels).set(seconds)

    def set_warmup_seconds(self, seconds: float) -> None:
        self.warmup_seconds.labels(*self.labels).set(seconds)

    def set_ready(self, ready: bool) -> None:
        self.ready.labels(*self.labels).set(1 if ready else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
