"""Prometheus metrics for the rollout gates, every series labelled with ``model`` and ``revision``.

Why: the operator compares a canary revision with the stable one using only these series (error
rate, p99 latency, accuracy from feedback, prediction distribution, data quality, drift). Children
for the hot path are bound once at start-up, because ``.labels(...)`` on every request costs more than
the increment itself; and the families an infer request moves (about 14 increments for one row of
the example model) are :class:`LoopCounter`, :class:`LoopGauge` and :class:`LoopHistogram`, whose
increments are one Python addition instead of prometheus_client's call chain and lock. The names
and their PromQL are documented in ``docs/metrics.md``.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .config import DEFAULT_LATENCY_BUCKETS as LATENCY_BUCKETS
from .metadata import PREDICTION_SCORE_FEATURE, Feature, ReferenceBins

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
SMALL_BIN_BATCH = 64
"""Values (rows x counted columns) up to which bins are found with :func:`bisect.bisect_left` on
Python floats rather than with numpy: one row of five features costs 1.6 us that way, about a
ninth of the numpy path's fixed cost (docs/metrics.md, "Drift bins")."""
BIN_CHUNK_CELLS = 1 << 18
"""Bound on the value-by-edge comparisons done at once (the numpy path's temporary array)."""
SHADOW_DIFFERENCE_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
"""Upper edges (``le``) of ``modelserver_shadow_score_difference``, the |score difference| per row between
the served model and the comparison model (``+Inf`` follows the last); docs/model-server.md."""
SHADOW_LABELS = (*BASE, "compared_with")
_SHADOW_COUNTERS = {
    "rows": "Rows of answered requests scored by both the served and the comparison model.",
    "agreed_rows": "Of modelserver_shadow_rows_total, the rows whose predicted class was the same.",
    "errors": "Rows of answered requests the comparison model could not score (it failed, or gave a non-finite "
    "score); their answers were not affected.",
}


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
        self.requests = LoopCounter(
            "modelserver_requests", "Requests by endpoint, status class and protocol (http or grpc).",
            (*BASE, "endpoint", "code", "protocol"), registry=r,
        )  # fmt: skip
        self.duration = LoopHistogram(
            "modelserver_request_duration_seconds",
            "Time to answer infer requests that reached the model (2xx and 5xx), in seconds.",
            BASE, buckets=latency_buckets, registry=r,
        )  # fmt: skip
        self.inflight = LoopGauge("modelserver_inflight_requests", "Infer requests in progress.", BASE, registry=r)
        self.predictions = LoopCounter(
            "modelserver_predictions", "Predicted rows by predicted class.", (*BASE, "class"), registry=r
        )
        self.score = LoopHistogram(
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
        self.imputed_rows = LoopCounter(
            "modelserver_imputed_rows",
            "Answered rows with at least one feature value filled in by imputation (the missing-data gate's "
            "events; modelserver_predictions_total counts all answered rows).",
            BASE,
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
        self.feature_bin = LoopCounter(
            "modelserver_feature_bin",
            "Observed values per feature (not missing, not imputed) and prediction scores "
            '(feature="_prediction_score") by the index of their bin in metadata.json\'s reference_bins.',
            (*BASE, "feature", "bin"), registry=r,
        )  # fmt: skip
        self.feature_bin_reference = Gauge(
            "modelserver_feature_bin_reference",
            "Training fraction of each reference bin (metadata.json reference_bins), same labels as "
            "modelserver_feature_bin_total.",
            (*BASE, "feature", "bin"), registry=r,
        )  # fmt: skip

    def _bind(self) -> None:
        m, rev = self.labels
        self._requests = {(e, c): self.requests.labels(m, rev, e, c, "http") for e in ENDPOINTS for c in CODE_CLASSES}
        self._grpc_requests = {
            (e, c): self.requests.labels(m, rev, e, c, "grpc") for e in GRPC_ENDPOINTS for c in CODE_CLASSES
        }
        self._duration = self.duration.labels(m, rev)
        self.inflight_child = self.inflight.labels(m, rev)
        self._score = self.score.labels(m, rev)
        self._imputed_rows = self.imputed_rows.labels(m, rev)
        self._feedback = {
            True: self.feedback.labels(m, rev, "true"),
            False: self.feedback.labels(m, rev, "false"),
        }
        self._unmatched = {r: self.unmatched.labels(m, rev, r) for r in UNMATCHED_REASONS}
        self._foreign_feedback: OrderedDict[str, dict[bool, Counter]] = OrderedDict()
        self._classes: dict[str, LoopValue] = {}
        self._feature_bins: BinCounter | None = None
        self._score_bins: BinCounter | None = None
        self.load_seconds.labels(m, rev).set(0)
        self.warmup_seconds.labels(m, rev).set(0)
        self.ready.labels(m, rev).set(0)

    def bind_features(self, names: Iterable[str]) -> None:
        """Pre-create per-feature series so dashboards see zeros rather than absent series."""
        for name in names:
            self.imputed.labels(*self.labels, name)
            self.missing.labels(*self.labels, name)

    def bind_reference_bins(self, features: Sequence[Feature], score: ReferenceBins | None) -> None:
        """Series for every reference bin: the counters at 0 and the reference fractions.

        ``features`` are the columns of the feature matrix in order (those without ``reference`` are
        not counted); ``score`` is the prediction score's reference (None: no score bins).
        """
        columns = [BinColumn.of(i, f) for i, f in enumerate(features) if f.reference is not None]
        if columns:
            self._feature_bins = BinCounter(columns, len(features), self._bin_children(columns))
        if score is not None:
            column = BinColumn(0, PREDICTION_SCORE_FEATURE, score, score.edges, tuple(range(len(score.fractions))))
            self._score_bins = BinCounter([column], 1, self._bin_children([column]))

    def _bin_children(self, columns: Sequence[BinColumn]) -> list[LoopValue]:
        children = []
        for column in columns:
            for index, fraction in enumerate(column.reference.fractions):
                children.append(self.feature_bin.labels(*self.labels, column.name, str(index)))
                self.feature_bin_reference.labels(*self.labels, column.name, str(index)).set(fraction)
        return children

    def count_feature_bins(self, matrix: np.ndarray, skip: Sequence[tuple[int, int]] = ()) -> None:
        """Count the feature matrix's values into their reference bins, except the ``(row, column)``
        cells in ``skip`` (imputed values); a matrix of another width (a tensor that is no feature
        matrix) is not counted."""
        if self._feature_bins is not None:
            self._feature_bins.count(matrix, skip)

    def count_score_bins(self, scores: np.ndarray) -> None:
        """Count prediction scores (one per row) into the score's reference bins."""
        bins = self._score_bins
        if bins is None:
            return
        if scores.size == 1 and scores.dtype.kind == "f":  # one row: no grouping to do
            bins.count_one(scores.item(), scores.dtype)
        else:
            bins.count(scores.reshape(-1, 1))

    def bind_shadow(self, compared_with: str) -> ShadowMetrics:
        """Register the ``modelserver_shadow_*`` families, at 0, for the comparison model ``compared_with``.

        Only called when ``--compare-model-uri`` is set: without it the families do not exist at all.
        """
        shadow = ShadowMetrics((*self.labels, compared_with))
        self.registry.register(shadow)
        return shadow

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

    def _class_child(self, name: str) -> LoopValue:
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

    def record_imputed_rows(self, rows: int) -> None:
        """Count answered rows that had an imputed value (once per row, however many were imputed)."""
        if rows:
            self._imputed_rows.inc(rows)

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


class ShadowMetrics(Collector):
    """The comparison ("shadow") series: rows scored by both models, rows whose class agreed, the
    |score difference| per row, and rows the comparison model failed on.

    Why a collector of its own rather than Counter and Histogram children: a batch's differences are
    binned in one numpy pass and added under one lock instead of one ``observe`` per row, and a
    scrape reads all four families from the same moment, so ``agreed / rows`` never mixes batches.
    """

    def __init__(self, labels: tuple[str, str, str], buckets: Sequence[float] = SHADOW_DIFFERENCE_BUCKETS) -> None:
        self.labels = labels
        self._edges = np.asarray(buckets, dtype=np.float64)
        self._edge_list = [float(b) for b in buckets]
        self._names = [*(floatToGoString(b) for b in buckets), "+Inf"]
        self._lock = threading.Lock()
        self._rows = 0
        self._agreed = 0
        self._errors = 0
        self._buckets = [0] * (len(buckets) + 1)
        """Non-cumulative: ``_buckets[i]`` counts differences in ``(edge[i - 1], edge[i]]``."""
        self._sum = 0.0

    def record(self, rows: int, agreed: int, differences: np.ndarray | None) -> None:
        """Count ``rows`` compared rows, ``agreed`` of them with the same class, and their score
        ``differences`` (float64, >= 0, one per row; None when the models have no score)."""
        counts: Sequence[int] = ()
        total = 0.0
        if differences is not None and differences.size:
            slots = np.searchsorted(self._edges, differences, side="left")
            counts = np.bincount(slots, minlength=len(self._buckets)).tolist()
            total = float(differences.sum())
        with self._lock:
            self._rows += rows
            self._agreed += agreed
            for i, n in enumerate(counts):
                self._buckets[i] += n
            self._sum += total

    def record_one(self, same: bool, difference: float) -> None:
        """:meth:`record` for one row, without numpy (``bisect`` finds its bucket: ``le`` is inclusive)."""
        slot = bisect.bisect_left(self._edge_list, difference)
        with self._lock:
            self._rows += 1
            self._agreed += same
            self._buckets[slot] += 1
            self._sum += difference

    def record_errors(self, rows: int) -> None:
        """Count rows of answered requests that the comparison model could not score."""
        with self._lock:
            self._errors += rows

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = {"rows": self._rows, "agreed_rows": self._agreed, "errors": self._errors}
            buckets, total = list(self._buckets), self._sum
        for name, text in _SHADOW_COUNTERS.items():
            counter = CounterMetricFamily(f"modelserver_shadow_{name}", text, labels=SHADOW_LABELS)
            counter.add_metric(self.labels, counts[name])
            yield counter
        histogram = HistogramMetricFamily(
            "modelserver_shadow_score_difference",
            "|score of the served model - score of the comparison model| per compared row (the score of "
            "modelserver_prediction_score).",
            labels=SHADOW_LABELS,
        )
        cumulative = itertools.accumulate(buckets)
        histogram.add_metric(self.labels, [(n, float(c)) for n, c in zip(self._names, cumulative, strict=True)], total)
        yield histogram

    def describe(self) -> Iterator[Metric]:
        return self.collect()


class LoopValue:
    """The value of one series of a :class:`LoopCounter` or :class:`LoopGauge`.

    No lock: every increment of these families happens on the event loop's thread (request handling,
    micro-batches, the gRPC API: all one ``asyncio`` loop; executor threads only run the session),
    so plain ``+=`` cannot interleave. An increment costs ~60 ns instead of a prometheus_client
    child's ~400 ns (checks, call chain, lock), an observation of the score ~0.2 us instead of ~1.2 us
    (a linear scan of 20 buckets); the ~14 updates of a one-row infer request cost ~10 us before.
    """

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount


class LoopHistogramValue:
    """One series of a :class:`LoopHistogram`: per-bucket counts (not cumulative) and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        """Count ``amount`` in the first bucket whose upper bound is >= it (``le`` is inclusive), as
        prometheus_client does; NaN adds to the sum but to no bucket, as there."""
        self.sum += amount
        if not math.isnan(amount):
            self.counts[bisect.bisect_left(self.bounds, amount)] += 1


_V = TypeVar("_V", LoopValue, LoopHistogramValue)


class _LoopFamily(Collector, Generic[_V]):
    """A labelled family whose series are created once (``labels``) and then moved without a lock.

    Why not prometheus_client's Counter/Gauge/Histogram: see :class:`LoopValue`. Creating a series
    and reading the family take a lock (the loader thread binds series while scrapes may run); the
    exposition is the same text prometheus_client's own families give (same names, HELP, TYPE,
    series order, float values).
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], _V] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def labels(self, *values: str) -> _V:
        """The series with these label values, created at 0 (in exposition order) if new."""
        key = tuple(str(v) for v in values)
        series = self._series.get(key)
        if series is None:
            if len(key) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {key}")
            with self._lock:
                series = self._series.setdefault(key, self._new())
        return series

    def _new(self) -> _V:
        raise NotImplementedError

    def _family(self) -> Metric:
        raise NotImplementedError

    def _add(self, family: Metric, labels: tuple[str, ...], series: _V) -> None:
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        with self._lock:
            series = list(self._series.items())
        for labels, value in series:
            self._add(family, labels, value)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield self._family()


