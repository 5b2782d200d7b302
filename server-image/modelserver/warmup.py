"""Warmup inferences and the self-check that gate readiness.

Why: the first calls into onnxruntime allocate arenas and pick kernels, so a pod that reports Ready
straight after loading serves its first real requests slowly — exactly when a canary is judged.
Warmup runs N inferences on inputs synthesised from the model signature (or from the feature
schema, which gives realistic rows). The self-check then runs one *reference* input — the
imputation values of every feature, or a fixed-seed synthetic input — and demands finite outputs;
a model that cannot answer that never becomes ready.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import LoadError
from .features import encode_value
from .metadata import ModelMetadata
from .model import OnnxModel, TensorSpec

WARMUP_BATCH = 1


@dataclass(frozen=True)
class WarmupResult:
    seconds: float
    mean_latency_s: float
    runs: int


def synthetic_feeds(model: OnnxModel, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs matching each input's datatype and shape (variable dims set to 1)."""
    return {spec.name: _synthetic(spec, rng) for spec in model.inputs}


def _synthetic(spec: TensorSpec, rng: np.random.Generator) -> np.ndarray:
    shape = tuple(WARMUP_BATCH if d == -1 else d for d in spec.shape)
    kind = spec.datatype.kind
    if kind == "float":
        return rng.standard_normal(shape).astype(spec.datatype.dtype)
    if kind == "int":
        return rng.integers(0, 2, size=shape).astype(spec.datatype.dtype)
    if kind == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    return np.full(shape, "warmup", dtype=object)


def reference_feeds(model: OnnxModel, metadata: ModelMetadata) -> dict[str, np.ndarray]:
    """The self-check input: feature imputation values when the schema has them for every feature."""
    target = feature_input(model, metadata)
    feeds = synthetic_feeds(model, np.random.default_rng(0))
    if target is not None and all(f.imputable for f in metadata.features):
        row = [encode_value(f, f.impute_value) for f in metadata.features]
        feeds[target.name] = np.asarray([row], dtype=target.datatype.dtype)
    return feeds


def feature_input(model: OnnxModel, metadata: ModelMetadata) -> TensorSpec | None:
    """The input that named features encode into, if the schema and the model agree on its width."""
    if not metadata.features:
        return None
    name = metadata.input_name or (model.inputs[0].name if len(model.inputs) == 1 else None)
    spec = model.input_by_name.get(name) if name else None
    if spec is None:
        raise LoadError(f"metadata.json: input {name!r} is not an input of the model")
    width = len(metadata.features)
    if spec.datatype.kind != "float" or len(spec.shape) != 2 or spec.shape[1] not in (-1, width):
        raise LoadError(
            f"metadata.json: {width} features do not fit input {spec.name!r} "
            f"({spec.datatype.v2} {list(spec.shape)}); expected a float input of shape [-1, {width}]"
        )
    if len(model.inputs) != 1:
        raise LoadError("metadata.json: named features need a model with exactly one input")
    return spec


def run_warmup(
    model: OnnxModel,
    metadata: ModelMetadata,
    requests: int,
    progress: Callable[[int], None] = lambda _: None,
) -> WarmupResult:
    """Run ``requests`` warmup inferences, then the self-check; raise :class:`LoadError` on failure."""
    rng = np.random.default_rng(12345)
    start = time.perf_counter()
    timed = 0.0
    for i in range(requests):
        feeds = synthetic_feeds(model, rng)
        if i % 2 == 1:
            feeds = reference_feeds(model, metadata)
        t0 = time.perf_counter()
        try:
            model.run(feeds)
        except Exception as exc:  # a model that cannot run synthetic inputs is unfit to serve
            raise LoadError(f"warmup inference {i + 1} failed: {exc}") from exc
        timed += time.perf_counter() - t0
        progress(i + 1)
    self_check(model, metadata)
    seconds = time.perf_counter() - start
    return WarmupResult(seconds, timed / requests if requests else 0.0, requests)


def self_check(model: OnnxModel, metadata: ModelMetadata) -> None:
    """One prediction on the reference input must succeed with finite outputs."""
    try:
        outputs = model.run(reference_feeds(model, metadata))
    except Exception as exc:
        raise LoadError(f"self-check prediction failed: {exc}") from exc
    for name, array in outputs.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise LoadError(f"self-check prediction produced non-finite values in output {name!r}")
