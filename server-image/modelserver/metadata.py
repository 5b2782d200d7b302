"""Parse and validate the optional ``metadata.json`` that sits beside a model.

Why: ONNX graphs know tensor shapes but not what a column *means*. The metadata names the features
(so clients can send ``{"amount": 12.5, "channel": "web"}`` instead of positional floats), says how to
impute missing values, names the classes (so Prometheus sees ``class="fraud"``, not ``1``) and which
outputs hold labels and scores, and gives the training distribution of every feature and of the
prediction score in bins (``reference_bins``), which the server exports beside its own per-bin counts
so drift can be judged from Prometheus alone. It is validated strictly at load time: a bad metadata
file is a load error, never a surprise at request time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import LoadError

NUMBER_STRATEGIES = frozenset({"mean", "median", "constant"})
CATEGORY_STRATEGIES = frozenset({"most_frequent", "constant", "missing"})
DEFAULT_MAX_MISSING_FRACTION = 0.5
MAX_REFERENCE_BINS = 64
"""Bins per reference distribution: each bin is two Prometheus series per revision."""
FRACTION_TOLERANCE = 0.01
PREDICTION_SCORE_FEATURE = "_prediction_score"
"""The ``feature`` label value of the prediction score's bins; no feature may be called that."""


@dataclass(frozen=True)
class ReferenceBins:
    """A training distribution in bins: ``fractions[i]`` of the training values fell in bin ``i``.

    Numbers (and the prediction score) have ``edges``: bin ``i`` holds the values ``<= edges[i]``
    and ``> edges[i - 1]``, the last bin everything above the last edge. Categories have
    ``categories`` instead: bin ``i`` is ``categories[i]`` (an order of its own, not necessarily the
    feature's).
    """

    fractions: tuple[float, ...]
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Feature:
    """One named input column: ``number`` or ``category`` (encoded as its index in ``categories``)."""

    name: str
    kind: str
    categories: tuple[str, ...] = ()
    impute_strategy: str | None = None
    impute_value: float | str | None = None
    reference: ReferenceBins | None = None

    @property
    def imputable(self) -> bool:
        return self.impute_strategy is not None

    def encode_category(self, value: str) -> int:
        return self.categories.index(value)


@dataclass(frozen=True)
class ModelMetadata:
    """The parsed ``metadata.json``; every field optional except what a feature schema needs."""

    input_name: str | None = None
    label_output: str | None = None
    score_output: str | None = None
    classes: tuple[str, ...] = ()
    positive_class: str | None = None
    features: tuple[Feature, ...] = ()
    max_missing_fraction: float = DEFAULT_MAX_MISSING_FRACTION
    score_reference: ReferenceBins | None = None
    """``prediction_score_reference_bins``: the training distribution of the prediction score."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)


def parse_metadata(data: bytes, source: str = "metadata.json") -> ModelMetadata:
    """Parse ``data``; raise :class:`LoadError` naming the first problem found."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise LoadError(f"{source}: invalid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise LoadError(f"{source}: expected a JSON object at the top level")
    outputs = _optional_dict(doc, "outputs", source)
    classes = tuple(_string_list(doc.get("classes", []), f"{source}: classes"))
    if len(set(classes)) != len(classes):
        raise LoadError(f"{source}: classes must be unique")
    positive = _optional_str(doc, "positive_class", source)
    if positive is not None and positive not in classes:
        raise LoadError(f"{source}: positive_class {positive!r} is not one of classes {list(classes)}")
    features = tuple(_parse_feature(f, i, source) for i, f in enumerate(_list(doc, "features", source)))
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        raise LoadError(f"{source}: feature names must be unique")
    return ModelMetadata(
        input_name=_optional_str(doc, "input", source),
        label_output=_optional_str(outputs, "label", f"{source}: outputs"),
        score_output=_optional_str(outputs, "scores", f"{source}: outputs"),
        classes=classes,
        positive_class=positive,
        features=features,
        max_missing_fraction=_fraction(doc.get("max_missing_fraction", DEFAULT_MAX_MISSING_FRACTION), source),
        score_reference=_parse_reference(
            doc.get("prediction_score_reference_bins"), "number", (), f"{source}: prediction_score_reference_bins"
        ),
        raw=doc,
    )


def _parse_feature(spec: Any, index: int, source: str) -> Feature:
    where = f"{source}: features[{index}]"
    if not isinstance(spec, dict):
        raise LoadError(f"{where}: expected an object")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise LoadError(f"{where}.name: expected a non-empty string")
    if name == PREDICTION_SCORE_FEATURE:
        raise LoadError(f"{where}.name: {name!r} is reserved (the prediction score's feature label in metrics)")
    kind = spec.get("type")
    if kind not in ("number", "category"):
        raise LoadError(f"{where}.type: expected 'number' or 'category', got {kind!r}")
    categories = tuple(_string_list(spec.get("categories", []), f"{where}.categories"))
    if kind == "category" and not categories:
        raise LoadError(f"{where}.categories: a category feature needs a non-empty list of categories")
    strategy, value = _parse_impute(spec.get("impute"), kind, categories, f"{where}.impute")
    reference = _parse_reference(spec.get("reference_bins"), kind, categories, f"{where}.reference_bins")
    return Feature(name, kind, categories, strategy, value, reference)


