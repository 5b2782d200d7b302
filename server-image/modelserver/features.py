"""Named-feature requests: strict validation, configured imputation, encoding to the model input.

Why: positional float vectors are where silent serving bugs live (a swapped column still "works").
With a feature schema in ``metadata.json`` clients send ``{"amount": 12.5, "channel": "web"}``; the
server rejects unknown, wrong-typed or unimputable-missing fields (listing *all* problems in one
400), imputes the rest as configured and counts every missing and imputed value per feature so a
data-quality regression shows up in Prometheus before it shows up in accuracy.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import bad_request
from .metadata import Feature, ModelMetadata

MAX_REPORTED_ERRORS = 20
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class EncodedFeatures:
    """The model input matrix, per-feature missing/imputed counts, and every problem found.

    Problems are returned rather than raised so the caller can count missing values of rejected
    requests too (a data-quality signal) before answering 400.
    """

    matrix: np.ndarray
    missing: Counter[str] = field(default_factory=Counter)
    imputed: Counter[str] = field(default_factory=Counter)
    imputed_cells: list[tuple[int, int]] = field(default_factory=list)
    """``(row, column)`` of every imputed value: not an observation, so not counted in the drift bins."""
    errors: list[str] = field(default_factory=list)

    def raise_for_errors(self) -> None:
        if self.errors:
            shown = self.errors[:MAX_REPORTED_ERRORS]
            more = f"; and {len(self.errors) - len(shown)} more" if len(self.errors) > len(shown) else ""
            raise bad_request("; ".join(shown) + more, errors=shown)


class FeatureEncoder:
    """Turns ``parameters.features`` (one object or a list of objects) into the model's input."""

    def __init__(self, metadata: ModelMetadata, max_missing_fraction: float | None = None) -> None:
        self.features = metadata.features
        self.index = {f.name: i for i, f in enumerate(self.features)}
        self.max_missing_fraction = (
            metadata.max_missing_fraction if max_missing_fraction is None else max_missing_fraction
        )

    def encode(self, payload: Any, max_batch: int) -> EncodedFeatures:
        """Validate, impute and encode every row; problems are collected in ``errors``.

        A payload that is not an object/list of objects, or an oversized batch, raises 400 at once.
        """
        rows = [payload] if isinstance(payload, dict) else payload
        if not isinstance(rows, list) or not rows:
            raise bad_request("parameters.features: expected an object or a non-empty list of objects")
        if len(rows) > max_batch:
            raise bad_request(f"parameters.features: batch of {len(rows)} exceeds the limit of {max_batch}")
        out = EncodedFeatures(np.zeros((len(rows), len(self.features)), dtype=np.float32))
        for r, row in enumerate(rows):
            where = "parameters.features" if isinstance(payload, dict) else f"parameters.features[{r}]"
            out.errors.extend(self._encode_row(row, out, r, where))
        return out

    def _encode_row(self, row: Any, out: EncodedFeatures, r: int, where: str) -> list[str]:
        if not isinstance(row, dict):
            return [f"{where}: expected an object of feature values"]
        errors = [f"{where}.{k}: unknown feature" for k in row if k not in self.index]
        missing = [f for f in self.features if row.get(f.name) is None]
        for feature in missing:
            out.missing[feature.name] += 1
            if not feature.imputable:
                errors.append(f"{where}.{feature.name}: missing and has no imputation configured")
        fraction = len(missing) / len(self.features)
        if missing and fraction > self.max_missing_fraction:
            errors.append(
                f"{where}: {len(missing)} of {len(self.features)} features missing "
                f"({', '.join(f.name for f in missing)}), above the limit of {self.max_missing_fraction:g}"
            )
        for i, feature in enumerate(self.features):
            value = row.get(feature.name)
            if value is None:
                if feature.imputable:
                    out.matrix[r, i] = encode_value(feature, feature.impute_value)
                    out.imputed[feature.name] += 1
                    out.imputed_cells.append((r, i))
                continue
            problem = _check(feature, value)
            if problem:
                errors.append(f"{where}.{feature.name}: {problem}")
            else:
                out.matrix[r, i] = encode_value(feature, value)
        return errors


def _check(feature: Feature, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``feature``, or None."""
    if feature.kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {_type_name(value)}"
        if (isinstance(value, float) and not math.isfinite(value)) or abs(value) > _FLOAT32_MAX:
            return "expected a finite number within float32 range"
        return None
    if not isinstance(value, str):
        return f"expected one of the categories {list(feature.categories)}, got {_type_name(value)}"
    if value not in feature.categories:
        return f"unknown category {value[:60]!r}; expected one of {list(feature.categories)}"
    return None


def encode_value(feature: Feature, value: Any) -> float:
    """A checked value (or the imputation value) as the number the model sees: a category's index."""
    return float(feature.encode_category(value)) if feature.kind == "category" else float(value)


def _type_name(value: Any) -> str:
    names = {bool: "boolean", str: "string", list: "list", dict: "object", int: "integer", float: "number"}
    return names.get(type(value), type(value).__name__)
