"""A comparison ("shadow") model beside the served one: both score every answered request.

Why: the shadow rollout strategy mirrors a share of live requests to the candidate revision and must
know how often the candidate agrees with the stable model *on the same requests*. Rather than join
two pods' predictions by request id somewhere, the candidate's pods load the stable revision's
model too (``--compare-model-uri``) and count, per answered row, whether both predict the same
class and how far apart their scores are (``modelserver_shadow_*``). The comparison never affects
the client's answer: :meth:`Shadow.run` and :meth:`Shadow.record` never raise, a failure is counted
(``modelserver_shadow_errors_total``) and logged now and then.

:func:`check_compatible` refuses at load time what could not be compared row by row: another input
signature (the same feeds would not run), other classes, or no classifier at all.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import LoadError
from .metadata import ModelMetadata
from .metrics import ShadowMetrics
from .model import OnnxModel, TensorSpec
from .predictions import PredictionReader, Predictions

log = logging.getLogger("modelserver.compare")
ERROR_LOG_EVERY = 1000
"""A failing comparison model is logged at its first failure and then once per this many failed batches:
it may fail on every request, and the served answers are fine."""


@dataclass(frozen=True)
class ShadowRun:
    """The comparison model's outputs for one batch, or why it has none."""

    outputs: dict[str, np.ndarray] | None
    error: str | None = None


@dataclass
class Shadow:
    """The loaded comparison model, how to read its predictions, and its series."""

    model: OnnxModel
    reader: PredictionReader
    revision: str
    """The ``compared_with`` label."""
    metrics: ShadowMetrics
    failures: int = 0
    """Failed batches so far (for the log's rate limit)."""

    def run(self, feeds: dict[str, np.ndarray]) -> ShadowRun:
        """Run the comparison model on the served model's feeds; a failure is returned, never raised."""
        try:
            return ShadowRun(self.model.run(feeds))
        except Exception as exc:  # onnxruntime's own types, or anything else: never the client's problem
            return ShadowRun(None, f"{type(exc).__name__}: {_first_line(exc)}")

    def record(self, run: ShadowRun, served: Predictions) -> None:
        """Count the batch's comparison with the served model's ``served`` predictions; never raises."""
        rows = len(served.classes)
        try:
            if run.outputs is None:
                self._failed(rows, run.error or "no outputs")
                return
            self._compare(self.reader.read(run.outputs), served)
        except Exception as exc:
            self._failed(rows, f"{type(exc).__name__}: {_first_line(exc)}")

    def _compare(self, theirs: Predictions, ours: Predictions) -> None:
        """One vectorised comparison per batch: class equality per row, then |score difference|."""
        rows = len(ours.classes)
        if len(theirs.classes) != rows:
            raise ValueError(f"the comparison model answered {len(theirs.classes)} rows for {rows}")
        if rows == 1 and ours.scores is not None and theirs.scores is not None:
            self._compare_one(ours.classes[0] == theirs.classes[0], ours.scores.item() - theirs.scores.item())
            return
        same = np.fromiter(map(operator.eq, ours.classes, theirs.classes), dtype=bool, count=rows)
        if ours.scores is None or theirs.scores is None:
            self.metrics.record(rows, int(np.count_nonzero(same)), None)
            return
        differences = np.abs(ours.scores.astype(np.float64) - theirs.scores.astype(np.float64))
        finite = np.isfinite(differences)
        if not finite.all():  # served scores are finite (or the request failed): theirs are not
            self._failed(rows - int(np.count_nonzero(finite)), "non-finite score")
            same, differences = same[finite], differences[finite]
        self.metrics.record(len(differences), int(np.count_nonzero(same)), differences)

    def _compare_one(self, same: bool, difference: float) -> None:
        """One row in Python floats (the scores' exact float64 values, as the numpy path): a fifth of
        the numpy path's fixed cost, and a single row is what most real-time requests are."""
        if math.isfinite(difference):
            self.metrics.record_one(same, abs(difference))
        else:
            self._failed(1, "non-finite score")

    def _failed(self, rows: int, error: str) -> None:
        self.metrics.record_errors(rows)
        self.failures += 1
        if self.failures % ERROR_LOG_EVERY == 1 or ERROR_LOG_EVERY == 1:
            log.warning(
                "the comparison model could not score a batch; the answers were sent as usual",
                extra={"compared_with": self.revision, "error": error, "rows": rows, "failed_batches": self.failures},
            )


