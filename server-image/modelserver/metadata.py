"""Parse and validate the optional ``metadata.json`` that sits beside a model.

Why: ONNX graphs know tensor shapes but not what a column *means*. The metadata names the features
(so clients can send ``{"amount": 12.5, "channel": "web"}`` instead of positional floats), says how to
impute missing values, names the classes (so Prometheus sees ``class="fraud"``, not ``1``) and which
outputs hold labels and scores. It is validated strictly at load time: a bad metadata file is a load
error, never a surprise at request time.
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


@dataclass(frozen=True)
class Feature:
    """One named input column: ``number`` or ``category`` (encoded as its index in ``categories``)."""

    name: str
    kind: str
    categories: tuple[str, ...] = ()
    impute_strategy: str | None = None
    impute_value: float | str | None = None

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
        raw=doc,
    )


def _parse_feature(spec: Any, index: int, source: str) -> Feature:
    where = f"{source}: features[{index}]"
    if not isinstance(spec, dict):
        raise LoadError(f"{where}: expected an object")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise LoadError(f"{where}.name: expected a non-empty string")
    kind = spec.get("type")
    if kind not in ("number", "category"):
        raise LoadError(f"{where}.type: expected 'number' or 'category', got {kind!r}")
    categories = tuple(_string_list(spec.get("categories", []), f"{where}.categories"))
    if kind == "category" and not categories:
        raise LoadError(f"{where}.categories: a category feature needs a non-empty list of categories")
    strategy, value = _parse_impute(spec.get("impute"), kind, categories, f"{where}.impute")
    return Feature(name, kind, categories, strategy, value)


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