def _parse_reference(spec: Any, kind: str, categories: tuple[str, ...], where: str) -> ReferenceBins | None:
    """``{"edges", "fractions"}`` (numbers, the score) or ``{"categories", "fractions"}`` (categories)."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        keys = "edges" if kind == "number" else "categories"
        raise LoadError(f"{where}: expected an object with {keys} and fractions")
    fractions = _finite_numbers(spec.get("fractions"), f"{where}.fractions")
    if kind == "number":
        if "categories" in spec:
            raise LoadError(f"{where}.categories: not allowed for numbers (bins have edges)")
        edges = _finite_numbers(spec.get("edges"), f"{where}.edges")
        if not edges:
            raise LoadError(f"{where}.edges: expected at least one edge")
        for i in range(1, len(edges)):
            if edges[i] <= edges[i - 1]:
                raise LoadError(f"{where}.edges: must be strictly increasing; edges[{i}] = {edges[i]:g} is not")
        if len(fractions) != len(edges) + 1:
            raise LoadError(
                f"{where}.fractions: {len(edges)} edges make {len(edges) + 1} bins, got {len(fractions)} fractions"
            )
        ref_categories: tuple[str, ...] = ()
    else:
        if "edges" in spec:
            raise LoadError(f"{where}.edges: not allowed for a category feature (bins are its categories)")
        ref_categories = tuple(_string_list(spec.get("categories"), f"{where}.categories"))
        if not ref_categories:
            raise LoadError(f"{where}.categories: expected at least one category")
        if len(set(ref_categories)) != len(ref_categories):
            raise LoadError(f"{where}.categories: must be unique")
        unknown = next((c for c in ref_categories if c not in categories), None)
        if unknown is not None:
            known = list(categories)
            raise LoadError(f"{where}.categories: {unknown!r} is not one of the feature's categories {known}")
        if len(fractions) != len(ref_categories):
            raise LoadError(
                f"{where}.fractions: {len(ref_categories)} categories need as many fractions, got {len(fractions)}"
            )
        edges = ()
    if len(fractions) > MAX_REFERENCE_BINS:
        raise LoadError(f"{where}: {len(fractions)} bins, at most {MAX_REFERENCE_BINS} allowed")
    negative = next((i for i, f in enumerate(fractions) if f < 0), None)
    if negative is not None:
        raise LoadError(f"{where}.fractions: must be >= 0; fractions[{negative}] = {fractions[negative]:g}")
    if abs(math.fsum(fractions) - 1.0) > FRACTION_TOLERANCE:
        raise LoadError(
            f"{where}.fractions: must add up to 1 (+-{FRACTION_TOLERANCE:g}), they add up to {math.fsum(fractions):.4g}"
        )
    return ReferenceBins(fractions, edges, ref_categories)


def _finite_numbers(value: Any, where: str) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise LoadError(f"{where}: expected a list of numbers")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise LoadError(f"{where}[{i}]: expected a finite number, got {v!r}")
    return tuple(float(v) for v in value)


def _parse_impute(
    spec: Any, kind: str, categories: tuple[str, ...], where: str
) -> tuple[str | None, float | str | None]:
    """Imputation is pre-computed offline (mean/median of training data): the server only applies it."""
    if spec is None:
        return None, None
    if not isinstance(spec, dict):
        raise LoadError(f"{where}: expected an object with strategy and value")
    strategy = spec.get("strategy")
    value = spec.get("value")
    if kind == "number":
        if strategy not in NUMBER_STRATEGIES:
            raise LoadError(f"{where}.strategy: expected one of {sorted(NUMBER_STRATEGIES)}, got {strategy!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise LoadError(f"{where}.value: expected a finite number")
        return strategy, float(value)
    if strategy not in CATEGORY_STRATEGIES:
        raise LoadError(f"{where}.strategy: expected one of {sorted(CATEGORY_STRATEGIES)}, got {strategy!r}")
    if strategy == "missing" and value is None:
        value = "missing"
    if value not in categories:
        raise LoadError(f"{where}.value: {value!r} is not one of the categories {list(categories)}")
    return strategy, value


def _list(doc: dict[str, Any], key: str, source: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise LoadError(f"{source}: {key} must be a list")
    return value


def _string_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise LoadError(f"{where}: expected a list of non-empty strings")
    return value


def _optional_dict(doc: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise LoadError(f"{source}: {key} must be an object")
    return value


def _optional_str(doc: dict[str, Any], key: str, source: str) -> str | None:
    value = doc.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise LoadError(f"{source}: {key} must be a non-empty string")
    return value


def _fraction(value: Any, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise LoadError(f"{source}: max_missing_fraction must be a number in [0, 1]")
    return float(value)