def check_compatible(
    served: OnnxModel,
    served_reader: PredictionReader,
    served_metadata: ModelMetadata,
    other: OnnxModel,
    other_reader: PredictionReader,
    other_metadata: ModelMetadata,
) -> None:
    """Raise :class:`LoadError` (the problem, no fix) if ``other`` cannot be compared row by row.

    Why at load time: a comparison that fails on every request would only show as errors, and one
    that runs but compares other things (other classes, another feature order) would show as a
    plausible but meaningless agreement rate, which is worse.
    """
    if not served_reader.is_classifier:
        raise LoadError("the served model is no classifier (no label or score output): there is nothing to compare")
    if not other_reader.is_classifier:
        raise LoadError("it is no classifier (no label or score output) while the served model is one")
    problem = _input_problem(served.inputs, other.input_by_name)
    if problem is not None:
        raise LoadError(f"{problem}, so the served model's requests cannot be run on it")
    if other_metadata.classes != served_metadata.classes:
        raise LoadError(
            f"its classes {list(other_metadata.classes)} (its metadata.json) differ from the served model's "
            f"{list(served_metadata.classes)}"
        )
    if other_metadata.positive_class != served_metadata.positive_class:
        raise LoadError(
            f"its positive_class {other_metadata.positive_class!r} differs from the served model's "
            f"{served_metadata.positive_class!r}, so their scores are of different classes"
        )
    _check_scores(served, served_reader, other, other_reader)
    _check_features(served_metadata, other_metadata)


def _input_problem(ours: Sequence[TensorSpec], theirs: dict[str, TensorSpec]) -> str | None:
    """Every feed the served model accepts must fit the other one: same names and datatypes, and each
    dim either equal or variable there."""
    names = sorted(t.name for t in ours)
    if names != sorted(theirs):
        return f"its inputs {sorted(theirs)} differ from the served model's {names}"
    for spec in ours:
        other = theirs[spec.name]
        fits = len(other.shape) == len(spec.shape) and all(
            o in (-1, s) for o, s in zip(other.shape, spec.shape, strict=True)
        )
        if other.datatype != spec.datatype or not fits:
            return (
                f"its input {spec.name!r} is {other.datatype.v2} {list(other.shape)}, the served model's "
                f"{spec.datatype.v2} {list(spec.shape)}"
            )
    return None


def _check_scores(
    served: OnnxModel, served_reader: PredictionReader, other: OnnxModel, reader: PredictionReader
) -> None:
    """Both have a score (and as many score columns, when both say) or neither has one."""
    if (served_reader.score_output is None) != (reader.score_output is None):
        which = "it has no score output while the served model has one"
        if reader.score_output is not None:
            which = "it has a score output while the served model has none"
        raise LoadError(f"{which}: score differences could not be measured")
    if served_reader.score_output is None or reader.score_output is None:
        return
    ours = served.output_by_name[served_reader.score_output].shape[-1]
    theirs = other.output_by_name[reader.score_output].shape[-1]
    if -1 not in (ours, theirs) and ours != theirs:
        raise LoadError(f"its scores have {theirs} columns, the served model's {ours}")


def _check_features(served: ModelMetadata, other: ModelMetadata) -> None:
    """The same feature columns in the same order (and category encodings), when both declare them."""
    if not served.features or not other.features:
        return
    ours = [(f.name, f.kind, f.categories) for f in served.features]
    theirs = [(f.name, f.kind, f.categories) for f in other.features]
    if ours != theirs:
        raise LoadError(
            f"its features {[f[0] for f in theirs]} (its metadata.json, with their types and categories) differ "
            f"from the served model's {[f[0] for f in ours]}: the same input columns would mean other things"
        )


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
