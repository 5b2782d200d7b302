"""Everything needed to serve predictions once the model is loaded, and the prediction path itself.

Why one object: the infer handler should do HTTP, not bookkeeping. :meth:`Runtime.run` runs the
session — inline on the event loop for sub-millisecond models (micro-batched when requests arrive
together), or in a thread pool for slow ones so probes and other requests keep flowing — and
:meth:`Runtime.score` refuses non-finite outputs, counts the predictions (and their scores' drift
bins) and signs their tokens, once per batch; :meth:`Runtime.count_inputs` counts an answered
request's features into their drift bins; :meth:`Runtime.remember` caches a request's classes for
feedback by id. With a comparison model (``--compare-model-uri``, :mod:`modelserver.compare`), every
``session.run`` of the served model is followed by one of the comparison model on the same feeds, in
the same place (inline, or the same executor call), and :meth:`Runtime.score` counts their agreement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .batching import MicroBatcher, split_rows
from .codec import find_non_finite
from .compare import Shadow, ShadowRun
from .errors import ApiError
from .features import FeatureEncoder
from .feedback import PredictionCache
from .metadata import ModelMetadata
from .metrics import ServerMetrics
from .model import OnnxModel, TensorSpec
from .predictions import PredictionReader
from .predlog import PredictionLogger
from .tokens import ReplayGuard, TokenCodec


@dataclass(slots=True)
class Answer:
    """One request's outputs, its predicted class per row, and its prediction token.

    Never changed once built; not ``frozen`` because a frozen dataclass costs 4x as much to build,
    and one is built per request.
    """

    outputs: dict[str, np.ndarray]
    classes: list[str]
    """Empty when the model is no classifier."""
    token: str | None
    """None when tokens are off, the model is no classifier, or the token would be oversize."""


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
    batcher: MicroBatcher[Answer] | None = None
    shadow: Shadow | None = None
    """The comparison model (``--compare-model-uri``); None when off."""

    async def run(self, feeds: dict[str, np.ndarray], rows: int, alone: bool = False) -> Answer:
        """Run the session and score the request; invalid-argument errors from onnxruntime are 400s.

        ``alone``: no other request is in progress, so the micro-batcher need not wait for company
        (:meth:`MicroBatcher.run`)."""
        try:
            if self.batcher is not None:
                return await self.batcher.run(feeds, rows, alone)
            if self.executor is None:
                return self.infer_batch(feeds, [rows])[0]
            loop = asyncio.get_running_loop()
            outputs, compared = await loop.run_in_executor(self.executor, self.run_models, feeds)
        except ApiError:
            raise
        except Exception as exc:
            raise _classify_runtime_error(exc) from None
        return self.score(outputs, [rows], compared)[0]

    def infer_batch(self, feeds: dict[str, np.ndarray], rows: list[int]) -> list[Answer]:
        """One ``session.run`` for requests of ``rows`` rows each (the micro-batcher's batch function)."""
        outputs, compared = self.run_models(feeds)
        return self.score(outputs, rows, compared)

    def run_models(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], ShadowRun | None]:
        """The served model's outputs (its errors propagate), then the comparison model's run on the same
        feeds when there is one (its errors are returned, never raised: they are not the client's)."""
        outputs = self.model.run(feeds)
        return outputs, None if self.shadow is None else self.shadow.run(feeds)

    def score(self, outputs: dict[str, np.ndarray], rows: list[int], compared: ShadowRun | None = None) -> list[Answer]:
        """Refuse non-finite outputs, count the predicted classes and scores, sign each request's token,
        and count the comparison model's agreement (``compared``) with the answered rows.

        Done once per batch: one vectorised read of the classes, one metrics update, and the tokens
        signed back to back (``MicroBatcher``'s docstring says why that matters).
        """
        bad = find_non_finite(outputs)
        if bad is not None:
            raise ApiError(500, f"model produced non-finite values in output {bad!r}")
        if not self.reader.is_classifier:
            return [Answer(part, [], None) for part in split_rows(outputs, rows)]
        predictions = self.reader.read(outputs)
        scores = predictions.scores
        self.metrics.record_predictions(predictions.counts(), () if scores is None else scores.tolist())
        if scores is not None:
            self.metrics.count_score_bins(scores)
        if compared is not None and self.shadow is not None:
            self.shadow.record(compared, predictions)
        if len(rows) == 1:  # one request: its answer is the whole batch's, nothing to cut
            classes = predictions.classes
            token = self.tokens.issue(classes) if self.tokens is not None and classes else None
            return [Answer(outputs, classes, token)]
        parts, per_request = split_rows(outputs, rows), _split_classes(predictions.classes, rows)
        if self.tokens is None or not predictions.classes:
            return [Answer(part, names, None) for part, names in zip(parts, per_request, strict=True)]
        tokens = self.tokens.issue_many(per_request)
        return [Answer(*answer) for answer in zip(parts, per_request, tokens, strict=True)]

    def count_inputs(self, feeds: dict[str, np.ndarray], imputed: Sequence[tuple[int, int]] = ()) -> None:
        """Count an answered request's feature matrix into the drift bins (``modelserver_feature_bin_total``),
        and its rows that had an imputed value (``modelserver_imputed_rows_total``, the missing-data gate).

        Named-feature requests and tensor requests alike, as long as the tensor has one column per
        feature; ``imputed`` cells were not observed and are not counted.
        """
        if self.feature_input is not None:
            matrix = feeds.get(self.feature_input.name)
            if matrix is not None:
                self.metrics.count_feature_bins(matrix, imputed)
        if imputed:
            self.metrics.record_imputed_rows(len({row for row, _ in imputed}))

    def remember(self, request_id: str, answer: Answer) -> None:
        """Cache the prediction's classes under the request id, for feedback that sends the id."""
        if answer.classes:
            self.cache.put(request_id, tuple(answer.classes))


def _split_classes(classes: list[str], rows: list[int]) -> list[list[str]]:
    """Each request's classes, cut from the batch's by row counts."""
    parts, start = [], 0
    for count in rows:
        parts.append(classes[start : start + count])
        start += count
    return parts


def _classify_runtime_error(exc: Exception) -> ApiError:
    name = type(exc).__name__
    if name in ("InvalidArgument", "InvalidProtobuf") or "INVALID_ARGUMENT" in str(exc):
        return ApiError(400, f"the model rejected the input: {_first_line(exc)}")
    return ApiError(500, f"inference failed: {_first_line(exc)}")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
