"""Prometheus metrics for the rollout gates, every series labelled with ``model`` and ``revision``.

Why: the operator compares a canary revision with the stable one using only these series (error
rate, p99 latency, accuracy from feedback, prediction distribution, data quality). Children for the
hot path are bound once at start-up, because ``.labels(...)`` on every request costs more than the
increment itself. The names and their PromQL are documented in ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# ``*_created`` series double the exposition size and no gate uses them.
disable_created_metrics()

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1,
    0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
ENDPOINTS = (
    "infer", "feedback", "model_metadata", "model_ready", "server_metadata",
    "server_live", "server_ready", "metrics", "unknown",
)  # fmt: skip
CODE_CLASSES = ("2xx", "4xx", "5xx")
MAX_CLASS_LABELS = 100
BASE = ("model", "revision")


def code_class(status: int) -> str:
    """``503`` -> ``"5xx"``: the label keeps cardinality fixed while gates only need the class."""
    return f"{status // 100}xx"


class ServerMetrics:
    """All series of one server process, registered on a private registry (no unlabelled series)."""

    def __init__(self, model: str, revision: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.labels = (model, revision)
        self._define(self.registry)
        self._bind()

    def _define(self, r: CollectorRegistry) -> None:
        self.requests = Counter(
            "modelserver_requests", "HTTP requests by endpoint and status class.",
            (*BASE, "endpoint", "code"), registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "modelserver_request_duration_seconds",
            "Time to answer infer requests that reached the model (2xx and 5xx), in seconds.",
            BASE, buckets=LATENCY_BUCKETS, registry=r,
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
            "Ground-truth labels joined to a cached prediction.",
            (*BASE, "correct"),
            registry=r,
        )
        self.unmatched = Counter(
            "modelserver_feedback_unmatched",
            "Feedback whose request id had no cached prediction (unknown) or whose prediction expired.",
            (*BASE, "reason"), registry=r,
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
        self._requests = {(e, c): self.requests.labels(m, rev, e, c) for e in ENDPOINTS for c in CODE_CLASSES}
        self._duration = self.duration.labels(m, rev)
        self.inflight_child = self.inflight.labels(m, rev)
        self._score = self.score.labels(m, rev)
        self._feedback = {
            True: self.feedback.labels(m, rev, "true"),
            False: self.feedback.labels(m, rev, "false"),
        }
        self._unmatched = {r: self.unmatched.labels(m, rev, r) for r in ("unknown", "expired")}
        self._classes: dict[str, object] = {}
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

    def record_request(self, endpoint: str, status: int) -> None:
        self._requests[(endpoint, code_class(status))].inc()

    def observe_latency(self, seconds: float) -> None:
        self._duration.observe(seconds)

    def record_predictions(self, classes: Iterable[tuple[str, int]], scores: Iterable[float]) -> None:
        for name, count in classes:
            self._class_child(name).inc(count)
        for score in scores:
            self._score.observe(score)

    def _class_child(self, name: str):
        child = self._classes.get(name)
        if child is None:
            if len(self._classes) >= MAX_CLASS_LABELS:
                name = "other"
                child = self._classes.get(name)
            if child is None:
                child = self.predictions.labels(*self.labels, name)
                self._classes[name] = child
        return child

    def record_feedback(self, correct: int, incorrect: int) -> None:
        if correct:
            self._feedback[True].inc(correct)
        if incorrect:
            self._feedback[False].inc(incorrect)

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
