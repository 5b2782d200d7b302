"""Everything needed to serve predictions once the model is loaded, and the prediction path itself.

Why one object: the infer handler should do HTTP, not bookkeeping. :meth:`Runtime.run` runs the
session — inline on the event loop for sub-millisecond models (micro-batched when requests arrive
together), or in a thread pool for slow ones so probes and other requests keep flowing;
:meth:`Runtime.check_outputs` refuses non-finite outputs and :meth:`Runtime.record` counts the
predictions and caches them for feedback.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .batching import MicroBatcher
from .codec import find_non_finite
from .errors import ApiError
from .features import FeatureEncoder
from .feedback import PredictionCache
from .metadata import ModelMetadata
from .metrics import ServerMetrics
from .model import OnnxModel, TensorSpec
from .predictions import PredictionReader
from .predlog import PredictionLogger
from .tokens import ReplayGuard, TokenCodec


@dataclass
class Runtime:
    """The loaded model and its helpers; built by :mod:`modelserver.startup`."""

    model: OnnxModel
    metadata: ModelMetadata
    version: str
    sha256: str
    reader: PredictionReader
    encoder: FeatureEncoder | None
    feature_input: TensorSpec | None
    cache: PredictionCache
    metrics: ServerMetrics
    predlog: PredictionLogger
    tokens: TokenCodec | None = None
    """Issues and verifies prediction tokens; None without ``--feedback-key-file``."""
    replay: ReplayGuard | None = None
    """Nonces of tokens this process has counted (replays to this pod are not counted twice)."""
    executor: ThreadPoolExecutor | None = None
    batcher: MicroBatcher | None = None

    async def run(self, feeds: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        """Run the session; invalid-argument errors from onnxruntime are the client's (400)."""
        try:
            if self.batcher is not None:
                return await self.batcher.run(feeds, rows)
            if self.executor is None:
                return self.model.run(feeds)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, self.model.run, feeds)
        except Exception as exc:
            raise _classify_runtime_error(exc) from None

    def check_outputs(self, outputs: dict[str, np.ndarray]) -> None:
        """Non-finite outputs are a model fault: 500, never NaN to a client."""
        bad = find_non_finite(outputs)
        if bad is not None:
            raise ApiError(500, f"model produced non-finite values in output {bad!r}")

    def record(self, request_id: str, outputs: dict[str, np.ndarray]) -> str | None:
        """Count the predicted classes/scores, cache them for feedback and return the prediction token.

        The token is None when the model is no classifier, tokens are off, or the batch is so large
        that its token would exceed :data:`modelserver.tokens.MAX_TOKEN_CHARS`.
        """
        if not self.reader.is_classifier:
            return None
        predictions = self.reader.read(outputs)
        scores = predictions.scores
        self.metrics.record_predictions(predictions.counts(), () if scores is None else scores.tolist())
        self.cache.put(request_id, tuple(predictions.classes))
        if self.tokens is None or not predictions.classes:
            return None
        return self.tokens.issue(predictions.classes)


def _classify_runtime_error(exc: Exception) -> ApiError:
    name = type(exc).__name__
    if name in ("InvalidArgument", "InvalidProtobuf") or "INVALID_ARGUMENT" in str(exc):
        return ApiError(400, f"the model rejected the input: {_first_line(exc)}")
    return ApiError(500, f"inference failed: {_first_line(exc)}")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
