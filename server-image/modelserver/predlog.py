"""Sampled structured prediction log: one JSON line per sampled prediction on stdout.

Why: metrics say *that* something changed; a sample of raw predictions says *what*. Lines go to
stdout (the container log stream, where collectors already look), server logs go to stderr, so
the two never mix. Sampling keeps the cost negligible on the hot path.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from typing import IO, Any

import numpy as np
import orjson


class PredictionLogger:
    """Writes ``{"time","id","model","revision","latency_ms","outputs"[,"inputs"]}`` lines."""

    def __init__(
        self,
        model: str,
        revision: str,
        sample_rate: float,
        log_inputs: bool = False,
        stream: IO[str] | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.model = model
        self.revision = revision
        self.sample_rate = sample_rate
        self.log_inputs = log_inputs
        self.stream = stream or sys.stdout
        self.rng = rng

    def sampled(self) -> bool:
        """Decide once per request (cheap when the rate is 0 or 1)."""
        rate = self.sample_rate
        return rate >= 1.0 or (rate > 0.0 and self.rng() < rate)

    def write(
        self,
        request_id: str,
        latency_s: float,
        outputs: dict[str, np.ndarray],
        inputs: dict[str, np.ndarray] | None = None,
    ) -> None:
        record: dict[str, Any] = {
            "time": time.time(),
            "id": request_id,
            "model": self.model,
            "revision": self.revision,
            "latency_ms": round(latency_s * 1000, 3),
            "outputs": {k: _jsonable(v) for k, v in outputs.items()},
        }
        if self.log_inputs and inputs is not None:
            record["inputs"] = {k: _jsonable(v) for k, v in inputs.items()}
        self.stream.write(orjson.dumps(record).decode() + "\n")
        self.stream.flush()


_NULL = np.array(None, dtype=object)
"""JSON null for non-finite floats (what ``np.where`` would make of a bare None, spelled as the array it is)."""


def _jsonable(array: np.ndarray) -> Any:
    if array.dtype.kind == "f":
        return np.where(np.isfinite(array), array, _NULL).tolist()
    if array.dtype.kind == "O":
        return [str(v) for v in array.ravel().tolist()]
    return array.tolist()
