"""Interpret model outputs as classification predictions: a class name and a score per row.

Why: prediction-distribution metrics, the feedback join and the prediction log all need "which
class did the model predict, with what score" — independent of how a converter named its outputs.
``metadata.json`` can name the label and score outputs; otherwise the first integer/string output
of rank 1 is the label and the first float output of rank 2 holds per-class scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .metadata import ModelMetadata
from .model import OnnxModel, TensorSpec


@dataclass(slots=True)
class Predictions:
    """Per-row predicted class names and scores (empty when the model is not a classifier).

    Not ``frozen``, though never changed: one is built per batch, and a frozen dataclass costs 4x
    as much to build.
    """

    classes: list[str]
    scores: np.ndarray | None

    def counts(self) -> list[tuple[str, int]]:
        """``(class, rows)`` in order of first appearance (what ``Counter`` gives, without building one)."""
        classes = self.classes
        if len(classes) == 1:
            return [(classes[0], 1)]
        counts: dict[str, int] = {}
        for name in classes:
            counts[name] = counts.get(name, 0) + 1
        return list(counts.items())


class PredictionReader:
    """Knows which outputs carry labels and scores and how to name the classes."""

    def __init__(self, model: OnnxModel, metadata: ModelMetadata) -> None:
        self.class_names = metadata.classes
        self.label_output = _pick(model, metadata.label_output, _is_label)
        self.score_output = _pick(model, metadata.score_output, _is_score)
        self.positive_index = (
            metadata.classes.index(metadata.positive_class) if metadata.positive_class is not None else None
        )

    @property
    def is_classifier(self) -> bool:
        return self.label_output is not None or self.score_output is not None

    def read(self, outputs: dict[str, np.ndarray]) -> Predictions:
        scores_matrix = outputs[self.score_output] if self.score_output else None
        if scores_matrix is not None:
            scores_matrix = scores_matrix.reshape(scores_matrix.shape[0], -1)
        if self.label_output is not None:
            classes = self._names(outputs[self.label_output].ravel())
        elif scores_matrix is not None:
            classes = self._names(scores_matrix.argmax(axis=1))
        else:
            return Predictions([], None)
        return Predictions(classes, self._scores(scores_matrix))

    def _scores(self, matrix: np.ndarray | None) -> np.ndarray | None:
        if matrix is None or matrix.shape[1] == 0:
            return None
        if self.positive_index is not None and self.positive_index < matrix.shape[1]:
            return matrix[:, self.positive_index]
        return matrix.max(axis=1)

    def _names(self, labels: np.ndarray) -> list[str]:
        names = self.class_names
        if labels.dtype.kind in "iu":
            n = len(names)
            return [names[v] if 0 <= v < n else str(v) for v in labels.tolist()]
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in labels.tolist()]

    def class_for_truth(self, truth: object) -> str | None:
        """Normalise a ground-truth value (class name or class index) to a class name."""
        if isinstance(truth, bool):
            return None
        if isinstance(truth, int):
            if self.class_names:
                return self.class_names[truth] if 0 <= truth < len(self.class_names) else None
            return str(truth)
        if isinstance(truth, str) and truth:
            if self.class_names and truth not in self.class_names:
                return None
            return truth
        return None


def _pick(model: OnnxModel, named: str | None, predicate: Callable[[TensorSpec], bool]) -> str | None:
    if named is not None and named in model.output_by_name:
        return named
    return next((t.name for t in model.outputs if predicate(t)), None)


def _is_label(spec: TensorSpec) -> bool:
    return spec.datatype.kind in ("int", "bytes") and len(spec.shape) in (1, 2) and spec.shape[-1] in (-1, 1)


def _is_score(spec: TensorSpec) -> bool:
    return spec.datatype.kind == "float" and len(spec.shape) == 2