class _LoopScalar(_LoopFamily[LoopValue]):
    """A family of :class:`LoopValue` series, exposed as ``exposed`` (a counter or a gauge)."""

    exposed: type[CounterMetricFamily | GaugeMetricFamily]

    def _new(self) -> LoopValue:
        return LoopValue()

    def _family(self) -> Metric:
        return self.exposed(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Metric, labels: tuple[str, ...], series: LoopValue) -> None:
        assert isinstance(family, self.exposed)
        family.add_metric(labels, series.value)


class LoopCounter(_LoopScalar):
    """A counter family (``name`` without ``_total``, as prometheus_client's)."""

    exposed = CounterMetricFamily


class LoopGauge(_LoopScalar):
    """A gauge family."""

    exposed = GaugeMetricFamily


class LoopHistogram(_LoopFamily[LoopHistogramValue]):
    """A histogram family of :class:`LoopHistogramValue` series; ``buckets`` are the finite upper
    bounds (``+Inf`` is added), as given to prometheus_client's Histogram."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float],
    ) -> None:
        self.bounds = [float(b) for b in buckets]
        if self.bounds[-1] != math.inf:
            self.bounds.append(math.inf)
        self._names = [floatToGoString(b) for b in self.bounds]
        super().__init__(name, documentation, labelnames, registry)

    def _new(self) -> LoopHistogramValue:
        return LoopHistogramValue(self.bounds)

    def _family(self) -> Metric:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def _add(self, family: Metric, labels: tuple[str, ...], series: LoopHistogramValue) -> None:
        assert isinstance(family, HistogramMetricFamily)
        cumulative = itertools.accumulate(series.counts, initial=0.0)
        next(cumulative)
        family.add_metric(labels, list(zip(self._names, cumulative, strict=True)), series.sum)


@dataclass(frozen=True)
class BinColumn:
    """How one column of a matrix is binned.

    A column's *raw* bin is the number of ``edges`` strictly below the value (``np.searchsorted``
    with ``side="left"``: a value equal to an edge is in the lower bin); ``slots[raw]`` is the
    reference bin it counts in, or -1 for none. For numbers ``edges`` are the reference's and the
    raw bin is the reference bin. A category is sent as its index in the feature's ``categories``:
    the edges ``-0.5, 0.5, ..., n - 0.5`` give raw bin ``i + 1`` to index ``i`` (and 0 and ``n + 1``
    to values out of range), and ``slots`` maps it to the category's place in the reference's order.
    """

    index: int
    name: str
    reference: ReferenceBins
    edges: tuple[float, ...]
    slots: tuple[int, ...]

    @classmethod
    def of(cls, index: int, feature: Feature) -> BinColumn:
        reference = feature.reference
        assert reference is not None
        if feature.kind != "category":
            return cls(index, feature.name, reference, reference.edges, tuple(range(len(reference.fractions))))
        n = len(feature.categories)
        edges = tuple(i - 0.5 for i in range(n + 1))
        order = {name: i for i, name in enumerate(reference.categories)}
        slots = (-1, *(order.get(name, -1) for name in feature.categories), -1)
        return cls(index, feature.name, reference, edges, slots)


class BinCounter:
    """Counts the columns of a matrix into reference bins: one ``inc(n)`` per non-empty bin.

    The columns' raw bins are numbered in one range (column by column) and ``remap`` takes each to
    its counter child, or to the extra last slot that is thrown away. Edges are compared in the
    matrix's own precision (cast once per dtype), so a value sent as exactly an edge (``32.9`` in a
    float32 input is 32.900002) still lands in the bin below it.
    """

    def __init__(self, columns: Sequence[BinColumn], width: int, children: list[LoopValue]) -> None:
        self.width = width
        self.children = children
        self.drop = sum(len(c.reference.fractions) for c in columns)
        """The slot of values that count in no bin (a category outside the reference, or no category)."""
        assert len(children) == self.drop
        self.columns = np.asarray([c.index for c in columns], dtype=np.intp)
        self.position = {c.index: p for p, c in enumerate(columns)}
        self.every_column = [c.index for c in columns] == list(range(width))
        self.widest = max(len(c.edges) for c in columns)
        offsets: list[int] = []
        remap: list[int] = []
        first_child = 0
        for c in columns:
            offsets.append(len(remap))
            remap.extend(self.drop if s < 0 else first_child + s for s in c.slots)
            first_child += len(c.reference.fractions)
        self.offsets = np.asarray(offsets, dtype=np.intp)
        self.remap = np.asarray([*remap, self.drop], dtype=np.intp)
        self._remap = remap
        self._columns = columns
        self._edges: dict[np.dtype, tuple[np.ndarray, list[tuple[int, list[float], int]]]] = {}

    def _edges_for(self, dtype: np.dtype) -> tuple[np.ndarray, list[tuple[int, list[float], int]]]:
        """The edges in ``dtype``: padded with +inf as one ``(columns, widest)`` array for numpy, and
        as ``(column, edges as Python floats, raw offset)`` for bisect."""
        cached = self._edges.get(dtype)
        if cached is None:
            limit = float(np.finfo(dtype).max)
            padded = np.full((len(self._columns), self.widest), np.inf, dtype=dtype)
            lists = []
            for p, c in enumerate(self._columns):
                edges = np.clip(np.asarray(c.edges, dtype=np.float64), -limit, limit).astype(dtype)
                padded[p, : len(edges)] = edges
                lists.append((c.index, edges.astype(np.float64).tolist(), int(self.offsets[p])))
            cached = self._edges[dtype] = (padded, lists)
        return cached

    def count(self, matrix: np.ndarray, skip: Sequence[tuple[int, int]] = ()) -> None:
        if matrix.ndim != 2 or matrix.shape[1] != self.width or matrix.dtype.kind != "f" or not matrix.size:
            return
        if matrix.shape[0] == 1 and not skip:
            self._count_row(matrix)
            return
        if matrix.shape[0] * len(self.columns) <= SMALL_BIN_BATCH:
            counts = self._count_small(matrix, skip)
        else:
            counts = self._count_numpy(matrix, skip)
        children = self.children
        for slot, n in counts:
            children[slot].inc(n)

    def count_one(self, value: float, dtype: np.dtype) -> None:
        """Count one value of the first column (a one-row score), ``value`` exact in ``dtype``."""
        _, columns = self._edges_for(dtype)
        _, edges, offset = columns[0]
        slot = self._remap[offset + bisect.bisect_left(edges, value)]
        if slot != self.drop:
            self.children[slot].inc()

    def _count_row(self, matrix: np.ndarray) -> None:
        """:meth:`_count_small` for one row with nothing skipped (most requests): each value is counted
        as its bin is found, without grouping first (a :class:`LoopValue` increment costs less)."""
        _, columns = self._edges_for(matrix.dtype)
        row = matrix.tolist()[0]
        remap, children, drop = self._remap, self.children, self.drop
        for index, edges, offset in columns:
            slot = remap[offset + bisect.bisect_left(edges, row[index])]
            if slot != drop:
                children[slot].inc()

    def _count_small(self, matrix: np.ndarray, skip: Sequence[tuple[int, int]]) -> Iterable[tuple[int, int]]:
        _, columns = self._edges_for(matrix.dtype)
        remap = self._remap
        counts: dict[int, int] = {}
        skipped = set(skip) if skip else None
        for r, row in enumerate(matrix.tolist()):
            for index, edges, offset in columns:
                if skipped is None or (r, index) not in skipped:
                    slot = remap[offset + bisect.bisect_left(edges, row[index])]
                    counts[slot] = counts.get(slot, 0) + 1
        counts.pop(self.drop, None)
        return counts.items()

    def _count_numpy(self, matrix: np.ndarray, skip: Sequence[tuple[int, int]]) -> Iterable[tuple[int, int]]:
        padded, _ = self._edges_for(matrix.dtype)
        values = matrix if self.every_column else matrix[:, self.columns]
        keep = None
        if skip:
            keep = np.ones(values.shape, dtype=bool)
            for r, index in skip:
                p = self.position.get(index)
                if p is not None:
                    keep[r, p] = False
        step = max(1, BIN_CHUNK_CELLS // (values.shape[1] * self.widest))
        counts = None
        for start in range(0, values.shape[0], step):
            raw = (values[start : start + step, :, None] > padded).sum(axis=2)
            raw += self.offsets
            slots = self.remap[raw if keep is None else raw[keep[start : start + step]]]
            part = np.bincount(slots.ravel(), minlength=self.drop + 1)
            counts = part if counts is None else counts + part
        assert counts is not None
        nonzero = np.flatnonzero(counts[: self.drop])
        return zip(nonzero.tolist(), counts[nonzero].tolist(), strict=True)
